"""Wall-clock and memory measurement around a piece of work: its own peak RSS, not the process's peak so far.

`measure` resets the kernel's peak tracker (Linux: ``/proc/self/clear_refs``, read back as ``VmHWM``) when it
starts, and also samples the RSS in a background thread (every other platform). `release` hands memory freed
by an earlier piece of work back to the system first (glibc keeps freed heap otherwise, and the next piece's RSS
would start from the earlier one's high-water mark).
"""

from __future__ import annotations

import ctypes
import gc
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


def release() -> None:
    """Collect garbage and return freed heap memory to the system (glibc's ``malloc_trim``; elsewhere only gc)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def reset_peak() -> bool:
    """Reset the kernel's peak RSS of this process to its current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kernel_peak_mb() -> float | None:
    """The kernel's peak RSS of this process since the last `reset_peak` (Linux ``VmHWM``), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextmanager
def measure(interval: float = 0.05) -> Iterator[dict]:
    """Yields a dict filled on exit with ``seconds`` and ``peak_rss_mb``: the highest RSS while inside (the
    kernel's peak tracker, reset on entry, where it can be; else the highest sampled)."""
    exact = reset_peak()
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
        kernel = kernel_peak_mb() if exact else None
        if kernel is not None:
            stats["peak_rss_mb"] = max(stats["peak_rss_mb"], kernel)
