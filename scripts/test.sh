#!/usr/bin/env bash
# Set up, then run the whole test suite (integration tests skip with a reason when ../shared/data is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -ra "$@"
