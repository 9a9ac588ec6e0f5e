#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the bundled default comparison: `apfed evaluate` on handwritten, active view fou.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/apfed evaluate --out results/quickstart "$@"
