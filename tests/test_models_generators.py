"""The Generator backends (transformers, an OpenAI-compatible endpoint) and the shared local decoding loop."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragtune.errors import ModelError
from ragtune.models.decoding import LocalGenerator, RepetitionStop, cut_at_stop
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


def test_transformers_sampling_draws_other_tokens_than_greedy(tiny_generator):
    # A random tiny model spreads its probability over ~30k tokens: 3 sampled replies of 6 tokens all equal to
    # the greedy one would mean temperature was ignored.
    greedy = tiny_generator(MESSAGES, max_new_tokens=6)
    sampled = {tiny_generator(MESSAGES, temperature=1.0, max_new_tokens=6) for _ in range(3)}
    assert sampled - {greedy}
    assert tiny_generator(MESSAGES, temperature=0.0, max_new_tokens=6) == greedy


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


class ScriptedEngine(LocalGenerator):
    """A local backend whose engine emits a fixed token sequence: exercises the shared loop without a model."""

    def __init__(self, tokenizer, script: list[int], **kwargs):
        super().__init__(tokenizer, name="scripted", **kwargs)
        self.script, self.closed = script, False

    def _tokens(self, prompt, max_new_tokens, temperature):
        try:
            yield from self.script
        finally:
            self.closed = True


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_repetition_stop_cuts_where_the_repeat_began():
    stop = RepetitionStop(3)
    tokens: list[int] = []
    cuts = []
    for t in [1, 2, 3, 4, 1, 2, 5, 1, 2, 3]:
        tokens.append(t)
        cuts.append(stop.cut(tokens))
    assert cuts == [None] * 9 + [7]  # [1, 2, 3] again at positions 7-9: keep the 7 tokens before it
    assert RepetitionStop(0).cut([1, 1, 1, 1]) is None and RepetitionStop(0).holdback == 0


def test_shared_loop_stops_a_looping_reply_before_its_repeat(tiny_generator):
    tok = tiny_generator.tokenizer
    loop = _ids(tok, "the cap resets the sensor and it blinks amber") * 4
    gen = ScriptedEngine(tok, loop, max_new_tokens=200, repeat_ngram=6)
    pieces = list(gen.stream(MESSAGES))
    assert "".join(pieces) == "the cap resets the sensor and it blinks amber"
    assert gen.last_stats["stop"] == "repeat" and gen.closed
    assert gen.last_stats["kept_tokens"] == len(loop) // 4 < gen.last_stats["new_tokens"]
    assert gen(MESSAGES) == "".join(pieces)  # the whole reply is the joined stream
    free = ScriptedEngine(tok, loop, max_new_tokens=200, repeat_ngram=0)
    assert free(MESSAGES).count("blinks amber") == 4 and free.last_stats["stop"] == "length"


def test_shared_loop_stops_at_eos_at_the_token_limit_and_at_a_stop_text(tiny_generator):
    tok = tiny_generator.tokenizer
    words = _ids(tok, "hold the cap for twelve seconds")
    eos = ScriptedEngine(tok, words[:3] + [tok.eos_token_id] + words[3:], max_new_tokens=50)
    assert eos(MESSAGES) == "hold the cap" and eos.last_stats["stop"] == "eos"
    capped = ScriptedEngine(tok, words, max_new_tokens=50)
    assert capped(MESSAGES, max_new_tokens=2) == "hold the" and capped.last_stats["new_tokens"] == 2
    stop_text = ScriptedEngine(tok, words + _ids(tok, "question : what next"), max_new_tokens=50,
                               stop=["question :"])
    assert list(stop_text.stream(MESSAGES))[-1] and stop_text(MESSAGES) == "hold the cap for twelve seconds"
    assert stop_text.last_stats["stop"] == "stop"
    assert cut_at_stop("a\n\nb\n\n", ["\n\n", "b"]) == 1 and cut_at_stop("ab", ["x"]) is None


def test_transformers_backend_uses_the_shared_loop(tiny_generator):
    # The same prompt ids and stop rules as any local backend; closing the stream early stops model.generate.
    assert isinstance(tiny_generator, LocalGenerator)
    stream = tiny_generator.stream(MESSAGES, max_new_tokens=12)
    first = next(stream)
    stream.close()
    assert first and tiny_generator.last_stats["new_tokens"] < 12
