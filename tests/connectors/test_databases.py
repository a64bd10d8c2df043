"""Connections, statements and schema reading per database (src/snapgraph/connectors/databases.py), run
against the real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapgraph.connectors.databases import (
    MARIADB,
    MAX_IDENTIFIER,
    POSTGRES,
    SQLITE,
    DatabaseError,
    companion_table,
    dialect_of,
    insert_statement,
    open_connection,
    result_columns,
    unique_keys,
    upsert_statement,
)

from .sql_helpers import KINDS, SqlDatabase


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    database = SqlDatabase(request.param, tmp_path)
    yield database
    database.drop()


def test_the_statements_of_each_dialect() -> None:
    assert insert_statement(SQLITE, "t", ["a", "b"]) == 'INSERT INTO "t" ("a", "b") VALUES (?, ?)'
    assert upsert_statement(POSTGRES, "t", ["k", "v"], ["k"]) == (
        'INSERT INTO "t" ("k", "v") VALUES (%s, %s) ON CONFLICT ("k") DO UPDATE SET "v" = excluded."v"')
    assert upsert_statement(SQLITE, "t", ["k"], ["k"]) == (
        'INSERT INTO "t" ("k") VALUES (?) ON CONFLICT ("k") DO NOTHING')
    assert upsert_statement(MARIADB, "t", ["k", "v"], ["k"]) == (
        "INSERT INTO `t` (`k`, `v`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)")
    assert upsert_statement(MARIADB, "t", ["k"], ["k"]).endswith("ON DUPLICATE KEY UPDATE `k` = VALUES(`k`)")
    assert MARIADB.quote("a`b") == "`a``b`" and SQLITE.quote('a"b') == '"a""b"'
    assert [d.binary_type for d in (SQLITE, POSTGRES, MARIADB)] == ["BLOB", "BYTEA", "LONGBLOB"]


def test_an_upsert_key_must_be_among_the_columns() -> None:
    with pytest.raises(ValueError, match=r"key \['id'\] must be a non-empty subset of the columns \['name'\]"):
        upsert_statement(SQLITE, "t", ["name"], ["id"])
    with pytest.raises(ValueError, match="non-empty"):
        upsert_statement(SQLITE, "t", ["name"], [])


def test_companion_tables_stay_within_every_identifier_limit() -> None:
    assert companion_table("orders", "sg_staged") == "orders__sg_staged"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    names = {companion_table(long_a, "sg_staged"), companion_table(long_b, "sg_staged")}
    assert len(names) == 2, "two long targets must not share a companion table"
    assert all(len(name.encode()) <= MAX_IDENTIFIER and name.endswith("__sg_staged") for name in names)


def test_upserts_overwrite_by_key_on_each_database(db: SqlDatabase) -> None:
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v VARCHAR(10))")
    conn = open_connection(db.connection)
    dialect = dialect_of(db.connection)
    try:
        cursor = conn.cursor()
        statement = upsert_statement(dialect, "t", ["k", "v"], ["k"])
        cursor.executemany(statement, [(1, "a"), (2, "b")])
        cursor.executemany(statement, [(2, "B"), (3, "c")])
        conn.commit()
    finally:
        conn.close()
    assert db.rows("t", "k") == [(1, "a"), (2, "B"), (3, "c")]


def test_unique_keys_and_columns_are_read_back(db: SqlDatabase) -> None:
    db.execute("CREATE TABLE t (a INTEGER NOT NULL, b INTEGER NOT NULL, c VARCHAR(10), PRIMARY KEY (a, b))",
               "CREATE UNIQUE INDEX t_c ON t (c)", "CREATE INDEX t_not_unique ON t (b)")
    conn = open_connection(db.connection)
    dialect = dialect_of(db.connection)
    try:
        assert sorted(unique_keys(conn, dialect, "t")) == [("a", "b"), ("c",)]
        assert result_columns(conn, dialect, dialect.quote("t")) == ["a", "b", "c"]
        assert result_columns(conn, dialect, f"(SELECT c, a FROM t) AS {dialect.quote('q')}") == ["c", "a"]
        with pytest.raises(Exception, match="(?i)nope"):
            result_columns(conn, dialect, dialect.quote("nope"))
        # The failed statement left no aborted transaction behind: the connection still works.
        assert result_columns(conn, dialect, dialect.quote("t")) == ["a", "b", "c"]
    finally:
        conn.close()


def test_sqlite_integer_primary_key_is_a_unique_key(tmp_path: Path) -> None:
    db = SqlDatabase("sqlite", tmp_path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")  # the rowid alias: no index of its own
    conn = open_connection(db.connection)
    try:
        assert unique_keys(conn, SQLITE, "t") == [("id",)]
    finally:
        conn.close()


@pytest.mark.parametrize(("connection", "message"), [
    ({"connectionID": "X", "connectionType": "HANA_DB"}, r"connectionType 'HANA_DB' is not a database"),
    ({"connectionID": "X"}, r"connectionType '\(none\)'"),
    ({"connectionID": "X", "connectionType": "SQLITE", "connectionProperties": {}}, "has no 'path'"),
    ({"connectionID": "X", "connectionType": "POSTGRES", "connectionProperties": {
        "host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "no_such_db_sg"}},
     "connection 'X': cannot connect to its postgres database"),
    ({"connectionID": "X", "connectionType": "MARIADB", "connectionProperties": {
        "host": "127.0.0.1", "port": 3306, "user": "root", "database": "no_such_db_sg"}},
     "connection 'X': cannot connect to its mariadb database"),
])
def test_connections_that_cannot_be_opened_name_the_connection(connection: dict[str, Any], message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        open_connection(connection)


def _open_and_write(path: str, start: Any, index: int) -> None:
    start.wait()
    con = open_connection({"connectionID": "DB", "connectionType": "SQLITE", "connectionProperties": {"path": path}})
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER)")
        con.execute("INSERT INTO t VALUES (?)", (index,))
    con.close()


@pytest.mark.parametrize("round_", range(5))
def test_processes_opening_a_new_sqlite_database_at_once_all_get_it_in_wal_mode(tmp_path: Path, round_: int) -> None:
    """Switching to WAL needs a moment alone with the file; a reader and a writer of one graph opening a
    fresh database at the same instant must both get it (SQLite answers "locked" without waiting)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    start = context.Event()
    path = str(tmp_path / "fresh.db")
    workers = [context.Process(target=_open_and_write, args=(path, start, i)) for i in range(8)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 8
    import sqlite3

    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert sorted(i for (i,) in con.execute("SELECT i FROM t")) == list(range(8))
