#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
set +e
# three workers on two cores, a test file at a time each: the real Flower deployments (the files marked
# "deployments", about half a core each: a SuperNode starts a Flower process per message, and between them waits on
# Flower's polling) start first, side by side, while the third worker takes the rest; together they keep both cores
# busy (APFED_TEST_WORKERS=0: all in this process); then the tests marked "alone",
# whose deadlines assume an idle machine, one after another with nothing beside them
APFED_TEST_PHASE=shared .venv/bin/python -m pytest -q -n "${APFED_TEST_WORKERS:-3}" --dist loadfile \
  --no-loadscope-reorder "$@"
shared=$?
APFED_TEST_PHASE=alone .venv/bin/python -m pytest -q "$@"
alone=$?
set -e
for code in "$shared" "$alone"; do  # 5: that phase had no test to run
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then
    exit "$code"
  fi
done
if [ "$shared" -eq 5 ] && [ "$alone" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit 0
