"""Which files an ingestion covers, the stable names they are known by, and their facts on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from ragtune.errors import InputError

#: Suffix → format name; the loaders in this package know these formats.
FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


def source_name(path: str | Path) -> str:
    """The user-facing name of a path: as given, in posix form (``./docs/a.md`` → ``docs/a.md``)."""
    text = str(path).replace(os.sep, "/") if os.sep != "/" else str(path)
    return str(PurePosixPath(text))


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, source)`` for every file to ingest, folders expanded recursively.

    Inside folders, hidden files and folders and unsupported suffixes are skipped, in sorted
    order. A path named explicitly is always yielded, even when missing or unsupported, so
    that loading it reports the problem for that source while the rest of the batch goes on.
    Each source is yielded once.
    """
    if isinstance(paths, (str, Path)):  # one path, not an iterable of characters
        paths = [paths]
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = _walk(path)
        else:
            found = [(path, source_name(given))]
        for file, source in found:
            if source not in seen:
                seen.add(source)
                yield file, source


def _walk(root: Path) -> list[tuple[Path, str]]:
    base = source_name(root)
    out = []
    # followlinks=False: a symlink loop must not hang ingestion
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in FORMATS:
                continue
            parts = [base] if base != "." else []
            parts += [p for p in rel.parts] + [name]
            out.append((Path(folder) / name, "/".join(parts)))
    return sorted(out, key=lambda item: item[1])


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or an InputError that names it and says what to do."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass it as a folder to ingest its files")
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None


def file_facts(path: Path, data: bytes) -> dict[str, Any]:
    """Metadata every document carries: absolute path, content hash (for incremental ingestion), mtime, size."""
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mtime": stat.st_mtime,
        "size": len(data),
    }
