"""The one rich console every command prints its tables and reports through."""

from __future__ import annotations

import sys
from typing import Any


def console(stderr: bool = False, highlight: bool = False) -> Any:
    """A rich Console on stdout (or stderr). Piped output (CI logs, scripts, tests) gets 200-column lines: at
    rich's default 80 a long path is wrapped mid-name, and `file:line` references no longer read or grep."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=highlight, width=None if stream.isatty() else 200)
