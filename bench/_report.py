"""Append one benchmark's figures to BENCHMARKS.md, with the command, the machine and the date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def append_section(title: str, body_markdown: str, command: str | None = None) -> None:
    """Append a section; one `open(..., "a")` write so concurrent benchmarks do not clobber each other."""
    command = command or "python " + " ".join(shlex.quote(a) for a in sys.argv)
    section = (f"\n## {title}\n\n- command: `{command}`\n- machine: {machine()}\n"
               f"- date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n\n{body_markdown.strip()}\n")
    if not BENCHMARKS.exists():
        BENCHMARKS.write_text("# Benchmarks\n\nEach section is appended by the script named in its command. "
                              "Speed figures are ratios against a baseline run in the same script.\n")
    with BENCHMARKS.open("a", encoding="utf-8") as f:
        f.write(section)
    print(section)
