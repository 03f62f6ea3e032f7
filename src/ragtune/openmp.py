"""How torch's OpenMP threads wait, chosen before torch is imported (``ragtune/__init__`` applies it).

torch runs each CPU operation as an OpenMP parallel region, and at the region's end a thread that finished its
share spins (libgomp's default: 300,000 turns) before it sleeps. On a machine another process keeps busy, the
spinning thread burns the time slice its sibling needs to finish the region, so every region waits for the
scheduler: a training step ran 2.5-3x slower with two spinning threads than with threads that sleep at once
(BENCHMARKS.md, "Contention"). libgomp reads the policy once, when torch loads it, hence an environment default
set at ragtune's import; a value the user set (either variable) is kept, and a torch imported before ragtune
keeps whatever policy it started with.
"""

from __future__ import annotations

from collections.abc import MutableMapping

# The variables that decide how long an idle libgomp thread spins; GOMP_SPINCOUNT overrides OMP_WAIT_POLICY,
# so a user who set either one has chosen, and neither is touched.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
DEFAULT_WAIT_POLICY = "PASSIVE"


def wait_defaults(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Set ragtune's OpenMP wait policy in ``environ`` unless the user chose one; returns what was set."""
    if any(environ.get(name, "").strip() for name in WAIT_VARIABLES):
        return {}
    environ["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    return {"OMP_WAIT_POLICY": DEFAULT_WAIT_POLICY}
