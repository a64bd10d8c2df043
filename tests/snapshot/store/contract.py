"""The store contract: what every :class:`SnapshotStore` backend must do, damage cases included.

A backend's test module subclasses :class:`StoreContract` and provides the
``under_test`` fixture: a :class:`StoreUnderTest` that opens store objects on
one location and reaches into the stored rows *around* the store, as a bad
disk or another program would, to damage them. Every damage helper returns how
many rows it changed and the tests assert that count, so no damage test can
pass because its damage did not happen.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from snapgraph.snapshot.store import (
    ABANDONED,
    COMPLETED,
    COPIES,
    DEFAULT_KEEP,
    FAILED,
    LEASE_TTL,
    RUNNING,
    STOPPED,
    LeaseHeld,
    LeaseLost,
    SnapshotStore,
    StoreDamage,
    StoreError,
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

Row = dict[str, Any]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001  # every reading is a little later
            return self.now


class StoreUnderTest(ABC):
    """One store location of a backend, and raw access to its rows (columns named as in the SQLite store).

    ``kind`` is ``runs``, ``states`` or ``epochs``; ``copy`` is ``primary`` or ``mirror``; a key is a
    dict of ``run_id``/``epoch``/``process``. A state row's ``data`` is None when it is not bytes.
    """

    @abstractmethod
    def open(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], float] | None = None) -> SnapshotStore:
        """A new store object on this location (another engine's view of the same store)."""

    @abstractmethod
    def rows(self, kind: str, copy: str, run_id: str | None = None) -> list[Row]: ...

    @abstractmethod
    def update(self, kind: str, copy: str, key: Row, **changes: Any) -> int:
        """Change columns of the rows matching ``key``; returns how many rows changed."""

    @abstractmethod
    def delete(self, kind: str, copy: str, key: Row) -> int: ...

    @abstractmethod
    def lease_rows(self) -> list[Row]: ...

    @abstractmethod
    def put_lease(self, row: Row) -> None: ...

    @abstractmethod
    def update_leases(self, **changes: Any) -> int: ...

    @abstractmethod
    def everything(self) -> object:
        """Every stored row: equal before and after an operation exactly when it wrote nothing."""

    def row(self, kind: str, copy: str, key: Row) -> Row | None:
        found = [r for r in self.rows(kind, copy, key["run_id"]) if all(r[k] == v for k, v in key.items())]
        return found[0] if found else None

    def state_verifies(self, copy: str, run_id: str, epoch: str, process: str) -> bool:
        row = self.row("states", copy, {"run_id": run_id, "epoch": epoch, "process": process})
        return row is not None and row["data"] is not None and checksum(row["data"]) == row["checksum"]


def complete(store: SnapshotStore, run_id: str, epoch: str, states: dict[str, bytes]) -> None:
    for name, data in states.items():
        store.save_state(run_id, epoch, name, data)
    store.complete_epoch(run_id, epoch, 100.0, sorted(states))


def flip(blob: bytes) -> bytes:
    return bytes([blob[0] ^ 0xFF]) + blob[1:] if blob else b"\x00"


def other(copy: str) -> str:
    return COPIES[1 - COPIES.index(copy)]  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def assert_healed_newest(point: Any, run_id: str) -> None:
    assert point is not None
    assert point.epoch == E3
    assert point.states == STATES[E3]
    assert any("healed" in note for note in point.notes), point.notes
    assert any(run_id in note for note in point.notes), point.notes


COMPLETION_DAMAGE: dict[str, dict[str, Any]] = {
    "digest": {"digest": "0" * 64},
    "checksums": {"checksums": '{"gen": "' + "0" * 64 + '", "sink": "' + "0" * 64 + '"}'},
    "completed": {"completed": 12345.0},
    "graph_key": {"graph_key": "/elsewhere.yaml"},
    "not json": {"checksums": "not json"},
}
RUN_DAMAGE: dict[str, dict[str, Any]] = {
    "status": {"status": "completed"},
    "last_epoch": {"last_epoch": E1},
    "attempts": {"attempts": 7},
    "sum": {"sum": "x"},
}


class StoreContract:
    """The tests every backend passes; a subclass provides the ``under_test`` fixture."""

    @pytest.fixture
    def under_test(self) -> Iterator[StoreUnderTest]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, under_test: StoreUnderTest) -> Iterator[SnapshotStore]:
        s = under_test.open()
        yield s
        s.close()

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def second(self, under_test: StoreUnderTest, store: SnapshotStore, clock: FakeClock) -> Iterator[SnapshotStore]:
        """Another engine's store object on the same location (its clock injected)."""
        s = under_test.open(clock=clock)
        yield s
        s.close()

    @pytest.fixture
    def three_epochs(self, store: SnapshotStore) -> str:
        """A run with the complete epochs E1, E2, E3 (STATES); returns its run id."""
        run = store.begin_run("/g.yaml", "g")
        for epoch, states in STATES.items():
            complete(store, run.run_id, epoch, states)
        return run.run_id

    # -- runs --------------------------------------------------------------------------------
    def test_begin_and_finish_runs(self, store: SnapshotStore) -> None:
        a = store.begin_run("/g/a.yaml", "a")
        b = store.begin_run("/g/b.yaml", "b")
        assert a.run_id != b.run_id
        assert a.status == RUNNING and a.attempts == 1 and a.graph_key == "/g/a.yaml" and a.graph_name == "a"
        assert a.last_epoch is None
        assert [r.run_id for r in store.runs()] == [a.run_id, b.run_id]
        store.note_attempt(a.run_id)
        store.note_attempt(a.run_id)
        store.finish_run(a.run_id, FAILED)
        store.finish_run(b.run_id, COMPLETED)
        by_id = {r.run_id: r for r in store.runs()}
        assert (by_id[a.run_id].status, by_id[a.run_id].attempts) == (FAILED, 3)
        assert (by_id[b.run_id].status, by_id[b.run_id].attempts) == (COMPLETED, 1)
        assert by_id[a.run_id].updated >= by_id[a.run_id].created

    def test_run_ids_are_unique_and_shaped(self, store: SnapshotStore) -> None:
        ids = [store.begin_run("/g.yaml", "g").run_id for _ in range(20)]
        assert len(set(ids)) == 20
        for run_id in ids:
            date, clock, suffix = run_id.split("-")
            assert len(date) == 8 and date.isdigit() and len(clock) == 6 and clock.isdigit()
            assert len(suffix) == 6 and all(c in "0123456789abcdef" for c in suffix)

    def test_newest_run_is_the_graphs_newest_whatever_its_status(self, store: SnapshotStore) -> None:
        assert store.newest_run("/g.yaml") is None
        first = store.begin_run("/g.yaml", "g")
        other_run = store.begin_run("/other.yaml", "other")
        assert store.newest_run("/g.yaml") == first
        for status in (ABANDONED, COMPLETED, STOPPED, FAILED):
            store.finish_run(first.run_id, status)
            newest = store.newest_run("/g.yaml")
            assert newest is not None and newest.run_id == first.run_id and newest.status == status
        second_run = store.begin_run("/g.yaml", "g")
        assert store.newest_run("/g.yaml") == second_run
        assert store.newest_run("/other.yaml") == other_run
        assert store.newest_run("/unknown.yaml") is None

    def test_reopen_run_continues_the_same_run(self, store: SnapshotStore) -> None:
        run = store.begin_run("/g.yaml", "g")
        complete(store, run.run_id, E1, {"gen": b"1"})
        store.finish_run(run.run_id, STOPPED)
        again = store.reopen_run(run.run_id)
        assert (again.run_id, again.status, again.attempts, again.last_epoch) == (run.run_id, RUNNING, 2, E1)
        assert store.newest_run("/g.yaml") == again

    def test_runs_survive_reopening(self, under_test: StoreUnderTest) -> None:
        s = under_test.open()
        run = s.begin_run("/g.yaml", "g")
        complete(s, run.run_id, E1, {"gen": b"\x00\x01", "sink": b"abc"})
        s.close()
        again = under_test.open()
        try:
            assert [r.run_id for r in again.runs()] == [run.run_id]
            point = again.restore_point(run.run_id)
            assert point is not None and point.epoch == E1
            assert point.states == {"gen": b"\x00\x01", "sink": b"abc"}
        finally:
            again.close()

    # -- states and epochs -------------------------------------------------------------------
    def test_save_complete_and_restore_round_trip(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        run = store.begin_run("/g.yaml", "g")
        assert store.restore_point(run.run_id) is None
        gen_state = bytes(range(256)) * 3
        store.save_state(run.run_id, E1, "gen", gen_state)
        store.save_state(run.run_id, E1, "sink", b"")  # empty bytes are a valid state
        store.complete_epoch(run.run_id, E1, 123.5, ["gen", "sink"])
        point = store.restore_point(run.run_id)
        assert point is not None and point.notes == []
        record = point.record
        assert record is not None and point.epoch == record.epoch
        assert (record.run_id, record.epoch, record.started) == (run.run_id, E1, 123.5)
        assert record.completed >= record.started
        assert point.states == {"gen": gen_state, "sink": b""}
        assert all(type(v) is bytes for v in point.states.values())
        assert record.operator_bytes == {"gen": 768, "sink": 0} and record.total_bytes == 768
        [listed] = store.epochs(run.run_id)
        assert (listed.epoch, listed.operator_bytes, listed.total_bytes) == (E1, {"gen": 768, "sink": 0}, 768)
        assert store.newest_run("/g.yaml").last_epoch == E1  # type: ignore[union-attr]
        import json
        for copy in COPIES:
            [row] = under_test.rows("epochs", copy, run.run_id)
            assert json.loads(row["checksums"]) == {"gen": checksum(gen_state), "sink": checksum(b"")}
            assert row["digest"] == epoch_digest(json.loads(row["checksums"]))
            assert under_test.state_verifies(copy, run.run_id, E1, "gen")

    def test_a_large_state_round_trips(self, store: SnapshotStore) -> None:
        run = store.begin_run("/g.yaml", "g")
        big = os.urandom(1 << 20) * 40  # 40 MiB: more than one chunk where a backend chunks
        store.save_state(run.run_id, E1, "gen", big)
        store.complete_epoch(run.run_id, E1, 0.0, ["gen"])
        point = store.restore_point(run.run_id)
        assert point is not None and point.states["gen"] == big
        assert store.epochs(run.run_id)[0].operator_bytes == {"gen": len(big)}

    def test_save_state_twice_keeps_the_last_bytes(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        run = store.begin_run("/g.yaml", "g")
        store.save_state(run.run_id, E1, "gen", b"first")
        store.save_state(run.run_id, E1, "gen", b"second")
        store.complete_epoch(run.run_id, E1, 0.0, ["gen"])
        assert store.restore_point(run.run_id).states == {"gen": b"second"}  # type: ignore[union-attr]
        for copy in COPIES:
            row = under_test.row("states", copy, {"run_id": run.run_id, "epoch": E1, "process": "gen"})
            assert row is not None and (row["checksum"], row["data"]) == (checksum(b"second"), b"second")

    def test_an_epoch_with_no_stateful_operator_completes(self, store: SnapshotStore) -> None:
        run = store.begin_run("/g.yaml", "g")
        store.complete_epoch(run.run_id, E1, 0.0, [])
        point = store.restore_point(run.run_id)
        assert point is not None and point.epoch == E1 and point.states == {} and point.record.total_bytes == 0

    def test_complete_epoch_refuses_a_missing_state(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        run = store.begin_run("/g.yaml", "g")
        complete(store, run.run_id, E1, {"gen": b"g1", "sink": b"s1"})
        store.save_state(run.run_id, E2, "gen", b"g2")
        with pytest.raises(StoreError) as info:
            store.complete_epoch(run.run_id, E2, 0.0, ["gen", "sink", "writer"])
        assert str(info.value) == f"epoch {E2}: no state saved for sink, writer"
        assert [e.epoch for e in store.epochs(run.run_id)] == [E1]
        point = store.restore_point(run.run_id)
        assert point is not None and point.epoch == E1
        assert store.newest_run("/g.yaml").last_epoch == E1  # type: ignore[union-attr]
        for copy in COPIES:
            assert [r["epoch"] for r in under_test.rows("epochs", copy, run.run_id)] == [E1]

    def test_states_of_an_uncompleted_epoch_are_never_returned(self, store: SnapshotStore) -> None:
        run = store.begin_run("/g.yaml", "g")
        complete(store, run.run_id, E1, {"gen": b"old-gen", "sink": b"old-sink"})
        store.save_state(run.run_id, E2, "gen", b"new-gen")  # E2's completion record never written
        store.save_state(run.run_id, E2, "sink", b"new-sink")
        point = store.restore_point(run.run_id)
        assert point is not None and point.epoch == E1 and point.notes == []
        assert point.states == {"gen": b"old-gen", "sink": b"old-sink"}
        assert [e.epoch for e in store.epochs(run.run_id)] == [E1]
        partial = store.begin_run("/h.yaml", "h")
        store.save_state(partial.run_id, E1, "gen", b"partial")
        assert store.restore_point(partial.run_id) is None and store.epochs(partial.run_id) == []

    def test_runs_do_not_see_each_others_states(self, store: SnapshotStore) -> None:
        a = store.begin_run("/a.yaml", "a")
        b = store.begin_run("/b.yaml", "b")
        complete(store, a.run_id, E1, {"gen": b"a-state"})
        complete(store, b.run_id, E2, {"gen": b"b-state"})
        store.save_state(b.run_id, E3, "gen", b"b-partial")
        assert store.restore_point(a.run_id).states == {"gen": b"a-state"}  # type: ignore[union-attr]
        assert store.restore_point(b.run_id).states == {"gen": b"b-state"}  # type: ignore[union-attr]

    def test_pruning_keeps_the_newest_complete_epochs(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        assert store.keep == DEFAULT_KEEP == 3
        run = store.begin_run("/g.yaml", "g")
        other_run = store.begin_run("/other.yaml", "other")
        complete(store, other_run.run_id, E1, {"gen": b"other"})
        epochs = [E1, E2, E3, E4, E5]
        for i, epoch in enumerate(epochs):
            complete(store, run.run_id, epoch, {"gen": f"g{i}".encode(), "sink": f"s{i}".encode()})
            assert [e.epoch for e in store.epochs(run.run_id)] == epochs[max(0, i - 2):i + 1]
        for copy in COPIES:
            states = sorted((r["epoch"], r["process"]) for r in under_test.rows("states", copy, run.run_id))
            assert states == [(e, p) for e in (E3, E4, E5) for p in ("gen", "sink")], copy
            assert len(under_test.rows("states", copy, other_run.run_id)) == 1  # pruning is per run
            assert sorted(r["epoch"] for r in under_test.rows("epochs", copy, run.run_id)) == [E3, E4, E5]
        assert store.restore_point(run.run_id).states == {"gen": b"g4", "sink": b"s4"}  # type: ignore[union-attr]

    def test_pruning_drops_old_partial_states_and_keeps_newer_ones(self, store: SnapshotStore,
                                                                  under_test: StoreUnderTest) -> None:
        e6, e7 = "2026-01-01T00:00:06.000Z", "2026-01-01T00:00:07.000Z"
        run = store.begin_run("/g.yaml", "g")
        store.save_state(run.run_id, E1, "gen", b"never completed")
        for epoch in (E2, E3, E4, E5):
            complete(store, run.run_id, epoch, {"gen": epoch.encode()})
        store.save_state(run.run_id, e6, "gen", b"in flight")
        complete(store, run.run_id, e7, {"gen": b"7"})
        for copy in COPIES:
            assert sorted({r["epoch"] for r in under_test.rows("states", copy, run.run_id)}) == [E4, E5, e6, e7]
        assert [e.epoch for e in store.epochs(run.run_id)] == [E4, E5, e7]

    def test_keep_is_configurable(self, under_test: StoreUnderTest) -> None:
        s = under_test.open(keep=1)
        try:
            run = s.begin_run("/g.yaml", "g")
            for epoch in (E1, E2, E3):
                complete(s, run.run_id, epoch, {"gen": epoch.encode()})
            assert [e.epoch for e in s.epochs(run.run_id)] == [E3]
            assert {r["epoch"] for r in under_test.rows("states", "mirror", run.run_id)} == {E3}
        finally:
            s.close()

    def test_delete_run(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        gone = store.begin_run("/g.yaml", "g")
        kept = store.begin_run("/h.yaml", "h")
        complete(store, gone.run_id, E1, {"gen": b"1"})
        store.save_state(gone.run_id, E3, "gen", b"partial")
        complete(store, kept.run_id, E1, {"gen": b"kept"})
        assert store.delete_run(gone.run_id) is True
        assert [r.run_id for r in store.runs()] == [kept.run_id]
        assert store.epochs(gone.run_id) == [] and store.newest_run("/g.yaml") is None
        for kind in ("runs", "states", "epochs"):
            for copy in COPIES:
                assert under_test.rows(kind, copy, gone.run_id) == [], (kind, copy)
        with pytest.raises(StoreDamage):  # a deleted run is unknown, not silently empty
            store.restore_point(gone.run_id)
        assert store.restore_point(kept.run_id).states == {"gen": b"kept"}  # type: ignore[union-attr]
        assert store.delete_run(gone.run_id) is False and store.delete_run("no-such-run") is False

    # -- mirrors: one damaged copy is healed from the other -----------------------------------
    @pytest.mark.parametrize("how", ["flip", "delete", "forge"])
    @pytest.mark.parametrize("copy", COPIES)
    def test_one_damaged_state_copy_is_healed(self, store: SnapshotStore, under_test: StoreUnderTest,
                                             three_epochs: str, copy: str, how: str) -> None:
        run_id = three_epochs
        key = {"run_id": run_id, "epoch": E3, "process": "sink"}
        if how == "flip":
            assert under_test.update("states", copy, key, data=flip(b"sink-3")) == 1
        elif how == "delete":
            assert under_test.delete("states", copy, key) == 1
        else:  # data and its row checksum replaced together: only the completion record can tell
            assert under_test.update("states", copy, key, data=b"forged", checksum=checksum(b"forged")) == 1
        if how != "forge":
            assert not under_test.state_verifies(copy, run_id, E3, "sink")
        assert_healed_newest(store.restore_point(run_id), run_id)
        for c in COPIES:
            row = under_test.row("states", c, key)
            assert row is not None and (row["checksum"], row["data"]) == (checksum(b"sink-3"), b"sink-3"), c
        assert store.restore_point(run_id).notes == []  # type: ignore[union-attr]

    def test_heal_false_restores_without_writing(self, store: SnapshotStore, under_test: StoreUnderTest,
                                                three_epochs: str) -> None:
        key = {"run_id": three_epochs, "epoch": E3, "process": "gen"}
        assert under_test.update("states", "mirror", key, data=b"junk") == 1
        before = under_test.everything()
        point = store.restore_point(three_epochs, heal=False)
        assert point is not None and point.epoch == E3 and point.states == STATES[E3]
        assert under_test.everything() == before
        assert not under_test.state_verifies("mirror", three_epochs, E3, "gen")

    @pytest.mark.parametrize("how", [*sorted(COMPLETION_DAMAGE), "delete"])
    @pytest.mark.parametrize("copy", COPIES)
    def test_one_damaged_completion_record_copy_is_healed(self, store: SnapshotStore, under_test: StoreUnderTest,
                                                         three_epochs: str, copy: str, how: str) -> None:
        run_id = three_epochs
        key = {"run_id": run_id, "epoch": E3}
        original = under_test.row("epochs", copy, key)
        assert original is not None and original == under_test.row("epochs", other(copy), key)
        if how == "delete":
            assert under_test.delete("epochs", copy, key) == 1
        else:
            assert under_test.update("epochs", copy, key, **COMPLETION_DAMAGE[how]) == 1
        assert under_test.row("epochs", copy, key) != original
        assert_healed_newest(store.restore_point(run_id), run_id)
        for c in COPIES:
            assert under_test.row("epochs", c, key) == original, c
        assert store.restore_point(run_id).notes == []  # type: ignore[union-attr]

    def test_a_completion_record_copy_with_a_garbled_epoch_is_healed(self, store: SnapshotStore,
                                                                    under_test: StoreUnderTest,
                                                                    three_epochs: str) -> None:
        key = {"run_id": three_epochs, "epoch": E3}
        garbled = E3.replace("03.000Z", "03.001Z")
        assert under_test.update("epochs", "primary", key, epoch=garbled) == 1
        assert under_test.row("epochs", "primary", key) is None
        assert_healed_newest(store.restore_point(three_epochs), three_epochs)
        assert under_test.row("epochs", "primary", key) == under_test.row("epochs", "mirror", key)

    @pytest.mark.parametrize("how", [*sorted(RUN_DAMAGE), "delete"])
    @pytest.mark.parametrize("copy", COPIES)
    def test_one_damaged_run_record_copy_is_read_from_the_other_and_healed(
            self, store: SnapshotStore, under_test: StoreUnderTest, three_epochs: str, copy: str, how: str) -> None:
        run_id = three_epochs
        key = {"run_id": run_id}
        before = store.newest_run("/g.yaml")
        original = under_test.row("runs", copy, key)
        assert original is not None and original == under_test.row("runs", other(copy), key)
        if how == "delete":
            assert under_test.delete("runs", copy, key) == 1
        else:
            assert under_test.update("runs", copy, key, **RUN_DAMAGE[how]) == 1
        assert under_test.row("runs", copy, key) != original
        assert store.newest_run("/g.yaml") == before and store.runs() == [before]
        assert before is not None and before.last_epoch == E3 and before.status == RUNNING
        assert_healed_newest(store.restore_point(run_id), run_id)
        for c in COPIES:
            assert under_test.row("runs", c, key) == original, c

    def test_a_run_record_copy_with_a_garbled_key_is_not_both(self, store: SnapshotStore,
                                                             under_test: StoreUnderTest, three_epochs: str) -> None:
        before = store.newest_run("/g.yaml")
        assert under_test.update("runs", "primary", {"run_id": three_epochs}, run_id=three_epochs + "x") == 1
        assert store.newest_run("/g.yaml") == before
        assert [r.run_id for r in store.runs()] == [three_epochs]
        point = store.restore_point(three_epochs)
        assert point is not None and point.epoch == E3 and point.states == STATES[E3]
        # Healed: the primary copy is rewritten under the right key and the garbled row is gone, so the
        # run stays readable (it was counted as a second run damaged in both copies once healed).
        assert [row["run_id"] for row in under_test.rows("runs", "primary")] == [three_epochs]
        assert store.newest_run("/g.yaml") == before and [r.run_id for r in store.runs()] == [three_epochs]
        assert before is not None and store.reopen_run(three_epochs).attempts == before.attempts + 1
        assert store.newest_run("/g.yaml") is not None

    def test_healing_keeps_a_garbled_row_that_no_run_of_the_other_copy_explains(
            self, store: SnapshotStore, under_test: StoreUnderTest, three_epochs: str) -> None:
        """A second run whose record is damaged in both copies (garbled here, lost there) stays damage:
        healing the first run does not drop the evidence of the second."""
        second = store.begin_run("/g.yaml", "g")
        assert under_test.update("runs", "primary", {"run_id": three_epochs}, run_id=three_epochs + "x") == 1
        assert under_test.update("runs", "primary", {"run_id": second.run_id}, run_id=second.run_id + "y") == 1
        assert under_test.delete("runs", "mirror", {"run_id": second.run_id}) == 1
        point = store.restore_point(three_epochs)  # heals the first run's primary copy
        assert point is not None and point.epoch == E3
        # Two garbled rows, one run to explain them: which is whose cannot be told, so both stay.
        assert len(under_test.rows("runs", "primary")) == 3
        with pytest.raises(StoreDamage, match="damaged in both copies"):
            store.newest_run("/g.yaml")

    # -- refusals: the newest complete epoch cannot be read intact ------------------------------
    @staticmethod
    def _damage_both(under_test: StoreUnderTest, run_id: str, damage: str) -> str:
        for copy in COPIES:
            state = {"run_id": run_id, "epoch": E3, "process": "sink"}
            record = {"run_id": run_id, "epoch": E3}
            if damage == "states damaged":
                assert under_test.update("states", copy, state, data=b"junk") == 1
            elif damage == "states deleted":
                assert under_test.delete("states", copy, state) == 1
            elif damage == "records damaged":
                assert under_test.update("epochs", copy, record, digest="0" * 64) == 1
            else:
                assert under_test.delete("epochs", copy, record) == 1
        return {"states damaged": "the state of operator 'sink' fails its checksum in both copies",
                "states deleted": "the state of operator 'sink' fails its checksum in both copies",
                "records damaged": "its completion record is damaged in both copies",
                "records lost": "its completion record is lost"}[damage]

    BOTH = ["states damaged", "states deleted", "records damaged", "records lost"]

    @pytest.mark.parametrize("damage", BOTH)
    def test_newest_epoch_damaged_in_both_copies_is_refused(self, store: SnapshotStore, under_test: StoreUnderTest,
                                                           three_epochs: str, damage: str) -> None:
        problem = self._damage_both(under_test, three_epochs, damage)
        before = under_test.everything()
        with pytest.raises(StoreDamage) as info:
            store.restore_point(three_epochs)
        message = str(info.value)
        assert f"epoch {E3}: {problem}" in message and three_epochs in message
        assert "--accept-older-epoch" in message and E2 in message and "at-least-once" in message
        assert "nothing was written" in message and info.value.exit_code == 2
        assert under_test.everything() == before

    @pytest.mark.parametrize("damage", BOTH)
    def test_accept_older_restores_the_newest_older_intact_epoch(self, store: SnapshotStore,
                                                                under_test: StoreUnderTest, three_epochs: str,
                                                                damage: str) -> None:
        self._damage_both(under_test, three_epochs, damage)
        point = store.restore_point(three_epochs, accept_older=True)
        assert point is not None and point.epoch == E2 and point.states == STATES[E2]
        [note] = point.notes
        assert "at-least-once" in note and E2 in note and E3 in note

    def test_a_refusal_writes_nothing_even_when_the_older_epoch_needs_healing(
            self, store: SnapshotStore, under_test: StoreUnderTest, three_epochs: str) -> None:
        self._damage_both(under_test, three_epochs, "states damaged")
        older = {"run_id": three_epochs, "epoch": E2, "process": "gen"}
        assert under_test.update("states", "primary", older, data=b"junk") == 1
        before = under_test.everything()
        with pytest.raises(StoreDamage) as info:
            store.restore_point(three_epochs)
        assert "nothing was written" in str(info.value)
        assert under_test.everything() == before
        point = store.restore_point(three_epochs, accept_older=True)
        assert point is not None and point.epoch == E2 and point.states == STATES[E2]
        assert any("healed" in note for note in point.notes)
        assert under_test.state_verifies("primary", three_epochs, E2, "gen")

    def test_no_intact_epoch_at_all_is_refused_even_with_accept_older(
            self, store: SnapshotStore, under_test: StoreUnderTest, three_epochs: str) -> None:
        for copy in COPIES:
            assert under_test.update("epochs", copy, {"run_id": three_epochs}, digest="x") == 3
        for accept_older in (False, True):
            with pytest.raises(StoreDamage) as info:
                store.restore_point(three_epochs, accept_older=accept_older)
            message = str(info.value)
            assert all(f"epoch {e}: its completion record is damaged in both copies" in message for e in STATES)
            assert "--fresh" in message and "--accept-older-epoch" not in message

    def test_a_lost_run_record_is_damage(self, store: SnapshotStore, under_test: StoreUnderTest,
                                        three_epochs: str) -> None:
        for copy in COPIES:
            assert under_test.delete("runs", copy, {"run_id": three_epochs}) == 1
        with pytest.raises(StoreDamage) as info:
            store.newest_run("/g.yaml")
        assert "run record is lost" in str(info.value) and three_epochs in str(info.value)
        with pytest.raises(StoreDamage):
            store.restore_point(three_epochs)
        assert store.newest_run("/other.yaml") is None  # other graphs are not affected

    def test_a_run_record_damaged_in_both_copies_is_damage(self, store: SnapshotStore, under_test: StoreUnderTest,
                                                          three_epochs: str) -> None:
        for copy in COPIES:
            assert under_test.update("runs", copy, {"run_id": three_epochs}, status="completed") == 1
        for call in (lambda: store.newest_run("/g.yaml"), store.runs, lambda: store.restore_point(three_epochs)):
            with pytest.raises(StoreDamage) as info:
                call()
            assert three_epochs in str(info.value)

    # -- leases: one engine per graph ----------------------------------------------------------
    def test_a_held_lease_is_refused_naming_its_holder(self, store: SnapshotStore, second: SnapshotStore,
                                                      under_test: StoreUnderTest) -> None:
        lease = store.acquire_lease("/g.yaml")
        [row] = under_test.lease_rows()
        assert (row["graph_key"], row["token"], row["pid"], row["host"], row["host_id"]) == (
            "/g.yaml", lease.token, os.getpid(), socket.gethostname(), this_host_id())
        assert row["proc_start"] == process_start(os.getpid()) != ""
        with pytest.raises(LeaseHeld) as info:
            second.acquire_lease("/g.yaml")
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(info.value)
        assert info.value.holder.token == lease.token and info.value.exit_code == 2
        assert [r["token"] for r in under_test.lease_rows()] == [lease.token]
        other_lease = second.acquire_lease("/other.yaml")  # another graph's lease is independent
        assert {r["graph_key"] for r in under_test.lease_rows()} == {"/g.yaml", "/other.yaml"}
        other_lease.release()
        lease.release()

    def test_check_lease_free_reads_only(self, store: SnapshotStore, second: SnapshotStore,
                                        under_test: StoreUnderTest) -> None:
        second.check_lease_free("/g.yaml")
        lease = store.acquire_lease("/g.yaml")
        before = under_test.everything()
        with pytest.raises(LeaseHeld) as info:
            second.check_lease_free("/g.yaml")
        assert info.value.holder.token == lease.token
        assert under_test.everything() == before
        assert under_test.update_leases(host_id="elsewhere/x/y", heartbeat=0.0) == 1  # a dead holder
        before = under_test.everything()
        second.check_lease_free("/g.yaml")
        assert under_test.everything() == before

    def test_release_removes_the_lease(self, store: SnapshotStore, second: SnapshotStore,
                                      under_test: StoreUnderTest) -> None:
        lease = store.acquire_lease("/g.yaml")
        assert store.lease_holder("/g.yaml") is not None
        lease.release()
        assert under_test.lease_rows() == [] and store.lease_holder("/g.yaml") is None
        taken = second.acquire_lease("/g.yaml")
        assert [r["token"] for r in under_test.lease_rows()] == [taken.token]
        taken.release()

    @staticmethod
    def _lease_row(graph_key: str, *, pid: int, host: str = "elsewhere", host_id: str = "elsewhere/x/y",
                   proc_start: str = "", heartbeat: float = 0.0, token: str = "their-token") -> Row:
        return {"graph_key": graph_key, "token": token, "pid": pid, "host": host, "host_id": host_id,
                "proc_start": proc_start, "started": heartbeat, "heartbeat": heartbeat}

    def test_a_lease_of_a_dead_process_is_taken_over(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            start = process_start(child.pid)
            assert start != ""
            under_test.put_lease(self._lease_row("/g.yaml", pid=child.pid, host=socket.gethostname(),
                                                 host_id=this_host_id(), proc_start=start, heartbeat=time.time()))
            with pytest.raises(LeaseHeld) as info:
                store.acquire_lease("/g.yaml")
            assert f"pid {child.pid}" in str(info.value)
        finally:
            child.kill()
            child.wait()
        assert process_start(child.pid) == ""
        lease = store.acquire_lease("/g.yaml")
        [row] = under_test.lease_rows()
        assert row["token"] == lease.token and row["pid"] == os.getpid()
        lease.release()

    def test_a_lease_of_a_zombie_is_taken_over(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        """An engine that exited but was not reaped yet (its parent did not wait) holds nothing."""
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
        try:
            start = process_start(child.pid)
            assert start != ""
            under_test.put_lease(self._lease_row("/g.yaml", pid=child.pid, host=socket.gethostname(),
                                                 host_id=this_host_id(), proc_start=start, heartbeat=time.time()))
            stat = Path(f"/proc/{child.pid}/stat")
            assert wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")  # exited, not reaped
            lease = store.acquire_lease("/g.yaml")
            assert under_test.lease_rows()[0]["token"] == lease.token
            lease.release()
        finally:
            child.wait()

    def test_a_lease_of_a_reused_pid_is_taken_over(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        under_test.put_lease(self._lease_row("/g.yaml", pid=os.getpid(), host=socket.gethostname(),
                                             host_id=this_host_id(), proc_start="1", heartbeat=time.time()))
        lease = store.acquire_lease("/g.yaml")
        assert under_test.lease_rows()[0]["token"] == lease.token
        lease.release()

    def test_a_lease_from_another_host_is_taken_over_only_without_heartbeat(
            self, second: SnapshotStore, under_test: StoreUnderTest, clock: FakeClock) -> None:
        under_test.put_lease(self._lease_row("/g.yaml", pid=os.getpid(), heartbeat=clock.now - 1.0))
        with pytest.raises(LeaseHeld) as info:
            second.acquire_lease("/g.yaml")
        assert info.value.holder.host == "elsewhere" and "on host elsewhere" in str(info.value)
        assert under_test.lease_rows()[0]["token"] == "their-token"
        clock.now += LEASE_TTL
        lease = second.acquire_lease("/g.yaml")
        [row] = under_test.lease_rows()
        assert row["token"] == lease.token and row["host"] == socket.gethostname()
        assert row["heartbeat"] >= clock.now - 1.0
        lease.release()

    FENCED: dict[str, Callable[[SnapshotStore, str], object]] = {
        "save_state": lambda s, run_id: s.save_state(run_id, E2, "gen", b"late"),
        "complete_epoch": lambda s, run_id: s.complete_epoch(run_id, E1, 0.0, ["gen"]),
        "finish_run": lambda s, run_id: s.finish_run(run_id, COMPLETED),
        "note_attempt": lambda s, run_id: s.note_attempt(run_id),
        "begin_run": lambda s, run_id: s.begin_run("/g.yaml", "g"),
    }

    @pytest.mark.parametrize("call", sorted(FENCED))
    @pytest.mark.parametrize("takeover", ["token rewritten", "taken over by another engine"])
    def test_writes_after_the_lease_was_taken_over_are_refused(self, store: SnapshotStore, second: SnapshotStore,
                                                              under_test: StoreUnderTest, call: str,
                                                              takeover: str) -> None:
        lease = store.acquire_lease("/g.yaml")
        run = store.begin_run("/g.yaml", "g")
        store.save_state(run.run_id, E1, "gen", b"1")
        if takeover == "token rewritten":
            assert under_test.update_leases(token="stolen", pid=4242, host="elsewhere") == 1
            thief = "pid 4242 on host elsewhere"
        else:  # our lease looks like a dead holder on another host; the second engine takes it
            assert under_test.update_leases(host_id="elsewhere/x/y", heartbeat=0.0) == 1
            second.acquire_lease("/g.yaml")
            thief = f"pid {os.getpid()} on host {socket.gethostname()}"
        before = under_test.everything()
        with pytest.raises(LeaseLost) as info:
            self.FENCED[call](store, run.run_id)
        assert "lost its lease" in str(info.value) and thief in str(info.value)
        assert under_test.everything() == before
        lease.release()  # does not remove the new holder's lease
        assert under_test.everything() == before

    def test_keep_alive_renews_the_heartbeat(self, under_test: StoreUnderTest, clock: FakeClock) -> None:
        s = under_test.open(clock=clock)
        try:
            lease = s.acquire_lease("/g.yaml")
            first = under_test.lease_rows()[0]["heartbeat"]
            lost: list[LeaseLost] = []
            lease.keep_alive(lost.append, period=0.01)
            assert wait_until(lambda: under_test.lease_rows()[0]["heartbeat"] > first)
            lease.release()
            assert lost == [] and under_test.lease_rows() == []
        finally:
            s.close()

    def test_the_holders_progress_goes_with_its_heartbeat_and_only_the_holder_is_shown(
            self, under_test: StoreUnderTest, clock: FakeClock) -> None:
        s = under_test.open(clock=clock)
        reader = under_test.open(clock=clock)
        try:
            lease = s.acquire_lease("/g.yaml")
            assert reader.progress("/g.yaml") is None  # nothing reported yet
            reports = iter(range(1, 10**6))
            lease.report_progress(lambda: {"attempt": 1, "rows": next(reports)})
            clock.now += 1
            s.renew_lease(lease)
            progress = reader.progress("/g.yaml")
            assert progress is not None and progress.report == {"attempt": 1, "rows": 1} and progress.at == clock.now
            lease.report_progress(lambda: {"broken": object()})  # not JSON: the heartbeat goes on without it
            s.renew_lease(lease)
            assert reader.progress("/g.yaml") == progress and under_test.lease_rows()[0]["heartbeat"] == clock.now
            lease.release()
            assert reader.progress("/g.yaml") is None  # gone with the lease
            # A report left behind by an engine that died belongs to no holder: not shown to the next one.
            dead = s.acquire_lease("/g.yaml")
            dead.report_progress(lambda: {"attempt": 7})
            s.renew_lease(dead)
            assert reader.progress("/g.yaml") is not None
            under_test.update_leases(token="someone-else")
            assert reader.progress("/g.yaml") is None
        finally:
            s.close()
            reader.close()

    def test_keep_alive_reports_a_lost_lease(self, store: SnapshotStore, under_test: StoreUnderTest) -> None:
        lease = store.acquire_lease("/g.yaml")
        lost: list[LeaseLost] = []
        lease.keep_alive(lost.append, period=0.01)
        assert under_test.update_leases(token="stolen") == 1
        assert wait_until(lambda: bool(lost))
        assert isinstance(lost[0], LeaseLost) and lease.lost is lost[0]
        lease.release()
        assert [r["token"] for r in under_test.lease_rows()] == ["stolen"]

    def test_two_engines_race_for_one_lease(self, under_test: StoreUnderTest) -> None:
        """Many store objects take the same lease at once: exactly one wins, every other names it."""
        stores = [under_test.open() for _ in range(6)]
        won: list[str] = []
        held: list[LeaseHeld] = []
        barrier = threading.Barrier(len(stores))

        def take(s: SnapshotStore) -> None:
            barrier.wait()
            try:
                won.append(s.acquire_lease("/race.yaml").token)
            except LeaseHeld as err:
                held.append(err)

        threads = [threading.Thread(target=take, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            # the holder is this process, so every other engine sees a live holder
            assert len(won) == 1 and len(held) == len(stores) - 1
            assert all(err.holder.token == won[0] for err in held)
            assert [r["token"] for r in under_test.lease_rows()] == won
        finally:
            for s in stores:
                s.close()
