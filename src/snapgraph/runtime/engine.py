"""Running a whole graph: wiring channels, starting dispatchers, deciding when it ends.

A run ends when

* a Graph Terminator fires (completed),
* nothing more can happen (completed): no message in flight, no callback
  running, no active timer, no script thread alive,
* ``stop_after`` seconds passed or :meth:`Engine.stop` was called (stopped),
* an operator fails under ``terminate on error`` (failed).

With snapshots on, the first three *drain* instead of stopping at once: all
timers stop, in-flight messages are processed, and a final epoch is taken
and completed, so writers that commit in ``epoch_complete`` commit
everything. Every exit path stops all dispatchers, which then run their
shutdown callbacks.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from snapgraph.api.data import TypeContext, set_default_type_context
from snapgraph.api.operator_api import RuntimeInfo
from snapgraph.model.graph import RETRY, Graph, Process
from snapgraph.model.vtypes import VTypeRegistry
from snapgraph.runtime.channels import DEFAULT_CAPACITY, Channel, Inbox
from snapgraph.runtime.logs import operator_logger
from snapgraph.runtime.operator import OperatorFailure, OperatorRuntime, Target
from snapgraph.runtime.scripts import forget_script_modules, prepare_imports
from snapgraph.snapshot.faults import FaultPlan, set_active_plan
from snapgraph.snapshot.protocol import Coordinator, SnapshotConfig

COMPLETED = "completed"
STOPPED = "stopped"
FAILED = "failed"

JOIN_TIMEOUT = 10.0  # seconds a dispatcher gets to finish its callback and shutdown


@dataclass
class RunOptions:
    stop_after: float | None = None
    channel_capacity: int = DEFAULT_CAPACITY
    operator_dirs: list[Path] = field(default_factory=list)
    stdout: TextIO | None = None  # Terminal/Wiretap output; None = sys.stdout at write time
    log_level: int = logging.INFO
    drain_timeout: float = 60.0  # seconds a draining graph gets to reach its final epoch


@dataclass
class RunResult:
    status: str
    reason: str
    failure: OperatorFailure | None = None
    stuck: list[str] = field(default_factory=list)  # operators that did not stop in time


class Activity:
    """Counts pending work: queued messages, control events, active timers, start-up.

    The graph is quiescent when the count is zero: every increment happens
    before the work it stands for can finish, so zero is never seen early.
    """

    def __init__(self) -> None:
        self._count = 0
        self.messages = 0  # messages sent so far (tells whether a final epoch published more)
        self._lock = threading.Lock()
        self.changed = threading.Event()

    def add(self, n: int, messages: bool = False) -> None:
        with self._lock:
            self._count += n
            if messages:
                self.messages += n
            if self._count == 0:
                self.changed.set()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


class Engine:
    """Runs one graph in this process, each operator on its own dispatcher thread."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None) -> None:
        self.graph = graph
        self.options = options or RunOptions()
        self.snapshots = snapshots
        self.faults = faults or FaultPlan()
        self.coordinator: Coordinator | None = None
        self.handle = uuid.uuid4().hex
        self.activity = Activity()
        self.started = threading.Event()
        self.type_context = TypeContext(graph.vtypes or VTypeRegistry())
        self._stopping = threading.Event()
        self._end_lock = threading.Lock()
        self._status: str | None = None
        self._reason = ""
        self._failure: OperatorFailure | None = None
        self._engine_threads: set[int] = set()
        self._stdout_lock = threading.Lock()
        self._draining: tuple[str, str] | None = None  # (status, reason) once a drain began
        self._drain_deadline = 0.0
        self._final_epoch: tuple[str, int] | None = None  # (epoch, messages sent when it started)
        self.operators: dict[str, OperatorRuntime] = {}
        self._wire()
        if snapshots is not None:
            sources = [name for name, op in self.operators.items() if not op.inbox.channels]
            self.coordinator = Coordinator(snapshots, list(self.operators), sources, self.faults)

    # -- set-up -----------------------------------------------------------------------
    def _wire(self) -> None:
        for process in self.graph.processes.values():
            inbox = Inbox(self.is_stopping)
            logger = operator_logger(process.name, self.options.log_level)
            self.operators[process.name] = OperatorRuntime(process, self, inbox, logger)
        for connection in self.graph.connections:
            receiver = self.operators[connection.tgt.process]
            channel: Channel = receiver.inbox.add_channel(connection, self.options.channel_capacity)
            sender = self.operators[connection.src.process]
            sender.targets[connection.src.port].append(Target(channel, receiver.error_mode == RETRY))

    def runtime_info(self, process: Process) -> RuntimeInfo:
        dirs = self.options.operator_dirs
        return RuntimeInfo(
            graph_name=self.graph.name,
            graph_handle=self.handle,
            group_id=process.group,
            repo_root=str(self.graph.path.parent),
            subengine_root=str(dirs[0]) if dirs else str(self.graph.path.parent),
        )

    # -- what operators call ---------------------------------------------------------
    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def register_engine_thread(self) -> None:
        self._engine_threads.add(threading.get_ident())

    def fail(self, failure: OperatorFailure) -> None:
        self._end(FAILED, str(failure), failure)

    def fail_in_shutdown(self, failure: OperatorFailure) -> None:
        """A shutdown callback raised: the run fails even if it had already completed.

        The first failure wins, as Gen2 says: a shutdown error counts only if
        error handling was not triggered earlier.
        """
        with self._end_lock:
            if self._status != FAILED:
                self._status, self._reason, self._failure = FAILED, str(failure), failure
        self._end(FAILED, str(failure), failure)

    def terminate(self, by: str) -> None:
        self._finish_gracefully(COMPLETED, f"graph terminator {by!r} fired")

    def stop(self, reason: str) -> None:
        """Stop the run gracefully (signals, --stop-after); shutdown callbacks still run."""
        self._finish_gracefully(STOPPED, reason)

    def _finish_gracefully(self, status: str, reason: str) -> None:
        if self.snapshots is None:
            self._end(status, reason)
            return
        with self._end_lock:
            if self._draining is not None or self._status is not None:
                return
            self._draining = (status, reason)
            self._drain_deadline = time.monotonic() + self.options.drain_timeout
        for runtime in self.operators.values():
            runtime.post(runtime.drop_timers)
        self.activity.changed.set()

    def stdout_write(self, text: str) -> None:
        out = self.options.stdout or sys.stdout
        with self._stdout_lock:
            out.write(text)
            out.flush()

    def _end(self, status: str, reason: str, failure: OperatorFailure | None = None) -> None:
        with self._end_lock:
            if self._status is None:
                self._status, self._reason, self._failure = status, reason, failure
        self._stopping.set()
        self.activity.changed.set()
        for runtime in self.operators.values():
            runtime.inbox.wake()

    # -- the run ----------------------------------------------------------------------
    def run(self) -> RunResult:
        set_active_plan(self.faults)
        prepare_imports(self.graph.path.parent, self.options.operator_dirs)
        # api.Table(..., infer_type=True) registers types where api.type_context finds them.
        set_default_type_context(self.type_context)
        for runtime in self.operators.values():
            runtime.thread.start()
        for runtime in self.operators.values():
            runtime.loaded.wait()
        load_failures = [r.load_failure for r in self.operators.values() if r.load_failure]
        load_failures.sort(key=lambda f: not f.invalid)
        if load_failures:
            for failure in load_failures:
                self.operators[failure.process].logger.error("script failed to load:\n%s", failure.traceback)
            self.fail(load_failures[0])
        else:
            self.activity.add(len(self.operators))  # start-up tokens, released after each prestart
        self.started.set()
        self._watch()
        try:
            return self._finish()
        finally:
            forget_script_modules(self.graph.path.parent)

    def _watch(self) -> None:
        deadline = None if self.options.stop_after is None else time.monotonic() + self.options.stop_after
        while not self.is_stopping():
            self.activity.changed.wait(0.05)
            self.activity.changed.clear()
            if self.is_stopping():
                return
            if deadline is not None and time.monotonic() >= deadline:
                deadline = None
                self.stop(f"--stop-after {self.options.stop_after:g}s elapsed")
            try:
                self._drive_snapshots()
            except Exception as exc:  # noqa: BLE001 - a store or injected failure fails the attempt
                self.fail(OperatorFailure("<coordinator>", "epoch completion", f"{type(exc).__name__}: {exc}", ""))
                return
            if self._draining is not None and time.monotonic() > self._drain_deadline:
                status, reason = self._draining
                self._end(status, f"{reason}; drain timed out before the final epoch")
                return
            if self.activity.count == 0 and not self._script_threads_alive():
                self._on_quiescent()

    def _drive_snapshots(self) -> None:
        coordinator = self.coordinator
        if coordinator is None:
            return
        completed = coordinator.complete_ready()
        if completed is not None:
            for runtime in self.operators.values():
                runtime.post(lambda r=runtime: r.epoch_complete(completed))
        if coordinator.due() and self._draining is None:
            self._start_epoch()

    def _start_epoch(self) -> str:
        assert self.coordinator is not None
        epoch = self.coordinator.start()
        for name in self.coordinator.sources():
            runtime = self.operators[name]
            runtime.post(lambda r=runtime: r.take_snapshot(epoch))
        return epoch

    def _on_quiescent(self) -> None:
        """Nothing is in flight: finish, after a final epoch when snapshots are on."""
        status, reason = self._draining or (COMPLETED, "nothing more to do (no messages in flight, no active timers)")
        coordinator = self.coordinator
        if coordinator is None:
            self._end(status, reason)
            return
        if coordinator.in_flight:
            return
        if self._final_epoch is not None:
            epoch, sent = self._final_epoch
            if coordinator.last_completed == epoch and self.activity.messages == sent:
                self._end(status, f"{reason}; final epoch {epoch} complete")
                return
        # First final epoch, or epoch_complete published more data: take (another) final epoch.
        sent_before = self.activity.messages
        self._final_epoch = (self._start_epoch(), sent_before)

    def _script_threads_alive(self) -> bool:
        main = threading.main_thread()
        me = threading.current_thread()
        return any(
            t.is_alive() and not t.daemon and t is not main and t is not me
            and t.ident not in self._engine_threads
            for t in threading.enumerate()
        )

    def _finish(self) -> RunResult:
        deadline = time.monotonic() + JOIN_TIMEOUT
        stuck = []
        for runtime in self.operators.values():
            runtime.thread.join(max(0.0, deadline - time.monotonic()))
            if runtime.thread.is_alive():
                stuck.append(runtime.name)
        assert self._status is not None
        return RunResult(self._status, self._reason, self._failure, stuck)


def run_graph(graph: Graph, options: RunOptions | None = None,
              on_engine: Callable[[Engine], None] | None = None) -> RunResult:
    """Run ``graph`` to its end; ``on_engine`` sees the engine first (to wire signal handlers)."""
    engine = Engine(graph, options)
    if on_engine is not None:
        on_engine(engine)
    return engine.run()


__all__ = ["COMPLETED", "FAILED", "STOPPED", "Engine", "RunOptions", "RunResult", "run_graph"]
