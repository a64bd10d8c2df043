#!/usr/bin/env bash
# Set up a virtual environment and run the demo graph on the embedded default (SQLite under ./demo-data).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/snapgraph run examples/quickstart/graph.yaml "$@"
