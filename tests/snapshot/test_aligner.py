"""The operator's side of the snapshot protocol, driven by a fake participant and injected clocks."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest

from snapgraph.instruments.base import Instrument, Instruments
from snapgraph.instruments.stats import OperatorStats
from snapgraph.model.types import VType
from snapgraph.snapshot.aligner import Aligner
from snapgraph.snapshot.faults import Fault, FaultPlan, InjectedFault
from snapgraph.snapshot.state import unpack_state


class Stop(BaseException):
    """What the fake participant raises when a protocol step fails (the runtime's GraphStopping)."""


@dataclass
class Callbacks:
    state: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    stateful: bool = True

    def pause(self) -> None:
        self.log.append("pause")

    def resume(self) -> None:
        self.log.append("resume")

    def serialize(self, epoch: str) -> bytes:
        self.log.append(f"serialize {epoch}")
        return pickle.dumps(self.state)

    def restore(self, epoch: str, data: bytes) -> None:
        self.log.append(f"restore {epoch}")
        self.state = pickle.loads(data)

    def epoch_complete(self, epoch: str) -> None:
        self.log.append(f"epoch_complete {epoch}")


class Participant:
    """Records what the aligner asks of the operator, in one list, in order."""

    def __init__(self, inputs: int, log: list[str]) -> None:
        self.inputs = inputs
        self.log = log
        self.blocked: set[Hashable] = set()
        self.persisted: dict[str, bytes] = {}
        self.failures: list[tuple[str, BaseException]] = []
        self.types: list[VType] = []
        self.stopping = False

    @property
    def input_count(self) -> int:
        return self.inputs

    def block(self, channel: Hashable) -> None:
        self.blocked.add(channel)
        self.log.append(f"block {channel}")

    def unblock(self, channels: Collection[Hashable]) -> None:
        self.log.append(f"unblock {','.join(sorted(map(str, channels)))}")
        self.blocked.difference_update(channels)

    def run_step(self, phase: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:
            self.failures.append((phase, exc))
            raise Stop() from exc

    def run_callback(self, phase: str, callback: Callable[..., Any], *args: Any) -> None:
        callback(*args)

    def persist(self, epoch: str, data: bytes) -> None:
        self.persisted[epoch] = data
        self.log.append(f"persist {epoch}")

    def forward(self, epoch: str) -> None:
        self.log.append(f"forward {epoch}")

    def ack(self, epoch: str, stateful: bool) -> None:
        self.log.append(f"ack {epoch} {'stateful' if stateful else 'stateless'}")

    def run_time_types(self) -> list[VType]:
        return []

    def received_types(self, vtypes: list[VType]) -> None:
        self.types = vtypes

    def is_stopping(self) -> bool:
        return self.stopping


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(inputs: int = 2, *, stateful: bool = True, faults: FaultPlan | None = None,
         **kwargs: Any) -> tuple[Aligner, Participant, Callbacks, Clock, OperatorStats]:
    callbacks = Callbacks(stateful=stateful)
    participant = Participant(inputs, callbacks.log)
    clock = Clock()
    stats = OperatorStats.for_ports("op", {}, {}, "default")
    aligner = Aligner("op", participant, faults or FaultPlan(), stats, logger=_NoLog(),
                      stopwatch=clock, clock=clock, **kwargs)
    aligner.bind(callbacks, stateful)
    return aligner, participant, callbacks, clock, stats


class _NoLog:
    def info(self, *args: Any) -> None:
        pass


SNAPSHOT = ["pause", "serialize E1", "persist E1", "forward E1", "resume", "ack E1 stateful"]


def test_alignment_across_two_inputs_takes_one_snapshot_then_unblocks_both() -> None:
    aligner, participant, callbacks, clock, stats = make()
    clock.now = 10.0
    aligner.on_barrier("a", "E1")
    assert callbacks.log == ["block a"] and aligner.aligned == {"a"}
    clock.now = 12.5
    aligner.on_barrier("b", "E1")
    assert callbacks.log == ["block a", "block b", *SNAPSHOT, "unblock a,b"]
    assert participant.blocked == set() and aligner.aligned == frozenset()
    assert unpack_state(participant.persisted["E1"])[0] == pickle.dumps([])
    assert stats.snapshots == 1 and stats.last_alignment_seconds == 2.5 and stats.last_epoch == "E1"


def test_a_barrier_on_one_input_blocks_it_until_the_other_arrives() -> None:
    aligner, participant, callbacks, _, _ = make()
    aligner.on_barrier("a", "E1")
    assert participant.blocked == {"a"}
    assert "ack E1 stateful" not in callbacks.log  # no snapshot while b has not delivered E1
    aligner.on_barrier("b", "E1")
    assert participant.blocked == set()
    assert callbacks.log.count("ack E1 stateful") == 1


def test_a_duplicate_barrier_on_the_same_input_does_not_complete_the_alignment() -> None:
    aligner, participant, callbacks, _, _ = make()
    aligner.on_barrier("a", "E1")
    aligner.on_barrier("a", "E1")
    assert participant.blocked == {"a"} and not participant.persisted
    aligner.on_barrier("b", "E1")
    assert callbacks.log.count("serialize E1") == 1


def test_the_next_epoch_aligns_afresh() -> None:
    aligner, _, callbacks, _, stats = make()
    for epoch in ("E1", "E2"):
        aligner.on_barrier("b", epoch)
        aligner.on_barrier("a", epoch)
    assert [e for e in callbacks.log if e.startswith("ack")] == ["ack E1 stateful", "ack E2 stateful"]
    assert stats.snapshots == 2


def test_a_stateless_operator_aligns_and_forwards_but_persists_nothing() -> None:
    aligner, participant, callbacks, _, stats = make(1, stateful=False)
    aligner.on_barrier("a", "E1")
    assert callbacks.log == ["block a", "pause", "forward E1", "resume", "ack E1 stateless", "unblock a"]
    assert participant.persisted == {} and stats.state_bytes == 0


def test_a_failing_step_fails_the_operator_before_forwarding() -> None:
    faults = FaultPlan([Fault("after_serialize", "op", 1)])
    aligner, participant, callbacks, _, _ = make(1, faults=faults)
    with pytest.raises(Stop):
        aligner.on_barrier("a", "E1")
    assert isinstance(participant.failures[0][1], InjectedFault)
    assert participant.failures[0][0] == "snapshot of epoch E1"
    assert "forward E1" not in callbacks.log and not participant.persisted


def test_serialize_must_return_bytes() -> None:
    aligner, participant, callbacks, _, _ = make(0)
    callbacks.serialize = lambda epoch: [1]  # type: ignore[assignment, method-assign, return-value]
    with pytest.raises(Stop):
        aligner.snapshot_once("E1")
    assert "must return bytes" in str(participant.failures[0][1])


def test_instruments_hear_the_operator_steps() -> None:
    heard: list[tuple[Any, ...]] = []

    class Ear(Instrument):
        def barrier_aligned(self, operator: str, epoch: str, seconds: float) -> None:
            heard.append(("aligned", operator, epoch, seconds))

        def state_serialized(self, operator: str, epoch: str, nbytes: int, seconds: float) -> None:
            heard.append(("serialized", operator, epoch))

        def state_restored(self, operator: str, epoch: str, nbytes: int) -> None:
            heard.append(("restored", operator, epoch))

    aligner, participant, _, clock, _ = make(2)
    aligner.instruments = Instruments([Ear()])
    aligner.on_barrier("a", "E1")
    clock.now = 1.0
    aligner.on_barrier("b", "E1")
    aligner.restore("E1", participant.persisted["E1"])
    assert heard == [("aligned", "op", "E1", 1.0), ("serialized", "op", "E1"), ("restored", "op", "E1")]


def test_restore_hands_back_what_serialize_returned_and_epoch_complete_runs_after_its_fault_point() -> None:
    aligner, participant, callbacks, _, _ = make(0)
    callbacks.state = [1, 2]
    aligner.snapshot_once("E1")
    stored = participant.persisted["E1"]
    restored, other, callbacks2, _, _ = make(0)
    restored.restore("E1", stored)
    assert callbacks2.state == [1, 2] and callbacks2.log == ["restore E1"]
    restored.epoch_complete("E1")
    assert callbacks2.log[-1] == "epoch_complete E1"


def test_a_source_snapshot_is_taken_once_whoever_claims_it_first() -> None:
    busy: list[float | None] = [None]
    aligner, _, callbacks, clock, _ = make(0, snapshot_while_busy=5.0, busy_since=lambda: busy[0])
    assert aligner.output_lock is not None
    assert aligner.claim("E1", 5.0) is False  # no callback runs: between callbacks it is taken
    busy[0] = 0.0
    clock.now = 4.9
    assert aligner.claim("E1", 5.0) is False  # the callback has not run long enough
    clock.now = 5.0
    assert aligner.claim("E1", 5.0) is True
    aligner.snapshot_once("E1")  # the request between two callbacks comes too late: already claimed
    assert callbacks.log == []
    assert aligner.claim("E1") is None


def test_snapshot_while_busy_takes_it_beside_a_long_callback_with_output_held() -> None:
    busy: list[float | None] = [0.0]
    sleeps: list[float] = []
    held: list[bool] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    aligner, _, callbacks, clock, _ = make(0, snapshot_while_busy=0.2, busy_since=lambda: busy[0], sleep=sleep)
    lock = aligner.output_lock
    assert lock is not None
    callbacks.pause = lambda: held.append(lock.locked())  # type: ignore[method-assign]
    aligner.beside_long_callback("E1")
    assert len(sleeps) == 4  # 0.0, 0.05, 0.10, 0.15 were too early; at 0.20 it is taken
    assert held == [True] and "ack E1 stateful" in callbacks.log
    aligner.snapshot_once("E1")  # the dispatcher's request after the callback: nothing more
    assert callbacks.log.count("ack E1 stateful") == 1


def test_between_two_callbacks_first_means_no_snapshot_beside() -> None:
    aligner, participant, callbacks, _, _ = make(0, snapshot_while_busy=1.0, busy_since=lambda: None,
                                                 sleep=lambda s: None)
    aligner.snapshot_once("E1")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (aligner.beside_long_callback("E1"), done.set()))
    thread.start()
    thread.join(5)
    assert done.is_set() and callbacks.log.count("ack E1 stateful") == 1


def test_a_stop_ends_the_wait_beside_a_long_callback() -> None:
    aligner, participant, callbacks, _, _ = make(0, snapshot_while_busy=1.0, busy_since=lambda: None)
    participant.stopping = True
    aligner.beside_long_callback("E1")
    assert callbacks.log == []
