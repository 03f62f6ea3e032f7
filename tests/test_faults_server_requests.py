"""Fault suite, the server's chat requests: `content: null` on a user turn and a prompt longer than the model's
context are the client's errors (400, which clients do not retry), not an empty prompt or a 503."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from _faults_util import one_line
from ragtune.config import Settings
from ragtune.models.backends import load_generator
from ragtune.serve import create_app

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def client(tiny_lm_dir):
    """Closed-book configurations over a real TransformersGenerator (a tiny Llama built in code, 1,024 positions)."""
    settings = Settings()
    settings.serve.rate_limit_per_minute = 0
    app = create_app(None, base=load_generator(str(tiny_lm_dir), max_new_tokens=4), settings=settings, api_key="")
    with TestClient(app) as c:
        yield c


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    one_line(error["message"])
    return error


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": None}], "messages.0.content"),
    ([{"role": "user"}], "messages.0.content"),
    ([{"role": "system", "content": None}, {"role": "user", "content": "hi"}], "messages.0.content"),
], ids=["user-null", "user-missing", "system-null"])
def test_null_or_missing_content_is_400_naming_the_field(client, messages, param):
    error = error_of(client.post(CHAT, json={"model": "base", "messages": messages}), 400)
    assert error["param"] == param and "content is required" in error["message"]


def test_null_content_of_an_assistant_turn_is_accepted(client):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
                {"role": "user", "content": "and now?"}]
    assert client.post(CHAT, json={"model": "base", "messages": messages, "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded(client, stream):
    body = {"model": "base", "messages": [{"role": "user", "content": "warranty " * 3000}], "stream": stream}
    response = client.post(CHAT, json=body)
    if not stream:
        error = error_of(response, 400)
    else:  # headers are sent before the prompt is built: the error comes in-band, with the same code
        events = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        error = next(e["error"] for e in events if "error" in e)
        one_line(error["message"])
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "more than its context of 1024" in error["message"] and "shorten" in error["message"]
    ok = client.post(CHAT, json={"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert ok.status_code == 200  # the server goes on answering
