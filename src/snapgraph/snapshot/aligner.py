"""The operator's side of the aligned-barrier snapshot protocol: one :class:`Aligner` per operator.

docs/snapshots.md, "One epoch, step by step", draws one epoch E across the graph; the
coordinator's side is :mod:`snapgraph.snapshot.protocol`. An operator's part, in order:

1. **Barrier E arrives** on one input (:meth:`Aligner.on_barrier`): that input is *blocked* — what
   follows E on it stays queued — until E has arrived on every input. A source (no connected
   input) has no barrier to wait for: the coordinator's request (:meth:`Aligner.snapshot_once`)
   starts it between two of its callbacks, or, opted in with ``snapshotWhileBusy: N``, beside a
   callback that has run N seconds (:meth:`Aligner.beside_long_callback`; :meth:`Aligner.claim`
   lets exactly one of the two take it).
2. **Aligned**: E arrived on all inputs (instrument ``barrier_aligned``, fault ``before_serialize``).
3. **Pause**: the script's pause callback.
4. **Serialize** (stateful operators only): ``serialize(E)`` must return bytes (instrument
   ``state_serialized``, fault ``after_serialize``); they are packed with the run-time types
   (:mod:`snapgraph.snapshot.state`).
5. **Persist** the packed bytes (fault ``after_persist``). Stateless operators persist nothing.
6. **Forward** barrier E on every output.
7. **Resume**: the script's resume callback.
8. **Acknowledge** E to the coordinator.
9. **Unblock** the inputs: what came after E flows again.
10. **epoch_complete(E)** (:meth:`Aligner.epoch_complete`), once the coordinator has written E's
    completion record (every operator acknowledged). It may publish; that belongs to the next epoch.

In a recovered attempt, before all of this: **restore(E, bytes)** after the script body and before
prestart (:meth:`Aligner.restore`); the runtime then runs epoch_complete(E) of the restored epoch once
more after prestart (the failed attempt may have died in it).

Steps 2-7 are one *protocol step*: whatever it raises fails the operator whatever its errorHandling
(state must not be skipped). The aligner knows nothing of channels, threads or the group it runs in:
it calls back into a :class:`Participant` (the runtime's operator) for those, so it can be driven
by a test with a fake participant and an injected clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Hashable
from typing import Any, Protocol

from snapgraph.instruments.base import NO_INSTRUMENTS, Instruments
from snapgraph.instruments.stats import OperatorStats
from snapgraph.model.types import VType
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.state import pack_state, unpack_state

BUSY_POLL = 0.05  # seconds between looks at a long callback (snapshotWhileBusy)


class Callbacks(Protocol):
    """The snapshot callbacks a script registered (``api.operator_api.Registrations`` has them)."""

    @property
    def pause(self) -> Callable[[], Any] | None: ...
    @property
    def resume(self) -> Callable[[], Any] | None: ...
    @property
    def serialize(self) -> Callable[[str], bytes] | None: ...
    @property
    def restore(self) -> Callable[[str, bytes], Any] | None: ...
    @property
    def epoch_complete(self) -> Callable[[str], Any] | None: ...


class Participant(Protocol):
    """What the aligner needs from the operator it runs in (``runtime.operator.OperatorRuntime``)."""

    @property
    def input_count(self) -> int:
        """How many inputs the operator has (a barrier must arrive on each)."""

    def block(self, channel: Hashable) -> None:
        """Hand out nothing more from ``channel`` until it is unblocked (step 1)."""

    def unblock(self, channels: Collection[Hashable]) -> None:
        """Let ``channels`` deliver again (step 9)."""

    def run_step(self, phase: str, step: Callable[[], object]) -> None:
        """Run a protocol step; whatever it raises fails the operator (and stops the graph)."""

    def run_callback(self, phase: str, callback: Callable[..., Any], *args: Any) -> None:
        """Run a script callback under the operator's errorHandling (epoch_complete)."""

    def persist(self, epoch: str, data: bytes) -> None:
        """Store the operator's packed state for ``epoch`` (step 5)."""

    def forward(self, epoch: str) -> None:
        """Put barrier ``epoch`` on every output (step 6)."""

    def ack(self, epoch: str, stateful: bool) -> None:
        """Tell the coordinator this operator is done with ``epoch`` (step 8)."""

    def run_time_types(self) -> list[VType]:
        """The types made or received at run time (they are persisted with the state)."""

    def received_types(self, vtypes: list[VType]) -> None:
        """Register the run-time types a restored state came with."""

    def is_stopping(self) -> bool:
        """Whether the graph is stopping."""


class Aligner:
    """One operator's snapshot protocol: alignment, snapshot, epoch_complete, restore.

    ``stopwatch`` (seconds, any origin) times alignment, serialize and persist for the stats;
    ``clock`` (seconds, monotonic) and ``busy_since`` (when the running callback began, None
    between callbacks) decide when a long callback no longer holds up a snapshot
    (``snapshot_while_busy`` seconds; None: never). ``instruments`` may be replaced before the
    operator starts (the in-process engine puts its own there).
    """

    def __init__(self, name: str, participant: Participant, faults: FaultPlan, stats: OperatorStats, *,
                 logger: Any, snapshot_while_busy: float | None = None,
                 busy_since: Callable[[], float | None] = lambda: None,
                 stopwatch: Callable[[], float] = time.perf_counter, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.name = name
        self._p = participant
        self._faults = faults
        self._stats = stats
        self._logger = logger
        self._stopwatch = stopwatch
        self._clock = clock
        self._sleep = sleep
        self.instruments: Instruments = NO_INSTRUMENTS
        self.callbacks: Callbacks | None = None  # bound once the script body ran
        self.stateful = False
        self._aligned: set[Hashable] = set()  # inputs that delivered the current epoch's barrier
        self._aligning_since = 0.0  # when the first barrier of the epoch being aligned arrived
        # snapshotWhileBusy: the snapshot may be taken on another thread, beside a long callback; the
        # operator's output is held back meanwhile (the runtime's publishing takes output_lock too).
        self.snapshot_while_busy = snapshot_while_busy
        self._busy_since = busy_since
        self.output_lock = threading.Lock() if snapshot_while_busy is not None else None
        self._claim_lock = threading.Lock()
        self._snapshotted: str | None = None  # the newest epoch whose snapshot was taken or claimed

    def bind(self, callbacks: Callbacks, stateful: bool) -> None:
        """The script's callbacks, and whether it declared itself stateful (after its body ran)."""
        self.callbacks = callbacks
        self.stateful = stateful

    @property
    def aligned(self) -> frozenset[Hashable]:
        """The inputs blocked behind the barrier of the epoch being aligned."""
        return frozenset(self._aligned)

    # -- 1. a barrier arrives (or, at a source, the coordinator asks) ---------------------------------
    def on_barrier(self, channel: Hashable, epoch: str) -> None:
        """Barrier ``epoch`` arrived on ``channel``: block it; once all inputs delivered it, snapshot."""
        if not self._aligned:
            self._aligning_since = self._stopwatch()
        self._aligned.add(channel)
        self._p.block(channel)
        if len(self._aligned) < self._p.input_count:
            self._stats.state = "aligning"
            return
        self.take_snapshot(epoch, self._stopwatch() - self._aligning_since)  # steps 2-8
        self._p.unblock(self._aligned)  # step 9
        self._aligned.clear()

    def claim(self, epoch: str, busy_for: float | None = None) -> bool | None:
        """Whether this caller takes ``epoch``'s snapshot: True; None if it is taken or claimed already;
        False if not yet (``busy_for``: only once the running callback has run that long)."""
        with self._claim_lock:
            if self._snapshotted == epoch:
                return None
            if busy_for is not None:
                since = self._busy_since()
                if since is None or self._clock() - since < busy_for:
                    return False
            self._snapshotted = epoch
            return True

    def snapshot_once(self, epoch: str) -> None:
        """At a source, between two callbacks: take ``epoch``'s snapshot unless it was taken beside one."""
        if self.claim(epoch):
            self.take_snapshot(epoch)

    def beside_long_callback(self, epoch: str) -> None:
        """snapshotWhileBusy (on a thread of its own): take ``epoch``'s snapshot once the running callback
        has run ``snapshot_while_busy`` seconds, unless it is taken between two callbacks first."""
        busy_for = self.snapshot_while_busy
        assert busy_for is not None
        while not self._p.is_stopping():
            claimed = self.claim(epoch, busy_for)
            if claimed is None:
                return  # taken between two callbacks
            if claimed:
                self._logger.info("snapshot of epoch %s taken while a callback has been running for %.1f s "
                                  "(snapshotWhileBusy)", epoch, busy_for)
                self.take_snapshot(epoch)
                return
            self._sleep(BUSY_POLL)

    # -- 2-8. aligned: pause, serialize, persist, forward, resume, acknowledge ------------------------
    def take_snapshot(self, epoch: str, aligned_seconds: float = 0.0) -> None:
        """Steps 2-8 (sources start here). The fault points are where the instruments hear of the
        steps too: ``before_serialize`` is ``barrier_aligned``, ``after_serialize`` is
        ``state_serialized`` (the store's side of ``after_persist`` is the driver's ``state_persisted``)."""
        callbacks = self.callbacks
        assert callbacks is not None, "take_snapshot before the script body ran"
        faults = self._faults
        stateful = self.stateful
        instruments = self.instruments
        clock = self._stopwatch
        stats = self._stats
        participant = self._p

        def step() -> None:
            # 2. aligned
            stats.state = "snapshotting"
            if "barrier_aligned" in instruments:
                instruments.call("barrier_aligned", self.name, epoch, aligned_seconds)
            faults.hit("before_serialize", self.name)
            # 3. pause
            if callbacks.pause is not None:
                callbacks.pause()
            nbytes = 0
            if stateful:
                # 4. serialize
                serialize = callbacks.serialize
                assert serialize is not None  # checked when the operator loaded
                started = clock()
                data = serialize(epoch)
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"serialize({epoch!r}) returned {type(data).__name__}; it must return bytes "
                        "(for example pickle.dumps(state))"
                    )
                serialized = clock() - started
                stats.serialize_seconds += serialized
                stats.last_serialize_seconds = serialized
                if "state_serialized" in instruments:
                    instruments.call("state_serialized", self.name, epoch, len(data), serialized)
                faults.hit("after_serialize", self.name)
                # 5. persist
                packed = pack_state(bytes(data), participant.run_time_types())
                started = clock()
                participant.persist(epoch, packed)
                persisted = clock() - started
                stats.persist_seconds += persisted
                stats.last_persist_seconds = persisted
                nbytes = len(packed)
            stats.snapshots += 1
            stats.last_epoch = epoch
            stats.state_bytes = nbytes
            stats.state_bytes_total += nbytes
            stats.alignment_seconds += aligned_seconds
            stats.last_alignment_seconds = aligned_seconds
            faults.hit("after_persist", self.name)
            # 6. forward
            participant.forward(epoch)
            # 7. resume
            if callbacks.resume is not None:
                callbacks.resume()
            stats.state = "running"

        if self.output_lock is not None:
            with self.output_lock:
                participant.run_step(f"snapshot of epoch {epoch}", step)
        else:
            participant.run_step(f"snapshot of epoch {epoch}", step)
        participant.ack(epoch, stateful)  # 8. acknowledge

    # -- 10. the coordinator completed the epoch -------------------------------------------------------
    def epoch_complete(self, epoch: str) -> None:
        """Run the script's ``epoch_complete(epoch)`` (under its errorHandling, after the fault point)."""
        assert self.callbacks is not None
        callback = self.callbacks.epoch_complete
        self._p.run_step("epoch_complete", lambda: self._faults.hit("epoch_complete", self.name))
        if callback is not None:
            self._p.run_callback("epoch_complete", callback, epoch)

    # -- recovery ---------------------------------------------------------------------------------------
    def restore(self, epoch: str, stored: bytes) -> None:
        """Hand the state persisted for ``epoch`` back to the script: ``restore(epoch, bytes)``."""
        callbacks = self.callbacks
        assert callbacks is not None
        data, run_time_types = unpack_state(stored)
        self._p.received_types(run_time_types)  # type ids the restored state may hold

        def step() -> None:
            self._faults.hit("restore", self.name)
            assert callbacks.restore is not None  # checked when the operator loaded
            callbacks.restore(epoch, data)

        self._p.run_step("restore", step)
        if "state_restored" in self.instruments:
            self.instruments.call("state_restored", self.name, epoch, len(stored))
