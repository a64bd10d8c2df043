#!/usr/bin/env bash
# Set up a virtual environment with the test extras, run the linter and the type checker, then the
# whole test suite. Any of the three failing fails the script. Arguments are passed to pytest (after -n 2).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "test.sh: ruff check src tests bench" >&2
.venv/bin/ruff check src tests bench
echo "test.sh: mypy (src/snapgraph, configured in pyproject.toml)" >&2
.venv/bin/mypy
# Two workers (pytest-xdist): the suite is mostly subprocesses waiting on each other, so two cores carry two
# workers; every test uses folders, schemas, tables and streams of its own.
exec .venv/bin/python -m pytest -q -n 2 "$@"
