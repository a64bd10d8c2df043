"""Unit tests for snapgraph.snapshot.protocol: the coordinator's books and EpochClock's epoch ids.

The coordinator, with injected clocks: periods, one epoch at a time, acks, completion, stats.
EpochClock: ISO-8601 UTC ids with milliseconds whose string order is creation order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from snapgraph.instruments.stats import EpochStats
from snapgraph.snapshot.faults import FaultPlan, InjectedFault
from snapgraph.snapshot.protocol import MAX_FINAL_EPOCHS, Coordinator, EpochClock, SnapshotConfig
from snapgraph.snapshot.store import RestorePoint


@dataclass
class Store:
    """Only what the coordinator writes: completion records."""

    completed: list[tuple[str, str, float, list[str]]] = field(default_factory=list)

    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None:
        self.completed.append((run_id, epoch, started, list(processes)))


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def coordinator(period: float | None = 2.0, faults: FaultPlan | None = None):  # type: ignore[no-untyped-def]
    store, mono, wall = Store(), Clock(50.0), Clock(1_700_000_000.0)
    config = SnapshotConfig(store, "run-1", period)  # type: ignore[arg-type]
    c = Coordinator(config, ["gen", "sink"], ["gen"], faults or FaultPlan(), monotonic=mono, wall=wall)
    return c, store, mono, wall


def test_an_epoch_is_due_once_a_period_elapsed() -> None:
    c, _, mono, _ = coordinator(period=2.0)
    assert not c.due(published=5)
    mono.now += 1.999
    assert not c.due(published=5)
    mono.now += 0.001
    assert c.due(published=5)
    c.start(published=5)
    assert not c.due(published=9)  # one epoch at a time
    assert c.in_flight


def test_an_idle_graph_takes_no_periodic_epochs() -> None:
    c, _, mono, _ = coordinator(period=2.0)
    mono.now += 2
    epoch = c.start(published=5)
    for op in ("gen", "sink"):
        c.ack(op, epoch, False)
    assert c.complete_ready() is not None
    mono.now += 10
    assert not c.due(published=5)  # nothing published since that epoch started
    assert c.due(published=6)


def test_no_periodic_epochs_without_a_period() -> None:
    c, _, mono, _ = coordinator(period=None)
    mono.now += 10**6
    assert not c.due(published=1)
    assert c.sources() == ["gen"]


def test_an_epoch_completes_when_every_operator_acked() -> None:
    c, store, mono, wall = coordinator()
    epoch = c.start()
    assert epoch == "2023-11-14T22:13:20.000Z"  # the injected wall clock names it
    c.ack("gen", epoch, True)
    assert c.complete_ready() is None
    c.ack("gen", epoch, True)  # a repeated ack changes nothing
    c.ack("sink", "another epoch", True)  # nor does an ack for another epoch
    assert c.complete_ready() is None
    c.persisted("sink", epoch, 40)
    mono.now += 0.25
    c.ack("sink", epoch, True)
    done = c.complete_ready()
    assert done is not None and done.epoch == epoch
    assert done.seconds == pytest.approx(0.25) and done.acks == 2 and done.stateful == 2 and done.state_bytes == 40
    assert store.completed == [("run-1", epoch, wall.now, ["gen", "gen", "sink"])]
    assert c.last_completed == epoch and not c.in_flight
    assert c.complete_ready() is None
    assert [e.epoch for e in c.epochs] == [epoch]


def test_stateless_acks_are_not_listed_in_the_completion_record() -> None:
    c, store, _, _ = coordinator()
    epoch = c.start()
    c.ack("gen", epoch, True)
    c.ack("sink", epoch, False)
    done = c.complete_ready()
    assert done is not None and not done.final and done.stateful == 1
    assert store.completed[0][3] == ["gen"]


def test_epoch_ids_increase_even_if_the_wall_clock_stands_still() -> None:
    c, _, _, _ = coordinator()
    ids = []
    for _ in range(3):
        ids.append(c.start())
        for op in ("gen", "sink"):
            c.ack(op, ids[-1], False)
        assert c.complete_ready() is not None
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert ids[1] == "2023-11-14T22:13:20.001Z"


def test_the_next_period_counts_from_the_start_of_the_last_epoch() -> None:
    c, _, mono, _ = coordinator(period=2.0)
    mono.now += 2
    epoch = c.start(published=1)
    mono.now += 3  # a slow epoch: the period elapsed while it was in flight
    assert not c.due(published=2)
    for op in ("gen", "sink"):
        c.ack(op, epoch, False)
    c.complete_ready()
    assert c.due(published=2)  # starts as soon as the previous one completed


def test_a_fault_before_the_completion_record_leaves_the_epoch_unrestorable() -> None:
    c, store, _, _ = coordinator(faults=FaultPlan.parse("before_complete:*:1"))
    epoch = c.start()
    for op in ("gen", "sink"):
        c.ack(op, epoch, True)
    with pytest.raises(InjectedFault):
        c.complete_ready()
    assert store.completed == [] and c.last_completed is None


def test_a_restored_run_names_its_epochs_after_the_restored_one() -> None:
    clock = EpochClock(after="2030-01-01T00:00:00.000Z", now=lambda: 0.0)
    assert clock.next() == "2030-01-01T00:00:00.001Z"


def complete(c: Coordinator, epoch: str) -> EpochStats:
    for op in ("gen", "sink"):
        c.ack(op, epoch, True)
    done = c.complete_ready()
    assert done is not None and done.epoch == epoch
    return done


def test_a_drain_ends_once_a_final_epoch_completed_with_nothing_published_since_it_started() -> None:
    c, _, _, _ = coordinator()
    assert c.drained(published=10) is None  # no final epoch yet: one must run first
    final = c.start_final(published=10)
    assert c.drained(published=10) is None  # in flight
    done = complete(c, final)
    assert done.final and not done.sealed and c.final_epochs == 1
    assert c.drained(published=10) == final


def test_a_final_epoch_whose_epoch_complete_published_is_followed_by_another() -> None:
    c, _, _, _ = coordinator()
    first = complete(c, c.start_final(published=10)).epoch
    assert c.drained(published=12) is None  # its epoch_complete published two messages
    second = c.start_final(published=12)
    assert second > first
    complete(c, second)
    assert c.drained(published=12) == second


def test_the_last_final_epoch_allowed_is_sealed_so_the_drain_always_ends() -> None:
    c, _, _, _ = coordinator()
    published = 10
    for n in range(1, MAX_FINAL_EPOCHS + 1):
        done = complete(c, c.start_final(published))
        assert done.sealed == (n == MAX_FINAL_EPOCHS)
        published += 1  # every epoch_complete publishes ...
    # ... but what the sealed epoch's epoch_complete published is discarded: the driver asks with the
    # count it had when that epoch started.
    assert c.drained(published - 1) == done.epoch
    assert [e.final for e in c.epochs] == [True] * MAX_FINAL_EPOCHS


def test_a_restored_attempt_names_its_epochs_after_the_restore_point() -> None:
    store, mono, wall = Store(), Clock(50.0), Clock(1_700_000_000.0)
    restored = RestorePoint("2023-11-14T22:13:20.000Z", {"gen": b"state"})
    config = SnapshotConfig(store, "run-1", 2.0, restored)  # type: ignore[arg-type]
    c = Coordinator(config, ["gen", "sink"], ["gen"], FaultPlan(), monotonic=mono, wall=wall)
    assert c.last_completed == restored.epoch
    assert c.start() == "2023-11-14T22:13:20.001Z"  # the wall clock stands still: still later


# -- EpochClock: ISO-8601 UTC ids with milliseconds whose string order is creation order ----------
SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse(epoch: str) -> datetime:
    return datetime.strptime(epoch, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_ids_are_iso_8601_utc_with_milliseconds() -> None:
    before = datetime.now(UTC)
    epoch = EpochClock().next()
    after = datetime.now(UTC)
    assert SHAPE.match(epoch), epoch
    assert len(epoch) == len("2026-11-30T11:33:40.928Z")
    stamp = parse(epoch)
    # UTC, not local time: the id lies between two UTC readings taken around it (ms resolution)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp <= after


def test_ids_strictly_increase_over_many_rapid_calls() -> None:
    clock = EpochClock()
    ids = [clock.next() for _ in range(5000)]
    assert all(SHAPE.match(e) for e in ids)
    assert all(a < b for a, b in zip(ids, ids[1:]))
    # string order equals time order, and ids are at least a millisecond apart
    stamps = [parse(e) for e in ids]
    assert all(b - a >= timedelta(milliseconds=1) for a, b in zip(stamps, stamps[1:]))


def test_two_clocks_are_independent_but_each_is_monotonic() -> None:
    a, b = EpochClock(), EpochClock()
    ids_a = [a.next() for _ in range(200)]
    ids_b = [b.next() for _ in range(200)]
    assert ids_a == sorted(set(ids_a))
    assert ids_b == sorted(set(ids_b))


@pytest.mark.parametrize("after, expected_first", [
    ("2999-12-31T23:59:59.998Z", ["2999-12-31T23:59:59.999Z", "3000-01-01T00:00:00.000Z",
                                  "3000-01-01T00:00:00.001Z"]),
    ("2100-06-15T12:00:00.000Z", ["2100-06-15T12:00:00.001Z", "2100-06-15T12:00:00.002Z",
                                  "2100-06-15T12:00:00.003Z"]),
])
def test_ids_follow_an_after_epoch_in_the_future(after: str, expected_first: list[str]) -> None:
    clock = EpochClock(after=after)
    ids = [clock.next() for _ in range(3)]
    assert ids == expected_first
    assert all(e > after for e in ids)


def test_ids_after_a_past_epoch_are_current_time() -> None:
    after = "2001-01-01T00:00:00.000Z"
    clock = EpochClock(after=after)
    epoch = clock.next()
    assert epoch > after
    assert parse(epoch).year >= 2024


def test_after_an_epoch_made_by_another_clock_just_now() -> None:
    """A restored run's clock continues after the restored epoch, even within the same millisecond."""
    first = EpochClock()
    last = [first.next() for _ in range(50)][-1]
    resumed = EpochClock(after=last)
    ids = [resumed.next() for _ in range(50)]
    assert ids[0] > last
    assert all(a < b for a, b in zip(ids, ids[1:]))
