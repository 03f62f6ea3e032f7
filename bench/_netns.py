"""Run a benchmark script again inside a loopback-only network namespace (servers it starts bind 127.0.0.1 only)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Callable

FLAG = "RAGTUNE_BENCH_NETNS"


def in_namespace() -> bool:
    return os.environ.get(FLAG) == "1"


def rerun_in_namespace(command: str) -> int:
    """Re-run this script (same arguments, plus the outer ``--command`` for the report) under ``unshare -n``."""
    inner = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv, "--command", command])
    return subprocess.call(["unshare", "-n", "sh", "-c", f"ip link set lo up && {FLAG}=1 {inner}"])


def main_in_namespace(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], None]) -> None:
    """Parse the arguments (plus --no-report), then run inside the namespace, re-executing into it if needed."""
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--command", default="python " + " ".join(sys.argv), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if in_namespace():
        run(args)
        return
    sys.exit(rerun_in_namespace(args.command))
