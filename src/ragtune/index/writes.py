"""Writing to a knowledge base safely: one writer at a time, and a failed write told in one line.

The writer lock is an advisory ``flock`` on ``<kb>/.lock`` that records its holder's PID. A second
writer does not wait in silence: it says which process holds the lock, waits up to ``WAIT_S``
seconds polling for it, then stops with an error naming that process. The lock file is opened
without truncating it, so a waiter never erases the holder's PID.

``write_errors`` turns a write that fails for want of space or permission (an ``OSError``, or the
store's own error carrying "os error N") into a StorageError; every write is a journalled, atomic
commit, so what was stored before stays as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtune.errors import StorageError

LOCK_FILE = ".lock"
WAIT_S = 600.0  # how long a second writer waits for the first (a big ingestion takes minutes)
POLL_S = 0.2
_OS_ERROR = re.compile(r"os error (\d+)")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def writer_lock(folder: Path, wait: bool = True, wait_s: float | None = None,
                notify: Callable[[str], None] = _say) -> Iterator[bool]:
    """Hold the knowledge base's write lock; yields False (at once) when ``wait`` is off and it is taken."""
    path = folder / LOCK_FILE
    try:
        f = open(path, "a+")
    except OSError as e:
        raise StorageError(f"{folder}: cannot write to the knowledge base ({e.strerror or e}); "
                           + _write_hint(e.errno, folder)) from None
    with f:
        if not _try_lock(f):
            if not wait:
                yield False
                return
            _wait_for(f, folder, WAIT_S if wait_s is None else wait_s, notify)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        except OSError:
            pass  # the PID is only a courtesy to a waiting process; the flock is what excludes
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _try_lock(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_for(f, folder: Path, wait_s: float, notify: Callable[[str], None]) -> None:
    holder = _holder(f)
    notify(f"waiting for the lock on {folder}, held by {holder} (another ingestion or removal); "
           f"giving up after {wait_s:.0f} s")
    deadline = time.monotonic() + wait_s
    while not _try_lock(f):
        if time.monotonic() >= deadline:
            raise StorageError(f"{folder}: still locked by {_holder(f)} after {wait_s:.0f} s; wait for it to finish "
                             "or stop it, then re-run")
        time.sleep(POLL_S)


def _holder(f) -> str:
    f.seek(0)
    pid = f.read().strip()
    return f"process {pid}" if pid.isdigit() else "another process"


def holder(lock: Path) -> str:
    """Who holds the lock file ``lock`` ("process PID"), for a caller that does not wait for it."""
    try:
        with open(lock) as f:
            return _holder(f)
    except OSError:
        return "another process"


@contextmanager
def write_errors(folder: Path | str) -> Iterator[None]:
    """A write that fails for want of space or permission becomes one StorageError line; others pass."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        code = e.errno if isinstance(e, OSError) else None
        if code is None and (m := _OS_ERROR.search(str(e))):
            code = int(m.group(1))
        if code not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO):
            raise
        raise StorageError(f"{folder}: a write failed ({os.strerror(code)}); {_write_hint(code, folder)} "
                           "(what was stored before is kept)") from e


@contextmanager
def read_errors(folder: Path | str) -> Iterator[None]:
    """A store that cannot be read (a damaged or half-deleted file) becomes one StorageError saying how to
    rebuild it; the manifest stays, so re-ingesting the same files restores every source."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise StorageError(f"{folder}: the store could not be read ({first}); it is damaged: move its folder "
                           f"({folder}/lance) aside and re-run `ragtune ingest` with the same files to rebuild "
                           "it") from e


def _write_hint(code: int | None, folder: Path | str) -> str:
    if code == errno.EROFS:
        return "it is on a read-only file system; copy it somewhere writable or search it as it is"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; free some space and re-run"
    if code == errno.EIO:
        return "the disk reported an I/O error; check it and re-run"
    return f"check the permissions of {folder}"
