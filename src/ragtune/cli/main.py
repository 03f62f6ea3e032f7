"""The `ragtune` command. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import sys

import typer

from ragtune.errors import RagtuneError

app = typer.Typer(
    name="ragtune",
    help="RAG or fine-tuning? Build both on your own data, measure both, choose with evidence, serve the winner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so `ragtune --help` does not pay for torch; each module imports heavy code lazily.
    from ragtune.cli import ask, choose, evaluate, finetune, kb, score, serve

    for module in (kb, ask, finetune, evaluate, choose, score, serve):
        module.register(app)


def fail(message: str, code: int = 1) -> None:
    """Print one clear line to stderr and exit non-zero."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def main() -> None:
    _register()
    try:
        app()
    except RagtuneError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted; re-run the same command to resume", fg="yellow", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
