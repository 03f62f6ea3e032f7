"""Many requests in flight to an endpoint, results in input order (``generator.concurrency``).

    for answer in iter_answers(rag.ask, questions, 8): log.write(answer)   # written as they complete, in order

With concurrency 1 this is a plain loop. Above 1, a thread pool keeps at most ``concurrency`` calls
running (an OpenAI-compatible server batches them); results come back in input order, so a run is
identical in content and order to a sequential one. The first failure is raised, unstarted calls are
cancelled. Meant for remote generators (``generator.backend = "openai"``); a local model gains nothing.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def iter_answers(ask: Callable[[T], R], items: Iterable[T], concurrency: int = 1) -> Iterator[R]:
    """``ask(item)`` for each item, up to ``concurrency`` at once, yielded in input order as soon as ready."""
    if concurrency <= 1:
        yield from (ask(item) for item in items)
        return
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ragtune-ask")
    window: deque[Future] = deque()
    try:
        for item in items:
            window.append(pool.submit(ask, item))
            if len(window) >= concurrency:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for future in window:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
