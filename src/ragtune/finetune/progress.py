"""A rich progress bar for training, as ingestion and evaluation show theirs: steps done of the run, time
elapsed and left, and the latest loss, tokens/s and best validation loss. Written to a log (not a terminal),
rich draws nothing until the end, so there a plain line is printed at most every ``LOG_EVERY_S`` seconds."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LOG_EVERY_S = 30.0


class TrainProgress:
    """``bar = TrainProgress(total, done, show); bar.set_postfix(loss=...); bar.update(1); bar.close()``."""

    def __init__(self, total: int, initial: int, show: bool):
        console = Console(stderr=True)
        self._log = show and not console.is_terminal  # a log file or pipe: plain lines instead of a bar
        self._done, self._initial, self._total, self._stats = initial, initial, total, ""
        self._started = self._last = time.monotonic()
        self._progress = Progress(TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("steps"), TimeElapsedColumn(), TextColumn("left"),
                                  TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                  console=console, disable=not show or self._log, transient=False)
        self._task = self._progress.add_task("", total=total, completed=initial, stats="")
        self._progress.start()

    def set_postfix(self, **values: str) -> None:
        self._stats = " ".join(f"{k}={v}" for k, v in values.items())
        self._progress.update(self._task, stats=self._stats)

    def update(self, steps: int) -> None:
        self._progress.advance(self._task, steps)
        self._done += steps
        now = time.monotonic()
        if self._log and (now - self._last >= LOG_EVERY_S or self._done >= self._total):
            self._last = now
            print(self.line(now), file=self._progress.console.file, flush=True)

    def line(self, now: float) -> str:
        """One plain progress line: steps done, time elapsed and left (from the pace so far), the stats."""
        elapsed = now - self._started
        left = elapsed / max(self._done - self._initial, 1) * max(self._total - self._done, 0)  # this run's pace
        return (f"fine-tuning: {self._done}/{self._total} steps, {elapsed / 60:.1f} min elapsed, "
                f"about {left / 60:.1f} min left {self._stats}").rstrip()

    def close(self) -> None:
        self._progress.stop()
