"""Automatic recovery: run attempts of a graph until it completes or retries run out.

Failure counting follows SAP's Automatic Graph Recovery: an attempt that ran
shorter than ``retry_threshold`` seconds increments the failure counter, a
longer one resets it to zero; once the counter exceeds ``max_retries`` the
run finally fails. Every new attempt is a fresh engine: stateful operators
are restored from the newest intact complete epoch, stateless ones start
fresh, and whatever was in flight in the failed attempt is gone (the restored
generators replay it).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable

from snapgraph.model.graph import Graph
from snapgraph.runtime.engine import FAILED, Engine, GraphDriver, RunOptions, RunResult
from snapgraph.runtime.processes import ProcessEngine
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig
from snapgraph.snapshot.store import COMPLETED as RUN_COMPLETED
from snapgraph.snapshot.store import FAILED as RUN_FAILED
from snapgraph.snapshot.store import RunRecord, SnapshotStore



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


class Supervisor:
    """Runs attempts of one graph run, recovering from failures per the policy."""

    def __init__(self, graph: Graph, options: RunOptions, policy: RecoveryPolicy, *,
                 store: SnapshotStore | None = None, period: float | None = None,
                 resume: RunRecord | None = None, faults: FaultPlan | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.graph = graph
        self.options = options
        self.policy = policy
        self.store = store
        self.period = period
        self.resume = resume
        self.faults = faults or FaultPlan()
        self.say = say or (lambda text: print(f"snapgraph: {text}", file=sys.stderr, flush=True))
        self._engine: GraphDriver | None = None
        self._stop_reason: str | None = None
        self._stopped = threading.Event()

    def stop(self, reason: str) -> None:
        """Stop gracefully (signals): the running attempt drains; no further attempts start."""
        self._stop_reason = reason
        self._stopped.set()
        engine = self._engine
        if engine is not None:
            engine.stop(reason)

    def is_stopping(self) -> bool:
        return self._stopped.is_set()

    def run(self) -> SupervisedResult:
        store = self.store
        run = self.resume
        if store is not None and run is None:
            run = store.begin_run(str(self.graph.path.resolve()), self.graph.name)
        counter = 0
        attempt = 0
        restored_from: list[str | None] = []
        while True:
            attempt += 1
            snapshots = None
            if store is not None and run is not None:
                restore = store.latest_intact_epoch(run.run_id) if (attempt > 1 or self.resume) else None
                for note in store.damage:
                    self.say(note)
                store.damage.clear()
                snapshots = SnapshotConfig(store, run.run_id, self.period, restore)
                restored_from.append(restore[0].epoch if restore else None)
            else:
                restored_from.append(None)
            driver = Engine if self.options.in_process else ProcessEngine
            engine = driver(self.graph, self.options, snapshots=snapshots, faults=self.faults)
            self._engine = engine
            if self._stopped.is_set():
                engine.stop(self._stop_reason or "stopped")
            started = time.monotonic()
            result = engine.run()
            lived = time.monotonic() - started
            # Let go of the attempt's operators now: their scripts' open connections and
            # transactions are finalized (rolled back) before the next attempt starts, as
            # they would be if the operator's process had died.
            self._engine = engine = None  # type: ignore[assignment]
            gc.collect()
            final = (result.status != FAILED or result.failure is None or result.failure.invalid
                     or self.policy.max_retries is None or self._stopped.is_set())
            if not final:
                counter = counter + 1 if lived < self.policy.retry_threshold else 0
                if counter > self.policy.max_retries:  # type: ignore[operator]
                    self.say(f"maximum retries reached ({self.policy.max_retries}): {result.reason}")
                    final = True
            if final:
                return self._finish(run, result, attempt, restored_from)
            assert result.failure is not None
            self.say(
                f"attempt {attempt} failed after {lived:.2f}s: {result.reason}; recovering "
                f"(failure counter {counter}/{self.policy.max_retries}) in {self.policy.retry_interval:g}s"
            )
            if result.failure.traceback:
                self.say(result.failure.traceback)
            if store is not None and run is not None:
                store.note_attempt(run.run_id)
            if self._stopped.wait(self.policy.retry_interval):
                return self._finish(run, result, attempt, restored_from)

    def _finish(self, run: RunRecord | None, result: RunResult, attempts: int,
                restored_from: list[str | None]) -> SupervisedResult:
        """Record how the run ended in the store and report it."""
        if self.store is not None and run is not None:
            self.store.finish_run(run.run_id, RUN_FAILED if result.status == FAILED else RUN_COMPLETED)
        return SupervisedResult(result, attempts, run.run_id if run else None, restored_from)


__all__ = ["RecoveryPolicy", "SupervisedResult", "Supervisor"]
