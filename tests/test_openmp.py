"""ragtune's OpenMP wait policy: set before torch loads libgomp, never over a value the user chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.openmp import wait_defaults

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_unset_gets_passive():
    env = {"PATH": "/bin"}
    assert wait_defaults(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "passive"},
                                  {"GOMP_SPINCOUNT": "300000"}, {"GOMP_SPINCOUNT": "infinite"}])
def test_a_users_choice_is_kept(user):
    env = dict(user)
    assert wait_defaults(env) == {}
    assert env == user  # GOMP_SPINCOUNT alone overrides the policy in libgomp, so it is left alone too


def test_blank_counts_as_unset():
    env = {"OMP_WAIT_POLICY": " ", "GOMP_SPINCOUNT": ""}
    wait_defaults(env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def _libgomp_spincount(code: str, **env: str) -> str:
    """The spin count torch's libgomp starts with, as it reports it (OMP_DISPLAY_ENV=VERBOSE, on stderr)."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**base, "PYTHONPATH": SRC, "OMP_DISPLAY_ENV": "VERBOSE", **env})
    lines = [ln for ln in done.stderr.splitlines() if "GOMP_SPINCOUNT" in ln]
    if not lines:
        pytest.skip("this torch does not use libgomp (no OpenMP environment report)")
    return lines[0].split("=")[1].strip().strip("'")


def test_policy_reaches_torchs_openmp_runtime():
    assert _libgomp_spincount("import ragtune, torch") == "0"  # threads sleep at once
    assert _libgomp_spincount("import torch") != "0"  # without ragtune: libgomp's spinning default
    assert _libgomp_spincount("import ragtune, torch", OMP_WAIT_POLICY="ACTIVE") != "0"  # the user's choice wins
