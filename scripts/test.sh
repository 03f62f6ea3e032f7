#!/usr/bin/env bash
# Set up, then run the whole test suite (integration tests skip with a reason when ../shared/data is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium for the page's browser test (Debian packages; Playwright drives it, no browser download).
command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
  || echo "warning: could not install chromium; the browser test will skip" >&2
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -ra "$@"
