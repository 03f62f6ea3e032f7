"""iter_answers: input order kept, the concurrency bound respected, failures raised;
OpenAIChatGenerator retries 429 / 5xx with backoff and fails clearly after the last retry."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from ragtune.errors import ModelError
from ragtune.models.generators import OpenAIChatGenerator
from ragtune.parallel import iter_answers


class Probe:
    """A fake slow call that records how many calls overlap."""

    def __init__(self):
        self.lock, self.running, self.peak = threading.Lock(), 0, 0

    def __call__(self, x: int) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(random.Random(x).uniform(0.0, 0.02))
        with self.lock:
            self.running -= 1
        if x == -1:
            raise ValueError("bad item")
        return f"answer {x}"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_results_are_in_input_order_and_concurrency_is_bounded(concurrency):
    probe = Probe()
    assert list(iter_answers(probe, range(40), concurrency)) == [f"answer {i}" for i in range(40)]
    assert probe.peak == concurrency


def test_the_first_failure_is_raised_and_the_rest_cancelled():
    probe, calls = Probe(), []

    def ask(x):
        calls.append(x)
        return probe(x)

    answers = iter_answers(ask, [0, 1, -1] + list(range(2, 200)), concurrency=3)
    assert [next(answers), next(answers)] == ["answer 0", "answer 1"]
    with pytest.raises(ValueError, match="bad item"):
        list(answers)
    assert len(calls) < 50  # unstarted calls were cancelled


def _generator(handler, retries=3):
    gen = OpenAIChatGenerator("http://endpoint.test/v1", "m", retries=retries, backoff_s=0.0)
    gen._client = httpx.Client(base_url=gen.base_url, transport=httpx.MockTransport(handler))
    return gen


def _ok(text="fine"):
    return httpx.Response(200, json={"choices": [{"message": {"content": text}}]})


def test_429_and_5xx_are_retried_then_answered():
    replies = [httpx.Response(429, headers={"retry-after": "0"}, text="slow down"), httpx.Response(503), _ok()]
    seen = []

    def handler(request):
        seen.append(request)
        return replies[len(seen) - 1]

    assert _generator(handler)([{"role": "user", "content": "hi"}]) == "fine"
    assert len(seen) == 3


def test_a_clear_error_after_the_last_retry_and_no_retry_on_400():
    seen = []

    def failing(request):
        seen.append(request)
        return httpx.Response(500, text="engine crashed")

    with pytest.raises(ModelError, match=r"HTTP 500 3 times: engine crashed.*generator.concurrency"):
        _generator(failing, retries=2)([{"role": "user", "content": "hi"}])
    assert len(seen) == 3
    seen.clear()

    def bad_request(request):
        seen.append(request)
        return httpx.Response(400, text="unknown model")

    with pytest.raises(ModelError, match="HTTP 400"):
        _generator(bad_request)([{"role": "user", "content": "hi"}])
    assert len(seen) == 1
