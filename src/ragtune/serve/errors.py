"""Errors in the OpenAI format: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every failure the server returns goes through here, so clients written for OpenAI (and the official
``openai`` package, which raises typed exceptions by status) understand it unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.errors import ConfigError, InputError, ModelError, PromptTooLongError, RagtuneError, StorageError

log = logging.getLogger("ragtune.serve")

# status → the "type" OpenAI uses for it
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 409: "invalid_request_error",
          413: "invalid_request_error", 415: "invalid_request_error", 429: "requests",
          500: "server_error", 503: "server_error"}


class APIError(Exception):
    """Raise anywhere in a route to answer with this status and an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(error_body(err.message, err.type, err.param, err.code), status_code=err.status,
                        headers=err.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise to an OpenAI-style JSON error."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]  # only the leading location: a field may itself be called "query" (search)
        if first.get("type") == "json_invalid":
            return error_response(APIError(400, "the request body is not valid JSON; send a JSON object "
                                                "with Content-Type: application/json", code="invalid_json"))
        param = ".".join(loc) or None
        where = f"'{param}': " if param else ""
        return error_response(APIError(400, f"{where}{first.get('msg', 'invalid request')}", param=param,
                                       code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        message = str(exc.detail) if exc.status_code != 404 else f"no route {request.method} {request.url.path}"
        return error_response(APIError(exc.status_code, message, code=code, headers=getattr(exc, "headers", None)))

    @app.exception_handler(RagtuneError)
    async def _ragtune(request: Request, exc: RagtuneError) -> JSONResponse:
        return error_response(from_ragtune_error(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(APIError(500, "internal server error; see the server log", code="internal_error"))


def from_ragtune_error(exc: RagtuneError) -> APIError:
    """Bad input is the client's fault (400); a model or setting that fails is the server's (503/500)."""
    if isinstance(exc, PromptTooLongError):  # OpenAI's code for it; a 400, which clients do not retry
        return APIError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, InputError):
        return APIError(400, str(exc), code="invalid_input")
    if isinstance(exc, ModelError):
        return APIError(503, str(exc), code="model_unavailable")
    if isinstance(exc, StorageError):  # a full disk or a read-only kb folder: the server's, and passing
        return APIError(503, str(exc), code="storage_unavailable")
    if isinstance(exc, ConfigError):
        return APIError(500, str(exc), code="server_misconfigured")
    return APIError(400, str(exc), code="invalid_input")
