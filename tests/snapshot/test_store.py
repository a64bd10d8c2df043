"""SQLiteStore on real SQLite files: runs, epochs, mirrors and healing, refusals, foreign files, durability, leases.

Damage is done with a second, plain sqlite3 connection (:func:`execute`), exactly as a bad disk or
another program would leave the file; every damage test first checks that the damage really
happened, so that it cannot pass by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapgraph.snapshot.protocol import EpochClock
from snapgraph.snapshot.store import (
    ABANDONED,
    APPLICATION_ID,
    COMPLETED,
    DEFAULT_KEEP,
    EPOCH_TABLES,
    FAILED,
    FORMAT,
    LEASE_TTL,
    RUN_TABLES,
    RUNNING,
    STATE_TABLES,
    STOPPED,
    LeaseHeld,
    LeaseLost,
    SQLiteStore,
    StoreDamage,
    StoreError,
    StoreUnusable,
    checksum,
    epoch_digest,
    process_start,
    this_host_id,
)

E1 = "2026-01-01T00:00:01.000Z"
E2 = "2026-01-01T00:00:02.000Z"
E3 = "2026-01-01T00:00:03.000Z"
E4 = "2026-01-01T00:00:04.000Z"
E5 = "2026-01-01T00:00:05.000Z"

STATES = {E1: {"gen": b"gen-1", "sink": b"sink-1"},
          E2: {"gen": b"gen-2", "sink": b"sink-2"},
          E3: {"gen": b"gen-3", "sink": b"sink-3"}}

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


def complete(store: SQLiteStore, run_id: str, epoch: str, states: dict[str, bytes]) -> None:
    for name, data in states.items():
        store.save_state(run_id, epoch, name, data)
    store.complete_epoch(run_id, epoch, 100.0, sorted(states))


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


def flip(blob: bytes) -> bytes:
    return bytes([blob[0] ^ 0xFF]) + blob[1:] if blob else b"\x00"


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


def test_begin_and_finish_runs(store: SQLiteStore) -> None:
    a = store.begin_run("/g/a.yaml", "a")
    b = store.begin_run("/g/b.yaml", "b")
    assert a.run_id != b.run_id
    assert a.status == RUNNING and a.attempts == 1 and a.graph_key == "/g/a.yaml" and a.graph_name == "a"
    assert a.last_epoch is None
    assert [r.run_id for r in store.runs()] == [a.run_id, b.run_id]
    assert [r.status for r in store.runs()] == [RUNNING, RUNNING]

    store.note_attempt(a.run_id)
    store.note_attempt(a.run_id)
    store.finish_run(a.run_id, FAILED)
    store.finish_run(b.run_id, COMPLETED)
    by_id = {r.run_id: r for r in store.runs()}
    assert by_id[a.run_id].status == FAILED
    assert by_id[a.run_id].attempts == 3
    assert by_id[b.run_id].status == COMPLETED
    assert by_id[b.run_id].attempts == 1
    assert by_id[a.run_id].updated >= by_id[a.run_id].created


def test_run_ids_are_unique_and_shaped(store: SQLiteStore) -> None:
    ids = [store.begin_run("/g.yaml", "g").run_id for _ in range(20)]
    assert len(set(ids)) == 20
    for run_id in ids:
        date, clock, suffix = run_id.split("-")
        assert len(date) == 8 and date.isdigit()
        assert len(clock) == 6 and clock.isdigit()
        assert len(suffix) == 6 and all(c in "0123456789abcdef" for c in suffix)


def test_newest_run_is_the_graphs_newest_whatever_its_status(store: SQLiteStore) -> None:
    assert store.newest_run("/g.yaml") is None
    first = store.begin_run("/g.yaml", "g")
    other = store.begin_run("/other.yaml", "other")
    assert store.newest_run("/g.yaml") == first
    assert store.newest_run("/other.yaml") == other

    for status in (ABANDONED, COMPLETED, STOPPED, FAILED):
        store.finish_run(first.run_id, status)
        newest = store.newest_run("/g.yaml")
        assert newest is not None and newest.run_id == first.run_id and newest.status == status
    second = store.begin_run("/g.yaml", "g")
    assert store.newest_run("/g.yaml") == second
    assert store.newest_run("/other.yaml") == other  # the other graph's run is untouched
    assert store.newest_run("/unknown.yaml") is None


def test_reopen_run_continues_the_same_run(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"1"})
    store.finish_run(run.run_id, STOPPED)
    again = store.reopen_run(run.run_id)
    assert again.run_id == run.run_id
    assert again.status == RUNNING
    assert again.attempts == 2
    assert again.last_epoch == E1
    assert store.newest_run("/g.yaml") == again


def test_runs_survive_reopening(path: Path) -> None:
    s = SQLiteStore(path)
    run = s.begin_run("/g.yaml", "g")
    complete(s, run.run_id, E1, {"gen": b"\x00\x01", "sink": b"abc"})
    s.close()
    again = SQLiteStore(path, create=False)
    try:
        assert [r.run_id for r in again.runs()] == [run.run_id]
        point = again.restore_point(run.run_id)
        assert point is not None and point.epoch.epoch == E1
        assert point.states == {"gen": b"\x00\x01", "sink": b"abc"}
    finally:
        again.close()


# --------------------------------------------------------------------------------------
# states and epochs
# --------------------------------------------------------------------------------------

def test_save_complete_and_restore_round_trip(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    assert store.restore_point(run.run_id) is None
    gen_state = bytes(range(256)) * 3
    sink_state = b""  # empty bytes are a valid state
    store.save_state(run.run_id, E1, "gen", gen_state)
    store.save_state(run.run_id, E1, "sink", sink_state)
    store.complete_epoch(run.run_id, E1, 123.5, ["gen", "sink"])

    point = store.restore_point(run.run_id)
    assert point is not None
    assert point.notes == []
    record = point.epoch
    assert record.run_id == run.run_id
    assert record.epoch == E1
    assert record.started == 123.5
    assert record.completed >= record.started
    assert point.states == {"gen": gen_state, "sink": sink_state}
    assert all(type(v) is bytes for v in point.states.values())
    assert record.total_bytes == len(gen_state)
    assert record.operator_bytes == {"gen": len(gen_state), "sink": 0}

    [listed] = store.epochs(run.run_id)
    assert listed.epoch == E1
    assert listed.operator_bytes == {"gen": 768, "sink": 0}
    assert listed.total_bytes == 768
    # the run record names its newest complete epoch; the completion record holds digest and checksums
    assert store.newest_run("/g.yaml").last_epoch == E1  # type: ignore[union-attr]
    for table in EPOCH_TABLES:
        [(sums, digest)] = fetch(store.path, f"SELECT checksums, digest FROM {table}")
        assert json.loads(sums) == {"gen": checksum(gen_state), "sink": checksum(sink_state)}
        assert digest == epoch_digest(json.loads(sums))
    for table in STATE_TABLES:
        assert state_copy_verifies(store.path, table, run.run_id, E1, "gen")


def test_save_state_twice_keeps_the_last_bytes(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"first")
    store.save_state(run.run_id, E1, "gen", b"second")
    store.complete_epoch(run.run_id, E1, 0.0, ["gen"])
    assert store.restore_point(run.run_id).states == {"gen": b"second"}  # type: ignore[union-attr]
    for table in STATE_TABLES:
        assert state_copy(store.path, table, run.run_id, E1, "gen") == (checksum(b"second"), b"second")


def test_an_epoch_with_no_stateful_operator_completes(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.complete_epoch(run.run_id, E1, 0.0, [])
    point = store.restore_point(run.run_id)
    assert point is not None
    assert point.epoch.epoch == E1 and point.states == {} and point.epoch.total_bytes == 0


def test_complete_epoch_refuses_a_missing_state(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"g1", "sink": b"s1"})
    store.save_state(run.run_id, E2, "gen", b"g2")
    with pytest.raises(StoreError) as info:
        store.complete_epoch(run.run_id, E2, 0.0, ["gen", "sink", "writer"])
    assert str(info.value) == f"epoch {E2}: no state saved for sink, writer"
    # nothing was recorded for E2: E1 is still the restore point
    assert [e.epoch for e in store.epochs(run.run_id)] == [E1]
    point = store.restore_point(run.run_id)
    assert point is not None and point.epoch.epoch == E1 and point.states == {"gen": b"g1", "sink": b"s1"}
    assert store.newest_run("/g.yaml").last_epoch == E1  # type: ignore[union-attr]
    for table in EPOCH_TABLES:
        assert fetch(store.path, f"SELECT count(*) FROM {table} WHERE epoch = ?", (E2,)) == [(0,)]


def test_states_of_an_uncompleted_epoch_are_never_returned(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"old-gen", "sink": b"old-sink"})
    # E2 persisted every state but its completion record was never written (a crash)
    store.save_state(run.run_id, E2, "gen", b"new-gen")
    store.save_state(run.run_id, E2, "sink", b"new-sink")
    point = store.restore_point(run.run_id)
    assert point is not None
    assert point.epoch.epoch == E1
    assert point.states == {"gen": b"old-gen", "sink": b"old-sink"}
    assert point.notes == []
    assert [e.epoch for e in store.epochs(run.run_id)] == [E1]


def test_states_of_an_uncompleted_epoch_only_in_a_run_without_complete_epochs(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"partial")
    assert store.restore_point(run.run_id) is None
    assert store.epochs(run.run_id) == []


def test_runs_do_not_see_each_others_states(store: SQLiteStore) -> None:
    a = store.begin_run("/a.yaml", "a")
    b = store.begin_run("/b.yaml", "b")
    complete(store, a.run_id, E1, {"gen": b"a-state"})
    complete(store, b.run_id, E2, {"gen": b"b-state"})
    store.save_state(b.run_id, E3, "gen", b"b-partial")
    point_a = store.restore_point(a.run_id)
    point_b = store.restore_point(b.run_id)
    assert point_a is not None and point_a.epoch.epoch == E1 and point_a.states == {"gen": b"a-state"}
    assert point_b is not None and point_b.epoch.epoch == E2 and point_b.states == {"gen": b"b-state"}
    assert [e.epoch for e in store.epochs(a.run_id)] == [E1]


def test_pruning_keeps_the_newest_three_complete_epochs(store: SQLiteStore) -> None:
    assert DEFAULT_KEEP == 3
    assert store.keep == DEFAULT_KEEP
    run = store.begin_run("/g.yaml", "g")
    other = store.begin_run("/other.yaml", "other")
    complete(store, other.run_id, E1, {"gen": b"other"})
    epochs = [E1, E2, E3, E4, E5]
    for i, epoch in enumerate(epochs):
        complete(store, run.run_id, epoch, {"gen": f"g{i}".encode(), "sink": f"s{i}".encode()})
        expected = epochs[max(0, i - 2):i + 1]
        assert [e.epoch for e in store.epochs(run.run_id)] == expected
    for table in STATE_TABLES:
        rows = fetch(store.path, f"SELECT epoch, process FROM {table} WHERE run_id = ? ORDER BY epoch, process",
                     (run.run_id,))
        assert rows == [(E3, "gen"), (E3, "sink"), (E4, "gen"), (E4, "sink"), (E5, "gen"), (E5, "sink")], table
        # pruning is per run
        assert fetch(store.path, f"SELECT count(*) FROM {table} WHERE run_id = ?", (other.run_id,)) == [(1,)]
    for table in EPOCH_TABLES:
        rows = fetch(store.path, f"SELECT epoch FROM {table} WHERE run_id = ? ORDER BY epoch", (run.run_id,))
        assert rows == [(E3,), (E4,), (E5,)], table
    assert store.restore_point(run.run_id).states == {"gen": b"g4", "sink": b"s4"}  # type: ignore[union-attr]
    assert [e.epoch for e in store.epochs(other.run_id)] == [E1]


def test_pruning_drops_old_partial_states_and_keeps_newer_ones(store: SQLiteStore) -> None:
    e6, e7 = "2026-01-01T00:00:06.000Z", "2026-01-01T00:00:07.000Z"
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"never completed")  # older than anything kept
    for epoch in (E2, E3, E4, E5):
        complete(store, run.run_id, epoch, {"gen": epoch.encode()})
    store.save_state(run.run_id, e6, "gen", b"in flight")
    complete(store, run.run_id, e7, {"gen": b"7"})
    for table in STATE_TABLES:
        epochs_with_state = [e for (e,) in fetch(
            store.path, f"SELECT DISTINCT epoch FROM {table} WHERE run_id = ? ORDER BY epoch", (run.run_id,))]
        assert epochs_with_state == [E4, E5, e6, e7], table
    assert [e.epoch for e in store.epochs(run.run_id)] == [E4, E5, e7]


def test_keep_is_configurable(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db", keep=1)
    try:
        run = s.begin_run("/g.yaml", "g")
        for epoch in (E1, E2, E3):
            complete(s, run.run_id, epoch, {"gen": epoch.encode()})
        assert [e.epoch for e in s.epochs(run.run_id)] == [E3]
        assert fetch(s.path, "SELECT DISTINCT epoch FROM states_mirror") == [(E3,)]
    finally:
        s.close()


def test_delete_run(store: SQLiteStore) -> None:
    gone = store.begin_run("/g.yaml", "g")
    kept = store.begin_run("/h.yaml", "h")
    complete(store, gone.run_id, E1, {"gen": b"1"})
    complete(store, gone.run_id, E2, {"gen": b"2"})
    store.save_state(gone.run_id, E3, "gen", b"partial")
    complete(store, kept.run_id, E1, {"gen": b"kept"})

    assert store.delete_run(gone.run_id) is True
    assert [r.run_id for r in store.runs()] == [kept.run_id]
    assert store.epochs(gone.run_id) == []
    assert store.newest_run("/g.yaml") is None
    for table in (*STATE_TABLES, *EPOCH_TABLES, *RUN_TABLES):
        assert fetch(store.path, f"SELECT count(*) FROM {table} WHERE run_id = ?", (gone.run_id,)) == [(0,)], table
    with pytest.raises(StoreDamage):  # a deleted run is unknown, not silently empty
        store.restore_point(gone.run_id)
    assert store.restore_point(kept.run_id).states == {"gen": b"kept"}  # type: ignore[union-attr]

    assert store.delete_run(gone.run_id) is False
    assert store.delete_run("no-such-run") is False
    assert [r.run_id for r in store.runs()] == [kept.run_id]


# --------------------------------------------------------------------------------------
# mirrors: one damaged copy is healed from the other
# --------------------------------------------------------------------------------------

def assert_healed_newest(point, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert point is not None
    assert point.epoch.epoch == E3
    assert point.states == STATES[E3]
    assert any("healed" in note for note in point.notes), point.notes
    assert any(run_id in note for note in point.notes), point.notes


@pytest.mark.parametrize("how", ["flip", "delete", "forge"])
@pytest.mark.parametrize("table", STATE_TABLES)
def test_one_damaged_state_copy_is_healed(store: SQLiteStore, three_epochs: str, table: str, how: str) -> None:
    run_id = three_epochs
    damage_state(store.path, table, run_id, E3, "sink", how)
    if how != "forge":  # a forged copy matches its own row checksum: only the completion record tells
        assert not state_copy_verifies(store.path, table, run_id, E3, "sink")

    assert_healed_newest(store.restore_point(run_id), run_id)
    for copy in STATE_TABLES:
        assert state_copy(store.path, copy, run_id, E3, "sink") == (checksum(b"sink-3"), b"sink-3"), copy
    # healed for good: the next restore finds nothing to heal
    assert store.restore_point(run_id).notes == []  # type: ignore[union-attr]


def test_a_state_copy_turned_into_text_is_healed(store: SQLiteStore, three_epochs: str) -> None:
    """One flipped bit in a row's header turns the blob into text: that copy is damaged, nothing more."""
    run_id = three_epochs
    damage_state(store.path, "states", run_id, E3, "gen", "text")
    assert fetch(store.path, "SELECT typeof(data) FROM states WHERE epoch = ? AND process = 'gen'", (E3,)) == [("text",)]

    assert_healed_newest(store.restore_point(run_id), run_id)
    for copy in STATE_TABLES:
        assert state_copy_verifies(store.path, copy, run_id, E3, "gen"), copy


def test_heal_false_restores_without_writing(store: SQLiteStore, three_epochs: str) -> None:
    run_id = three_epochs
    damage_state(store.path, "states_mirror", run_id, E3, "gen")
    before = file_bytes(store.path)
    point = store.restore_point(run_id, heal=False)
    assert point is not None and point.epoch.epoch == E3 and point.states == STATES[E3]
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


@pytest.mark.parametrize("how", sorted(COMPLETION_DAMAGE))
@pytest.mark.parametrize("table", EPOCH_TABLES)
def test_one_damaged_completion_record_copy_is_healed(store: SQLiteStore, three_epochs: str, table: str,
                                                      how: str) -> None:
    run_id = three_epochs
    original = epoch_row(store.path, table, run_id, E3)
    assert original is not None and original == epoch_row(store.path, MIRROR[table], run_id, E3)
    assert execute(store.path, COMPLETION_DAMAGE[how].format(table=table), (run_id, E3)) == 1
    assert epoch_row(store.path, table, run_id, E3) != original

    assert_healed_newest(store.restore_point(run_id), run_id)
    for copy in EPOCH_TABLES:
        assert epoch_row(store.path, copy, run_id, E3) == original, copy
    assert store.restore_point(run_id).notes == []  # type: ignore[union-attr]


def test_a_completion_record_copy_with_a_garbled_epoch_is_healed(store: SQLiteStore, three_epochs: str) -> None:
    """A flipped digit in the epoch column of one copy: the run record still names E3 as the newest."""
    run_id = three_epochs
    garbled = E3.replace("03.000Z", "03.001Z")
    assert execute(store.path, "UPDATE epochs SET epoch = ? WHERE run_id = ? AND epoch = ?", (garbled, run_id, E3)) == 1
    assert epoch_row(store.path, "epochs", run_id, E3) is None

    assert_healed_newest(store.restore_point(run_id), run_id)
    assert epoch_row(store.path, "epochs", run_id, E3) == epoch_row(store.path, "epochs_mirror", run_id, E3)


RUN_DAMAGE = {
    "status": "UPDATE {table} SET status = 'completed' WHERE run_id = ?",
    "last_epoch": f"UPDATE {{table}} SET last_epoch = '{E1}' WHERE run_id = ?",
    "attempts": "UPDATE {table} SET attempts = 7 WHERE run_id = ?",
    "sum": "UPDATE {table} SET sum = 'x' WHERE run_id = ?",
    "delete": "DELETE FROM {table} WHERE run_id = ?",
}


@pytest.mark.parametrize("how", sorted(RUN_DAMAGE))
@pytest.mark.parametrize("table", RUN_TABLES)
def test_one_damaged_run_record_copy_is_read_from_the_other(store: SQLiteStore, three_epochs: str, table: str,
                                                            how: str) -> None:
    run_id = three_epochs
    before = store.newest_run("/g.yaml")
    original = run_row(store.path, table, run_id)
    assert execute(store.path, RUN_DAMAGE[how].format(table=table), (run_id,)) == 1
    assert run_row(store.path, table, run_id) != original

    assert store.newest_run("/g.yaml") == before
    assert store.runs() == [before]
    assert before is not None and before.last_epoch == E3 and before.status == RUNNING


@pytest.mark.parametrize("how", sorted(RUN_DAMAGE))
@pytest.mark.parametrize("table", RUN_TABLES)
def test_one_damaged_run_record_copy_is_healed(store: SQLiteStore, three_epochs: str, table: str, how: str) -> None:
    run_id = three_epochs
    original = run_row(store.path, table, run_id)
    assert original is not None and original == run_row(store.path, MIRROR[table], run_id)
    assert execute(store.path, RUN_DAMAGE[how].format(table=table), (run_id,)) == 1
    assert run_row(store.path, table, run_id) != original

    assert_healed_newest(store.restore_point(run_id), run_id)
    for copy in RUN_TABLES:
        assert run_row(store.path, copy, run_id) == original, copy


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
    assert point is not None and point.epoch.epoch == E3 and point.states == STATES[E3]


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


@pytest.mark.parametrize("damage", sorted(BOTH_COPIES))
def test_accept_older_restores_the_newest_older_intact_epoch(store: SQLiteStore, three_epochs: str,
                                                             damage: str) -> None:
    run_id = three_epochs
    BOTH_COPIES[damage](store.path, run_id)
    point = store.restore_point(run_id, accept_older=True)
    assert point is not None
    assert point.epoch.epoch == E2
    assert point.states == STATES[E2]
    [note] = point.notes
    assert "at-least-once" in note and E2 in note and E3 in note


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
    assert point is not None and point.epoch.epoch == E2 and point.states == STATES[E2]
    assert any("healed" in note for note in point.notes)
    assert state_copy_verifies(store.path, "states", run_id, E2, "gen")


def test_no_intact_epoch_at_all_is_refused_even_with_accept_older(store: SQLiteStore, three_epochs: str) -> None:
    run_id = three_epochs
    for table in EPOCH_TABLES:
        assert execute(store.path, f"UPDATE {table} SET digest = 'x' WHERE run_id = ?", (run_id,)) == 3
    for accept_older in (False, True):
        with pytest.raises(StoreDamage) as info:
            store.restore_point(run_id, accept_older=accept_older)
        message = str(info.value)
        assert all(f"epoch {e}: its completion record is damaged in both copies" in message for e in STATES)
        assert "--fresh" in message
        assert "--accept-older-epoch" not in message


def test_a_lost_run_record_is_damage(store: SQLiteStore, three_epochs: str) -> None:
    run_id = three_epochs
    for table in RUN_TABLES:
        assert execute(store.path, f"DELETE FROM {table} WHERE run_id = ?", (run_id,)) == 1
    assert fetch(store.path, "SELECT count(*) FROM epochs WHERE run_id = ?", (run_id,)) == [(3,)]
    with pytest.raises(StoreDamage) as info:
        store.newest_run("/g.yaml")
    assert "run record is lost" in str(info.value) and run_id in str(info.value)
    with pytest.raises(StoreDamage):
        store.restore_point(run_id)
    assert store.newest_run("/other.yaml") is None  # other graphs are not affected


def test_a_run_record_damaged_in_both_copies_is_damage(store: SQLiteStore, three_epochs: str) -> None:
    run_id = three_epochs
    for table in RUN_TABLES:
        assert execute(store.path, f"UPDATE {table} SET status = 'completed' WHERE run_id = ?", (run_id,)) == 1
    for call in (lambda: store.newest_run("/g.yaml"), store.runs, lambda: store.restore_point(run_id)):
        with pytest.raises(StoreDamage) as info:
            call()
        assert run_id in str(info.value)


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
        assert point is not None and point.epoch.epoch == E2 and point.states == STATES[E2]
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
        assert point is not None and point.epoch.epoch == E2 and point.states == STATES[E2]
        assert [e.epoch for e in again.epochs(run.run_id)] == [E1, E2]
    finally:
        again.close()


# --------------------------------------------------------------------------------------
# leases: one engine per graph
# --------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001  # every reading is a little later
            return self.now


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


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_held_lease_is_refused_naming_its_holder(store: SQLiteStore, second: SQLiteStore) -> None:
    lease = store.acquire_lease("/g.yaml")
    [(key, token, pid, host, host_id, proc_start, _, _)] = lease_rows(store.path)
    assert (key, token, pid, host, host_id) == ("/g.yaml", lease.token, os.getpid(), socket.gethostname(),
                                                this_host_id())
    assert proc_start == process_start(os.getpid()) != ""

    with pytest.raises(LeaseHeld) as info:
        second.acquire_lease("/g.yaml")
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(info.value)
    assert info.value.holder.token == lease.token and info.value.exit_code == 2
    assert [row[1] for row in lease_rows(store.path)] == [lease.token]  # the holder keeps it

    other = second.acquire_lease("/other.yaml")  # another graph's lease is independent
    assert {row[0] for row in lease_rows(store.path)} == {"/g.yaml", "/other.yaml"}
    other.release()
    lease.release()


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


def test_release_removes_the_lease(store: SQLiteStore, second: SQLiteStore) -> None:
    lease = store.acquire_lease("/g.yaml")
    assert store.lease_holder("/g.yaml") is not None
    lease.release()
    assert lease_rows(store.path) == []
    assert store.lease_holder("/g.yaml") is None
    taken = second.acquire_lease("/g.yaml")  # free for the next engine
    assert [row[1] for row in lease_rows(store.path)] == [taken.token]
    taken.release()


def test_a_lease_of_a_dead_process_is_taken_over(store: SQLiteStore) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = process_start(child.pid)
        assert start != ""
        write_lease(store.path, "/g.yaml", pid=child.pid, host=socket.gethostname(), host_id=this_host_id(),
                    proc_start=start, heartbeat=time.time())
        with pytest.raises(LeaseHeld) as info:  # alive: refused
            store.acquire_lease("/g.yaml")
        assert f"pid {child.pid}" in str(info.value)
    finally:
        child.kill()
        child.wait()
    assert process_start(child.pid) == ""  # the holder is gone now

    lease = store.acquire_lease("/g.yaml")
    [row] = lease_rows(store.path)
    assert row[1] == lease.token and row[2] == os.getpid()
    lease.release()


def test_a_lease_of_a_reused_pid_is_taken_over(store: SQLiteStore) -> None:
    """Our own pid, but another start time: the pid was reused, the holder is dead."""
    write_lease(store.path, "/g.yaml", pid=os.getpid(), host=socket.gethostname(), host_id=this_host_id(),
                proc_start="1", heartbeat=time.time())
    assert process_start(os.getpid()) != "1"
    lease = store.acquire_lease("/g.yaml")
    assert lease_rows(store.path)[0][1] == lease.token
    lease.release()


def test_a_lease_from_another_host_is_taken_over_only_without_heartbeat(second: SQLiteStore,
                                                                        clock: FakeClock) -> None:
    path = second.path
    write_lease(path, "/g.yaml", pid=os.getpid(), heartbeat=clock.now - 1.0)  # another host: our pid means nothing
    with pytest.raises(LeaseHeld) as info:
        second.acquire_lease("/g.yaml")
    assert info.value.holder.host == "elsewhere" and "on host elsewhere" in str(info.value)
    assert lease_rows(path)[0][1] == "their-token"

    clock.now += LEASE_TTL  # no heartbeat for longer than the TTL: the holder counts as dead
    lease = second.acquire_lease("/g.yaml")
    [row] = lease_rows(path)
    assert row[1] == lease.token and row[3] == socket.gethostname() and row[7] >= clock.now - 1.0
    lease.release()


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


@pytest.mark.parametrize("call", sorted(FENCED_WRITES))
@pytest.mark.parametrize("takeover", ["token rewritten", "taken over by another engine"])
def test_writes_after_the_lease_was_taken_over_are_refused(store: SQLiteStore, second: SQLiteStore,
                                                           clock: FakeClock, call: str, takeover: str) -> None:
    lease = store.acquire_lease("/g.yaml")
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"1")
    if takeover == "token rewritten":
        assert execute(store.path, "UPDATE leases SET token = 'stolen', pid = 4242, host = 'elsewhere'") == 1
        thief = "pid 4242 on host elsewhere"
    else:  # our lease looks like a dead holder on another host; the second engine takes it
        assert execute(store.path, "UPDATE leases SET host_id = 'elsewhere/x/y', heartbeat = 0") == 1
        second.acquire_lease("/g.yaml")
        thief = f"pid {os.getpid()} on host {socket.gethostname()}"
    before = all_rows(store.path)

    with pytest.raises(LeaseLost) as info:
        FENCED_WRITES[call](store, run.run_id)
    assert "lost its lease" in str(info.value) and thief in str(info.value)
    assert all_rows(store.path) == before
    lease.release()  # does not remove the new holder's lease
    assert all_rows(store.path)["leases"] == before["leases"]


def test_keep_alive_renews_the_heartbeat(path: Path, clock: FakeClock) -> None:
    s = SQLiteStore(path, clock=clock)
    try:
        lease = s.acquire_lease("/g.yaml")
        [first] = [row[7] for row in lease_rows(path)]
        lost: list[LeaseLost] = []
        lease.keep_alive(lost.append, period=0.01)
        assert wait_until(lambda: lease_rows(path)[0][7] > first)
        lease.release()
        assert lost == [] and lease_rows(path) == []
    finally:
        s.close()


def test_keep_alive_reports_a_lost_lease(store: SQLiteStore) -> None:
    lease = store.acquire_lease("/g.yaml")
    lost: list[LeaseLost] = []
    lease.keep_alive(lost.append, period=0.01)
    assert execute(store.path, "UPDATE leases SET token = 'stolen'") == 1
    assert wait_until(lambda: bool(lost))
    assert isinstance(lost[0], LeaseLost) and lease.lost is lost[0]
    lease.release()
    assert [row[1] for row in lease_rows(store.path)] == ["stolen"]


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
                assert point.epoch.epoch == expected[0]
                assert point.states == expected[1]
                assert point.epoch.operator_bytes == {k: len(v) for k, v in expected[1].items()}
                assert any("healed" in note for note in point.notes) == needs_heal, point.notes
                assert _all_copies_intact(conn, run.run_id, expected[0], sorted(expected[1]))
                listed = [e.epoch for e in store.epochs(run.run_id)]
                assert listed[-DEFAULT_KEEP:] == completed[-DEFAULT_KEEP:]
                assert set(listed) <= set(completed)
        finally:
            conn.close()
            store.close()
