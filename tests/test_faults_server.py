"""Fault suite, the server (FastAPI TestClient, no ports): malformed and oversize bodies, wrong and missing keys,
unknown models, hostile upload names and empty uploads get an OpenAI-style 4xx naming the problem; the knowledge
base behind it keeps everything; `serve --kb` of a folder without a knowledge base is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from _faults_util import QUERY, assert_kept, make_kb, one_line, snapshot
from _serve_util import CitingGenerator
from ragtune.errors import ConfigError
from ragtune.serve import create_app

CHAT = "/v1/chat/completions"


@pytest.fixture
def served(tmp_path):
    """(client, kb folder, snapshot before): an app over a small kb, uploads limited to 1 MB, bodies to 64 KB."""
    kb = make_kb(tmp_path)
    settings = kb.settings
    settings.serve.rate_limit_per_minute = 0
    settings.serve.max_upload_mb = 1
    settings.serve.max_request_mb = 0.0625
    settings.rag.min_relevance = -1.0
    before = snapshot(kb.path)
    app = create_app(kb, base=CitingGenerator(), settings=settings, kb_dir=kb.path, api_key="")
    with TestClient(app) as client:
        yield client, kb.path, before
    assert_kept(kb.path, before)  # whatever the requests were, nothing stored was lost


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    one_line(error["message"])
    return error


def test_malformed_json_is_400(served):
    client, _, _ = served
    r = client.post(CHAT, content=b'{"model": "base", "messages": [', headers={"Content-Type": "application/json"})
    assert error_of(r, 400)["code"] == "invalid_json"


def test_oversize_body_is_413(served):
    client, _, _ = served
    huge = {"model": "base", "messages": [{"role": "user", "content": "x" * 200_000}]}
    assert error_of(client.post(CHAT, json=huge), 413)["type"] == "invalid_request_error"


@pytest.mark.parametrize("body, param", [
    ({"model": "base"}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "base", "messages": "hello"}, "messages"),
    ({"model": "base", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, "max_tokens"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "temperature": "warm"}, "temperature"),
], ids=["no-messages", "no-model", "messages-a-string", "unknown-role", "negative-max-tokens", "temperature-text"])
def test_wrong_or_missing_keys_are_400_naming_the_field(served, body, param):
    client, _, _ = served
    error = error_of(client.post(CHAT, json=body), 400)
    assert error["param"] == param and param.split(".")[0] in error["message"]


def test_unknown_model_is_404(served):
    client, _, _ = served
    r = client.post(CHAT, json={"model": "gpt-7", "messages": [{"role": "user", "content": "hi"}]})
    error = error_of(r, 404)
    assert "gpt-7" in error["message"] and "base" in error["message"]


@pytest.mark.parametrize("name", ["../../outside.txt", "{tmp}/abs.txt", "..", "sub/dir.txt", "C:evil.txt",
                                  ".hidden.txt"])
def test_traversal_absolute_and_odd_upload_names_are_refused(served, tmp_path, name):
    client, kb, _ = served
    name = name.replace("{tmp}", str(tmp_path))
    r = client.post("/v1/kb/documents", files={"file": (name, b"The Zorblax kettle boils fast.", "text/plain")})
    assert error_of(r, 400)["code"] == "invalid_filename"
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert not (kb / "uploads").exists() or not any((kb / "uploads").iterdir())


def test_zero_byte_upload_is_400(served):
    client, kb, _ = served
    r = client.post("/v1/kb/documents", files={"file": ("empty.txt", b"", "text/plain")})
    assert error_of(r, 400)["code"] == "empty_file"
    assert not any(p.name == "empty.txt" for p in (kb / "uploads").glob("*"))


@pytest.mark.parametrize("name, data, code", [
    ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "unsupported_file_type"),
    ("report.pdf", b"<html>not a pdf</html>", "unsupported_file_type"),
    ("tool.exe", b"MZ\x90\x00", "unsupported_file_type"),
])
def test_uploads_whose_content_lies_are_415(served, name, data, code):
    client, _, _ = served
    r = client.post("/v1/kb/documents", files={"file": (name, data, "application/octet-stream")})
    assert error_of(r, 415)["code"] == code


def test_oversize_upload_is_413_and_nothing_is_staged(served):
    client, kb, _ = served
    r = client.post("/v1/kb/documents", files={"file": ("big.txt", b"word " * 300_000, "text/plain")})
    assert error_of(r, 413)["code"] in ("file_too_large", "request_too_large")
    assert not list((kb / "uploads").glob("*"))  # the partial temp file was removed


@pytest.mark.parametrize("body, param", [
    ({"query": 5}, "query"),
    ({"k": 3}, "query"),
    ({"query": "zephyr", "where": {"colour": "red"}}, None),
])
def test_bad_search_requests_are_400(served, body, param):
    client, _, _ = served
    error = error_of(client.post("/v1/kb/search", json=body), 400)
    assert error["param"] == param or "colour" in error["message"]


def test_deleting_an_unknown_source_is_404(served):
    client, _, _ = served
    assert error_of(client.delete("/v1/kb/sources/no-such.md"), 404)["code"] == "source_not_found"


def test_search_still_answers_after_the_bad_requests(served):
    client, _, before = served
    client.post(CHAT, content=b"{", headers={"Content-Type": "application/json"})
    client.post("/v1/kb/documents", files={"file": ("../x.txt", b"x", "text/plain")})
    hits = client.post("/v1/kb/search", json={"query": QUERY, "k": 1}).json()["data"]
    assert hits[0]["source"] == before.top[0]


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "file"])
def test_serve_refuses_a_kb_folder_without_a_knowledge_base(tmp_path, monkeypatch, kind):
    from typer.testing import CliRunner

    from ragtune.cli.main import _register, app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGTUNE_API_KEY", raising=False)
    kb = tmp_path / "kb"
    if kind == "empty-folder":
        kb.mkdir()
    elif kind == "file":
        kb.write_text("x")
    _register()
    result = CliRunner().invoke(app, ["serve", "--kb", str(kb), "--port", "8799"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    message = one_line(str(result.exception))
    assert message.startswith(f"--kb {kb}: ") and "ragtune ingest" in message and "--create-kb" in message
    assert not (kb / "manifest.json").exists()  # nothing was created behind the user's back
    # --create-kb is the explicit way: the kb check passes (the next check, the public bind, stops it here)
    result = CliRunner().invoke(app, ["serve", "--kb", str(tmp_path / "new-kb"), "--create-kb", "--host", "0.0.0.0"])
    assert isinstance(result.exception, ConfigError) and "API key" in str(result.exception)
