#!/usr/bin/env bash
# Set up, then run the whole test suite (integration tests skip with a reason when ../shared/data is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium for the page's browser test (Debian packages; Playwright drives it, no browser download).
command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
  || echo "warning: could not install chromium; the browser test will skip" >&2
# Guardrails first: lint (pyflakes, import order, pyupgrade) and types, as configured in pyproject.toml.
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# The tests run in a loopback-only network namespace: the servers they start (uvicorn, Ray, PostgreSQL) can bind
# nothing but 127.0.0.1, and nothing can leave the machine. Where namespaces are not allowed, they run as they are.
# One pytest-xdist worker per core (at most 4; each keeps to its own core, tests/conftest.py), a test file to a
# worker so that a module's shared fixtures are built once. PYTEST_WORKERS=0 runs them in one process.
WORKERS=${PYTEST_WORKERS:-$(n=$(nproc); echo $(( n > 4 ? 4 : n )))}
PARALLEL=()
[ "$WORKERS" -gt 1 ] && PARALLEL=(-n "$WORKERS" --dist loadfile)
RUN=(env HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -ra --durations=15 "${PARALLEL[@]}" "$@")
if unshare -n true 2>/dev/null && command -v ip >/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${RUN[@]}"
fi
echo "warning: no network namespace here; tests run in the machine's own network" >&2
exec "${RUN[@]}"
