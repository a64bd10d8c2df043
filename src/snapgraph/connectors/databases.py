"""The databases connectors talk to, opened from a managed connection (``--connections``).

One place knows how a resolved connection (``{"connectionType", "connectionProperties", ...}``, see
:mod:`snapgraph.model.connections`) becomes a DB-API connection, and what differs between the
databases where SQL is written for them:

================  ============================  =====================================================
connectionType    driver                        connectionProperties
================  ============================  =====================================================
``SQLITE``        :mod:`sqlite3` (built in)     ``path`` (relative: to the working directory)
``POSTGRES``      psycopg 3 (extra ``postgres``) ``host``, ``port``, ``user``, ``password``, ``database``,
                                                optional ``schema`` (the search path)
``MARIADB``,      PyMySQL (extra ``mariadb``)   ``host``, ``port``, ``user``, ``password``, ``database``
``MYSQL``
================  ============================  =====================================================

What differs in the SQL itself is here too: quoting, parameter markers, the upsert statement of each
database (:func:`upsert_statement`), the type of a binary column, the names of the tables a connector
keeps beside a target (:func:`companion_table`), and reading a table's columns and unique keys back
(:func:`result_columns`, :func:`unique_keys`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapgraph.model.sql_builtins import SQL_CONNECTION_TYPES


class DatabaseError(Exception):
    """A connection that cannot be opened: an unknown type, a missing property or driver, a refused login."""


@dataclass(frozen=True)
class Dialect:
    """What a statement must know of its database."""

    name: str  # sqlite, postgres, mariadb
    placeholder: str  # the driver's parameter marker: ? or %s

    def quote(self, identifier: str) -> str:
        """An identifier quoted for this database (a table or column name, never a value)."""
        if self.name == "mariadb":
            return "`" + identifier.replace("`", "``") + "`"
        return '"' + identifier.replace('"', '""') + '"'

    def marks(self, count: int) -> str:
        """``count`` parameter markers, comma-separated."""
        return ", ".join([self.placeholder] * count)

    def quote_all(self, identifiers: Sequence[str]) -> str:
        """Identifiers quoted and comma-separated (a column list)."""
        return ", ".join(self.quote(name) for name in identifiers)

    @property
    def binary_type(self) -> str:
        """The column type of a binary value of any length."""
        return {"sqlite": "BLOB", "postgres": "BYTEA"}.get(self.name, "LONGBLOB")


SQLITE = Dialect("sqlite", "?")
POSTGRES = Dialect("postgres", "%s")
MARIADB = Dialect("mariadb", "%s")

#: connectionType (upper case) -> dialect
DIALECTS = {"SQLITE": SQLITE, "POSTGRES": POSTGRES, "MARIADB": MARIADB, "MYSQL": MARIADB}
if set(DIALECTS) != set(SQL_CONNECTION_TYPES):  # pragma: no cover - the model's list and ours disagree
    raise ImportError("connection types without a dialect, or the reverse: "
                      f"{sorted(set(DIALECTS) ^ set(SQL_CONNECTION_TYPES))}")


def dialect_of(connection: dict[str, Any]) -> Dialect:
    """The dialect of a resolved managed connection (a clear error for an unknown type)."""
    kind = str(connection.get("connectionType", "")).upper()
    if kind not in DIALECTS:
        known = ", ".join(sorted(DIALECTS))
        raise DatabaseError(f"connection {connection.get('connectionID', '?')!r}: connectionType {kind or '(none)'!r} "
                            f"is not a database snapgraph connects to (one of {known})")
    return DIALECTS[kind]


def _property(connection: dict[str, Any], name: str, default: Any = ...) -> Any:
    props = connection.get("connectionProperties") or {}
    if name in props and props[name] is not None:
        return props[name]
    if default is ...:
        raise DatabaseError(f"connection {connection.get('connectionID', '?')!r}: connectionProperties has no "
                            f"{name!r}")
    return default


SQLITE_BUSY_SECONDS = 30.0  # how long an SQLite connection waits for another one's lock


def _use_wal(con: sqlite3.Connection) -> None:
    """Put an SQLite database in WAL mode (readers and one writer at once, across processes), once.

    Switching the journal mode needs a moment of exclusive access, and SQLite answers "database is
    locked" at once, without its busy timeout, when another connection is open on the file at that
    moment: the switch is retried until it succeeds or the busy time is over. A database already in WAL
    mode (the mode is kept in the file) needs no switch at all."""
    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def open_connection(connection: dict[str, Any]) -> Any:
    """A new DB-API connection to the database of ``connection`` (autocommit off: the caller commits)."""
    dialect = dialect_of(connection)
    name = connection.get("connectionID", "?")
    try:
        if dialect is SQLITE:
            path = Path(str(_property(connection, "path")))
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(str(path), timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
            _use_wal(con)
            return con
        if dialect is POSTGRES:
            try:
                import psycopg
            except ImportError as err:
                raise DatabaseError(f"connection {name!r} is POSTGRES: install psycopg "
                                    "(pip install 'snapgraph[postgres]')") from err
            schema = _property(connection, "schema", None)
            return psycopg.connect(host=str(_property(connection, "host")),
                                   port=int(_property(connection, "port", 5432)),
                                   user=str(_property(connection, "user")),
                                   password=str(_property(connection, "password", "")) or None,
                                   dbname=str(_property(connection, "database")),
                                   options=f"-c search_path={schema}" if schema else None)
        try:
            import pymysql
        except ImportError as err:
            raise DatabaseError(f"connection {name!r} is {connection.get('connectionType')}: install PyMySQL "
                                "(pip install 'snapgraph[mariadb]')") from err
        return pymysql.connect(host=str(_property(connection, "host")), port=int(_property(connection, "port", 3306)),
                               user=str(_property(connection, "user")),
                               password=str(_property(connection, "password", "")),
                               database=str(_property(connection, "database")), autocommit=False)
    except DatabaseError:
        raise
    except Exception as err:  # the driver's own errors (refused, unknown database, ...) named by connection
        raise DatabaseError(f"connection {name!r}: cannot connect to its {dialect.name} database: "
                            f"{type(err).__name__}: {err}") from err


# -- statements ------------------------------------------------------------------------------------

def insert_statement(dialect: Dialect, table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES (markers)``."""
    return f"INSERT INTO {dialect.quote(table)} ({dialect.quote_all(columns)}) VALUES ({dialect.marks(len(columns))})"


def upsert_statement(dialect: Dialect, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """An INSERT of ``columns`` that overwrites the row with the same ``key`` instead of failing.

    SQLite and PostgreSQL: ``ON CONFLICT (key) DO UPDATE SET c = excluded.c`` (``DO NOTHING`` when every
    column is part of the key); MariaDB: ``ON DUPLICATE KEY UPDATE c = VALUES(c)``, which any unique key of
    the table triggers, so the key must be the table's only one (the writer checks). ``key`` must be a
    subset of ``columns``.
    """
    missing = [name for name in key if name not in columns]
    if missing or not key:
        raise ValueError(f"upsert into {table!r}: key {list(key)} must be a non-empty subset of the columns "
                         f"{list(columns)}")
    others = [name for name in columns if name not in key]
    insert = insert_statement(dialect, table, columns)
    if dialect is MARIADB:
        updated = others or list(key[:1])
        return insert + " ON DUPLICATE KEY UPDATE " + ", ".join(
            f"{dialect.quote(name)} = VALUES({dialect.quote(name)})" for name in updated)
    conflict = f" ON CONFLICT ({dialect.quote_all(key)}) DO "
    if not others:
        return insert + conflict + "NOTHING"
    return insert + conflict + "UPDATE SET " + ", ".join(
        f"{dialect.quote(name)} = excluded.{dialect.quote(name)}" for name in others)


#: The longest identifier all three databases take (PostgreSQL: 63 bytes, MariaDB: 64).
MAX_IDENTIFIER = 63


def companion_table(table: str, suffix: str) -> str:
    """The name of a table a connector keeps beside ``table`` (``<table>__<suffix>``); a name that would be
    too long for some database is shortened, with a hash of the full name, so it stays one per target."""
    name = f"{table}__{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:10]
    keep = MAX_IDENTIFIER - len(suffix) - len(digest) - 3
    return f"{table.encode()[:keep].decode(errors='ignore')}_{digest}__{suffix}"


# -- reading the schema back ---------------------------------------------------------------------------

def result_columns(connection: Any, dialect: Dialect, source: str) -> list[str]:
    """The column names of ``source`` (a quoted table name or a parenthesised query with an alias), read
    by a query that returns no row. Raises the driver's error for an unknown table or a bad query; the
    connection is rolled back, so a failed statement leaves no aborted transaction behind."""
    cursor = connection.cursor()
    try:
        cursor.execute(f"SELECT * FROM {source} WHERE 1 = 0")
        return [str(column[0]) for column in cursor.description]
    finally:
        cursor.close()
        connection.rollback()


def unique_keys(connection: Any, dialect: Dialect, table: str) -> list[tuple[str, ...]]:
    """The column sets of ``table``'s primary key and unique indexes (each in index order)."""
    cursor = connection.cursor()
    try:
        keys: dict[str, list[str]] = {}
        if dialect is SQLITE:
            cursor.execute(f"PRAGMA table_info({dialect.quote(table)})")
            primary = sorted((row[5], row[1]) for row in cursor.fetchall() if row[5])
            if primary:
                keys["primary"] = [name for _, name in primary]
            cursor.execute(f"PRAGMA index_list({dialect.quote(table)})")
            # Unique, not partial, not the primary key's own index (table_info gave it, rowid alias included).
            for index in [row[1] for row in cursor.fetchall() if row[2] and not row[4] and row[3] != "pk"]:
                cursor.execute(f"PRAGMA index_info({dialect.quote(index)})")
                keys[index] = [row[2] for row in sorted(cursor.fetchall())]
        elif dialect is POSTGRES:
            cursor.execute(
                "SELECT i.indexrelid::text, a.attname FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL "
                "ORDER BY i.indexrelid, k.ord", (dialect.quote(table),))
            for index, column in cursor.fetchall():
                keys.setdefault(index, []).append(column)
        else:
            cursor.execute(
                "SELECT index_name, column_name FROM information_schema.statistics WHERE table_schema = "
                "DATABASE() AND table_name = %s AND non_unique = 0 ORDER BY index_name, seq_in_index", (table,))
            for index, column in cursor.fetchall():
                keys.setdefault(index, []).append(column)
        return [tuple(columns) for columns in keys.values()]
    finally:
        cursor.close()
        connection.rollback()


@contextmanager
def transaction(connection: Any) -> Iterator[Any]:
    """A cursor of the DB-API ``connection`` whose statements commit together at the end of the block, or
    roll back on any error (so a failed callback leaves no lock behind, even while the connection lingers)."""
    cursor = connection.cursor()
    try:
        yield cursor
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()

__all__ = ["DIALECTS", "MARIADB", "MAX_IDENTIFIER", "POSTGRES", "SQLITE", "DatabaseError", "Dialect",
           "companion_table", "dialect_of", "insert_statement", "open_connection", "result_columns",
           "transaction", "unique_keys", "upsert_statement"]
