"""One writer per knowledge base: an advisory ``flock`` on ``<kb>/.lock`` that records its holder's PID.

A second writer does not wait in silence: it says which process holds the lock, waits up to
``WAIT_S`` seconds polling for it, then stops with an error naming that process. The lock file is
opened without truncating it, so a waiter never erases the holder's PID.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ragtune.errors import InputError

LOCK_FILE = ".lock"
WAIT_S = 600.0  # how long a second writer waits for the first (a big ingestion takes minutes)
POLL_S = 0.2


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
        raise InputError(f"{folder}: cannot write to the knowledge base ({e.strerror or e}); "
                         + _write_hint(e, folder)) from None
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
            raise InputError(f"{folder}: still locked by {_holder(f)} after {wait_s:.0f} s; wait for it to finish "
                             "or stop it, then re-run")
        time.sleep(POLL_S)


def _holder(f) -> str:
    f.seek(0)
    pid = f.read().strip()
    return f"process {pid}" if pid.isdigit() else "another process"


def _write_hint(error: OSError, folder: Path) -> str:
    if error.errno == errno.EROFS:
        return "it is on a read-only file system; copy it somewhere writable or search it as it is"
    if error.errno == errno.ENOSPC:
        return "the disk is full; free some space and re-run"
    return f"check the permissions of {folder}"
