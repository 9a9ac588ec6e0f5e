#!/usr/bin/env bash
# Create .venv (if missing) and install apfed into it. torch is pinned first so pip takes the local CPU
# wheel instead of resolving a multi-GB CUDA build; pyproject.toml itself only asks for torch>=2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    found=$("$PY" --version 2>/dev/null) || found="not found"
    echo "error: apfed needs Python 3.11 or later (Flower 1.39 does); $PY: $found. Set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
# setuptools prints a boxed "Editable installation" notice (a UserWarning) on every editable install: noise here
PYTHONWARNINGS=ignore::UserWarning .venv/bin/python -m pip install -q -e ".[dev]"
# apfed's own modules compiled once: where PYTHONDONTWRITEBYTECODE is set (as in CI's environment) Python writes no
# .pyc, and every process would compile them again (about 0.5 s of CPU for one that imports the ServerApp)
.venv/bin/python -m compileall -q apfed clients protocols >/dev/null
