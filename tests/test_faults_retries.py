"""Fault suite, retries of the OpenAI-compatible generator: a streamed reply (what RAG, `ask`, `eval` and `serve`
use) is retried on 429 / 5xx while nothing of it has been yielded, as a whole reply is. The stand-in endpoint is a
real HTTP server on 127.0.0.1 (run the tests in a loopback-only namespace)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _faults_util import make_kb, one_line
from ragtune.errors import ModelError
from ragtune.models.generators import OpenAIChatGenerator

MESSAGES = [{"role": "user", "content": "How long is the Zephyr warranty?"}]
ANSWER = ["The warranty", " lasts twelve", " years [1]."]


@contextmanager
def endpoint(statuses: list[int]) -> Iterator[tuple[str, list[dict]]]:
    """An OpenAI-compatible /v1/chat/completions answering each status of ``statuses`` in turn (then 200):
    an error body with Retry-After: 0, or the answer as server-sent events (or as JSON when not streaming)."""
    seen: list[dict] = []
    replies = list(statuses)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            status = replies.pop(0) if replies else 200
            if status != 200:
                data = json.dumps({"error": {"message": "slow down", "type": "requests"}}).encode()
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not body.get("stream"):
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "".join(ANSWER)}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in ANSWER:
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("statuses", [[429], [503, 429]], ids=["429-then-200", "503-429-then-200"])
def test_a_stream_is_retried_on_429_and_5xx_before_its_first_token(statuses):
    with endpoint(statuses) as (url, seen):
        gen = OpenAIChatGenerator(url, "m", retries=3, backoff_s=0.0)
        assert list(gen.stream(MESSAGES)) == ANSWER
        assert len(seen) == len(statuses) + 1 and all(body["stream"] for body in seen)


def test_the_whole_and_the_streamed_reply_retry_alike_and_give_up_alike():
    with endpoint([429, 429, 429, 429, 429, 429]) as (url, seen):
        gen = OpenAIChatGenerator(url, "m", retries=2, backoff_s=0.0)
        with pytest.raises(ModelError) as streamed:
            list(gen.stream(MESSAGES))
        with pytest.raises(ModelError) as whole:
            gen(MESSAGES)
        assert len(seen) == 6  # 1 + 2 retries each
        for info in (streamed, whole):
            assert "answered HTTP 429 3 times" in one_line(str(info.value))
        assert gen(MESSAGES) == "".join(ANSWER)  # the endpoint recovered: the next reply goes through


def test_rag_ask_over_an_endpoint_answering_429_then_200(tmp_path):
    from ragtune.rag import RAG

    kb = make_kb(tmp_path)
    kb.settings.rag.min_relevance = -1.0
    with endpoint([429]) as (url, seen):
        rag = RAG(kb, settings=kb.settings, generator=OpenAIChatGenerator(url, "m", retries=2, backoff_s=0.0))
        answer = rag.ask("How long is the zephyr battery warranty?")
        assert answer.text == "".join(ANSWER) and answer.citations
        assert len(seen) == 2 and seen[0]["stream"] and seen[1]["stream"]  # RAG streams, and it was retried
