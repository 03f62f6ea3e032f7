"""The knowledge base's manifest: which sources it holds, at which content hash, with which embedder.

It is the source of truth for incremental ingestion and is only ever replaced whole
(write to a temporary file, fsync, ``os.replace``), after the store has committed the chunks
it describes. A journal file marks a write in progress; if it is still there when the
knowledge base opens, the previous process died mid-write and the store is reconciled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_write
from ragtune.errors import ConfigError

MANIFEST = "manifest.json"
JOURNAL = "ingest.journal"
FORMAT = 1


@dataclass
class SourceInfo:
    """One source held by a knowledge base."""

    source: str
    chunks: int
    sha256: str  # of the file's bytes (or of an in-memory document's text)
    added_at: str  # ISO time of the first ingestion
    updated_at: str = ""
    path: str = ""  # absolute path it was read from ("" for in-memory documents)
    format: str = ""
    title: str = ""
    tags: list[str] = field(default_factory=list)


class Manifest:
    def __init__(self, folder: Path):
        self.path = folder / MANIFEST
        self.journal = folder / JOURNAL
        self.embedder: dict[str, Any] = {}
        self.sources: dict[str, SourceInfo] = {}
        self.load()

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.embedder = data.get("embedder", {})
            self.sources = {s["source"]: SourceInfo(**s) for s in data.get("sources", [])}
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ConfigError(f"{self.path}: unreadable knowledge-base manifest ({e}); move it aside (e.g. to "
                              f"{MANIFEST}.bad) and ragtune rebuilds it from the store") from None

    def save(self) -> None:
        data = {"format": FORMAT, "embedder": self.embedder,
                "sources": [asdict(s) for s in sorted(self.sources.values(), key=lambda s: s.source)]}
        atomic_write(self.path, json.dumps(data, indent=1, ensure_ascii=False))

    def begin(self, sources: list[str]) -> None:
        """Mark a write in progress (before the store is touched)."""
        atomic_write(self.journal, json.dumps({"sources": sources}))

    def end(self) -> None:
        """The store and the manifest agree again."""
        self.journal.unlink(missing_ok=True)

    @property
    def interrupted(self) -> bool:
        return self.journal.exists()


