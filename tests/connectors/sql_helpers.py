"""Databases for the SQL connector tests: one isolated SQLite file, PostgreSQL schema or MariaDB database per
test, with a source table, a target table, a connections file and graphs of the reader and the writer."""

from __future__ import annotations

import sqlite3
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import yaml

from snapgraph.runtime.engine import COMPLETED
from snapgraph.runtime.supervisor import SupervisedResult
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.testing import run_with_faults

KINDS = ("sqlite", "postgres", "mariadb")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIA = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

# A stateless, deterministic operator between reader and writer that takes `delay` seconds per message, so
# that a run lasts long enough for several snapshot epochs.
PACE = """
import time

def on_input(msg_id, header, body):
    time.sleep(api.config.delay)
    api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


class SqlDatabase:
    """One test's database: ``execute`` and ``rows`` go straight to the driver (not through the code under
    test); ``connections_file`` names it ``DB`` for ``--connections``."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.name = f"sg_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            self.connection: dict[str, Any] = {"connectionType": "SQLITE",
                                               "connectionProperties": {"path": str(folder / "data.db")}}
        elif kind == "postgres":
            with psycopg.connect(**PG, autocommit=True) as conn:  # type: ignore[arg-type]
                conn.execute(f"CREATE SCHEMA {self.name}")
            self.connection = {"connectionType": "POSTGRES", "connectionProperties": {
                "host": PG["host"], "port": PG["port"], "user": PG["user"], "password": "", "database": "test",
                "schema": self.name}}
        else:
            conn = pymysql.connect(**MARIA)  # type: ignore[arg-type]
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.name}")
            conn.close()
            self.connection = {"connectionType": "MARIADB", "connectionProperties": {**MARIA, "database": self.name}}
        self.connections_file = folder / "connections.yaml"
        self.connections_file.write_text(yaml.safe_dump({"DB": self.connection}))

    def _connect(self) -> Any:
        if self.kind == "sqlite":
            return sqlite3.connect(str(self.folder / "data.db"), timeout=30)
        if self.kind == "postgres":
            return psycopg.connect(**PG, options=f"-c search_path={self.name}")  # type: ignore[arg-type]
        return pymysql.connect(**MARIA, database=self.name)  # type: ignore[arg-type]

    def execute(self, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        """Run ``statements`` in one transaction; with ``rows``, the last one is run once per row."""
        conn = self._connect()
        try:
            cursor = conn.cursor()
            for statement in statements[:-1] if rows is not None else statements:
                cursor.execute(statement)
            if rows is not None:
                marker = "?" if self.kind == "sqlite" else "%s"
                cursor.executemany(statements[-1].replace("?", marker), rows)
            conn.commit()
        finally:
            conn.close()

    def rows(self, table: str, order: str = "id") -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            cursor = conn.cursor()
            cursor.execute(f"SELECT * FROM {table} ORDER BY {order}")
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    def tables(self) -> set[str]:
        conn = self._connect()
        try:
            cursor = conn.cursor()
            if self.kind == "sqlite":
                cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            elif self.kind == "postgres":
                cursor.execute(f"SELECT tablename FROM pg_tables WHERE schemaname = '{self.name}'")
            else:
                cursor.execute("SHOW TABLES")
            return {str(row[0]) for row in cursor.fetchall()}
        finally:
            conn.close()

    def create_source(self, count: int, table: str = "src", start: int = 0) -> None:
        """``table`` (id, name, amount) with ``count`` rows from id ``start``; created if missing."""
        self.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), amount INTEGER)",
                     f"INSERT INTO {table} (id, name, amount) VALUES (?, ?, ?)",
                     rows=source_rows(count, start))

    def create_target(self, table: str = "dst") -> None:
        self.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), amount INTEGER)")

    def drop(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(**PG, autocommit=True) as conn:  # type: ignore[arg-type]
                conn.execute(f"DROP SCHEMA {self.name} CASCADE")
        elif self.kind == "mariadb":
            conn = pymysql.connect(**MARIA)  # type: ignore[arg-type]
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE {self.name}")
            conn.close()


def source_rows(count: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [(i, f"name{i}", i * 7 % 1000) for i in range(start, start + count)]


def write_graph(folder: Path, *, mode: str, batch: int = 10, delay: float = 0.0, period: float | None = None,
                reader: dict[str, Any] | None = None, writer: dict[str, Any] | None = None,
                groups: bool = True, name: str = "sqlgraph", multiplicity: int = 1) -> Path:
    """graph.yaml: sql-reader over ``src`` -> (a pace operator when ``delay``) -> sql-writer into ``dst``;
    with ``groups``, the writer runs in a group (an OS process) of its own; with ``multiplicity`` > 1
    reader and writer share one group of that many instances instead."""
    reader_config = {"connection": {"connectionID": "DB"}, "table": "src", "key": "id", "batch": batch,
                     **(reader or {})}
    writer_config = {"connection": {"connectionID": "DB"}, "table": "dst", "mode": mode, **(writer or {})}
    operators: dict[str, Any] = {
        "reader": {"component": "sql-reader", "config": reader_config},
        "writer": {"component": "sql-writer", "config": writer_config},
    }
    connections = ["reader.output -> writer.input"]
    if delay:
        operators["pace"] = {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                             "config": {"delay": delay}}
        connections = ["reader.output -> pace.input", "pace.output -> writer.input"]
        (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    if groups:
        # The pace operator shares the reader's group: the local channel between them is bounded, so the
        # reader cannot run ahead of it and each epoch's barrier follows only a few messages (a pipe between
        # processes would take every message of the run before the first barrier).
        operators["reader"]["group"] = "source"
        operators["writer"]["group"] = "sink"
        if delay:
            operators["pace"]["group"] = "source"
    if multiplicity > 1:
        for operator in operators.values():
            operator["group"] = "copy"
    graph: dict[str, Any] = {"name": name, "operators": operators, "connections": connections}
    if multiplicity > 1:
        graph["groups"] = {"copy": {"multiplicity": multiplicity}}
    if period is not None:
        graph["snapshots"] = {"period": period}
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def run_supervised(db: SqlDatabase, graph: Path, faults: str = "", *, period: float | None = 0.02,
                   in_process: bool = True, max_retries: int = 6) -> tuple[SupervisedResult, FaultPlan]:
    """Run ``graph`` under the supervisor with snapshots every ``period`` seconds (None: no snapshots) and
    ``faults``; returns the outcome and the fault plan (``remaining()`` says which never fired)."""
    run = run_with_faults(graph, faults, period=period, max_retries=max_retries, connections=db.connections_file,
                          in_process=in_process, store=db.folder / f"store-{uuid.uuid4().hex[:6]}.db")
    return run.outcome, run.plan


def expect_resumed(db: SqlDatabase, faults: str, outcome: SupervisedResult, plan: FaultPlan, rows: int) -> None:
    """The run completed after a failed attempt whose fault fired, the last attempt restored an epoch (it
    did not start from scratch), and ``dst`` is the failure-free table of ``rows`` source rows."""
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert outcome.restored_from[-1] is not None, f"{faults}: the last attempt started from scratch"
    assert db.rows("dst") == source_rows(rows), f"{faults}: not the failure-free table"


#: values of an integer column ``v`` that partition conditions must cover once each
COVERED = [(-7,), (-4,), (-1,), (0,), (1,), (2,), (5,), (9,), (None,)]


def partition_of_each_row(db: SqlDatabase, conditions: list[str]) -> list[list[Any]]:
    """The values of :data:`COVERED` (a table ``cover``) each of ``conditions`` holds, in order, NULL last."""
    db.execute("CREATE TABLE cover (v INTEGER)", "INSERT INTO cover (v) VALUES (?)", rows=COVERED)
    conn = db._connect()
    try:
        cursor = conn.cursor()
        found = []
        for condition in conditions:
            cursor.execute(f"SELECT v FROM cover WHERE {condition}")
            found.append(sorted((row[0] for row in cursor.fetchall()), key=lambda v: (v is None, v)))
        return found
    finally:
        conn.close()
