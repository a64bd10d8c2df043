"""Automatic recovery: run attempts of a graph until it completes, stops or retries run out.

Failure counting follows SAP's Automatic Graph Recovery: an attempt that ran
shorter than ``retry_threshold`` seconds increments the failure counter, a
longer one resets it to zero; once the counter exceeds ``max_retries`` the
run finally fails. Every new attempt is a fresh engine: stateful operators
are restored from the run's newest complete epoch, stateless ones start
fresh, and whatever was in flight in the failed attempt is gone (the restored
generators replay it).

A stop request (a signal, :meth:`Supervisor.stop`) and a failure: an attempt
that fails while it drains after a stop is a failure like any other, counted
by the same rules, so with no retries left the run ends ``failed``. While
retries are left the stop wins: no new attempt starts and the run ends
``stopped``; a stop during the retry interval ends it ``stopped`` there too.
Either way the run is resumable from its newest complete epoch, which is
where a new attempt would have restored from anyway.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from snapgraph.model.graph import Graph
from snapgraph.runtime.backends import backend_name, get_backend
from snapgraph.runtime.engine import FAILED, STOPPED, GraphDriver, RunOptions, RunResult
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig
from snapgraph.snapshot.runs import RunPlan, plan_run
from snapgraph.snapshot.store import (
    ABANDONED,
    Lease,
    LeaseLost,
    RestorePoint,
    RunRecord,
    RunStatus,
    SnapshotStore,
    StoreDamage,
    StoreError,
)


@dataclass
class RecoveryPolicy:
    max_retries: int | None = None  # None: no automatic recovery
    retry_interval: float = 1.0
    retry_threshold: float = 30.0


@dataclass
class SupervisedResult:
    result: RunResult
    attempts: int
    run_id: str | None
    restored_from: list[str | None]  # per attempt: the epoch it restored from (None = from scratch)
    refusal: str | None = None  # recovery refused (damaged store): the reason; the CLI exits 2


class Supervisor:
    """Runs attempts of one graph run, recovering from failures per the policy."""

    def __init__(self, graph: Graph, options: RunOptions, policy: RecoveryPolicy, *,
                 store: SnapshotStore | None = None, period: float | None = None,
                 plan: RunPlan | None = None, lease: Lease | None = None, accept_older: bool = False,
                 faults: FaultPlan | None = None, say: Callable[[str], None] | None = None,
                 backend: str | None = None) -> None:
        self.graph = graph
        self.options = options
        # Where the groups run (snapgraph.runtime.backends): the named backend, else per options.in_process.
        self.backend = get_backend(backend_name(options, backend))
        self.policy = policy
        self.store = store
        self.period = period
        self.plan = plan
        self.lease = lease
        self.accept_older = accept_older
        self.faults = faults or FaultPlan()
        self.say = say or (lambda text: print(f"snapgraph: {text}", file=sys.stderr, flush=True))
        self._engine: GraphDriver | None = None
        self._engine_lock = threading.Lock()
        self._stop_reason: str | None = None
        self._stopped = threading.Event()
        self._lease_lost: LeaseLost | None = None
        self.ending = threading.Lock()  # held while how the run ended is recorded (see StopTarget)
        self._ended = False

    @property
    def ended(self) -> bool:
        """How the run ended is recorded (or, without a store, decided)."""
        return self._ended

    def stop(self, reason: str) -> None:
        """Stop gracefully: the running attempt drains; no further attempt starts."""
        with self._engine_lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._stopped.set()
            engine = self._engine
        if engine is not None:
            engine.stop(reason)

    def is_stopping(self) -> bool:
        return self._stopped.is_set()

    def _lost_lease(self, lost: LeaseLost) -> None:
        self._lease_lost = lost
        with self._engine_lock:
            engine = self._engine
        if engine is not None:
            engine.operator_failed(OperatorFailure("<engine>", "holding the run's lease", str(lost), ""))

    def run(self) -> SupervisedResult:
        store = self.store
        if store is not None and self.plan is None:
            # Used as a library: take the lease and plan as a plain `snapgraph run` would (RunRefused
            # or LeaseHeld if that is not safe); the CLI plans first, to report refusals itself.
            graph_key = str(self.graph.path.resolve())
            self.lease = self.lease or store.acquire_lease(graph_key)
            try:
                self.plan = plan_run(store, graph_key, self.graph.name, str(self.graph.path))
            except BaseException:
                self.lease.release()
                raise
        if self.lease is not None:
            self.lease.keep_alive(self._lost_lease)
        try:
            return self._attempts()
        finally:
            if self.lease is not None:
                try:
                    self.lease.release()
                except StoreError as err:
                    self.say(f"could not release the lease: {err}")

    def _attempts(self) -> SupervisedResult:
        run = self.plan.run if self.plan is not None else None
        restore: RestorePoint | None = self.plan.restore if self.plan is not None else None
        for note in self.plan.notes if self.plan is not None else []:
            self.say(note)
        counter = 0
        attempt = 0
        previous_failure: OperatorFailure | None = None
        restored_from: list[str | None] = []
        while True:
            attempt += 1
            snapshots = None
            if self.store is not None and run is not None:
                if attempt > 1:
                    try:
                        restore = self.store.restore_point(run.run_id, accept_older=self.accept_older)
                    except StoreDamage as damage:
                        return self._refuse(run, str(damage), attempt - 1, restored_from)
                    for note in restore.notes if restore else []:
                        self.say(note)
                snapshots = SnapshotConfig(self.store, run.run_id, self.period, restore)
                restored_from.append(restore.epoch if restore else None)
            else:
                restored_from.append(None)
            engine = self.backend.engine(self.graph, self.options, snapshots=snapshots, faults=self.faults,
                                         attempt=attempt, previous_failure=previous_failure)
            with self._engine_lock:
                self._engine = engine
                stop_reason = self._stop_reason
            if stop_reason is not None:
                engine.stop(stop_reason)
            started = time.monotonic()
            result = engine.run()
            lived = time.monotonic() - started
            # Let go of the attempt's operators now: their scripts' open connections and
            # transactions are finalized (rolled back) before the next attempt starts, as
            # they would be if the operator's process had died.
            with self._engine_lock:
                self._engine = None
            engine = None  # type: ignore[assignment]
            gc.collect()
            if self._lease_lost is not None:
                return self._finish(None, RunResult(FAILED, str(self._lease_lost), result.failure, result.stuck),
                                    attempt, restored_from)
            final = (result.status != FAILED or result.failure is None or result.failure.invalid
                     or self.policy.max_retries is None)
            if not final:
                counter = counter + 1 if lived < self.policy.retry_threshold else 0
                if counter > self.policy.max_retries:  # type: ignore[operator]
                    self.say(f"maximum retries reached ({self.policy.max_retries}): {result.reason}")
                    final = True
            if final:
                never_started = (result.failure is not None and result.failure.invalid and attempt == 1
                                 and self.plan is not None and not self.plan.resumed)
                # A new run refused while its operators load (a config a connector cannot run with: exit 2)
                # never ran: it is recorded as abandoned, so the corrected graph starts with a plain run.
                return self._finish(run, result, attempt, restored_from,
                                    recorded=ABANDONED if never_started else None)
            assert result.failure is not None
            previous_failure = result.failure
            if self._stopped.is_set():
                stopped = RunResult(STOPPED, f"{self._stop_reason}; the attempt failed while stopping "
                                             f"({result.reason}); resume continues from the last complete epoch")
                return self._finish(run, stopped, attempt, restored_from)
            self.say(
                f"attempt {attempt} failed after {lived:.2f}s: {result.reason}; recovering "
                f"(failure counter {counter}/{self.policy.max_retries}) in {self.policy.retry_interval:g}s"
            )
            if result.failure.traceback:
                self.say(result.failure.traceback)
            if self.store is not None and run is not None:
                try:
                    self.store.note_attempt(run.run_id)
                except StoreError as err:
                    return self._finish(run, RunResult(FAILED, str(err)), attempt, restored_from)
            if self._stopped.wait(self.policy.retry_interval):
                stopped = RunResult(STOPPED, f"{self._stop_reason} during the retry interval after: {result.reason}")
                return self._finish(run, stopped, attempt, restored_from)

    def _refuse(self, run: RunRecord, reason: str, attempts: int,
                restored_from: list[str | None]) -> SupervisedResult:
        self.say(reason)
        result = RunResult(FAILED, "recovery refused: the store is damaged")
        outcome = self._finish(run, result, attempts, restored_from)
        outcome.refusal = reason
        return outcome

    def _finish(self, run: RunRecord | None, result: RunResult, attempts: int,
                restored_from: list[str | None], *, recorded: RunStatus | None = None) -> SupervisedResult:
        """Record how the run ended in the store (``run`` None: do not write; ``recorded``: the status to
        record, if not the result's) and report it."""
        run_id = run.run_id if run is not None else None
        with self.ending:
            if self.store is not None and run_id is not None:
                try:
                    self.store.finish_run(run_id, recorded or result.status)
                except StoreError as err:
                    # The run stays 'running' in the store: still resumable, and a plain run still refuses.
                    self.say(f"could not record the end of run {run_id}: {err}")
            self._ended = True
        if run_id is None and self.plan is not None:
            run_id = self.plan.run.run_id
        return SupervisedResult(result, attempts, run_id, restored_from)


__all__ = ["RecoveryPolicy", "SupervisedResult", "Supervisor"]
