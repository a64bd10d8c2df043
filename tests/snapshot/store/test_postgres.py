"""PostgresStore on the PostgreSQL server of this machine: the store contract, and what only a database has
(a schema that is not ours, chunked states, the URL in messages, an unreachable server).

Each test gets a schema of its own in database ``test`` and drops it afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from snapgraph.snapshot.store import (
    COPIES,
    DEFAULT_KEEP,
    PostgresStore,
    SnapshotStore,
    StoreMissing,
    StoreUnusable,
    open_store,
)
from snapgraph.snapshot.store import postgres as pg

from .contract import E1, Row, StoreContract, StoreUnderTest, complete

SERVER = "postgresql://postgres@127.0.0.1:5432/test"

_KIND_TABLES = {"runs": ("runs", "runs_mirror"), "states": ("states", "states_mirror"),
                "epochs": ("epochs", "epochs_mirror")}


def connect() -> psycopg.Connection[Any]:
    return psycopg.connect(SERVER, autocommit=True)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


class PostgresUnderTest(StoreUnderTest):
    """Raw access through a connection of its own, as another program or a bad disk would write."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.url = f"{SERVER}?schema={schema}"

    def open(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], float] | None = None) -> SnapshotStore:
        return PostgresStore(self.url, keep, clock=clock)

    def _table(self, kind: str, copy: str) -> str:
        return f"{self.schema}.{_KIND_TABLES[kind][COPIES.index(copy)]}"  # type: ignore[arg-type]

    def _select(self, sql: str, args: tuple[object, ...] = ()) -> list[Row]:
        with connect() as conn, conn.cursor(binary=True) as cursor:
            cursor.execute(sql, args)
            names = [d.name for d in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _execute(self, sql: str, args: tuple[object, ...] = ()) -> int:
        with connect() as conn:
            return conn.execute(sql, args).rowcount

    def rows(self, kind: str, copy: str, run_id: str | None = None) -> list[Row]:
        where, args = ("WHERE run_id = %s", (run_id,)) if run_id is not None else ("", ())
        if kind != "states":
            return self._select(f"SELECT * FROM {self._table(kind, copy)} {where}", args)
        found: dict[tuple[str, str, str], Row] = {}
        for row in self._select(f"SELECT * FROM {self._table(kind, copy)} {where} ORDER BY chunk", args):
            key = (row["run_id"], row["epoch"], row["process"])
            if key in found:
                found[key]["data"] += bytes(row["data"])
            else:
                found[key] = {name: row[name] for name in ("run_id", "epoch", "process", "checksum", "size")}
                found[key]["data"] = bytes(row["data"])
        return list(found.values())

    def update(self, kind: str, copy: str, key: Row, **changes: Any) -> int:
        where = " AND ".join(f"{name} = %s" for name in key)
        if kind == "states":
            where += " AND chunk = 0"
            if "data" in changes:  # the whole state: the first chunk takes the bytes, the others go
                self._execute(f"DELETE FROM {self._table(kind, copy)} WHERE "
                              f"{where.replace('chunk = 0', 'chunk > 0')}", tuple(key.values()))
        sets = ", ".join(f"{name} = %s" for name in changes)
        return self._execute(f"UPDATE {self._table(kind, copy)} SET {sets} WHERE {where}",
                             (*changes.values(), *key.values()))

    def delete(self, kind: str, copy: str, key: Row) -> int:
        where = " AND ".join(f"{name} = %s" for name in key)
        if kind == "states":  # one state: its first chunk counts, the others go with it
            self._execute(f"DELETE FROM {self._table(kind, copy)} WHERE {where} AND chunk > 0", tuple(key.values()))
        return self._execute(f"DELETE FROM {self._table(kind, copy)} WHERE {where}", tuple(key.values()))

    def lease_rows(self) -> list[Row]:
        return self._select(f"SELECT * FROM {self.schema}.leases")

    def put_lease(self, row: Row) -> None:
        columns = ", ".join(row)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in row if name != "graph_key")
        self._execute(f"INSERT INTO {self.schema}.leases ({columns}) VALUES ({', '.join(['%s'] * len(row))}) "
                      f"ON CONFLICT (graph_key) DO UPDATE SET {updates}", tuple(row.values()))

    def update_leases(self, **changes: Any) -> int:
        return self._execute(f"UPDATE {self.schema}.leases SET {', '.join(f'{n} = %s' for n in changes)}",
                             tuple(changes.values()))

    def everything(self) -> object:
        tables = ["meta", "leases", *(name for names in _KIND_TABLES.values() for name in names)]
        return {table: sorted(map(repr, self._select(f"SELECT * FROM {self.schema}.{table}"))) for table in tables}


class TestPostgresStoreContract(StoreContract):
    @pytest.fixture
    def under_test(self, schema: str) -> Iterator[StoreUnderTest]:
        yield PostgresUnderTest(schema)


# --------------------------------------------------------------------------------------
# what only a database has
# --------------------------------------------------------------------------------------

def test_the_factory_opens_postgresql_urls_and_paths(schema: str, tmp_path: Any) -> None:
    store = open_store(f"{SERVER}?schema={schema}")
    try:
        assert isinstance(store, PostgresStore) and store.schema == schema
        assert store.location == f"{SERVER}?schema={schema}"
    finally:
        store.close()
    with pytest.raises(StoreUnusable) as info:
        open_store("mysql://root@127.0.0.1/test")
    assert "unknown kind of store" in str(info.value) and "postgresql://" in str(info.value)


def test_a_schema_that_is_not_ours_is_refused_untouched(schema: str) -> None:
    with connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.runs (run_id text)")
        conn.execute(f"INSERT INTO {schema}.runs VALUES ('theirs')")
    for create in (True, False):
        with pytest.raises(StoreUnusable) as info:
            PostgresStore(f"{SERVER}?schema={schema}", create=create)
        assert "is not a snapgraph store" in str(info.value) and "nothing was written" in str(info.value)
        assert info.value.exit_code == 2
    with connect() as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              (schema,)).fetchall()
        assert tables == [("runs",)]
        assert conn.execute(f"SELECT * FROM {schema}.runs").fetchall() == [("theirs",)]


def test_a_store_of_another_format_is_refused_by_name(schema: str) -> None:
    PostgresStore(f"{SERVER}?schema={schema}").close()
    with connect() as conn:
        assert conn.execute(f"UPDATE {schema}.meta SET value = '1' WHERE key = 'format'").rowcount == 1
    with pytest.raises(StoreUnusable) as info:
        PostgresStore(f"{SERVER}?schema={schema}")
    assert "format 1" in str(info.value) and "format 2" in str(info.value)


def test_a_missing_store_is_not_created_without_create(schema: str) -> None:
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(StoreMissing) as info:
            PostgresStore(f"{SERVER}?schema={schema}", **kwargs)  # type: ignore[arg-type]
        assert f"no snapshot store at {SERVER}?schema={schema}" in str(info.value)
    with connect() as conn:
        assert conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (schema,)).fetchone() is None


def test_read_only_never_writes(schema: str) -> None:
    store = PostgresStore(f"{SERVER}?schema={schema}")
    run = store.begin_run("/g.yaml", "g")
    store.close()
    reader = PostgresStore(f"{SERVER}?schema={schema}", read_only=True)
    try:
        assert [r.run_id for r in reader.runs()] == [run.run_id]
        with pytest.raises(Exception) as info:
            reader.begin_run("/g.yaml", "g")
        assert "read-only" in str(info.value)
    finally:
        reader.close()


def test_large_states_are_chunked(schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "CHUNK", 1000)
    store = PostgresStore(f"{SERVER}?schema={schema}")
    try:
        run = store.begin_run("/g.yaml", "g")
        data = bytes(range(256)) * 20  # 5120 bytes: six chunks
        complete(store, run.run_id, E1, {"gen": data})
        with connect() as conn:
            chunks = conn.execute(f"SELECT chunk, length(data) FROM {schema}.states ORDER BY chunk").fetchall()
            assert chunks == [(0, 1000), (1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 120)]
            # a lost chunk in one copy is damage that copy alone: healed from the mirror
            assert conn.execute(f"DELETE FROM {schema}.states WHERE chunk = 3").rowcount == 1
        point = store.restore_point(run.run_id)
        assert point is not None and point.states == {"gen": data}
        assert any("healed" in note for note in point.notes)
        with connect() as conn:
            assert conn.execute(f"SELECT count(*) FROM {schema}.states").fetchone() == (6,)
    finally:
        store.close()


def test_the_password_never_appears_in_messages() -> None:
    with pytest.raises(StoreUnusable) as info:
        PostgresStore("postgresql://postgres:s3cret@127.0.0.1:1/test?schema=x")
    assert "s3cret" not in str(info.value) and ":***@" in str(info.value)
    assert "cannot be reached" in str(info.value)


def test_a_schema_name_that_is_not_plain_is_refused() -> None:
    with pytest.raises(StoreUnusable) as info:
        PostgresStore(f"{SERVER}?schema=x;drop table y")
    assert "not a plain lower-case SQL name" in str(info.value)


def test_times_come_from_the_server_clock(schema: str) -> None:
    store = PostgresStore(f"{SERVER}?schema={schema}")
    try:
        with connect() as conn:
            (server,) = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()  # type: ignore[misc]
        assert abs(store.clock() - server) < 1.0
        assert abs(store.clock() - time.time()) < 5.0  # the same machine: the clocks agree
    finally:
        store.close()
