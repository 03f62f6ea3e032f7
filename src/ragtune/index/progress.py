"""A rich progress bar for ingestion: files done, the file in hand, texts embedded."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class IngestProgress:
    """``with IngestProgress(total, show) as bar: bar.start(name); bar.embedded(n); bar.advance()``."""

    def __init__(self, total: int, show: bool):
        self.show = show
        self._embedded = 0
        self._progress = Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[embedded]} embedded"), TimeElapsedColumn(),
                                  TextColumn("{task.description}"), console=Console(stderr=True),
                                  disable=not show, transient=False)
        self._task = self._progress.add_task("", total=total, embedded=0)

    def __enter__(self) -> IngestProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start(self, name: str) -> None:
        self._progress.update(self._task, description=name[-60:])

    def embedded(self, n: int) -> None:
        self._embedded += n
        self._progress.update(self._task, embedded=self._embedded)

    def advance(self) -> None:
        self._progress.advance(self._task)
