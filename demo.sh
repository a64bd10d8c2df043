#!/usr/bin/env bash
# The demo: the seed's WAL graph on SQLite (files under ./demo-data and ./.snapgraph),
# with crashes injected mid-run; snapgraph recovers and the target table is checked.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

.venv/bin/python examples/seed_setup.py --rows 5000
echo "--- running examples/seed_wal.yaml with two injected crashes (writer between its insert and its WAL record; coordinator before an epoch's completion record)"
SNAPGRAPH_FAULTS='between_write_and_wal:*:120,before_complete:*:1' \
  .venv/bin/snapgraph run examples/seed_wal.yaml --connections examples/connections-sqlite.yaml --fresh 2>&1 \
  | grep -E '^snapgraph: (delivery|attempt|graph)' || true
echo "--- checking the target table"
.venv/bin/python examples/seed_check.py test2
