#!/usr/bin/env bash
# Creates the benchmark's own virtualenv bench/.venv (snapgraph editable + bytewax, msgpack,
# pyarrow, psutil, py-spy, playwright for bench/web_load.py). The main project's dependencies stay untouched.
# Usage (from anywhere):  bench/setup.sh        then  bench/.venv/bin/python bench/run.py
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
if [ ! -x "$here/.venv/bin/python" ]; then
    "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -e "$repo[postgres]" \
    "bytewax==0.21.*" "msgpack>=1.0" "pyarrow>=15" "psutil>=5.9" "py-spy>=0.3" "playwright>=1.40"
"$here/.venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("snapgraph", "ormsgpack", "bytewax", "msgpack", "pyarrow", "psutil", "py-spy", "psycopg"):
    print(f"{name:12} {md.version(name)}")
PY
