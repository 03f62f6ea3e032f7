"""Shared pieces of the fault suite: a tiny embedder built in code, a small knowledge base, and the
"nothing stored was lost" check (counts, sources, chunk ids and a search, before and after)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "zephyr.md": "# Zephyr\n\nThe Zephyr battery warranty lasts twelve years when registered.\n",
    "cats.txt": "Cats sleep for most of the afternoon and hunt at dusk.\n",
    "pump.txt": "Prime the Hollin pump with two litres of water before the first start.\n",
}
QUERY = "how long is the zephyr battery warranty"


class HashEmbedder:
    """Bag of hashed words → a unit vector: deterministic, no model, and similar texts land close."""

    name = "hash-words-64"
    dimension = 64

    def __call__(self, texts):
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def settings():
    from ragtune.config import Settings

    s = Settings()
    s.chunking.chunk_tokens = 64
    s.chunking.overlap_tokens = 8
    return s


def open_kb(folder: Path):
    from ragtune.index.knowledge_base import KnowledgeBase

    return KnowledgeBase(folder, settings(), embedder=HashEmbedder())


def make_kb(root: Path, docs: dict[str, str] = DOCS):
    """A knowledge base in ``root/kb`` holding ``docs`` (written to ``root/docs``)."""
    folder = root / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    kb = open_kb(root / "kb")
    report = kb.add([folder], progress=False)
    assert not report.failed and len(report.added) == len(docs), report.to_json()
    return kb


@dataclass
class Snapshot:
    count: int
    sources: dict[str, tuple[str, int]]  # source → (sha256, chunks)
    ids: list[str]
    top: list[str]  # sources of the best hits for QUERY


def snapshot(folder: Path) -> Snapshot:
    """What a freshly opened knowledge base holds, read only through the public API and the store protocol."""
    kb = open_kb(folder)
    ids = sorted(c.id for c in kb.store.chunks())
    return Snapshot(len(kb), {s.source: (s.sha256, s.chunks) for s in kb.sources()}, ids,
                    [h.source for h in kb.search(QUERY, k=2)])


def assert_kept(folder: Path, before: Snapshot) -> Snapshot:
    """Everything stored before is still there, searchable as before, and no chunk id is duplicated."""
    after = snapshot(folder)
    for source, facts in before.sources.items():
        assert after.sources.get(source) == facts, f"{source} changed or was lost"
    assert set(before.ids) <= set(after.ids)
    assert len(after.ids) == len(set(after.ids)) == after.count == sum(c for _, c in after.sources.values())
    assert after.top[:1] == before.top[:1]
    return after


def one_line(message: str) -> str:
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


def run_in_mount_namespace(shell: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``shell`` (mounts) then ``python -c script`` in a private mount namespace (needs root + unshare)."""
    import pytest

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare -m, as root) to mount a read-only or full folder")
    code = f"import sys; sys.path[:0] = [{str(REPO / 'src')!r}, {str(REPO / 'tests')!r}]\n" + script
    return subprocess.run(["unshare", "-m", "sh", "-ec", f'{shell}\nexec "$0" -c "$1"', sys.executable, code],
                          capture_output=True, text=True, timeout=timeout)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The real entry point (`ragtune ...`), in process: exit code, stdout and stderr."""
    import pytest

    from ragtune.cli.main import main

    monkeypatch.setattr(sys, "argv", ["ragtune", *args])
    if "--debug" not in args:
        monkeypatch.setenv("RAGTUNE_DEBUG", "0")  # whatever an earlier test left; restored afterwards
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err
