"""The app itself: page and assets, /healthz, /v1/info, the report link, SSE framing and error bodies."""

from __future__ import annotations

import json
import os
import time

import pytest
from fastapi.testclient import TestClient

from _serve_util import CitingGenerator
from ragtune.config import Settings
from ragtune.serve import create_app
from ragtune.serve.app import latest_report


class FailingGenerator(CitingGenerator):
    name = "failing"

    def stream(self, messages, **kwargs):
        yield "partial"
        raise RuntimeError("the model fell over")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    old, new = reports / "run-old", reports / "run-new"
    for folder, title in ((old, "old run"), (new, "new run")):
        folder.mkdir()
        (folder / "index.html").write_text(f"<h1>{title}</h1>")
    (new / "plot.png").write_bytes(b"\x89PNG fake")
    os.utime(old / "index.html", (time.time() - 100, time.time() - 100))
    app = create_app(None, base=CitingGenerator(), finetuned=FailingGenerator(), settings=Settings(),
                     report_dir=reports, api_key="")
    with TestClient(app) as c:
        yield c


def test_page_and_its_assets_are_served_without_any_external_reference(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.text) > 500
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, nothing fetched from elsewhere
    assert "/static/app.js" in page.text and "https://" not in page.text


def test_healthz_and_info_describe_the_server(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["configurations"] == ["base", "finetuned"] and health["kb"] is False
    info = client.get("/v1/info").json()
    assert [c["id"] for c in info["configurations"]] == ["base", "finetuned"]
    assert info["report"]["url"] == "/report/index.html" and ".pdf" in info["upload"]["types"]


def test_report_link_serves_the_newest_run_and_nothing_outside_it(client):
    assert client.get("/report/index.html").text == "<h1>new run</h1>"
    assert client.get("/report/plot.png").content == b"\x89PNG fake"
    for path in ("/report/../run-old/index.html", "/report/%2e%2e/run-old/index.html", "/report/..%2Frun-old%2Findex.html",
                 "/report//etc/passwd", "/report/nothing.html"):
        r = client.get(path)
        assert r.status_code == 404 or r.text != "<h1>old run</h1>", path
        assert "root:" not in r.text


def test_latest_report_prefers_a_report_in_the_folder_itself(tmp_path):
    assert latest_report(tmp_path / "missing") is None and latest_report(tmp_path) is None
    (tmp_path / "index.html").write_text("x")
    assert latest_report(tmp_path) == tmp_path / "index.html"


def test_sse_framing_is_exactly_openai_s(client):
    body = {"model": "base", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "base" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "There are no passages to cite."


def test_a_failure_mid_stream_is_reported_in_band_then_done(client):
    body = {"model": "finetuned", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert json.loads(events[1].removeprefix("data: "))["choices"][0]["delta"]["content"] == "partial"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and "the model fell over" not in error["message"]
    assert events[-1] == "data: [DONE]"


def test_non_stream_failure_is_a_500_in_openai_format(tmp_path):
    app = create_app(None, base=FailingGenerator(), settings=Settings(), api_key="")
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/chat/completions", json={"model": "base", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500 and r.json()["error"] == {
        "message": "internal server error; see the server log", "type": "server_error", "param": None,
        "code": "internal_error"}


@pytest.mark.parametrize("body,status,code,param", [
    (b"{not json", 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_value", None),
    (b'{"model": "base"}', 400, "invalid_value", "messages"),
    (b'{"model": "base", "messages": [{"role": "wizard", "content": "x"}]}', 400, "invalid_value", "messages.0.role"),
    (b'{"model": "base", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', 400, "invalid_value",
     "messages.0.content"),
    (b'{"model": "base", "n": 3, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_value", "n"),
    (b'{"model": "rag", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found", "model"),
])
def test_bad_requests_get_status_and_an_openai_error_body(client, body, status, code, param):
    r = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"] == param


def test_rag_needs_a_user_message_before_any_stream_starts(tmp_path, tiny_embedder_dir):
    from _serve_util import make_kb, make_settings

    settings = make_settings(tiny_embedder_dir)
    app = create_app(make_kb(tmp_path / "kb", settings), base=CitingGenerator(), settings=settings, api_key="")
    with TestClient(app) as client:
        body = {"model": "rag", "stream": True, "messages": [{"role": "system", "content": "only a system turn"}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 400 and "role 'user'" in r.json()["error"]["message"]


def test_unknown_routes_and_methods_use_the_same_error_format(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/v1/embeddings", json={"model": "x", "input": "hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"  # no kb, so no embedder
    r = client.post("/v1/embeddings", json={"model": "x", "input": [1, 2, 3]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_content_parts_and_developer_role_are_understood(client):
    body = {"model": "base", "messages": [{"role": "developer", "content": "be brief"},
                                          {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "top_p": 0.5, "user": "someone"}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert "citations" not in r.json()["choices"][0]["message"]  # only RAG configurations carry them
