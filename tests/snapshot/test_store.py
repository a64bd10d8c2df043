"""SQLiteStore on real SQLite files: runs, epochs, state bytes, pruning, damage detection."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapgraph.snapshot.protocol import EpochClock
from snapgraph.snapshot.store import (
    ABANDONED,
    COMPLETED,
    DEFAULT_KEEP,
    FAILED,
    RUNNING,
    SQLiteStore,
    StoreError,
    checksum,
    epoch_digest,
)

E1 = "2026-01-01T00:00:01.000Z"
E2 = "2026-01-01T00:00:02.000Z"
E3 = "2026-01-01T00:00:03.000Z"
E4 = "2026-01-01T00:00:04.000Z"
E5 = "2026-01-01T00:00:05.000Z"


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "snap" / "snapshots.db")
    yield s
    s.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the store file (to look at or damage rows directly)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def complete(store: SQLiteStore, run_id: str, epoch: str, states: dict[str, bytes]) -> None:
    for name, data in states.items():
        store.save_state(run_id, epoch, name, data)
    store.complete_epoch(run_id, epoch, 100.0, sorted(states))


# --------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------

def test_store_file_and_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "snapshots.db"
    s = SQLiteStore(path)
    try:
        assert path.is_file()
        assert s.runs() == []
        assert s.damage == []
    finally:
        s.close()


def test_begin_and_finish_runs(store: SQLiteStore) -> None:
    a = store.begin_run("/g/a.yaml", "a")
    b = store.begin_run("/g/b.yaml", "b")
    assert a.run_id != b.run_id
    assert a.status == RUNNING and a.attempts == 1 and a.graph_key == "/g/a.yaml" and a.graph_name == "a"
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


def test_unfinished_run(store: SQLiteStore) -> None:
    assert store.unfinished_run("/g.yaml") is None
    first = store.begin_run("/g.yaml", "g")
    other = store.begin_run("/other.yaml", "other")
    found = store.unfinished_run("/g.yaml")
    assert found is not None and found.run_id == first.run_id and found.status == RUNNING
    assert store.unfinished_run("/other.yaml").run_id == other.run_id  # type: ignore[union-attr]

    store.finish_run(first.run_id, ABANDONED)
    assert store.unfinished_run("/g.yaml") is None
    second = store.begin_run("/g.yaml", "g")
    assert store.unfinished_run("/g.yaml").run_id == second.run_id  # type: ignore[union-attr]
    store.finish_run(second.run_id, COMPLETED)
    assert store.unfinished_run("/g.yaml") is None
    # the other graph's run is untouched
    assert store.unfinished_run("/other.yaml").run_id == other.run_id  # type: ignore[union-attr]


def test_runs_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    run = s.begin_run("/g.yaml", "g")
    complete(s, run.run_id, E1, {"gen": b"\x00\x01", "sink": b"abc"})
    s.close()
    again = SQLiteStore(path)
    try:
        assert [r.run_id for r in again.runs()] == [run.run_id]
        latest = again.latest_intact_epoch(run.run_id)
        assert latest is not None
        assert latest[1] == {"gen": b"\x00\x01", "sink": b"abc"}
    finally:
        again.close()


# --------------------------------------------------------------------------------------
# states and epochs
# --------------------------------------------------------------------------------------

def test_save_complete_and_restore_round_trip(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    assert store.latest_intact_epoch(run.run_id) is None
    gen_state = bytes(range(256)) * 3
    sink_state = b""  # empty bytes are a valid state
    store.save_state(run.run_id, E1, "gen", gen_state)
    store.save_state(run.run_id, E1, "sink", sink_state)
    store.complete_epoch(run.run_id, E1, 123.5, ["gen", "sink"])

    latest = store.latest_intact_epoch(run.run_id)
    assert latest is not None
    record, states = latest
    assert record.run_id == run.run_id
    assert record.epoch == E1
    assert record.started == 123.5
    assert record.completed >= record.started
    assert states == {"gen": gen_state, "sink": sink_state}
    assert all(type(v) is bytes for v in states.values())
    assert record.total_bytes == len(gen_state)
    assert record.operator_bytes == {"gen": len(gen_state), "sink": 0}
    assert store.damage == []

    [listed] = store.epochs(run.run_id)
    assert listed.epoch == E1
    assert listed.operator_bytes == {"gen": 768, "sink": 0}
    assert listed.total_bytes == 768


def test_save_state_twice_keeps_the_last_bytes(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"first")
    store.save_state(run.run_id, E1, "gen", b"second")
    store.complete_epoch(run.run_id, E1, 0.0, ["gen"])
    assert store.latest_intact_epoch(run.run_id)[1] == {"gen": b"second"}  # type: ignore[index]


def test_an_epoch_with_no_stateful_operator_completes(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.complete_epoch(run.run_id, E1, 0.0, [])
    record, states = store.latest_intact_epoch(run.run_id)  # type: ignore[misc]
    assert record.epoch == E1 and states == {} and record.total_bytes == 0


def test_complete_epoch_refuses_a_missing_state(store: SQLiteStore, tmp_path: Path) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"g1", "sink": b"s1"})
    store.save_state(run.run_id, E2, "gen", b"g2")
    with pytest.raises(StoreError) as info:
        store.complete_epoch(run.run_id, E2, 0.0, ["gen", "sink", "writer"])
    assert str(info.value) == f"epoch {E2}: no state saved for sink, writer"
    # nothing was recorded for E2: E1 is still the restore point
    assert [e.epoch for e in store.epochs(run.run_id)] == [E1]
    record, states = store.latest_intact_epoch(run.run_id)  # type: ignore[misc]
    assert record.epoch == E1 and states == {"gen": b"g1", "sink": b"s1"}
    with raw(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM epochs WHERE epoch = ?", (E2,)).fetchone() == (0,)


def test_states_of_an_uncompleted_epoch_are_never_returned(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"old-gen", "sink": b"old-sink"})
    # E2 persisted every state but its completion record was never written (a crash)
    store.save_state(run.run_id, E2, "gen", b"new-gen")
    store.save_state(run.run_id, E2, "sink", b"new-sink")
    record, states = store.latest_intact_epoch(run.run_id)  # type: ignore[misc]
    assert record.epoch == E1
    assert states == {"gen": b"old-gen", "sink": b"old-sink"}
    assert [e.epoch for e in store.epochs(run.run_id)] == [E1]
    assert store.damage == []


def test_states_of_an_uncompleted_epoch_only_in_a_run_without_complete_epochs(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"partial")
    assert store.latest_intact_epoch(run.run_id) is None
    assert store.epochs(run.run_id) == []


def test_runs_do_not_see_each_others_states(store: SQLiteStore) -> None:
    a = store.begin_run("/a.yaml", "a")
    b = store.begin_run("/b.yaml", "b")
    complete(store, a.run_id, E1, {"gen": b"a-state"})
    complete(store, b.run_id, E2, {"gen": b"b-state"})
    assert store.latest_intact_epoch(a.run_id)[1] == {"gen": b"a-state"}  # type: ignore[index]
    assert store.latest_intact_epoch(b.run_id)[1] == {"gen": b"b-state"}  # type: ignore[index]
    assert store.latest_intact_epoch(a.run_id)[0].epoch == E1  # type: ignore[index]


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
    with raw(store.path) as conn:
        rows = conn.execute("SELECT epoch, process FROM states WHERE run_id = ? ORDER BY epoch, process",
                            (run.run_id,)).fetchall()
        assert rows == [(E3, "gen"), (E3, "sink"), (E4, "gen"), (E4, "sink"), (E5, "gen"), (E5, "sink")]
        # pruning is per run
        assert conn.execute("SELECT count(*) FROM states WHERE run_id = ?", (other.run_id,)).fetchone() == (1,)
    assert store.latest_intact_epoch(run.run_id)[1] == {"gen": b"g4", "sink": b"s4"}  # type: ignore[index]
    assert [e.epoch for e in store.epochs(other.run_id)] == [E1]


def test_pruning_drops_old_partial_states_and_keeps_newer_ones(store: SQLiteStore) -> None:
    run = store.begin_run("/g.yaml", "g")
    store.save_state(run.run_id, E1, "gen", b"never completed")  # older than anything kept
    for epoch in (E2, E3, E4, E5):
        complete(store, run.run_id, epoch, {"gen": epoch.encode()})
    store.save_state(run.run_id, "2026-01-01T00:00:06.000Z", "gen", b"in flight")
    complete(store, run.run_id, "2026-01-01T00:00:07.000Z", {"gen": b"7"})
    with raw(store.path) as conn:
        epochs_with_state = [e for (e,) in conn.execute(
            "SELECT DISTINCT epoch FROM states WHERE run_id = ? ORDER BY epoch", (run.run_id,))]
    assert epochs_with_state == [E4, E5, "2026-01-01T00:00:06.000Z", "2026-01-01T00:00:07.000Z"]
    assert [e.epoch for e in store.epochs(run.run_id)] == [E4, E5, "2026-01-01T00:00:07.000Z"]


def test_keep_is_configurable(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db", keep=1)
    try:
        run = s.begin_run("/g.yaml", "g")
        for epoch in (E1, E2, E3):
            complete(s, run.run_id, epoch, {"gen": epoch.encode()})
        assert [e.epoch for e in s.epochs(run.run_id)] == [E3]
    finally:
        s.close()


# --------------------------------------------------------------------------------------
# damage detection
# --------------------------------------------------------------------------------------

def three_epochs(store: SQLiteStore) -> str:
    run = store.begin_run("/g.yaml", "g")
    complete(store, run.run_id, E1, {"gen": b"gen-1", "sink": b"sink-1"})
    complete(store, run.run_id, E2, {"gen": b"gen-2", "sink": b"sink-2"})
    complete(store, run.run_id, E3, {"gen": b"gen-3", "sink": b"sink-3"})
    return run.run_id


def assert_falls_back_to_e2(store: SQLiteStore, run_id: str) -> None:
    latest = store.latest_intact_epoch(run_id)
    assert latest is not None
    record, states = latest
    assert record.epoch == E2
    assert states == {"gen": b"gen-2", "sink": b"sink-2"}
    assert len(store.damage) == 1
    assert E3 in store.damage[0]
    assert run_id in store.damage[0]
    assert "damaged" in store.damage[0]
    assert E2 not in store.damage[0]


def test_flipped_state_bytes_fall_back_to_the_previous_epoch(store: SQLiteStore) -> None:
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        (blob,) = conn.execute("SELECT data FROM states WHERE run_id = ? AND epoch = ? AND process = 'sink'",
                               (run_id, E3)).fetchone()
        flipped = bytes([blob[0] ^ 0xFF]) + blob[1:]
        assert flipped != blob and len(flipped) == len(blob)
        conn.execute("UPDATE states SET data = ? WHERE run_id = ? AND epoch = ? AND process = 'sink'",
                     (flipped, run_id, E3))
    assert_falls_back_to_e2(store, run_id)


def test_tampered_state_checksum_falls_back(store: SQLiteStore) -> None:
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        conn.execute("UPDATE states SET checksum = ? WHERE run_id = ? AND epoch = ? AND process = 'gen'",
                     (checksum(b"something else"), run_id, E3))
    assert_falls_back_to_e2(store, run_id)


def test_consistently_rewritten_state_is_caught_by_the_epoch_digest(store: SQLiteStore) -> None:
    """Data and its row checksum both replaced: only the completion record's digest can tell."""
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        conn.execute("UPDATE states SET data = ?, checksum = ? WHERE run_id = ? AND epoch = ? AND process = 'gen'",
                     (b"forged", checksum(b"forged"), run_id, E3))
    assert_falls_back_to_e2(store, run_id)


def test_tampered_epoch_digest_falls_back(store: SQLiteStore) -> None:
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        (digest,) = conn.execute("SELECT digest FROM epochs WHERE run_id = ? AND epoch = ?",
                                 (run_id, E3)).fetchone()
        assert digest == epoch_digest({"gen": checksum(b"gen-3"), "sink": checksum(b"sink-3")})
        conn.execute("UPDATE epochs SET digest = ? WHERE run_id = ? AND epoch = ?", ("0" * 64, run_id, E3))
    assert_falls_back_to_e2(store, run_id)


def test_missing_state_row_of_a_complete_epoch_falls_back(store: SQLiteStore) -> None:
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        conn.execute("DELETE FROM states WHERE run_id = ? AND epoch = ? AND process = 'sink'", (run_id, E3))
    assert_falls_back_to_e2(store, run_id)


def test_every_epoch_damaged_gives_none_and_names_each(store: SQLiteStore) -> None:
    run_id = three_epochs(store)
    with raw(store.path) as conn:
        conn.execute("UPDATE epochs SET digest = 'x' WHERE run_id = ?", (run_id,))
    assert store.latest_intact_epoch(run_id) is None
    assert len(store.damage) == 3
    assert [E3 in store.damage[0], E2 in store.damage[1], E1 in store.damage[2]] == [True, True, True]


def test_garbage_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is certainly not an SQLite database\n" * 200)
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    message = str(info.value)
    assert str(path) in message
    assert "unusable" in message
    assert "not a database" in message


def test_truncated_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.db"
    s = SQLiteStore(path)
    run = s.begin_run("/g.yaml", "g")
    for i in range(12):
        complete(s, run.run_id, f"2026-01-01T00:00:{i:02d}.000Z", {"gen": bytes([i]) * 3000})
    s.close()
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    message = str(info.value)
    assert str(path) in message
    assert "unusable" in message
    assert "malformed" in message


def test_a_directory_in_place_of_the_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.db"
    path.mkdir()
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------
# delete
# --------------------------------------------------------------------------------------

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
    assert store.latest_intact_epoch(gone.run_id) is None
    assert store.unfinished_run("/g.yaml") is None
    with raw(store.path) as conn:
        for table in ("states", "epochs", "runs"):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?",
                                (gone.run_id,)).fetchone() == (0,), table
    assert store.latest_intact_epoch(kept.run_id)[1] == {"gen": b"kept"}  # type: ignore[index]

    assert store.delete_run(gone.run_id) is False
    assert store.delete_run("no-such-run") is False
    assert [r.run_id for r in store.runs()] == [kept.run_id]


# --------------------------------------------------------------------------------------
# property: the newest completed epoch, with exactly its bytes
# --------------------------------------------------------------------------------------

PROCESSES = ("gen", "proc", "sink")

save_op = st.tuples(st.just("save"), st.sampled_from(PROCESSES), st.binary(max_size=64))
complete_op = st.tuples(st.just("complete"), st.just(""), st.just(b""))
ops_strategy = st.lists(st.one_of(save_op, save_op, complete_op), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_latest_intact_epoch_is_the_newest_completed_with_its_bytes(ops: list[tuple[str, str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "s.db")
        try:
            run = store.begin_run("/g.yaml", "g")
            clock = EpochClock()
            epoch = clock.next()
            pending: dict[str, bytes] = {}
            expected: tuple[str, dict[str, bytes]] | None = None
            completed: list[str] = []
            for kind, process, data in ops:
                if kind == "save":
                    store.save_state(run.run_id, epoch, process, data)
                    pending[process] = data
                else:
                    store.complete_epoch(run.run_id, epoch, 0.0, sorted(pending))
                    expected = (epoch, dict(pending))
                    completed.append(epoch)
                    epoch, pending = clock.next(), {}
                latest = store.latest_intact_epoch(run.run_id)
                if expected is None:
                    assert latest is None
                else:
                    assert latest is not None
                    record, states = latest
                    assert record.epoch == expected[0]
                    assert states == expected[1]
                    assert record.operator_bytes == {k: len(v) for k, v in expected[1].items()}
                assert [e.epoch for e in store.epochs(run.run_id)] == completed[-DEFAULT_KEEP:]
            assert store.damage == []
        finally:
            store.close()
