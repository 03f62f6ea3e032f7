"""Wall-clock and memory measurement around a piece of work: peak RSS sampled in a background thread."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def rss_mb() -> float:
    """The process's current resident set size in MiB (psutil when present, else /proc, else the peak)."""
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return max_rss_mb()


def max_rss_mb() -> float:
    """The process's peak RSS so far (never goes down)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


@contextmanager
def measure(interval: float = 0.05) -> Iterator[dict]:
    """Yields a dict filled on exit with ``seconds`` and ``peak_rss_mb`` (the highest RSS seen while inside)."""
    stats = {"seconds": 0.0, "peak_rss_mb": rss_mb()}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            stats["peak_rss_mb"] = max(stats["peak_rss_mb"], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    thread.start()
    try:
        yield stats
    finally:
        done.set()
        thread.join()
        stats["seconds"] = time.perf_counter() - start
        stats["peak_rss_mb"] = max(stats["peak_rss_mb"], rss_mb())
