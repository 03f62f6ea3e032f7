"""A rich progress bar for training, as ingestion and evaluation show theirs: steps done of the run, time
elapsed and left, and the latest loss, tokens/s and best validation loss."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """``bar = TrainProgress(total, done, show); bar.set_postfix(loss=...); bar.update(1); bar.close()``."""

    def __init__(self, total: int, initial: int, show: bool):
        self._progress = Progress(TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("steps"), TimeElapsedColumn(), TextColumn("left"),
                                  TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                  console=Console(stderr=True), disable=not show, transient=False)
        self._task = self._progress.add_task("", total=total, completed=initial, stats="")
        self._progress.start()

    def set_postfix(self, **values: str) -> None:
        self._progress.update(self._task, stats=" ".join(f"{k}={v}" for k, v in values.items()))

    def update(self, steps: int) -> None:
        self._progress.advance(self._task, steps)

    def close(self) -> None:
        self._progress.stop()
