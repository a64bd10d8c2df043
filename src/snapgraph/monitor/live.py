"""The live view of a running graph: what every display (terminal, metrics, web monitor) reads.

:class:`RunWatcher` is an :class:`~snapgraph.instruments.base.Instrument`: it listens to the
attempt, failure and epoch hooks, and reads the live per-operator counters of the attempt
(:meth:`~snapgraph.instruments.base.Attempt.stats`) when asked for a :class:`RunView`. Nothing in it
runs per message, and a run without displays has no watcher at all.

Rates and shares are computed from the samples that :meth:`RunWatcher.view` takes (at most one
every :data:`SAMPLE_EVERY` seconds, kept for :data:`RATE_WINDOW` seconds), so any number of readers
at any pace see the same figures. Clocks are injected: ``monotonic`` for rates and durations,
``wall`` (seconds since 1970) for the times a view shows.

An operator's ``state`` is what its own thread says (loading, running, aligning, snapshotting,
shutdown, done), or ``failed`` once it failed in this attempt; a running operator that spent most
of the last window waiting for room in its receivers' channels is shown as ``blocked``
(back-pressure), inferred from its counters rather than signalled on the hot path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from snapgraph.instruments.base import Attempt, Instrument, Outcome
from snapgraph.instruments.stats import EpochStats, OperatorStats, PortStats, merge
from snapgraph.model.graph import Graph

if TYPE_CHECKING:
    from snapgraph.runtime.failures import OperatorFailure

SAMPLE_EVERY = 0.25  # seconds: views asked for more often reuse the newest sample
RATE_WINDOW = 2.0  # seconds of samples rates are computed over
BLOCKED_SHARE = 0.5  # a running operator that waited for room this share of the window is "blocked"
KEPT_EPOCHS = 200  # epochs kept in the history (oldest dropped first)


@dataclass(frozen=True)
class PortView:
    """One port: totals of this attempt, of the whole run (every attempt, replays included: these only
    grow, as metrics counters must), and for inputs the items waiting in its channel now."""

    messages: int
    rows: int
    bytes: int
    run_messages: int
    run_rows: int
    run_bytes: int
    queued: int


@dataclass(frozen=True)
class OperatorView:
    """One operator now: totals of this attempt (``run_…``: of every attempt so far), rates over the
    last window, its ports, its state."""

    name: str
    group: str
    state: str
    instances: int
    messages_in: int
    messages_out: int
    rows_in: int
    rows_out: int
    bytes_in: int  # encoded bytes from other groups
    bytes_out: int  # encoded bytes to other groups
    messages_in_per_s: float
    messages_out_per_s: float
    rows_in_per_s: float
    rows_out_per_s: float
    callback_share: float  # of the window's wall time, in script callbacks (per instance)
    blocked_share: float  # of the window's wall time, waiting for room downstream (per instance)
    callbacks: int
    callback_seconds: float
    send_seconds: float
    snapshots: int
    last_epoch: str | None
    state_bytes: int
    run_callbacks: int
    run_callback_seconds: float
    run_send_seconds: float
    inputs: dict[str, PortView]
    outputs: dict[str, PortView]
    # Callbacks of every attempt per duration bucket (stats.CALLBACK_BUCKETS, then the open last one; not
    # cumulative): the distribution a histogram needs. Empty in a view made without counters.
    run_callback_buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class EpochOperatorTimes:
    """One operator's share of one epoch."""

    alignment_seconds: float
    serialize_seconds: float
    persist_seconds: float
    state_bytes: int


@dataclass(frozen=True)
class EpochView:
    """One epoch of the run (status ``in_flight``, ``completed`` or ``abandoned``: its attempt ended first)."""

    epoch: str
    attempt: int
    status: str
    started_at: float
    seconds: float | None
    state_bytes: int
    acks: int
    stateful: int
    final: bool
    sealed: bool
    operators: dict[str, EpochOperatorTimes]


@dataclass(frozen=True)
class FailureView:
    """A failure that ended an attempt."""

    attempt: int
    at: float
    operator: str  # the failed operator (several, comma-separated, when a whole group died)
    phase: str  # where it failed: a callback, a protocol step, "the group process died", ...
    message: str
    traceback: str


@dataclass(frozen=True)
class AttemptView:
    number: int
    started_at: float
    restored_from: str | None
    backend: str
    ended_at: float | None = None
    status: str | None = None  # completed, stopped, failed; None while it runs
    reason: str = ""


@dataclass(frozen=True)
class RunView:
    """Everything a display shows of one run at one moment (plain data; :meth:`as_dict` for JSON)."""

    graph: str
    run: str | None
    status: str  # starting, running, draining, completed, stopped, failed
    at: float  # wall clock of this view
    elapsed: float  # seconds since the first attempt started
    attempt: int
    recoveries: int
    completed_epochs: int  # epochs completed in this run, every attempt (the history keeps the newest only)
    last_completed_epoch: str | None
    last_epoch_seconds: float | None
    last_epoch_bytes: int | None
    operators: list[OperatorView]
    epochs: list[EpochView]
    attempts: list[AttemptView]
    failures: list[FailureView]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sample:
    at: float
    totals: dict[str, tuple[int, int, int, int, float, float, int]]  # per operator, see _totals


@dataclass
class _EpochEntry:
    attempt: int
    stats: EpochStats
    status: str = "in_flight"
    operators: dict[str, EpochOperatorTimes] = field(default_factory=dict)


def _port_view(now: PortStats | None, carried: PortStats | None) -> PortView:
    now = now or PortStats()
    carried = carried or PortStats()
    return PortView(now.messages, now.rows, now.bytes, carried.messages + now.messages, carried.rows + now.rows,
                    carried.bytes + now.bytes, now.queued)


def _totals(stats: OperatorStats) -> tuple[int, int, int, int, float, float, int]:
    return (stats.messages_in, stats.messages_out, stats.rows_in, stats.rows_out, stats.callback_seconds,
            stats.send_seconds, max(1, stats.instances))


class RunWatcher(Instrument):
    """Collects the live view of the runs of ``graph`` in this process (see the module docstring)."""

    def __init__(self, graph: Graph, *, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.graph = graph
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._attempt: Attempt | None = None
        self._attempts: list[AttemptView] = []
        self._failures: list[FailureView] = []
        self._failed: set[str] = set()  # operators failed in the current attempt
        self._epochs: deque[_EpochEntry] = deque(maxlen=KEPT_EPOCHS)
        self._status = "starting"
        self._started_mono: float | None = None
        self._samples: deque[_Sample] = deque()
        self._final_stats: dict[str, OperatorStats] | None = None  # the ended attempt's, until the next starts
        self._carried: dict[str, OperatorStats] = {}  # the counters of the attempts that ended, added up
        self._completed = 0
        self.changed = threading.Event()  # set on every event: a display may redraw at once

    # -- hooks -------------------------------------------------------------------------------------
    def attempt_started(self, attempt: Attempt) -> None:
        with self._lock:
            if self._started_mono is None:
                self._started_mono = self._monotonic()
            self._attempt = attempt
            self._attempts.append(AttemptView(attempt.attempt, self._wall(), attempt.restored_from, attempt.backend))
            self._failed.clear()
            self._samples.clear()
            if self._final_stats is not None:
                for name, ended in self._final_stats.items():
                    carried = self._carried.get(name)
                    self._carried[name] = ended.copy() if carried is None else merge(carried, ended)
            self._final_stats = None
            self._status = "running"
        self.changed.set()

    def operator_failed(self, failure: OperatorFailure) -> None:
        with self._lock:
            number = self._attempt.attempt if self._attempt is not None else 0
            self._failures.append(FailureView(number, self._wall(), failure.process, failure.phase,
                                              failure.message, failure.traceback))
            self._failed.update(name.strip() for name in failure.process.split(","))
        self.changed.set()

    def epoch_started(self, epoch: str, final: bool) -> None:
        attempt = self._attempt
        if attempt is None:
            return
        for stats in reversed(attempt.epochs()):
            if stats.epoch == epoch:
                with self._lock:
                    self._epochs.append(_EpochEntry(attempt.attempt, stats))
                break
        self.changed.set()

    def epoch_completed(self, epoch: EpochStats) -> None:
        with self._lock:
            for entry in reversed(self._epochs):
                if entry.stats.epoch == epoch.epoch:
                    entry.stats = epoch
                    entry.status = "completed"
                    break
            self._completed += 1
        self.changed.set()

    def drain_started(self, status: str, reason: str) -> None:
        with self._lock:
            self._status = "draining"
        self.changed.set()

    def attempt_ended(self, attempt: Attempt, outcome: Outcome) -> None:
        with self._lock:
            for i, view in enumerate(self._attempts):
                if view.number == attempt.attempt and view.ended_at is None:
                    self._attempts[i] = AttemptView(view.number, view.started_at, view.restored_from, view.backend,
                                                    self._wall(), outcome.status, outcome.reason)
            for entry in self._epochs:
                if entry.attempt == attempt.attempt and entry.status == "in_flight":
                    entry.status = "abandoned"
            self._final_stats = outcome.stats
            self._status = outcome.status
        self._fill_epoch_times(outcome.stats)
        self.changed.set()

    # -- the view ----------------------------------------------------------------------------------
    def view(self) -> RunView:
        """The run now (cheap: reads copies of the counters; safe from any thread)."""
        attempt = self._attempt
        with self._lock:
            final = self._final_stats
        stats = final if final is not None else (attempt.stats() if attempt is not None else {})
        if final is None:
            self._fill_epoch_times(stats)
        now = self._monotonic()
        window = self._sample(now, stats)
        with self._lock:
            operators = [self._operator_view(name, stats.get(name), window) for name in self.graph.processes]
            epochs = [EpochView(e.stats.epoch, e.attempt, e.status, e.stats.started_at, e.stats.seconds,
                                e.stats.state_bytes, e.stats.acks, e.stats.stateful, e.stats.final, e.stats.sealed,
                                dict(e.operators)) for e in self._epochs]
            completed = [e for e in epochs if e.status == "completed"]
            last = completed[-1] if completed else None
            restored = attempt.restored_from if attempt is not None else None
            return RunView(
                graph=self.graph.name, run=attempt.run if attempt is not None else None, status=self._status,
                at=self._wall(), elapsed=now - self._started_mono if self._started_mono is not None else 0.0,
                attempt=attempt.attempt if attempt is not None else 0,
                recoveries=max(0, len(self._attempts) - 1), completed_epochs=self._completed,
                last_completed_epoch=last.epoch if last is not None else restored,
                last_epoch_seconds=last.seconds if last is not None else None,
                last_epoch_bytes=last.state_bytes if last is not None else None,
                operators=operators, epochs=epochs, attempts=list(self._attempts), failures=list(self._failures))

    def _sample(self, now: float, stats: dict[str, OperatorStats]) -> tuple[_Sample, _Sample] | None:
        """Take a sample if the newest is old enough; the oldest and newest sample of the window."""
        with self._lock:
            samples = self._samples
            if not samples or now - samples[-1].at >= SAMPLE_EVERY:
                samples.append(_Sample(now, {name: _totals(s) for name, s in stats.items()}))
            while len(samples) > 2 and now - samples[1].at >= RATE_WINDOW:
                samples.popleft()
            return (samples[0], samples[-1]) if len(samples) > 1 else None

    def _operator_view(self, name: str, stats: OperatorStats | None,
                       window: tuple[_Sample, _Sample] | None) -> OperatorView:
        process = self.graph.processes[name]
        stats = stats or OperatorStats.for_ports(name, process.inports, process.outports, process.group)
        rates = [0.0] * 6
        if window is not None:
            first, last = window
            seconds = last.at - first.at
            before, after = first.totals.get(name), last.totals.get(name)
            if seconds > 0 and before is not None and after is not None:
                instances = after[6]
                rates = [(after[i] - before[i]) / seconds for i in range(4)]
                rates += [(after[i] - before[i]) / seconds / instances for i in (4, 5)]
        carried = self._carried.get(name) or OperatorStats(name)
        state = "failed" if name in self._failed else stats.state
        if state == "running" and rates[5] >= BLOCKED_SHARE:
            state = "blocked"
        return OperatorView(
            name=name, group=stats.group or process.group, state=state, instances=stats.instances,
            messages_in=stats.messages_in, messages_out=stats.messages_out, rows_in=stats.rows_in,
            rows_out=stats.rows_out, bytes_in=sum(p.bytes for p in stats.inputs.values()),
            bytes_out=sum(p.bytes for p in stats.outputs.values()),
            messages_in_per_s=rates[0], messages_out_per_s=rates[1], rows_in_per_s=rates[2], rows_out_per_s=rates[3],
            callback_share=min(1.0, rates[4]), blocked_share=min(1.0, rates[5]),
            callbacks=stats.callbacks, callback_seconds=stats.callback_seconds, send_seconds=stats.send_seconds,
            snapshots=stats.snapshots, last_epoch=stats.last_epoch, state_bytes=stats.state_bytes,
            run_callbacks=carried.callbacks + stats.callbacks,
            run_callback_seconds=carried.callback_seconds + stats.callback_seconds,
            run_send_seconds=carried.send_seconds + stats.send_seconds,
            inputs={port: _port_view(stats.inputs.get(port), carried.inputs.get(port)) for port in process.inports},
            outputs={port: _port_view(stats.outputs.get(port), carried.outputs.get(port))
                     for port in process.outports},
            run_callback_buckets=tuple(c + n for c, n in zip(carried.callback_buckets, stats.callback_buckets,
                                                             strict=True)))

    def _fill_epoch_times(self, stats: dict[str, OperatorStats]) -> None:
        """Record each operator's times for the epoch it snapshotted last (its counters say which)."""
        with self._lock:
            by_epoch = {entry.stats.epoch: entry for entry in self._epochs}
            for name, record in stats.items():
                entry = by_epoch.get(record.last_epoch or "")
                if entry is not None and name not in entry.operators:
                    entry.operators[name] = EpochOperatorTimes(record.last_alignment_seconds,
                                                               record.last_serialize_seconds,
                                                               record.last_persist_seconds, record.state_bytes)


__all__ = ["AttemptView", "EpochOperatorTimes", "EpochView", "FailureView", "OperatorView", "PortView", "RunView",
           "RunWatcher"]
