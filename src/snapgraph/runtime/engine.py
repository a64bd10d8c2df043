"""Running a whole graph: starting its groups, driving epochs, deciding when it ends.

A run ends when

* a Graph Terminator fires (completed),
* nothing more can happen (completed): no message in flight, no callback
  running, no active timer, no script thread alive,
* ``stop_after`` seconds passed or :meth:`GraphDriver.stop` was called (stopped),
* an operator fails under ``terminate on error`` (failed).

With snapshots on, the first three *drain* instead of stopping at once: all
timers stop, in-flight messages are processed, and a final epoch is taken
and completed, so writers that commit in ``epoch_complete`` commit
everything. Every exit path stops all dispatchers, which then run their
shutdown callbacks.

:class:`GraphDriver` holds that logic; :class:`Engine` runs all groups in
this process, :class:`snapgraph.runtime.processes.ProcessEngine` one OS
process per group.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from snapgraph.instruments.base import Attempt, Instruments, Outcome
from snapgraph.instruments.base import current as current_instruments
from snapgraph.instruments.stats import EpochStats, OperatorStats, merge_into
from snapgraph.model.graph import Graph
from snapgraph.runtime.completion import CompletionDetector, WorkCounts
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.group import GroupHost, current_cpu
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.scripts import forget_script_modules, prepare_imports
from snapgraph.snapshot.faults import FaultPlan, set_active_plan
from snapgraph.snapshot.protocol import Coordinator, SnapshotConfig
from snapgraph.snapshot.store import COMPLETED, FAILED, STOPPED, RunStatus

TICK = 0.05  # seconds between checks of the watch loop when nothing wakes it


@dataclass
class RunResult:
    status: RunStatus  # COMPLETED, STOPPED or FAILED (the store records the same value)
    reason: str
    failure: OperatorFailure | None = None
    stuck: list[str] = field(default_factory=list)  # operators that did not stop in time


class GraphDriver(ABC):
    """Runs one attempt of a graph: epochs, completion, failure; subclasses place the groups."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None, *,
                 instruments: Instruments | None = None, attempt: int = 1,
                 previous_failure: OperatorFailure | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self.graph = graph
        self.options = options or RunOptions()
        self.snapshots = snapshots
        self.faults = faults or FaultPlan()
        self.handle = uuid.uuid4().hex
        # Observers (snapgraph.instruments): those given, else those installed in this process.
        self.instruments = instruments if instruments is not None else current_instruments()
        self._attempt_number = attempt  # 1, 2, ... within the run (the supervisor counts)
        self._previous_failure = previous_failure  # what failed the attempt before this one
        self._clock = clock  # monotonic: durations (attempt, persist, epochs)
        self.attempt: Attempt | None = None  # what the hooks see of this attempt, once it runs
        self._reported: dict[str, list[OperatorStats]] = {}  # stats reported by group instances (remote)
        self._reported_lock = threading.Lock()
        self.restore = snapshots.restore if snapshots is not None else None
        self.coordinator: Coordinator | None = None
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._end_lock = threading.Lock()
        self._status: RunStatus | None = None
        self._reason = ""
        self._failure: OperatorFailure | None = None
        self._draining: tuple[RunStatus, str] | None = None  # (status, reason) once a drain began
        self._drain_deadline = 0.0
        self._running = False  # the operators were let go (a stop now drains instead of ending at once)
        self._timers_dropped = False
        # Messages published as last seen, and when the latest epoch started. A periodic epoch starts
        # only if something was published since the previous one: when epochs take longer than the
        # period, one would otherwise always be in flight and the graph could never finish.
        self._published_seen = 0
        self._completion = CompletionDetector()
        if snapshots is not None:
            sources = [name for name in graph.processes if not graph.connections_to(name)]
            self.coordinator = Coordinator(snapshots, list(graph.processes), sources, self.faults,
                                           monotonic=clock, wall=wall_clock)

    # -- placing groups: what subclasses provide ------------------------------------------------
    @abstractmethod
    def _load(self) -> list[OperatorFailure]:
        """Start every group and run the script bodies; the load failures."""

    @abstractmethod
    def _go(self) -> None:
        """Let every group run."""

    @abstractmethod
    def _take_snapshot(self, source: str, epoch: str) -> None: ...

    @abstractmethod
    def _epoch_complete(self, epoch: str, sealed: bool) -> None:
        """Run ``epoch_complete(epoch)`` everywhere; ``sealed``: what it publishes is discarded."""

    @abstractmethod
    def _drop_timers(self) -> None: ...

    @abstractmethod
    def _work(self) -> list[WorkCounts] | None:
        """A wave of every group instance's pending work (None: not every instance answered)."""

    @abstractmethod
    def _stop_groups(self) -> None: ...

    @abstractmethod
    def _join(self) -> list[str]:
        """Wait for the groups to finish; the operators that did not."""

    # -- the Driver interface (groups report here) ----------------------------------------------------
    def operator_failed(self, failure: OperatorFailure) -> None:
        if "operator_failed" in self.instruments:
            self.instruments.call("operator_failed", failure)
        self._end(FAILED, str(failure), failure)

    def shutdown_failed(self, failure: OperatorFailure) -> None:
        """A shutdown callback raised: the run fails even if it had completed; the first failure wins."""
        with self._end_lock:
            if self._status != FAILED:
                self._status, self._reason, self._failure = FAILED, str(failure), failure
        self._end(FAILED, str(failure), failure)

    def terminator_fired(self, by: str) -> None:
        self._finish_gracefully(COMPLETED, f"graph terminator {by!r} fired")

    def persist_state(self, process: str, epoch: str, data: bytes) -> None:
        assert self.snapshots is not None
        started = self._clock()
        self.snapshots.store.save_state(self.snapshots.run_id, epoch, process, data)
        self.state_saved(process, epoch, len(data), self._clock() - started)

    def state_saved(self, process: str, epoch: str, size: int, seconds: float) -> None:
        """The state of ``process`` for ``epoch`` is in the store (written here, or by its group)."""
        assert self.coordinator is not None
        self.coordinator.persisted(process, epoch, size)
        if "state_persisted" in self.instruments:
            self.instruments.call("state_persisted", process, epoch, size, seconds)

    def epoch_acked(self, process: str, epoch: str, stateful: bool) -> None:
        assert self.coordinator is not None
        self.coordinator.ack(process, epoch, stateful)
        if "epoch_acked" in self.instruments:
            self.instruments.call("epoch_acked", process, epoch, stateful)
        self.wake.set()

    # -- stats ----------------------------------------------------------------------------------
    def stats_reported(self, instance: str, reports: Iterable[OperatorStats]) -> None:
        """A group instance (``instance``: any id unique in the attempt) reports its operators' counters.

        Reports are cumulative: each replaces that instance's previous one. What remote drivers call
        with the stats a group sends in its probe and ack replies.
        """
        with self._reported_lock:
            self._reported[instance] = list(reports)

    def stats(self) -> dict[str, OperatorStats]:
        """The per-operator counters of this attempt so far (copies; instances of an operator merged)."""
        table: dict[str, OperatorStats] = {}
        for report in self._local_stats():
            merge_into(table, [report])
        with self._reported_lock:
            reported = [r for reports in self._reported.values() for r in reports]
        return merge_into(table, reported)

    def epochs(self) -> list[EpochStats]:
        """This attempt's epochs so far (copies)."""
        if self.coordinator is None:
            return []
        return [EpochStats(**e.as_dict()) for e in list(self.coordinator.epochs)]  # type: ignore[arg-type]

    def _local_stats(self) -> list[OperatorStats]:
        """Counters of operators running in this process (copies); drivers of in-process groups override it."""
        return []

    # -- control --------------------------------------------------------------------------
    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def stopped_on_request(self) -> bool:
        """The attempt has ended (or is draining) because a stop was asked for."""
        with self._end_lock:
            return self._status == STOPPED or (self._draining is not None and self._draining[0] == STOPPED)

    def stop(self, reason: str) -> None:
        """Stop the run gracefully (signals, --stop-after); shutdown callbacks still run.

        Before the operators run (while scripts load) nothing needs draining: the attempt ends at
        once. Afterwards the graph drains (see the module docstring). Any thread may call this; the
        work of draining happens on the watch loop.
        """
        with self._end_lock:
            running = self._running
        if not running:
            self._end(STOPPED, reason)
            return
        self._finish_gracefully(STOPPED, reason)

    def _finish_gracefully(self, status: RunStatus, reason: str) -> None:
        """Drain: timers stop, what was already sent is processed, then (snapshots on) a final epoch.

        Without snapshots a stop on request ends at once (nothing is saved, so nothing is gained by
        waiting); a Graph Terminator still drains, so every message sent before it fired is processed.
        """
        if self.snapshots is None and status == STOPPED:
            self._end(status, reason)
            return
        with self._end_lock:
            if self._draining is not None or self._status is not None:
                return
            self._draining = (status, reason)
            self._drain_deadline = time.monotonic() + self.options.drain_timeout
        self.wake.set()

    def _end(self, status: RunStatus, reason: str, failure: OperatorFailure | None = None) -> None:
        with self._end_lock:
            if self._status is None:
                self._status, self._reason, self._failure = status, reason, failure
        self._stopping.set()
        self.wake.set()
        self._stop_groups()

    # -- the run ----------------------------------------------------------------------
    def run(self) -> RunResult:
        set_active_plan(self.faults)
        started = self._clock()
        self._attempt_started()
        loaded_before = set(sys.modules)
        prepare_imports(self.graph.path.parent, self.options.operator_dirs)
        try:
            failures = [] if self.is_stopping() else self._load()
            if failures:
                self.operator_failed(failures[0])
            elif not self.is_stopping():
                if "operator_loaded" in self.instruments:
                    for name in self.graph.processes:
                        self.instruments.call("operator_loaded", name)
                with self._end_lock:
                    self._running = self._status is None
                if self._running:
                    self._go()
                    self._watch()
            stuck = self._join()
        finally:
            forget_script_modules(self.graph.path.parent, loaded_before)
        assert self._status is not None
        result = RunResult(self._status, self._reason, self._failure, stuck)
        self._attempt_ended(result, self._clock() - started)
        return result

    def _attempt_started(self) -> None:
        instruments = self.instruments
        if not instruments:
            return
        run_id = self.snapshots.run_id if self.snapshots is not None else None
        number = self._attempt_number
        self.attempt = Attempt(run_id, number, self.graph.name, self.handle,
                               self.restore.epoch if self.restore is not None else None, type(self).__name__,
                               self.stats, self.epochs)
        if number > 1 and "recovery" in instruments:
            instruments.call("recovery", self.attempt, self._previous_failure)
        if "attempt_started" in instruments:
            instruments.call("attempt_started", self.attempt)

    def _attempt_ended(self, result: RunResult, seconds: float) -> None:
        instruments = self.instruments
        if self.attempt is None or not instruments:
            return
        if result.status == FAILED and "attempt_failed" in instruments:
            instruments.call("attempt_failed", self.attempt, result.failure)
        if "attempt_ended" in instruments:
            instruments.call("attempt_ended", self.attempt, Outcome(
                result.status, result.reason, result.failure, self.stats(), self.epochs(), seconds))

    def _watch(self) -> None:
        deadline = None if self.options.stop_after is None else time.monotonic() + self.options.stop_after
        while not self.is_stopping():
            self.wake.wait(TICK)
            self.wake.clear()
            if self.is_stopping():
                return
            if deadline is not None and time.monotonic() >= deadline:
                deadline = None
                self.stop(f"--stop-after {self.options.stop_after:g}s elapsed")
            try:
                self._drive_snapshots()
            except Exception as exc:  # noqa: BLE001 - a store or injected failure fails the attempt
                self.operator_failed(OperatorFailure(
                    "<coordinator>", "epoch completion", f"{type(exc).__name__}: {exc}", ""))
                return
            if self._draining is not None and not self._timers_dropped:
                self._timers_dropped = True
                if "drain_started" in self.instruments:
                    self.instruments.call("drain_started", *self._draining)
                self._drop_timers()
            if self._draining is not None and time.monotonic() > self._drain_deadline:
                # Without its final epoch the graph did not finish: the run is resumable as stopped.
                _, reason = self._draining
                self._end(STOPPED, f"{reason}; drain timed out after {self.options.drain_timeout:g}s "
                                   "before the final epoch (resume continues from the last complete epoch)")
                return
            work = self._work()
            quiet = self._completion.unanswered() if work is None else self._completion.wave(work)
            if quiet.confirm:
                self.wake.set()  # the confirming wave, right away
            self._published_seen = max(self._published_seen, quiet.published)
            if quiet.idle:
                self._on_quiescent(quiet.published)

    def _drive_snapshots(self) -> None:
        coordinator = self.coordinator
        if coordinator is None:
            return
        completed = coordinator.complete_ready()
        if completed is not None:
            if "epoch_completed" in self.instruments:
                self.instruments.call("epoch_completed", EpochStats(**completed.as_dict()))  # type: ignore[arg-type]
            self._epoch_complete(completed.epoch, sealed=completed.sealed)
        if self._draining is None and coordinator.due(self._published_seen):
            self._start_epoch(coordinator.start(self._published_seen))

    def _start_epoch(self, epoch: str) -> None:
        """Inject the barrier of ``epoch``, which the coordinator just started, at every source."""
        assert self.coordinator is not None
        stats = self.coordinator.epochs[-1]
        instruments = self.instruments
        if "epoch_started" in instruments:
            instruments.call("epoch_started", epoch, stats.final)
        if stats.final and "final_epoch" in instruments:
            instruments.call("final_epoch", epoch, self.coordinator.final_epochs, stats.sealed)
        for source in self.coordinator.sources():
            if "barrier_injected" in instruments:
                instruments.call("barrier_injected", source, epoch)
            self._take_snapshot(source, epoch)

    def _on_quiescent(self, messages: int) -> None:
        """Nothing is in flight: finish, after the drain's final epochs when snapshots are on."""
        status, reason = self._draining or (COMPLETED, "nothing more to do (no messages in flight, no active timers)")
        coordinator = self.coordinator
        if coordinator is None:
            self._end(status, reason)
            return
        if coordinator.in_flight:
            return
        final = coordinator.drained(messages)
        if final is not None:
            self._end(status, f"{reason}; final epoch {final} complete")
            return
        self._start_epoch(coordinator.start_final(messages))


class Engine(GraphDriver):
    """Runs every operator of the graph in this process (one dispatcher thread each)."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None,
                 **kwargs: Any) -> None:
        super().__init__(graph, options, snapshots, faults, **kwargs)
        self.host = GroupHost(graph, graph.processes, self.options, self, snapshots_on=snapshots is not None,
                              restore=self.restore, faults=self.faults, handle=self.handle,
                              cpu=current_cpu() if self.options.pin_cpus else None)
        self.host.activity.changed = self.wake  # an idle group wakes the watch loop at once
        for runtime in self.host.operators.values():
            runtime.aligner.instruments = self.instruments  # operator-level protocol events (barrier_aligned, ...)

    def _local_stats(self) -> list[OperatorStats]:
        return self.host.stats()

    def _load(self) -> list[OperatorFailure]:
        return self.host.load()

    def _go(self) -> None:
        self.host.go()

    def _take_snapshot(self, source: str, epoch: str) -> None:
        self.host.take_snapshot(source, epoch)

    def _epoch_complete(self, epoch: str, sealed: bool) -> None:
        self.host.epoch_complete(epoch, sealed)

    def _drop_timers(self) -> None:
        self.host.drop_timers()

    def _work(self) -> list[WorkCounts]:
        return [self.host.work_counts()]

    def _stop_groups(self) -> None:
        self.host.stop()

    def _join(self) -> list[str]:
        return self.host.join()


__all__ = ["COMPLETED", "FAILED", "STOPPED", "Engine", "GraphDriver", "RunOptions", "RunResult"]
