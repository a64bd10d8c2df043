"""SQLiteStore on real SQLite files: the store contract, and what only a file has (foreign and damaged files,
the -wal file, byte-identical refusals).

Damage is done with a second, plain sqlite3 connection (:func:`execute`), exactly as a bad disk or
another program would leave the file; every damage test first checks that the damage really
happened, so that it cannot pass by accident.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapgraph.snapshot.protocol import EpochClock
from snapgraph.snapshot.store import (
    APPLICATION_ID,
    COMPLETED,
    COPIES,
    DEFAULT_KEEP,
    EPOCH_TABLES,
    FORMAT,
    RUN_TABLES,
    STATE_TABLES,
    STOPPED,
    LeaseHeld,
    SnapshotStore,
    SQLiteStore,
    StoreDamage,
    StoreUnusable,
    checksum,
)

from .contract import (
    E1,
    E2,
    E3,
    STATES,
    FakeClock,
    Row,
    StoreContract,
    StoreUnderTest,
    assert_healed_newest,
    complete,
    flip,
)

MIRROR = {"states": "states_mirror", "states_mirror": "states",
          "epochs": "epochs_mirror", "epochs_mirror": "epochs",
          "runs": "runs_mirror", "runs_mirror": "runs"}


# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------

@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "snap" / "snapshots.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(path)
    yield s
    s.close()


@pytest.fixture
def three_epochs(store: SQLiteStore) -> str:
    """A run with the complete epochs E1, E2, E3 (STATES); returns its run id."""
    run = store.begin_run("/g.yaml", "g")
    for epoch, states in STATES.items():
        complete(store, run.run_id, epoch, states)
    return run.run_id


def fetch(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
    """Read with a second, plain connection to the store file."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, args: tuple[object, ...] = ()) -> int:
    """Write (damage) with a second, plain connection; returns the number of rows changed."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        return conn.execute(sql, args).rowcount
    finally:
        conn.close()


def state_copy(path: Path, table: str, run_id: str, epoch: str, process: str) -> tuple[str, bytes] | None:
    rows = fetch(path, f"SELECT checksum, data FROM {table} WHERE run_id = ? AND epoch = ? AND process = ?",
                 (run_id, epoch, process))
    return (rows[0][0], rows[0][1]) if rows else None


def state_copy_verifies(path: Path, table: str, run_id: str, epoch: str, process: str) -> bool:
    row = state_copy(path, table, run_id, epoch, process)
    return row is not None and isinstance(row[1], bytes) and hashlib.sha256(row[1]).hexdigest() == row[0]


def epoch_row(path: Path, table: str, run_id: str, epoch: str) -> tuple | None:  # type: ignore[type-arg]
    rows = fetch(path, f"SELECT * FROM {table} WHERE run_id = ? AND epoch = ?", (run_id, epoch))
    return rows[0] if rows else None


def run_row(path: Path, table: str, run_id: str) -> tuple | None:  # type: ignore[type-arg]
    rows = fetch(path, f"SELECT * FROM {table} WHERE run_id = ?", (run_id,))
    return rows[0] if rows else None


def damage_state(path: Path, table: str, run_id: str, epoch: str, process: str, how: str = "flip") -> None:
    """Damage one copy of a state and check that it really is damaged."""
    before = state_copy(path, table, run_id, epoch, process)
    assert before is not None
    where = "WHERE run_id = ? AND epoch = ? AND process = ?"
    if how == "flip":
        changed = execute(path, f"UPDATE {table} SET data = ? {where}", (flip(before[1]), run_id, epoch, process))
    elif how == "delete":
        changed = execute(path, f"DELETE FROM {table} {where}", (run_id, epoch, process))
    elif how == "forge":  # data and its row checksum replaced together: only the completion record can tell
        changed = execute(path, f"UPDATE {table} SET data = ?, checksum = ? {where}",
                          (b"forged", checksum(b"forged"), run_id, epoch, process))
    elif how == "text":  # one flipped bit in the record header turns a blob into text of the same length
        changed = execute(path, f"UPDATE {table} SET data = CAST(data AS TEXT) {where}", (run_id, epoch, process))
    else:
        raise AssertionError(how)
    assert changed == 1
    assert state_copy(path, table, run_id, epoch, process) != before


def file_bytes(path: Path) -> tuple[bytes, bytes | None]:
    """The main file and its -wal file: any write (durable or not) changes one of them."""
    wal = Path(f"{path}-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else None


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


# --------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------

def test_store_file_and_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "snapshots.db"
    s = SQLiteStore(path)
    try:
        assert path.is_file()
        assert s.runs() == []
        header = path.read_bytes()[:100]
        assert int.from_bytes(header[68:72], "big") == APPLICATION_ID
        assert fetch(path, "SELECT value FROM meta WHERE key = 'format'") == [(str(FORMAT),)]
        # built under a temporary name and linked into place: nothing of that is left over
        assert not [p.name for p in path.parent.iterdir() if ".new-" in p.name]
    finally:
        s.close()


# --------------------------------------------------------------------------------------
# states and epochs
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# mirrors: one damaged copy is healed from the other
# --------------------------------------------------------------------------------------


def test_a_state_copy_turned_into_text_is_healed(store: SQLiteStore, three_epochs: str) -> None:
    """One flipped bit in a row's header turns the blob into text: that copy is damaged, nothing more."""
    run_id = three_epochs
    damage_state(store.path, "states", run_id, E3, "gen", "text")
    kinds = fetch(store.path, "SELECT typeof(data) FROM states WHERE epoch = ? AND process = 'gen'", (E3,))
    assert kinds == [("text",)]

    assert_healed_newest(store.restore_point(run_id), run_id)
    for copy in STATE_TABLES:
        assert state_copy_verifies(store.path, copy, run_id, E3, "gen"), copy


def test_heal_false_restores_without_writing(store: SQLiteStore, three_epochs: str) -> None:
    run_id = three_epochs
    damage_state(store.path, "states_mirror", run_id, E3, "gen")
    before = file_bytes(store.path)
    point = store.restore_point(run_id, heal=False)
    assert point is not None and point.epoch == E3 and point.states == STATES[E3]
    assert file_bytes(store.path) == before
    assert not state_copy_verifies(store.path, "states_mirror", run_id, E3, "gen")


COMPLETION_DAMAGE = {
    "digest": "UPDATE {table} SET digest = '" + "0" * 64 + "' WHERE run_id = ? AND epoch = ?",
    "checksums": "UPDATE {table} SET checksums = '{{\"gen\": \"" + "0" * 64 + "\", \"sink\": \"" + "0" * 64
                 + "\"}}' WHERE run_id = ? AND epoch = ?",
    "completed": "UPDATE {table} SET completed = completed + 1 WHERE run_id = ? AND epoch = ?",
    "graph_key": "UPDATE {table} SET graph_key = '/elsewhere.yaml' WHERE run_id = ? AND epoch = ?",
    "not json": "UPDATE {table} SET checksums = 'not json' WHERE run_id = ? AND epoch = ?",
    "delete": "DELETE FROM {table} WHERE run_id = ? AND epoch = ?",
}


RUN_DAMAGE = {
    "status": "UPDATE {table} SET status = 'completed' WHERE run_id = ?",
    "last_epoch": f"UPDATE {{table}} SET last_epoch = '{E1}' WHERE run_id = ?",
    "attempts": "UPDATE {table} SET attempts = 7 WHERE run_id = ?",
    "sum": "UPDATE {table} SET sum = 'x' WHERE run_id = ?",
    "delete": "DELETE FROM {table} WHERE run_id = ?",
}


@pytest.mark.parametrize("damage", [
    "UPDATE runs SET run_id = run_id || 'x'",  # a flipped byte in the key column of one copy
    "UPDATE runs SET graph_name = CAST(graph_name AS BLOB)",  # a flipped bit turns text into a blob
])
def test_one_run_record_copy_damaged_anywhere_is_not_both(store: SQLiteStore, three_epochs: str,
                                                          damage: str) -> None:
    run_id = three_epochs
    before = store.newest_run("/g.yaml")
    original = run_row(store.path, "runs", run_id)
    assert execute(store.path, damage) == 1
    assert run_row(store.path, "runs", run_id) != original

    assert store.newest_run("/g.yaml") == before
    assert [r.run_id for r in store.runs()] == [run_id]
    point = store.restore_point(run_id)
    assert point is not None and point.epoch == E3 and point.states == STATES[E3]


# --------------------------------------------------------------------------------------
# refusals: the newest complete epoch cannot be read intact
# --------------------------------------------------------------------------------------

def damage_both_states(path: Path, run_id: str) -> str:
    for table in STATE_TABLES:
        damage_state(path, table, run_id, E3, "sink")
    return "the state of operator 'sink' fails its checksum in both copies"


def delete_both_states(path: Path, run_id: str) -> str:
    for table in STATE_TABLES:
        damage_state(path, table, run_id, E3, "sink", "delete")
    return "the state of operator 'sink' fails its checksum in both copies"


def damage_both_records(path: Path, run_id: str) -> str:
    for table in EPOCH_TABLES:
        assert execute(path, COMPLETION_DAMAGE["digest"].format(table=table), (run_id, E3)) == 1
    return "its completion record is damaged in both copies"


def lose_both_records(path: Path, run_id: str) -> str:
    for table in EPOCH_TABLES:
        assert execute(path, COMPLETION_DAMAGE["delete"].format(table=table), (run_id, E3)) == 1
        assert epoch_row(path, table, run_id, E3) is None
    assert fetch(path, "SELECT last_epoch FROM runs WHERE run_id = ?", (run_id,)) == [(E3,)]
    return "its completion record is lost"


BOTH_COPIES = {"states damaged": damage_both_states, "states deleted": delete_both_states,
               "records damaged": damage_both_records, "records lost": lose_both_records}


@pytest.mark.parametrize("damage", sorted(BOTH_COPIES))
def test_newest_epoch_damaged_in_both_copies_is_refused(store: SQLiteStore, three_epochs: str, damage: str) -> None:
    run_id = three_epochs
    problem = BOTH_COPIES[damage](store.path, run_id)
    before = file_bytes(store.path)

    with pytest.raises(StoreDamage) as info:
        store.restore_point(run_id)
    message = str(info.value)
    assert f"epoch {E3}: {problem}" in message
    assert run_id in message
    assert "--accept-older-epoch" in message and E2 in message
    assert "at-least-once" in message
    assert "nothing was written" in message
    assert file_bytes(store.path) == before
    assert info.value.exit_code == 2


def test_a_refusal_writes_nothing_even_when_the_older_epoch_needs_healing(store: SQLiteStore,
                                                                          three_epochs: str) -> None:
    run_id = three_epochs
    damage_both_states(store.path, run_id)
    damage_state(store.path, "states", run_id, E2, "gen")  # the older epoch needs healing too
    before = file_bytes(store.path)

    with pytest.raises(StoreDamage) as info:
        store.restore_point(run_id)
    assert "nothing was written" in str(info.value)
    assert file_bytes(store.path) == before
    assert not state_copy_verifies(store.path, "states", run_id, E2, "gen")

    # accepted: the older epoch is healed and restored
    point = store.restore_point(run_id, accept_older=True)
    assert point is not None and point.epoch == E2 and point.states == STATES[E2]
    assert any("healed" in note for note in point.notes)
    assert state_copy_verifies(store.path, "states", run_id, E2, "gen")


# --------------------------------------------------------------------------------------
# files that are not ours, damaged files
# --------------------------------------------------------------------------------------

def other_programs_database(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO customers (name) VALUES (?)", [("ada",), ("grace",)])
    conn.commit()
    conn.close()


def other_programs_wal_database(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE runs (run_id TEXT)")  # even a table of the same name
    conn.commit()
    conn.close()


def empty_sqlite_database(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.execute("VACUUM")  # writes the header: a valid database with no table at all
    conn.close()
    assert path.stat().st_size > 0
    assert fetch(path, "SELECT count(*) FROM sqlite_master") == [(0,)]
    assert fetch(path, "PRAGMA application_id") == [(0,)]


def store_of_format_1(path: Path) -> None:
    """What snapgraph wrote before format 2: no application id, user_version 1, no mirrors."""
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, graph_key TEXT NOT NULL, graph_name TEXT NOT NULL, "
                 "status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, attempts INTEGER NOT NULL)")
    conn.execute("CREATE TABLE states (run_id TEXT, epoch TEXT, process TEXT, checksum TEXT, size INTEGER, "
                 "data BLOB, PRIMARY KEY (run_id, epoch, process))")
    conn.execute("INSERT INTO runs VALUES ('20250101-000000-abcdef', '/g.yaml', 'g', 'running', 1.0, 1.0, 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


FOREIGN = {
    "another program's database": other_programs_database,
    "another program's WAL database": other_programs_wal_database,
    "an empty SQLite database": empty_sqlite_database,
    "a store of format 1": store_of_format_1,
    "a text file": lambda p: p.write_text("runs:\n  - not a database\n" * 100),
    "a short text file": lambda p: p.write_text("snapgraph"),
    "SQLite's magic then garbage": lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16),
}


@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_file_that_is_not_ours_is_refused_untouched(tmp_path: Path, kind: str, create: bool) -> None:
    path = tmp_path / "snapshots.db"
    FOREIGN[kind](path)
    before = path.read_bytes()
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path, create=create)
    assert type(info.value) is StoreUnusable  # not a store: never reported as damage
    assert str(path) in str(info.value)
    assert "not a snapgraph store" in str(info.value)
    assert "nothing was written" in str(info.value)
    assert info.value.exit_code == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshots.db"]  # no -wal, -shm, or temporary file


def test_a_zero_length_file_is_a_truncated_store(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.db"
    path.touch()
    for create in (True, False):
        with pytest.raises(StoreDamage) as info:
            SQLiteStore(path, create=create)
        assert str(path) in str(info.value) and "empty" in str(info.value) and "truncated" in str(info.value)
        assert path.read_bytes() == b""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshots.db"]


def test_a_missing_store_is_not_created_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "snapshots.db"
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path, create=False)
    assert str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.db"
    path.mkdir()
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value) and "directory" in str(info.value)
    assert list(path.iterdir()) == []


def format_1_in_meta(path: Path) -> None:
    SQLiteStore(path).close()
    assert execute(path, "UPDATE meta SET value = '1' WHERE key = 'format'") == 1
    assert not Path(f"{path}-wal").exists()  # the last connection closed: everything is in the main file


def test_a_store_of_another_format_is_refused_by_name(path: Path) -> None:
    format_1_in_meta(path)
    before = path.read_bytes()
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path)
    assert "format 1" in str(info.value) and f"format {FORMAT}" in str(info.value)
    assert type(info.value) is StoreUnusable
    assert path.read_bytes() == before


def test_a_refused_store_is_closed_at_once(path: Path) -> None:
    """Refusing a store must not leave its connection (and the -wal and -shm files) open behind it."""
    format_1_in_meta(path)
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path)
    assert "format 1" in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_store_without_its_format_record_is_damaged(path: Path) -> None:
    SQLiteStore(path).close()
    assert execute(path, "DELETE FROM meta") == 1
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path)
    assert "damaged" in str(info.value) and "format record is missing" in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_truncated_store_is_refused_as_damaged(path: Path) -> None:
    s = SQLiteStore(path)
    run = s.begin_run("/g.yaml", "g")
    for i in range(12):
        complete(s, run.run_id, f"2026-01-01T00:00:{i:02d}.000Z", {"gen": bytes([i]) * 3000})
    s.close()
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreUnusable) as info:
        SQLiteStore(path)
    message = str(info.value)
    assert str(path) in message and "damaged" in message and "malformed" in message
    assert path.read_bytes() == data[: len(data) // 2]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# --------------------------------------------------------------------------------------
# durability: what was completed is in the main file when the call returns
# --------------------------------------------------------------------------------------

DURABLE_CALLS: dict[str, Callable[[SQLiteStore, str], object]] = {
    "begin_run": lambda s, run_id: s.begin_run("/other.yaml", "other"),
    "complete_epoch": lambda s, run_id: s.complete_epoch(run_id, E3, 0.0, ["gen"]),
    "finish_run": lambda s, run_id: s.finish_run(run_id, STOPPED),
    "reopen_run": lambda s, run_id: s.reopen_run(run_id),
    "acquire_lease": lambda s, run_id: s.acquire_lease("/g.yaml"),
    "release_lease": lambda s, run_id: s.acquire_lease("/g.yaml").release(),
    "delete_run": lambda s, run_id: s.delete_run(run_id),
    "restore_point (healing)": lambda s, run_id: (
        damage_state(s.path, "states", run_id, E2, "gen"), s.restore_point(run_id)),
}


@pytest.mark.parametrize("call", sorted(DURABLE_CALLS))
def test_durable_calls_checkpoint_the_wal_before_returning(store: SQLiteStore, call: str) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E2, {"gen": b"2"})
    store.save_state(run.run_id, E3, "gen", b"in flight")  # not durable: only in the -wal file
    assert wal_size(store.path) > 0
    DURABLE_CALLS[call](store, run.run_id)
    assert wal_size(store.path) == 0


def test_note_attempt_is_durable(store: SQLiteStore) -> None:
    """Rule 3: run records are checkpointed into the main file before the call returns."""
    run = store.begin_run("/g.yaml", "g")
    assert wal_size(store.path) == 0
    store.note_attempt(run.run_id)
    assert wal_size(store.path) == 0


def test_the_main_file_alone_holds_every_completed_epoch(store: SQLiteStore, tmp_path: Path) -> None:
    """Losing the -wal file (copying the main file alone, the store still open) loses nothing completed."""
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, STATES[E1])
    complete(store, run.run_id, E2, STATES[E2])
    store.save_state(run.run_id, E3, "gen", b"in flight")
    assert wal_size(store.path) > 0  # the in-flight state is only in the -wal file

    copy = tmp_path / "copy" / "snapshots.db"
    copy.parent.mkdir()
    shutil.copyfile(store.path, copy)
    again = SQLiteStore(copy, create=False)
    try:
        newest = again.newest_run("/g.yaml")
        assert newest is not None and newest.run_id == run.run_id and newest.last_epoch == E2
        point = again.restore_point(run.run_id)
        assert point is not None and point.epoch == E2 and point.states == STATES[E2]
        assert point.notes == []
    finally:
        again.close()


@pytest.mark.parametrize("garbage", ["random bytes", "garbled frames"])
def test_a_garbled_wal_file_loses_nothing_completed(store: SQLiteStore, tmp_path: Path, garbage: str) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, STATES[E1])
    complete(store, run.run_id, E2, STATES[E2])
    store.save_state(run.run_id, E3, "gen", b"in flight" * 100)
    wal = Path(f"{store.path}-wal").read_bytes()
    assert len(wal) > 4096

    copy = tmp_path / "copy.db"
    shutil.copyfile(store.path, copy)
    if garbage == "random bytes":
        garbled = os.urandom(len(wal))
    else:  # a valid WAL header, every frame after it flipped
        garbled = wal[:32] + bytes(b ^ 0x5A for b in wal[32:])
    assert garbled != wal
    Path(f"{copy}-wal").write_bytes(garbled)

    again = SQLiteStore(copy, create=False)
    try:
        newest = again.newest_run("/g.yaml")
        assert newest is not None and newest.last_epoch == E2
        point = again.restore_point(run.run_id)
        assert point is not None and point.epoch == E2 and point.states == STATES[E2]
        assert [e.epoch for e in again.epochs(run.run_id)] == [E1, E2]
    finally:
        again.close()


# --------------------------------------------------------------------------------------
# leases: one engine per graph
# --------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def second(path: Path, store: SQLiteStore, clock: FakeClock) -> Iterator[SQLiteStore]:
    """Another engine's store object on the same file (its clock injected)."""
    s = SQLiteStore(path, clock=clock)
    yield s
    s.close()


def lease_rows(path: Path) -> list[tuple]:  # type: ignore[type-arg]
    return fetch(path, "SELECT graph_key, token, pid, host, host_id, proc_start, started, heartbeat FROM leases")


def write_lease(path: Path, graph_key: str, *, pid: int, host: str = "elsewhere", host_id: str = "elsewhere/x/y",
                proc_start: str = "", heartbeat: float = 0.0, token: str = "their-token") -> None:
    execute(path, "INSERT OR REPLACE INTO leases (graph_key, token, pid, host, host_id, proc_start, started, "
                  "heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (graph_key, token, pid, host, host_id, proc_start, heartbeat, heartbeat))


def test_check_lease_free_reads_only(store: SQLiteStore, second: SQLiteStore) -> None:
    second.check_lease_free("/g.yaml")  # no lease at all
    lease = store.acquire_lease("/g.yaml")
    before = file_bytes(store.path)
    with pytest.raises(LeaseHeld) as info:
        second.check_lease_free("/g.yaml")
    assert f"pid {os.getpid()}" in str(info.value) and info.value.holder.token == lease.token
    assert file_bytes(store.path) == before
    # a dead holder: free, and its row is left for acquire_lease to replace
    assert execute(store.path, "UPDATE leases SET host_id = 'elsewhere/x/y', heartbeat = 0") == 1
    before = file_bytes(store.path)
    second.check_lease_free("/g.yaml")
    assert file_bytes(store.path) == before
    assert lease_rows(store.path)[0][1] == lease.token


FENCED_WRITES: dict[str, Callable[[SQLiteStore, str], object]] = {
    "save_state": lambda s, run_id: s.save_state(run_id, E2, "gen", b"late"),
    "complete_epoch": lambda s, run_id: s.complete_epoch(run_id, E1, 0.0, ["gen"]),
    "finish_run": lambda s, run_id: s.finish_run(run_id, COMPLETED),
    "note_attempt": lambda s, run_id: s.note_attempt(run_id),
    "begin_run": lambda s, run_id: s.begin_run("/g.yaml", "g"),
}


def all_rows(path: Path) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    return {table: sorted(fetch(path, f"SELECT * FROM {table}"))
            for table in ("leases", *RUN_TABLES, *STATE_TABLES, *EPOCH_TABLES)}


# --------------------------------------------------------------------------------------
# property: the newest complete epoch, with exactly its bytes, whatever single copies are damaged
# --------------------------------------------------------------------------------------

PROCESSES = ("gen", "proc", "sink")
SENTINEL = "0" * 64

save_op = st.tuples(st.just("save"), st.sampled_from(PROCESSES), st.binary(max_size=64))
complete_op = st.just(("complete", "", b""))
damage_op = st.tuples(st.just("damage"), st.sampled_from((*STATE_TABLES, *EPOCH_TABLES)),
                      st.integers(min_value=0, max_value=1000))
ops_strategy = st.lists(st.one_of(save_op, save_op, complete_op, damage_op), min_size=1, max_size=25)


def _state_intact(conn: sqlite3.Connection, table: str, key: tuple[str, str, str]) -> bool:
    rows = conn.execute(f"SELECT checksum, data FROM {table} WHERE run_id = ? AND epoch = ? AND process = ?",
                        key).fetchall()
    return bool(rows) and hashlib.sha256(rows[0][1]).hexdigest() == rows[0][0]


def _record_intact(conn: sqlite3.Connection, table: str, key: tuple[str, str]) -> bool:
    rows = conn.execute(f"SELECT digest FROM {table} WHERE run_id = ? AND epoch = ?", key).fetchall()
    return bool(rows) and rows[0][0] != SENTINEL


def _damage_one_copy(conn: sqlite3.Connection, run_id: str, table: str, pick: int) -> None:
    """Damage one intact copy whose mirror is intact too (flip/delete a state, spoil/delete a completion record)."""
    other = MIRROR[table]
    if table in STATE_TABLES:
        keys = [(run_id, e, p) for e, p in conn.execute(
            f"SELECT epoch, process FROM {table} WHERE run_id = ? ORDER BY epoch, process", (run_id,)).fetchall()]
        keys = [k for k in keys if _state_intact(conn, table, k) and _state_intact(conn, other, k)]
        if not keys:
            return
        key = keys[pick % len(keys)]
        where = "WHERE run_id = ? AND epoch = ? AND process = ?"
        if pick % 2:
            conn.execute(f"DELETE FROM {table} {where}", key)
        else:
            (data,) = conn.execute(f"SELECT data FROM {table} {where}", key).fetchall()[0]
            conn.execute(f"UPDATE {table} SET data = ? {where}", (flip(data), *key))
        assert not _state_intact(conn, table, key)
    else:
        keys = [(run_id, e) for (e,) in conn.execute(
            f"SELECT epoch FROM {table} WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()]
        keys = [k for k in keys if _record_intact(conn, table, k) and _record_intact(conn, other, k)]
        if not keys:
            return
        key = keys[pick % len(keys)]
        if pick % 2:
            conn.execute(f"DELETE FROM {table} WHERE run_id = ? AND epoch = ?", key)
        else:
            conn.execute(f"UPDATE {table} SET digest = ? WHERE run_id = ? AND epoch = ?", (SENTINEL, *key))
        assert not _record_intact(conn, table, key)


def _all_copies_intact(conn: sqlite3.Connection, run_id: str, epoch: str, processes: list[str]) -> bool:
    return (all(_record_intact(conn, t, (run_id, epoch)) for t in EPOCH_TABLES)
            and all(_state_intact(conn, t, (run_id, epoch, p)) for t in STATE_TABLES for p in processes))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_restore_point_is_the_newest_complete_epoch_with_its_bytes(ops: list[tuple[str, str, object]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "s.db")
        conn = sqlite3.connect(str(store.path), isolation_level=None)
        try:
            run = store.begin_run("/g.yaml", "g")
            clock = EpochClock()
            epoch = clock.next()
            pending: dict[str, bytes] = {}
            expected: tuple[str, dict[str, bytes]] | None = None
            completed: list[str] = []
            for kind, name, value in ops:
                if kind == "save":
                    assert isinstance(value, bytes)
                    store.save_state(run.run_id, epoch, name, value)
                    pending[name] = value
                elif kind == "complete":
                    store.complete_epoch(run.run_id, epoch, 0.0, sorted(pending))
                    expected = (epoch, dict(pending))
                    completed.append(epoch)
                    epoch, pending = clock.next(), {}
                else:
                    assert isinstance(value, int)
                    _damage_one_copy(conn, run.run_id, name, value)

                needs_heal = expected is not None and not _all_copies_intact(
                    conn, run.run_id, expected[0], sorted(expected[1]))
                point = store.restore_point(run.run_id)
                if expected is None:
                    assert point is None
                    continue
                assert point is not None
                assert point.epoch == expected[0]
                assert point.states == expected[1]
                assert point.record is not None
                assert point.record.operator_bytes == {k: len(v) for k, v in expected[1].items()}
                assert any("healed" in note for note in point.notes) == needs_heal, point.notes
                assert _all_copies_intact(conn, run.run_id, expected[0], sorted(expected[1]))
                listed = [e.epoch for e in store.epochs(run.run_id)]
                assert listed[-DEFAULT_KEEP:] == completed[-DEFAULT_KEEP:]
                assert set(listed) <= set(completed)
        finally:
            conn.close()
            store.close()


# --------------------------------------------------------------------------------------
# the store contract
# --------------------------------------------------------------------------------------

_KIND_TABLES = {"runs": RUN_TABLES, "states": STATE_TABLES, "epochs": EPOCH_TABLES}


class SQLiteUnderTest(StoreUnderTest):
    """Raw access through a second, plain sqlite3 connection, as another program would write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], float] | None = None) -> SnapshotStore:
        return SQLiteStore(self.path, keep, clock=clock or time.time)

    def _table(self, kind: str, copy: str) -> str:
        return _KIND_TABLES[kind][COPIES.index(copy)]  # type: ignore[arg-type]

    def _select(self, sql: str, args: tuple[object, ...] = ()) -> list[Row]:
        conn = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            cursor = conn.execute(sql, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            conn.close()

    def rows(self, kind: str, copy: str, run_id: str | None = None) -> list[Row]:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        found = self._select(f"SELECT * FROM {self._table(kind, copy)} {where}", args)
        for row in found:
            if kind == "states" and not isinstance(row["data"], bytes):
                row["data"] = None
        return found

    def update(self, kind: str, copy: str, key: Row, **changes: Any) -> int:
        sets = ", ".join(f"{name} = ?" for name in changes)
        where = " AND ".join(f"{name} = ?" for name in key)
        return execute(self.path, f"UPDATE {self._table(kind, copy)} SET {sets} WHERE {where}",
                       (*changes.values(), *key.values()))

    def delete(self, kind: str, copy: str, key: Row) -> int:
        where = " AND ".join(f"{name} = ?" for name in key)
        return execute(self.path, f"DELETE FROM {self._table(kind, copy)} WHERE {where}", tuple(key.values()))

    def lease_rows(self) -> list[Row]:
        return self._select("SELECT * FROM leases")

    def put_lease(self, row: Row) -> None:
        execute(self.path, f"INSERT OR REPLACE INTO leases ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()))

    def update_leases(self, **changes: Any) -> int:
        return execute(self.path, f"UPDATE leases SET {', '.join(f'{n} = ?' for n in changes)}",
                       tuple(changes.values()))

    def everything(self) -> object:
        return all_rows(self.path)


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    def under_test(self, path: Path) -> Iterator[StoreUnderTest]:
        yield SQLiteUnderTest(path)
