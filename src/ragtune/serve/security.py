"""What guards every API request: bearer key, same-origin check, rate limit and body size.

One plain ASGI middleware, so a refused request never reaches a route (nor parses its body),
and each refusal is an OpenAI-style error. CORS stays closed unless origins are configured.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
import time
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune.config import ServeSettings
from ragtune.errors import ConfigError
from ragtune.serve.errors import APIError, error_response

PROTECTED = ("/v1/", "/report")  # the page, its assets and /healthz stay public: they hold no data
UPLOAD_PATH = "/v1/kb/documents"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the only binds allowed without an API key."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_from_env(settings: ServeSettings) -> str | None:
    key = os.environ.get(settings.api_key_env, "").strip()
    return key or None


def check_bind(host: str, api_key: str | None, settings: ServeSettings) -> None:
    """Refuse to listen beyond this machine unless a key protects the API."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(f"--host {host}: binding beyond loopback needs an API key; set {settings.api_key_env}"
                          f"=<a long random secret> (clients send it as 'Authorization: Bearer ...') "
                          "or bind to 127.0.0.1")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit // 1024} KiB; send a smaller body "
                              "(limits: serve.max_request_mb, serve.max_upload_mb)")


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int, max_clients: int = 10_000):
        self.per_minute, self.max_clients = per_minute, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next request would be allowed)."""
        if self.per_minute <= 0:
            return True, 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            if len(self._buckets) > self.max_clients:  # bounded memory: forget idle clients
                self._buckets.clear()
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[client] = (tokens, now)
            return False, (1.0 - tokens) / rate


class Guard:
    """ASGI middleware: key → origin → rate limit → body size, for the protected paths."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, api_key: str | None):
        self.app, self.settings, self.api_key = app, settings, api_key
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.request_limit = int(settings.max_request_mb * 1024 * 1024)
        self.upload_limit = settings.max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self._refuse(scope, headers)
        if refusal is not None:
            return await error_response(refusal)(scope, receive, send)
        limit = self.upload_limit if scope["path"] == UPLOAD_PATH else self.request_limit
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            err = BodyTooLarge(limit)
            return await error_response(APIError(413, err.detail, code="request_too_large"))(scope, receive, send)
        await self.app(scope, _limited(receive, limit), send)

    def _refuse(self, scope: Scope, headers: Headers) -> APIError | None:
        presented = _bearer(headers)
        if presented is None and scope["path"].startswith("/report"):  # a link cannot carry a header
            presented = _cookie(headers, "ragtune_key")
        if self.api_key and not (presented and hmac.compare_digest(presented.encode(), self.api_key.encode())):
            what = "no API key given" if not presented else "incorrect API key"
            return APIError(401, f"{what}; send 'Authorization: Bearer <key>' with the key set in "
                                 f"{self.settings.api_key_env} on the server", code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"})
        origin = headers.get("origin")
        if origin and not self._origin_allowed(origin, headers.get("host", "")):
            # Browsers send simple cross-site POSTs (forms) without a preflight; refuse them outright.
            return APIError(403, f"cross-origin request from {origin} refused; add it to serve.cors_origins "
                                 "to allow it", code="origin_not_allowed")
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None  # cheap reads (the page polls job progress) are not counted; work is
        client = presented or (scope.get("client") or ("unknown",))[0]
        allowed, wait = self.limiter.allow(client)
        if not allowed:
            return APIError(429, f"rate limit of {self.settings.rate_limit_per_minute} requests per minute "
                                 f"reached; retry in {wait:.1f} s", code="rate_limit_exceeded",
                            headers={"Retry-After": str(max(1, round(wait)))})
        return None

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.settings.cors_origins or "*" in self.settings.cors_origins:
            return True
        return urlsplit(origin).netloc.lower() == host.lower()


def _limited(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive (chunked bodies have no Content-Length to check up front)."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None
