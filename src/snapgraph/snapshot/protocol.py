"""The aligned-barrier snapshot protocol (Chandy-Lamport as Flink does it): the epoch state machine.

docs/snapshots.md, "One epoch, step by step", draws epoch E; "Runs: completed, stopped, failed,
unfinished" the drain, and "Recovery" the restore point. This module is the coordinator's side
(:class:`Coordinator`); each operator's side (alignment, snapshot, ack, epoch_complete, restore) is
:mod:`snapgraph.snapshot.aligner`, and the store's side (completion records, the restore point and its
integrity rules) :class:`snapgraph.snapshot.store.SnapshotStore`. The runtime only calls into them.

Epoch E, step by step:

1. **Start.** When a period elapsed, no epoch is in flight, and messages were published since the
   previous epoch started (an idle graph takes no epochs), the coordinator starts E on every
   *source* (an operator with no connected input) between two of its callbacks
   (:meth:`Coordinator.due`, :meth:`Coordinator.start`).
2. **Align.** An operator takes its snapshot once barrier E has arrived on **all** its inputs
   (sources: at once). Inputs that delivered E are blocked until then, so the state reflects
   exactly the messages before E on every input.
3. **Snapshot.** Pause callbacks, ``serialize(E)``, persist the bytes, forward E on every
   output, resume callbacks. Stateless operators align and forward but persist nothing.
4. **Ack.** Each operator acknowledges E (:meth:`Coordinator.ack`).
5. **Complete.** When every operator acknowledged E, the coordinator writes the completion record
   (:meth:`Coordinator.complete_ready`); only now is E restorable. Then ``epoch_complete(E)`` runs on
   every operator that registered it (writers commit there).
6. **Drain.** A stop, a Graph Terminator or ``--stop-after`` does not end a run with snapshots on at
   once: timers stop, what was sent is processed, and once nothing is in flight a *final* epoch runs
   steps 1-5 (:meth:`Coordinator.start_final`). If its ``epoch_complete`` published more, another
   final epoch follows; the :data:`MAX_FINAL_EPOCHS`-th is *sealed* (what its ``epoch_complete``
   publishes is discarded) so a graph whose ``epoch_complete`` always publishes still ends. The run
   ends when a final epoch completed with nothing published since it started (:meth:`Coordinator.drained`).
7. **Restore point.** A new attempt (recovery, ``--resume``) restores every stateful operator from
   the run's newest complete epoch whose states pass the store's checks
   (:meth:`~snapgraph.snapshot.store.SnapshotStore.restore_point`), given to the coordinator in
   :class:`SnapshotConfig`; epoch ids continue after it, and each restored operator runs
   ``epoch_complete`` of that epoch once more. A crash before step 5 leaves the previous complete
   epoch as the restore point; messages after it are replayed by the restored generators.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from snapgraph.instruments.stats import EpochStats
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import RestorePoint, SnapshotStore

MAX_FINAL_EPOCHS = 3  # a drain ends after this many final epochs even if epoch_complete keeps publishing


class EpochClock:
    """Epoch ids: ISO-8601 UTC timestamps with milliseconds, strictly increasing.

    A clock that stands still or goes backwards is nudged forward by a
    millisecond so string order always equals creation order. ``now`` (the wall
    clock, seconds since 1970) is injected for tests.
    """

    def __init__(self, after: str | None = None, now: Callable[[], float] = time.time) -> None:
        self._last = _parse(after) if after else None
        self._now = now

    def next(self) -> str:
        now = datetime.fromtimestamp(self._now(), UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(milliseconds=1)
        self._last = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _parse(epoch: str) -> datetime:
    return datetime.strptime(epoch, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass
class SnapshotConfig:
    """Snapshots for one attempt of a run: where to persist and what to restore."""

    store: SnapshotStore
    run_id: str
    period: float | None  # None: no periodic epochs (a final epoch is still taken)
    restore: RestorePoint | None = None


@dataclass
class _Epoch:
    epoch: str
    started: float  # wall clock (the completion record's start time)
    started_mono: float  # monotonic clock (the epoch's duration)
    pending: set[str]
    stats: EpochStats
    stateful: list[str] = field(default_factory=list)


class Coordinator:
    """Starts epochs, collects acknowledgements, completes epochs and tells when a drain is over.

    One epoch is in flight at a time: a period that elapses while an epoch is
    still aligning starts the next one as soon as it completes. Clocks are
    injected: ``monotonic`` for periods and durations, ``wall`` (seconds since
    1970) for epoch ids and the completion record. ``published`` arguments are
    the graph's count of messages published so far.
    """

    def __init__(self, config: SnapshotConfig, operators: list[str], sources: list[str], faults: FaultPlan, *,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self._faults = faults
        self._operators = operators
        self._sources = sources
        self._monotonic = monotonic
        self._wall = wall
        restored = config.restore.epoch if config.restore else None
        self._clock = EpochClock(after=restored, now=wall)
        self._lock = threading.Lock()
        self._current: _Epoch | None = None
        self._ready: _Epoch | None = None  # the epoch in flight, once every operator acknowledged it
        self.last_completed: str | None = restored
        self.epochs: list[EpochStats] = []  # this attempt's epochs, oldest first (the last may be in flight)
        self._next_due = monotonic() + (config.period or 0)
        self._published_at_start = -1  # messages published when the last epoch started
        self.final_epochs = 0  # final epochs a drain started so far
        self._last_final: tuple[str, int] | None = None  # (the last final epoch, messages published at its start)

    @property
    def in_flight(self) -> bool:
        return self._current is not None

    def due(self, published: int) -> bool:
        """Step 1: a periodic epoch should start now."""
        return (self.config.period is not None and self._current is None and self._monotonic() >= self._next_due
                and published != self._published_at_start)

    def start(self, published: int = 0) -> str:
        """Start the next periodic epoch (step 1); its id."""
        return self._start(published, EpochStats(self._clock.next(), self._wall()))

    def start_final(self, published: int) -> str:
        """Start the next final epoch of a drain (step 6), sealed if it is the last one allowed; its id."""
        self.final_epochs += 1
        stats = EpochStats(self._clock.next(), self._wall(), final=True, sealed=self.final_epochs >= MAX_FINAL_EPOCHS)
        epoch = self._start(published, stats)
        self._last_final = (epoch, published)
        return epoch

    def drained(self, published: int) -> str | None:
        """Nothing is in flight: the final epoch that ends the drain (it completed and nothing was
        published since it started), or None when (another) final epoch must run first."""
        if self._last_final is None or self._current is not None:
            return None
        epoch, published_at_start = self._last_final
        return epoch if self.last_completed == epoch and published == published_at_start else None

    def _start(self, published: int, stats: EpochStats) -> str:
        with self._lock:
            assert self._current is None, "one epoch at a time"
            self._current = _Epoch(stats.epoch, stats.started_at, self._monotonic(), set(self._operators), stats)
            self.epochs.append(stats)
        self._published_at_start = published
        if self.config.period is not None:
            self._next_due = self._monotonic() + self.config.period
        return stats.epoch

    def sources(self) -> list[str]:
        return self._sources

    def persisted(self, process: str, epoch: str, nbytes: int) -> None:
        """``process`` persisted ``nbytes`` of state for ``epoch`` (counted in the epoch's stats)."""
        with self._lock:
            current = self._current
            if current is not None and current.epoch == epoch:
                current.stats.state_bytes += nbytes

    def ack(self, process: str, epoch: str, stateful: bool) -> None:
        """Called by an operator once its state for ``epoch`` is persisted and E forwarded."""
        with self._lock:
            current = self._current
            if current is None or current.epoch != epoch:
                return
            if process in current.pending:
                current.stats.acks += 1
                current.stats.stateful += stateful
            current.pending.discard(process)
            if stateful:
                current.stateful.append(process)
            if not current.pending:
                self._ready = current

    def complete_ready(self) -> EpochStats | None:
        """Write the completion record of a fully acknowledged epoch; returns its stats, or None."""
        with self._lock:
            done = self._ready
            if done is None:
                return None
            self._ready = None
        self._faults.hit("before_complete", "*")
        self.config.store.complete_epoch(self.config.run_id, done.epoch, done.started, done.stateful)
        with self._lock:
            self._current = None
            self.last_completed = done.epoch
            done.stats.seconds = self._monotonic() - done.started_mono
        return done.stats
