"""Check a target table against the source: rows expected, present, missing, duplicated.

    python examples/seed_check.py TABLE [--connections FILE]

Exits 0 when the target holds every source row exactly once, else 1.
"""

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from db import connect  # noqa: E402


def check(connection: dict, table: str) -> tuple[int, int, int, int]:
    """(rows expected, rows present, source rows missing, duplicate rows) of ``table``."""
    conn = connect(connection)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM test")
    expected = cur.fetchone()[0]
    cur.execute(f"SELECT count(*), count(DISTINCT x) FROM {table}")
    present, distinct = cur.fetchone()
    cur.execute(f"SELECT count(*) FROM test WHERE x NOT IN (SELECT x FROM {table})")
    missing = cur.fetchone()[0]
    conn.close()
    return expected, present, missing, present - distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["target", "test2"])
    parser.add_argument("--connections", default=str(Path(__file__).parent / "connections-sqlite.yaml"))
    args = parser.parse_args()
    expected, present, missing, duplicates = check(
        yaml.safe_load(Path(args.connections).read_text())["DEMO_DB"], args.table)
    ok = missing == 0 and duplicates == 0 and present == expected
    print(f"check {args.table}: rows expected {expected}, present {present}, missing {missing}, "
          f"duplicates {duplicates} -> {'EXACTLY ONCE' if ok else 'NOT exactly once'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
