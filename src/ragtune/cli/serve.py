"""`ragtune serve`: the OpenAI-compatible API, the knowledge-base API and the web page, on one port."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Optional

import typer

from ragtune.errors import ConfigError
from ragtune.index.stores import is_url


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    kb: Optional[str] = typer.Option(None, "--kb", help="Knowledge-base folder or postgresql:// URL (default: ./kb "
                                     "if it exists). "
                                      "Enables the 'rag' configurations and the upload/search API."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model: packaged alias (smollm2), HF folder "
                                        "or .gguf (default: generator.model)."),
    finetuned: Optional[Path] = typer.Option(None, "--finetuned", help="Fine-tuned model folder or adapter; adds "
                                             "the 'finetuned' and 'finetuned+rag' configurations."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1). Any other "
                                       "address needs an API key in $RAGTUNE_API_KEY."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 8000)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Evaluation report folder the page links to "
                                          "(default: serve.report_dir = ./report)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    create_kb: bool = typer.Option(False, "--create-kb", help="Start with an empty knowledge base when --kb "
                                   "holds none yet (fill it by uploading)."),
    choice: Optional[Path] = typer.Option(None, "--choice", help="A `ragtune choose` folder: serve its winner "
                                          "alone, with the model, knowledge base and settings it was measured with."),
    contestant: Optional[str] = typer.Option(None, "--contestant", help="With --choice: serve this contestant "
                                             "instead (base, rag, finetuned, finetuned+rag, raft)."),
) -> None:
    """Serve RAG and your models over an OpenAI-compatible API, with a web page at http://HOST:PORT/."""
    from ragtune.config import load_settings
    from ragtune.serve.logs import setup_logging
    from ragtune.serve.security import api_key_from_env, check_bind
    from ragtune.winner import from_choice

    winner = from_choice(choice, contestant, kb=kb, model=model, finetuned=finetuned)
    if winner is not None:
        kb_dir: str | None = str(winner.kb_path) if winner.kb_path else None
    else:
        kb_dir = kb if kb is not None else ("kb" if (Path("kb") / "manifest.json").is_file() else None)
    if kb is not None and not create_kb and not is_url(kb):
        _check_kb(Path(kb))
    flags = {"generator.model": model, "serve.host": host, "serve.port": port,
             "serve.finetuned": str(finetuned) if finetuned else None,
             "serve.report_dir": str(report) if report else str(winner.folder) if winner else None}
    settings = load_settings(kb_dir, overrides={**(winner.overrides() if winner else {}),
                                                **{key: v for key, v in flags.items() if v is not None}})
    s = settings.serve
    api_key = api_key_from_env(s)
    check_bind(s.host, api_key, s)  # before loading anything: refuse early and clearly
    _check_port_free(s.host, s.port)
    setup_logging(log_level)

    import logging

    log = logging.getLogger("ragtune.serve")
    knowledge_base = None
    if kb_dir is not None:
        from ragtune.index.knowledge_base import KnowledgeBase

        knowledge_base = KnowledgeBase(kb_dir, settings)
    from ragtune.models.backends import load_generator

    log.info("loading models", extra={"base": settings.generator.model, "finetuned": s.finetuned})
    base = load_generator(settings.generator)
    tuned = load_generator(settings.generator, model=s.finetuned) if s.finetuned and winner is None else None

    import uvicorn

    from ragtune.serve.app import create_app

    # a database kb has no folder for uploaded files (a folder whose ragtune.toml sets store.url has)
    app = create_app(knowledge_base, base=base, finetuned=tuned, settings=settings,
                     kb_dir=getattr(knowledge_base, "path", None),
                     report_dir=s.report_dir, api_key=api_key, winner=winner)
    shown = f"[{s.host}]" if ":" in s.host else s.host
    typer.secho(f"ragtune serving on http://{shown}:{s.port}/  (Ctrl+C stops after in-flight ingestion)",
                fg="green", err=True)
    # log_config=None keeps our JSON logging; in-flight requests get a grace period on Ctrl+C / SIGTERM,
    # then the app's shutdown finishes queued ingestion (serve.shutdown_timeout_s).
    uvicorn.run(app, host=s.host, port=s.port, log_config=None, access_log=False, timeout_graceful_shutdown=30)


def _check_kb(kb: Path) -> None:
    """A --kb that holds no knowledge base is a typo until said otherwise: never serve an empty one silently."""
    if (kb / "manifest.json").is_file() or (kb / "lance").is_dir():
        return
    what = "is a file" if kb.is_file() else "holds no knowledge base" if kb.exists() else "does not exist"
    raise ConfigError(f"--kb {kb}: {what}; build one with `ragtune ingest PATH --kb {kb}`, or pass --create-kb "
                      "to serve an empty one and fill it by uploading")


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"--port {port}: already in use on {host}; stop the other server or pick "
                                  "another port with --port") from None
            raise ConfigError(f"--host {host}: cannot bind ({e.strerror}); use an address of this machine") from None
