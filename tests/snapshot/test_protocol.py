"""The coordinator's books, with injected clocks: periods, one epoch at a time, acks, completion, stats."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from snapgraph.snapshot.faults import FaultPlan, InjectedFault
from snapgraph.snapshot.protocol import Coordinator, EpochClock, SnapshotConfig


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
    assert not c.due()
    mono.now += 1.999
    assert not c.due()
    mono.now += 0.001
    assert c.due()
    c.start()
    assert not c.due()  # one epoch at a time
    assert c.in_flight


def test_no_periodic_epochs_without_a_period() -> None:
    c, _, mono, _ = coordinator(period=None)
    mono.now += 10**6
    assert not c.due()
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
    epoch = c.start(final=True, sealed=True)
    c.ack("gen", epoch, True)
    c.ack("sink", epoch, False)
    done = c.complete_ready()
    assert done is not None and done.final and done.sealed and done.stateful == 1
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
    epoch = c.start()
    mono.now += 3  # a slow epoch: the period elapsed while it was in flight
    assert not c.due()
    for op in ("gen", "sink"):
        c.ack(op, epoch, False)
    c.complete_ready()
    assert c.due()  # starts as soon as the previous one completed


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
