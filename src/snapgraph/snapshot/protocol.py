"""The aligned-barrier snapshot protocol (Chandy-Lamport as Flink does it): the coordinator's side.

docs/snapshots.md, "One epoch, step by step", draws epoch E; each operator's part of it
(alignment, snapshot, epoch_complete, restore) is :mod:`snapgraph.snapshot.aligner`.
Epoch E, step by step:

1. The coordinator starts E on every *source* (an operator with no connected
   input) between two of its callbacks.
2. An operator takes its snapshot once barrier E has arrived on **all** its
   inputs (sources: at once). Inputs that delivered E are blocked until then,
   so the state reflects exactly the messages before E on every input.
3. Taking the snapshot = pause callback, ``serialize(E)``, persist the bytes,
   forward E on every output, resume callback, then acknowledge E.
   Stateless operators align and forward but persist nothing.
4. When every operator acknowledged E, the coordinator writes the completion
   record; only now is E restorable. Then ``epoch_complete(E)`` runs on every
   operator that registered it (writers commit there).

A crash before step 4 leaves the previous complete epoch as the restore point;
messages after it are replayed by the restored generators.
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
    """Starts epochs, collects acknowledgements and completes epochs.

    One epoch is in flight at a time: a period that elapses while an epoch is
    still aligning starts the next one as soon as it completes. Clocks are
    injected: ``monotonic`` for periods and durations, ``wall`` (seconds since
    1970) for epoch ids and the completion record.
    """

    def __init__(self, config: SnapshotConfig, operators: list[str], sources: list[str], faults: FaultPlan, *,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self._faults = faults
        self._operators = operators
        self._sources = sources
        self._monotonic = monotonic
        self._wall = wall
        restored = config.restore.epoch.epoch if config.restore else None
        self._clock = EpochClock(after=restored, now=wall)
        self._lock = threading.Lock()
        self._current: _Epoch | None = None
        self._ready: _Epoch | None = None  # the epoch in flight, once every operator acknowledged it
        self.last_completed: str | None = restored
        self.epochs: list[EpochStats] = []  # this attempt's epochs, oldest first (the last may be in flight)
        self._next_due = monotonic() + (config.period or 0)

    @property
    def in_flight(self) -> bool:
        return self._current is not None

    def due(self) -> bool:
        return self.config.period is not None and self._current is None and self._monotonic() >= self._next_due

    def start(self, *, final: bool = False, sealed: bool = False) -> str:
        """Start the next epoch; ``final``/``sealed`` only label it in :attr:`epochs` (a drain's epochs)."""
        epoch = self._clock.next()
        started = self._wall()
        stats = EpochStats(epoch, started, final=final, sealed=sealed)
        with self._lock:
            assert self._current is None, "one epoch at a time"
            self._current = _Epoch(epoch, started, self._monotonic(), set(self._operators), stats)
            self.epochs.append(stats)
        if self.config.period is not None:
            self._next_due = self._monotonic() + self.config.period
        return epoch

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
