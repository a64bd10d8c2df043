"""plan_run: which run an engine continues, or whether it may start a new one (the table in runs.py).

============  ==============================  ======================================
newest run    ``run`` (no flag)               ``--resume``
============  ==============================  ======================================
none          a new run                       refused: nothing to resume
completed     a new run                       continues it from its newest epoch
abandoned     a new run                       continues it from its newest epoch
running,      refused, naming                 continues it from its newest epoch
stopped,      ``--resume`` and ``--fresh``
failed
============  ==============================  ======================================

``--fresh`` abandons a run that needs a decision and starts a new one; with ``--resume`` it is refused.
Every refusal writes nothing: the store file (main and -wal) is byte for byte what it was.
``check_run`` makes plan_run's decision without writing anything, ever.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapgraph.snapshot.runs import RunRefused, check_run, plan_run
from snapgraph.snapshot.store import (
    ABANDONED,
    COMPLETED,
    FAILED,
    NEEDS_DECISION,
    RUNNING,
    STATE_TABLES,
    STOPPED,
    RunRecord,
    SQLiteStore,
    StoreDamage,
)

KEY = "/graphs/g.yaml"
E1 = "2026-01-01T00:00:01.000Z"
E2 = "2026-01-01T00:00:02.000Z"
STATES = {E1: {"gen": b"gen-1", "sink": b"sink-1"}, E2: {"gen": b"gen-2", "sink": b"sink-2"}}

FINISHED = [COMPLETED, ABANDONED]  # a plain run starts a new run after these
UNDECIDED = [RUNNING, STOPPED, FAILED]  # a plain run is refused after these
ALL_STATUSES = FINISHED + UNDECIDED


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "snapshots.db")
    yield s
    s.close()


def plan(store: SQLiteStore, **flags: bool):  # type: ignore[no-untyped-def]
    return plan_run(store, KEY, "g", "g.yaml", **flags)


def newest_with_status(store: SQLiteStore, status: str, *, epochs: bool = True) -> RunRecord:
    """The graph's newest run, ended with ``status``, with the complete epochs E1 and E2."""
    run = store.begin_run(KEY, "g")
    if epochs:
        for epoch, states in STATES.items():
            for name, data in states.items():
                store.save_state(run.run_id, epoch, name, data)
            store.complete_epoch(run.run_id, epoch, 0.0, sorted(states))
    if status != RUNNING:
        store.finish_run(run.run_id, status)
    newest = store.newest_run(KEY)
    assert newest is not None and newest.run_id == run.run_id and newest.status == status
    return newest


def file_bytes(path: Path) -> tuple[bytes, bytes | None]:
    """The main file and its -wal file: any write (durable or not) changes one of them."""
    wal = Path(f"{path}-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else None


def assert_new_run(store: SQLiteStore, result, runs_before: int) -> None:  # type: ignore[no-untyped-def]
    assert result.resumed is False
    assert result.restore is None
    assert result.run.status == RUNNING and result.run.attempts == 1 and result.run.last_epoch is None
    assert result.run.graph_key == KEY and result.run.graph_name == "g"
    assert store.newest_run(KEY) == result.run
    assert len(store.runs()) == runs_before + 1


def test_the_needs_decision_set_is_the_tables() -> None:
    assert NEEDS_DECISION == frozenset(UNDECIDED)


# --------------------------------------------------------------------------------------
# no run yet
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fresh", [False, True])
def test_no_run_yet_starts_a_new_run(store: SQLiteStore, fresh: bool) -> None:
    assert_new_run(store, plan(store, fresh=fresh), 0)


def test_resume_without_a_run_is_refused_and_writes_nothing(store: SQLiteStore) -> None:
    store.begin_run("/graphs/other.yaml", "other")  # another graph's run is no run of this graph
    before = file_bytes(store.path)
    with pytest.raises(RunRefused) as info:
        plan(store, resume=True)
    assert "g.yaml" in str(info.value) and "no run" in str(info.value) and str(store.path) in str(info.value)
    assert file_bytes(store.path) == before


# --------------------------------------------------------------------------------------
# plain run and --fresh
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("status", FINISHED)
def test_after_a_finished_run_a_new_run_starts(store: SQLiteStore, status: str, fresh: bool) -> None:
    old = newest_with_status(store, status)
    result = plan(store, fresh=fresh)
    assert_new_run(store, result, 1)
    assert result.run.run_id != old.run_id
    assert {r.run_id: r for r in store.runs()}[old.run_id] == old  # left exactly as it was


@pytest.mark.parametrize("epochs", [True, False])
@pytest.mark.parametrize("status", UNDECIDED)
def test_a_run_that_needs_a_decision_is_refused_and_nothing_written(store: SQLiteStore, status: str,
                                                                     epochs: bool) -> None:
    old = newest_with_status(store, status, epochs=epochs)
    before = file_bytes(store.path)
    with pytest.raises(RunRefused) as info:
        plan(store)
    message = str(info.value)
    assert old.run_id in message and "g.yaml" in message
    assert "--resume" in message and "--fresh" in message
    assert ("an unfinished run" if status == RUNNING else f"a {status} run") in message
    assert (f"its last complete epoch is {E2}" if epochs else "it has no complete epoch yet") in message
    assert file_bytes(store.path) == before
    assert store.newest_run(KEY) == old


@pytest.mark.parametrize("status", UNDECIDED)
def test_fresh_abandons_a_run_that_needs_a_decision_and_starts_a_new_one(store: SQLiteStore, status: str) -> None:
    old = newest_with_status(store, status)
    result = plan(store, fresh=True)
    assert_new_run(store, result, 1)
    assert result.run.run_id != old.run_id
    abandoned = {r.run_id: r for r in store.runs()}[old.run_id]
    assert abandoned.status == ABANDONED
    assert abandoned.attempts == old.attempts and abandoned.last_epoch == E2
    # and the next plain run is refused for the new, unfinished run (not for the abandoned one)
    with pytest.raises(RunRefused) as info:
        plan(store)
    assert result.run.run_id in str(info.value) and old.run_id not in str(info.value)


def test_another_graphs_unfinished_run_does_not_matter(store: SQLiteStore) -> None:
    other = store.begin_run("/graphs/other.yaml", "other")
    result = plan(store)
    assert_new_run(store, result, 1)
    assert store.newest_run("/graphs/other.yaml") == other


# --------------------------------------------------------------------------------------
# --resume
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ALL_STATUSES)
def test_resume_continues_the_newest_run_from_its_newest_epoch(store: SQLiteStore, status: str) -> None:
    old = newest_with_status(store, status)
    result = plan(store, resume=True)
    assert result.resumed is True
    assert result.run.run_id == old.run_id
    assert result.run.status == RUNNING
    assert result.run.attempts == old.attempts + 1
    assert result.run.last_epoch == E2
    assert result.restore is not None
    assert result.restore.epoch == E2 and result.restore.states == STATES[E2]
    assert result.notes == [f"resuming run {old.run_id} ({status}) from epoch {E2} (state of 2 operators)"]
    assert store.newest_run(KEY) == result.run  # recorded, not only returned
    assert len(store.runs()) == 1


def test_resume_twice_counts_attempts(store: SQLiteStore) -> None:
    old = newest_with_status(store, STOPPED)
    plan(store, resume=True)
    store.finish_run(old.run_id, STOPPED)
    again = plan(store, resume=True)
    assert again.run.run_id == old.run_id and again.run.attempts == old.attempts + 2


def test_resume_of_a_run_without_a_complete_epoch_starts_it_from_the_beginning(store: SQLiteStore) -> None:
    old = newest_with_status(store, FAILED, epochs=False)
    result = plan(store, resume=True)
    assert result.resumed is True and result.run.run_id == old.run_id and result.restore is None
    assert result.run.status == RUNNING and result.run.attempts == 2
    assert result.notes == [f"resuming run {old.run_id} (failed) from the start (it has no complete epoch)"]


def damage_newest_epoch_in_both_copies(path: Path, run_id: str) -> None:
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        for table in STATE_TABLES:
            changed = conn.execute(f"UPDATE {table} SET data = x'00' WHERE run_id = ? AND epoch = ? AND process = "
                                   "'sink'", (run_id, E2)).rowcount
            assert changed == 1
            [(data,)] = conn.execute(f"SELECT data FROM {table} WHERE run_id = ? AND epoch = ? AND process = 'sink'",
                                     (run_id, E2)).fetchall()
            assert data != STATES[E2]["sink"]
    finally:
        conn.close()


def test_resume_with_a_damaged_newest_epoch_is_refused_and_nothing_written(store: SQLiteStore) -> None:
    old = newest_with_status(store, FAILED)
    damage_newest_epoch_in_both_copies(store.path, old.run_id)
    before = file_bytes(store.path)
    with pytest.raises(StoreDamage) as info:
        plan(store, resume=True)
    assert E2 in str(info.value) and "'sink'" in str(info.value) and "--accept-older-epoch" in str(info.value)
    assert file_bytes(store.path) == before
    assert store.newest_run(KEY) == old  # not reopened: status and attempts as they were


def test_resume_accepting_an_older_epoch(store: SQLiteStore) -> None:
    old = newest_with_status(store, FAILED)
    damage_newest_epoch_in_both_copies(store.path, old.run_id)
    result = plan(store, resume=True, accept_older=True)
    assert result.resumed is True and result.run.run_id == old.run_id and result.run.attempts == old.attempts + 1
    assert result.restore is not None
    assert result.restore.epoch == E1 and result.restore.states == STATES[E1]
    older, resuming = result.notes
    assert "at-least-once" in older and E1 in older
    assert resuming == f"resuming run {old.run_id} (failed) from epoch {E1} (state of 2 operators)"


def test_resume_heals_one_damaged_copy_and_says_so(store: SQLiteStore) -> None:
    old = newest_with_status(store, STOPPED)
    conn = sqlite3.connect(str(store.path), isolation_level=None)
    try:
        assert conn.execute("DELETE FROM states WHERE run_id = ? AND epoch = ? AND process = 'gen'",
                            (old.run_id, E2)).rowcount == 1
    finally:
        conn.close()
    result = plan(store, resume=True)
    assert result.restore is not None and result.restore.states == STATES[E2]
    assert any("healed" in note for note in result.notes)
    assert result.notes[-1] == f"resuming run {old.run_id} (stopped) from epoch {E2} (state of 2 operators)"


# --------------------------------------------------------------------------------------
# --resume with --fresh
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [None, *ALL_STATUSES])
def test_resume_and_fresh_exclude_each_other(store: SQLiteStore, status: str | None) -> None:
    if status is not None:
        newest_with_status(store, status)
    before = file_bytes(store.path)
    with pytest.raises(RunRefused) as info:
        plan(store, resume=True, fresh=True)
    assert "--resume and --fresh exclude each other" in str(info.value)
    assert file_bytes(store.path) == before


# --------------------------------------------------------------------------------------
# check_run: plan_run's decision, reading only
# --------------------------------------------------------------------------------------

FLAGS = {"no flag": {}, "--resume": {"resume": True}, "--fresh": {"fresh": True},
         "--resume --fresh": {"resume": True, "fresh": True}}


def outcome(call) -> tuple[type, str] | None:  # type: ignore[no-untyped-def]
    try:
        call()
    except (RunRefused, StoreDamage) as refused:
        return type(refused), str(refused)
    return None


@pytest.mark.parametrize("flags", sorted(FLAGS))
@pytest.mark.parametrize("status", [None, *ALL_STATUSES])
def test_check_run_decides_as_plan_run_does_and_writes_nothing(store: SQLiteStore, status: str | None,
                                                               flags: str) -> None:
    if status is not None:
        newest_with_status(store, status)
    before = file_bytes(store.path)
    checked = outcome(lambda: check_run(store, KEY, "g.yaml", **FLAGS[flags]))
    assert file_bytes(store.path) == before
    refused = (flags == "--resume --fresh" or (flags == "--resume" and status is None)
               or (flags == "no flag" and status in UNDECIDED))
    assert (checked is not None) == refused
    assert outcome(lambda: plan(store, **FLAGS[flags])) == checked


def test_check_run_neither_heals_nor_refuses_one_damaged_copy(store: SQLiteStore) -> None:
    old = newest_with_status(store, FAILED)
    conn = sqlite3.connect(str(store.path), isolation_level=None)
    try:
        assert conn.execute("DELETE FROM states_mirror WHERE run_id = ? AND epoch = ? AND process = 'sink'",
                            (old.run_id, E2)).rowcount == 1
    finally:
        conn.close()
    before = file_bytes(store.path)
    check_run(store, KEY, "g.yaml", resume=True)
    assert file_bytes(store.path) == before


def test_check_run_refuses_a_damaged_newest_epoch_as_plan_run_does(store: SQLiteStore) -> None:
    old = newest_with_status(store, STOPPED)
    damage_newest_epoch_in_both_copies(store.path, old.run_id)
    before = file_bytes(store.path)
    checked = outcome(lambda: check_run(store, KEY, "g.yaml", resume=True))
    assert checked is not None and checked[0] is StoreDamage
    assert outcome(lambda: plan(store, resume=True)) == checked
    assert file_bytes(store.path) == before
    check_run(store, KEY, "g.yaml", resume=True, accept_older=True)  # accepted: no refusal, still no write
    assert file_bytes(store.path) == before
