"""The one atomic writer: write to a temporary file beside the target, fsync, then rename over it.

A reader sees the old file or the new one, never half of one, and a crash after the rename cannot leave an empty
file behind. Folders (model caches, checkpoints) follow the same rule with their own temp folder + rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the block ends without an error (and is discarded otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; reports and manifests are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """``data`` as JSON (non-JSON values as their str), atomically."""
    return atomic_write(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_folder(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block ends without an error.

    By default, if another process made ``target`` first, its copy is kept (same inputs, same result) and ours
    dropped. With ``replace=True`` an existing ``target`` is moved aside, our folder renamed in, and the old one
    removed after, so a reader never sees a half-written ``target``.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        old = None
        if replace and target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:  # target exists and is not empty: another process finished first
            if not target.is_dir():
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
