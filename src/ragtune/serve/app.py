"""The web application: ``create_app(kb, base=..., finetuned=...)`` returns a FastAPI app serving

- the OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings``),
- the knowledge-base API (``/v1/kb/...``: upload, jobs, sources, search),
- the page at ``/`` (plain HTML, JS and CSS from ``static/``, no build step), the latest evaluation
  report at ``/report/``, and ``/healthz``.

Models are loaded by the caller once and shared by every request; generation runs in worker threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from ragtune.config import Settings
from ragtune.serve import kb_routes, openai_routes
from ragtune.serve.errors import APIError, install_error_handlers
from ragtune.serve.jobs import Ingestor
from ragtune.serve.logs import AccessLog
from ragtune.serve.security import Guard, api_key_from_env
from ragtune.serve.state import build_state

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ragtune.serve")


def create_app(kb: Any | None = None, *, base: Any | None = None, finetuned: Any | None = None,
               settings: Settings | None = None, kb_dir: str | Path | None = None,
               report_dir: str | Path | None = None, api_key: str | None = None,
               winner: Any | None = None) -> FastAPI:
    """A ready app over a knowledge base (or none) and generators already loaded.

    ``api_key`` None reads it from the environment variable named by ``serve.api_key_env``;
    ``report_dir`` None uses ``serve.report_dir``; ``winner`` (a `ragtune.winner.Winner`, with ``base`` its
    loaded model) serves that one bake-off contestant.
    """
    settings = settings or Settings()
    key = api_key if api_key is not None else api_key_from_env(settings.serve)
    state = build_state(settings, kb=kb, base=base, finetuned=finetuned, kb_dir=kb_dir,
                        report_dir=report_dir if report_dir is not None else settings.serve.report_dir, api_key=key,
                        winner=winner)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.kb is not None:
            state.ingestor = Ingestor(state.kb, state.write_lock)
            sources = await run_in_threadpool(lambda: {s.source for s in state.served_kb.sources()})
            resumed = state.ingestor.resume(state.served_uploads, sources)
            if resumed:
                log.info("resuming ingestion of earlier uploads", extra={"files": [j.filename for j in resumed]})
        log.info("serving", extra={"configurations": list(state.configurations), "kb": str(state.kb_dir or ""),
                                   "auth": bool(state.api_key)})
        yield
        if state.ingestor is not None:  # graceful: finish what was uploaded before stopping
            await run_in_threadpool(state.ingestor.close, settings.serve.shutdown_timeout_s)

    app = FastAPI(title="ragtune", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ragtune = state
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(kb_routes.router)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # Runs on the event loop, touching no lock nor model: it answers while models and ingestion are busy.
        jobs = state.ingestor.counts() if state.ingestor is not None else {}
        return {"status": "ok", "uptime_s": round(time.time() - started, 1), "auth_required": bool(state.api_key),
                "configurations": list(state.configurations), "kb": state.kb is not None, "ingestion": jobs}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        report = latest_report(state.report_dir)
        return {"object": "ragtune.info", "version": _version(), "configurations": [
                    {"id": c.name, "rag": c.uses_rag, "description": c.description}
                    for c in state.configurations.values()],
                "contestant": state.contestant,  # `serve --choice`: the bake-off contestant that answers
                "kb": state.kb is not None, "embedder": getattr(state.embedder, "name", None),
                "upload": {"max_mb": settings.serve.max_upload_mb, "types": settings.serve.upload_types},
                "report": {"url": "/report/index.html", "updated": report.stat().st_mtime} if report else None}

    @app.get("/report/{path:path}")
    async def report_file(path: str) -> FileResponse:
        index = latest_report(state.report_dir)
        if index is None:
            raise APIError(404, "no evaluation report yet; run `ragtune eval` (or pass --report DIR)",
                           code="report_not_found")
        root = index.parent.resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise APIError(404, f"no file '{path}' in the report", code="not_found")
        return FileResponse(target)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Added last = runs first: CORS answers preflights, the guard refuses before any route, the log sees all.
    app.add_middleware(Guard, settings=settings.serve, api_key=state.api_key)
    if settings.serve.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.serve.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(AccessLog)
    return app


def latest_report(report_dir: Path | None) -> Path | None:
    """``DIR/index.html``, or the newest ``index.html`` one folder down (one folder per evaluation run)."""
    if report_dir is None or not report_dir.is_dir():
        return None
    if (report_dir / "index.html").is_file():
        return report_dir / "index.html"
    runs = [p / "index.html" for p in report_dir.iterdir() if (p / "index.html").is_file()]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def _version() -> str:
    from ragtune import __version__

    return __version__
