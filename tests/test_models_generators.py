"""Both Generator backends: a local transformers model and an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragtune.errors import ModelError
from ragtune.models.generators import Generator, OpenAIChatGenerator, TransformersGenerator
from ragtune.models.loading import load_model_and_tokenizer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the valve?"}]


@pytest.fixture(scope="module")
def tiny_generator(tiny_lm_dir) -> TransformersGenerator:
    model, tokenizer = load_model_and_tokenizer(str(tiny_lm_dir))
    return TransformersGenerator(model, tokenizer, name="tiny", max_new_tokens=12)


def test_transformers_call_and_stream_give_the_same_greedy_text(tiny_generator):
    assert isinstance(tiny_generator, Generator)
    whole = tiny_generator(MESSAGES)
    pieces = list(tiny_generator.stream(MESSAGES))
    assert whole and len(pieces) > 1
    assert "".join(pieces).strip() == whole
    assert tiny_generator(MESSAGES) == whole  # greedy: deterministic
    assert tiny_generator.last_stats["new_tokens"] <= 12


def test_transformers_respects_max_new_tokens_and_counts_tokens(tiny_generator):
    tiny_generator(MESSAGES, max_new_tokens=2)
    assert tiny_generator.last_stats["new_tokens"] <= 2
    assert tiny_generator.count_tokens("warranty claims") == len(
        tiny_generator.tokenizer("warranty claims", add_special_tokens=False)["input_ids"])


def test_transformers_sampling_runs_with_temperature(tiny_generator):
    assert isinstance(tiny_generator(MESSAGES, temperature=0.9, max_new_tokens=4), str)


def test_int8_optimized_generator_still_generates(tiny_lm_dir):
    import torch

    model, tokenizer = load_model_and_tokenizer(str(tiny_lm_dir))
    fast = TransformersGenerator(model, tokenizer, max_new_tokens=5, optimize="int8")
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in fast.model.modules())
    assert isinstance(fast(MESSAGES), str) and fast.last_stats["new_tokens"] >= 1
    assert fast.model.lm_head.__class__ is not torch.nn.Linear


class _ChatHandler(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible /chat/completions that echoes what it was sent."""

    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if body["model"] == "missing":
            self._send(404, "application/json", json.dumps({"error": {"message": "model not found"}}).encode())
            return
        words = ["Valve", " is", " under", " the", " lid", " [1]."]
        if not body.get("stream"):
            reply = {"choices": [{"message": {"role": "assistant", "content": "".join(words)}}]}
            self._send(200, "application/json", json.dumps(reply).encode())
            return
        events = "".join(f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n" for w in words)
        self._send(200, "text/event-stream", (events + "data: [DONE]\n\n").encode())

    def _send(self, status, kind, data):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    _ChatHandler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_calls_and_streams(chat_server):
    generator = OpenAIChatGenerator(chat_server, "tiny-chat", api_key="sekret", max_new_tokens=7)
    assert isinstance(generator, Generator)
    assert generator(MESSAGES) == "Valve is under the lid [1]."
    assert list(generator.stream(MESSAGES)) == ["Valve", " is", " under", " the", " lid", " [1]."]
    first, second = _ChatHandler.received
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sekret"
    assert first["body"]["messages"] == MESSAGES and first["body"]["max_tokens"] == 7
    assert first["body"]["stream"] is False and second["body"]["stream"] is True


def test_openai_backend_reports_http_errors(chat_server):
    generator = OpenAIChatGenerator(chat_server, "missing")
    with pytest.raises(ModelError, match="HTTP 404"):
        generator(MESSAGES)
    with pytest.raises(ModelError, match="HTTP 404"):
        list(generator.stream(MESSAGES))


def test_openai_backend_unreachable_names_the_url():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    generator = OpenAIChatGenerator(url, "m", timeout=5)
    with pytest.raises(ModelError, match=url.replace(".", r"\.")):
        generator(MESSAGES)
    with pytest.raises(ModelError, match="cannot reach"):
        list(generator.stream(MESSAGES))


def test_stop_on_repeat_cuts_a_looping_reply_at_its_first_repeat(tiny_generator):
    import torch

    from ragtune.models.generators import StopOnRepeat

    stop = StopOnRepeat(tiny_generator.tokenizer, prompt_tokens=0)
    assert stop.repeats("The cap resets the sensor. It blinks amber. The cap resets the sensor. ")
    assert not stop.repeats("The cap resets the sensor. It blinks amber. The cap resets the")  # not complete yet
    assert not stop.repeats("Hold it. Hold it. ")  # too short to call a loop
    ids = tiny_generator.tokenizer(["Firmware adds frost alerts.\nFirmware adds frost alerts.\nMore"],
                                   return_tensors="pt")["input_ids"]
    assert stop(ids).tolist() == [True]
    assert stop(ids[:, :8]).tolist() == [False]
    assert stop(ids).dtype == torch.bool
