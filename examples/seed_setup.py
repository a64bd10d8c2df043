"""Create the examples' tables: the append-only source `test`, the targets and the WAL.

As the seed says, the WAL must survive graph runs, so it is created (and
dropped) outside the graph.

    python examples/seed_setup.py [--connections FILE] [--rows N]
"""

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from db import connect  # noqa: E402


def setup_tables(connection: dict, rows: int) -> None:
    """(Re)create the source with ``rows`` rows ``(x, x*7 % 1000, 'row<x>')``, the targets and the WAL."""
    conn = connect(connection)
    cur = conn.cursor()
    for table in ("test", "target", "test2", "WAL"):
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute("CREATE TABLE test (x INTEGER PRIMARY KEY, y INTEGER, z TEXT)")
    cur.execute("CREATE TABLE target (x INTEGER PRIMARY KEY, y INTEGER, z TEXT)")
    cur.execute("CREATE TABLE test2 (x INTEGER, y INTEGER, z TEXT)")
    cur.execute("CREATE TABLE WAL (ID INTEGER, BATCH INTEGER, MESSAGE INTEGER)")
    placeholder = "?" if type(conn).__module__.startswith("sqlite3") else "%s"
    values = [(i, i * 7 % 1000, f"row{i}") for i in range(rows)]
    cur.executemany(f"INSERT INTO test (x, y, z) VALUES ({placeholder}, {placeholder}, {placeholder})", values)
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default=str(Path(__file__).parent / "connections-sqlite.yaml"))
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    setup_tables(yaml.safe_load(Path(args.connections).read_text())["DEMO_DB"], args.rows)
    print(f"created tables test ({args.rows} rows), target, test2 and WAL")


if __name__ == "__main__":
    main()
