#!/usr/bin/env bash
# The lowest versions pyproject.toml admits, tested: a clone of HEAD in a temporary folder, its .venv made by
# scripts/test.sh with every dependency and dev tool held at its ">=" floor (pip constraints written from
# pyproject.toml; torch stays at the pinned CPU wheel, 2.13.0), then the whole suite. Not part of CI: it takes as
# long as CI does. Run it after raising or lowering a floor. The folder is removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT
git clone -q . "$dir/apfed"
python3 - pyproject.toml > "$dir/floors.txt" <<'EOF'
import re
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9.]+)(,.*)?", req.replace(" ", ""))
    if m and m.group(1) != "torch":  # torch: the pinned wheel scripts/setup.sh installs
        print(f"{m.group(1)}=={m.group(3)}")
EOF
echo "floors ($dir/floors.txt): $(tr '\n' ' ' < "$dir/floors.txt")"
cd "$dir/apfed"
PIP_CONSTRAINT="$dir/floors.txt" bash scripts/test.sh "$@"
