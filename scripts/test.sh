#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
set +e
# two workers, a test file at a time each: the real Flower deployments (tests/test_deployment.py, mostly waiting on
# Flower's polling) run on one while the other takes the rest. APFED_TEST_WORKERS=0 runs everything in this process
.venv/bin/python -m pytest -q -n "${APFED_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$code"
