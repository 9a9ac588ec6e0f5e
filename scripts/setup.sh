#!/usr/bin/env bash
# Create .venv (if missing) and install apfed into it. torch is pinned first so pip takes the local CPU
# wheel instead of resolving a multi-GB CUDA build; pyproject.toml itself only asks for torch>=2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
