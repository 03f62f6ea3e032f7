"""Security: bearer key, loopback-only without a key, same-origin/CORS, rate and size limits, safe file names."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _serve_util import CitingGenerator
from ragtune.config import Settings
from ragtune.errors import ConfigError
from ragtune.serve import create_app
from ragtune.serve.errors import APIError
from ragtune.serve.kb_routes import safe_filename
from ragtune.serve.security import RateLimiter, check_bind, is_loopback

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hello"}]}


def app_with(api_key: str | None = None, **serve):
    settings = Settings()
    for key, value in serve.items():
        setattr(settings.serve, key, value)
    return create_app(None, base=CitingGenerator(), settings=settings, api_key=api_key or "")


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True),
                                           ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                           ("192.168.1.20", False), ("::", False), ("example.org", False)])
def test_only_loopback_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_key():
    settings = Settings().serve
    check_bind("127.0.0.1", None, settings)
    check_bind("0.0.0.0", "a-secret", settings)
    with pytest.raises(ConfigError, match="RAGTUNE_API_KEY"):
        check_bind("0.0.0.0", None, settings)


def test_cli_refuses_a_public_bind_without_a_key_in_one_line(monkeypatch, tmp_path):
    from ragtune.cli.main import _register, app

    monkeypatch.delenv("RAGTUNE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    _register()
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8765"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "needs an API key" in str(result.exception) and "\n" not in str(result.exception)


def test_key_is_required_when_configured_and_compared_exactly():
    with TestClient(app_with("s3cret")) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                        {"Authorization": "Bearer s3cret-and-more"}):
            r = client.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
        ok = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # The page and the health check hold no data and stay reachable for the key prompt.
        assert client.get("/").status_code == 200 and client.get("/healthz").json()["auth_required"] is True
        assert client.get("/report/index.html").status_code == 401
        assert client.get("/report/index.html", cookies={"ragtune_key": "wrong"}).status_code == 401


def test_cors_is_closed_by_default_and_cross_site_posts_are_refused():
    with TestClient(app_with()) as client:
        r = client.options("/v1/chat/completions", headers={"Origin": "https://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
        r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
        same = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://testserver"})
        assert same.status_code == 200


def test_configured_origins_get_cors_headers():
    with TestClient(app_with(cors_origins=["https://app.example"])) as client:
        r = client.options("/v1/chat/completions", headers={"Origin": "https://app.example",
                                                            "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


def test_rate_limit_answers_429_with_retry_after():
    with TestClient(app_with(rate_limit_per_minute=3)) as client:
        codes = [client.post("/v1/chat/completions", json=CHAT).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.json()["error"]["code"] == "rate_limit_exceeded" and int(r.headers["retry-after"]) >= 1
        # Reads (the page polls job progress) and the health check are not counted.
        assert client.get("/v1/models").status_code == 200 and client.get("/healthz").status_code == 200


def test_rate_limiter_refills_over_time():
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.allow("a", now=0.0)[0] for _ in range(60))
    allowed, wait = limiter.allow("a", now=0.0)
    assert not allowed and wait == pytest.approx(1.0)
    assert limiter.allow("b", now=0.0)[0]  # per client
    assert limiter.allow("a", now=1.01)[0] and not limiter.allow("a", now=1.02)[0]
    assert RateLimiter(per_minute=0).allow("a")[0]


def test_request_bodies_beyond_the_limit_get_413():
    with TestClient(app_with(max_request_mb=0.01)) as client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 20_000}]}
        r = client.post("/v1/chat/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunks():  # no Content-Length: counted as it streams in
            for _ in range(20):
                yield b" " * 1024
        r = client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("name", ["guide.md", "Übersicht 2024.pdf", "notes.v2.txt", "a..b.txt"])
def test_plain_names_pass(name):
    assert safe_filename(name) == name


@pytest.mark.parametrize("name", ["", " ", "../x.md", "..", "/etc/passwd", "a/b.md", "a\\b.md", "C:x.txt",
                                  ".env", "x\x00.md", "x\x7f.md", "n" * 201 + ".md"])
def test_unsafe_names_fail_with_a_reason(name):
    with pytest.raises(APIError) as caught:
        safe_filename(name)
    assert caught.value.status == 400 and caught.value.code == "invalid_filename"


def test_logs_are_one_json_object_per_line(capsys):
    import io
    import logging

    from ragtune.serve.logs import setup_logging

    stream = io.StringIO()
    setup_logging("info", stream)
    try:
        with TestClient(app_with()) as client:
            client.get("/healthz")
            client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    finally:
        for name in ("ragtune", "uvicorn", "uvicorn.error"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [e for e in entries if e["message"] == "request"]
    assert {"method": "GET", "path": "/healthz", "status": 200} == {k: requests[0][k] for k in ("method", "path", "status")}
    assert requests[1]["status"] == 404 and requests[1]["ms"] >= 0
    assert all({"time", "level", "logger"} <= set(e) for e in entries)
