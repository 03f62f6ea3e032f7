"""Which files an ingestion covers, the stable names they are known by, and their facts on disk."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

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

#: The largest file read as one document. Bigger files are refused before a byte is read (a sparse
#: 200 MB ".txt" or a log left in a docs folder would otherwise fill memory); split them instead.
MAX_FILE_MB = 100
_KINDS = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


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


def read_bytes(path: Path, limit_mb: float = MAX_FILE_MB) -> bytes:
    """The file's bytes, or an InputError that names it and says what to do.

    Only regular files are opened: a FIFO would block forever and a device (a ``.txt`` symlinked to
    ``/dev/zero``) never ends, so both are refused from ``stat`` alone. At most ``limit_mb`` is read.
    """
    limit = int(limit_mb * 1024 * 1024)
    try:
        info = path.stat()  # follows symlinks: the kind and size of what would be read
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder; check the path") from None
    except OSError as e:  # ELOOP (a symlink loop), EACCES, EIO...
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder; pass it as a folder to ingest its files")
    _check_regular(path, info.st_mode)
    _check_size(path, info.st_size, limit)
    try:
        # O_NONBLOCK: if the name was swapped for a FIFO since the stat, opening it must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as f:
            _check_regular(path, os.fstat(f.fileno()).st_mode)
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    _check_size(path, len(data), limit)  # it grew after the stat
    return data


def _check_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise InputError(f"{path}: is {kind}, not a regular file; only regular files are read, leave it out")


def _check_size(path: Path, size: int, limit: int) -> None:
    if size > limit:
        raise InputError(f"{path}: larger than {limit // (1024 * 1024)} MB, the limit for one document; "
                         "split it into smaller files")


def file_facts(path: Path, data: bytes) -> dict[str, Any]:
    """Metadata every document carries: absolute path, content hash (for incremental ingestion), mtime, size."""
    try:
        info = path.stat()
    except OSError:
        raise InputError(f"{path}: vanished while it was being read; re-run to ingest it as it is now") from None
    return {
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mtime": info.st_mtime,
        "size": len(data),
    }
