"""The `ragtune` command. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import errno
import os
import sys
import traceback

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
    from ragtune.cli import ask, choose, evaluate, export, finetune, kb, score, serve

    for module in (kb, ask, finetune, evaluate, choose, score, serve, export):
        module.register(app)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="On an error, also print its underlying cause "
                                        "and traceback (same as RAGTUNE_DEBUG=1).")) -> None:
    if debug:
        os.environ["RAGTUNE_DEBUG"] = "1"


def debug_enabled() -> bool:
    return os.environ.get("RAGTUNE_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


MAX_LINE = 1000  # characters of an error line; a library's wall of text is cut, the rest is in --debug


def flatten(message: str) -> str:
    """A message as one line: a library's multi-line text joined, a wall of log cut at MAX_LINE."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 30].rstrip() + " … (the rest with --debug)"


def report_error(error: BaseException, line: str) -> None:
    """One clear line on stderr; with RAGTUNE_DEBUG=1 / --debug, the traceback and every cause after it.
    A password in the line (a --kb URL or libpq string echoed back) is masked."""
    from ragtune.index.stores import redact

    hint = "" if isinstance(error, RagtuneError) or debug_enabled() else \
        " (re-run with --debug or RAGTUNE_DEBUG=1 for the traceback)"
    typer.secho(f"error: {flatten(redact(line))}{hint}", fg="red", err=True)
    if debug_enabled():
        cause: BaseException | None = error
        while cause is not None:  # `raise ... from None` hides the cause from users, not from a debug run
            cause.__suppress_context__ = False
            cause = cause.__cause__ or cause.__context__
        traceback.print_exception(error, file=sys.stderr)


def _os_error_line(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    hint = {errno.ENOSPC: "free some space and re-run (what was stored before is kept)",
            errno.EROFS: "the folder is on a read-only file system; use a writable one",
            errno.EACCES: "check the permissions", errno.EPERM: "check the permissions"}
    return f"{where}{e.strerror or e}; {hint.get(e.errno or 0, 'check the path and re-run')}"


def main() -> None:
    _register()
    try:
        app()
    except RagtuneError as e:
        report_error(e, str(e))
        sys.exit(1)
    except OSError as e:  # a full disk or a read-only folder met outside the checked paths
        report_error(e, _os_error_line(e))
        sys.exit(1)
    except Exception as e:  # a case no check foresaw: still one line; the traceback with --debug
        report_error(e, f"unexpected {type(e).__name__}: {str(e) or 'no message'}; please report it")
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted; re-run the same command to resume", fg="yellow", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
