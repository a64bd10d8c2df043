"""A group host: the operators of one group, their dispatchers and local channels.

In Gen2 each group of a graph runs in a process of its own. A
:class:`GroupHost` is that process's runtime: it starts one dispatcher per
operator, wires the connections inside the group as in-memory channels
(messages pass by reference) and connections to other groups through
whatever the transport hands it. Everything that concerns the whole graph —
failures, the terminator, snapshot acknowledgements — goes up to a
:class:`Driver`: the in-process engine, or the parent process over a pipe.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from snapgraph.api.operator_api import RuntimeInfo
from snapgraph.api.type_context import TypeContext, set_default_type_context
from snapgraph.instruments.stats import OperatorStats
from snapgraph.model.graph import RETRY, Connection, Graph, Process
from snapgraph.model.vtypes import VTypeRegistry
from snapgraph.runtime.channels import Channel, Inbox, RemoteInput
from snapgraph.runtime.completion import WorkCounts
from snapgraph.runtime.control import OperatorLog
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.links import Sender
from snapgraph.runtime.logs import deliver, operator_logger
from snapgraph.runtime.operator import OperatorRuntime, Target
from snapgraph.runtime.options import RunOptions
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import RestorePoint

JOIN_TIMEOUT = 10.0  # seconds a dispatcher gets to finish its callback and shutdown
LOAD_WARNING_AFTER = 5.0  # seconds of script body after which the operator is named as still loading
LOAD_POLL = 0.1  # how often loading looks for a stop

# Garbage collection while a graph runs. Tables waiting in channels are thousands of live row
# lists; with CPython's default thresholds (700, 10, 10) the older generations re-scan them over
# and over, which cost W1 about a third of its time (docs/benchmarks.md). Objects that exist before the
# operators start are frozen out of collection, and young collections run less often. Both are
# undone when the group stops, so a failed attempt's objects can still be collected.
GC_THRESHOLDS = (50_000, 20, 20)


def current_cpu() -> int | None:
    """The CPU this thread runs on now (Linux), or None where that cannot be told."""
    try:
        return int(open("/proc/thread-self/stat").read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def pin_thread(cpu: int | None) -> None:
    """Keep the calling thread on ``cpu`` (Linux: affinity is per thread); a no-op elsewhere.

    The threads of one group share one interpreter lock, so only one of them
    runs Python at a time anyway. Keeping them on one core makes handing the
    lock from one to the next cheap; across cores each hand-off costs a
    wake-up on the other core and cold caches (W2 ran 1.2-1.4x faster
    pinned, docs/benchmarks.md). Threads a script starts inherit the CPU.
    """
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


class Driver(Protocol):
    """What a group reports to whoever runs the whole graph."""

    def operator_failed(self, failure: OperatorFailure) -> None: ...
    def shutdown_failed(self, failure: OperatorFailure) -> None: ...
    def terminator_fired(self, by: str) -> None: ...
    def persist_state(self, process: str, epoch: str, data: bytes) -> None: ...
    def epoch_acked(self, process: str, epoch: str, stateful: bool) -> None: ...


class Activity:
    """Counts this group's pending work: queued items, control events, active timers, start-up.

    Zero means the group is idle: every increment happens before the work it
    stands for can finish, so zero is never seen early. ``received`` counts
    messages that arrived from other groups and ``sent`` those that left, so a
    driver can tell whether anything is still travelling between groups.
    """

    def __init__(self) -> None:
        self._count = 0
        self.messages = 0  # messages published so far (tells whether a final epoch published more)
        self.sent = 0
        self.received = 0
        self._lock = threading.Lock()
        self.changed = threading.Event()

    def add(self, n: int, published: int = 0) -> None:
        with self._lock:
            self._count += n
            self.messages += published
            if self._count == 0:
                self.changed.set()

    def note_sent(self) -> None:
        with self._lock:
            self.sent += 1

    def note_received(self, n: int = 1) -> None:
        """``n`` items from other groups entered a local channel: they are now local work."""
        with self._lock:
            self.received += n
            self._count += n

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def snapshot(self) -> WorkCounts:
        """The counts, read atomically (without the script-thread check: see ``GroupHost.work_counts``)."""
        with self._lock:
            return WorkCounts(self._count, self.messages, self.sent, self.received)


class GroupHost:
    """Runs the operators of one group on their own dispatcher threads."""

    def __init__(self, graph: Graph, members: Iterable[str], options: RunOptions, driver: Driver, *,
                 snapshots_on: bool = False, restore: RestorePoint | None = None,
                 faults: FaultPlan | None = None, handle: str | None = None, cpu: int | None = None,
                 multiplicity: tuple[int, int] = (1, 0), engine_threads: set[int] | None = None,
                 groups_multiply: bool = False) -> None:
        self.graph = graph
        self.multiplicity, self.multiplicity_index = multiplicity  # (instances of this group, this one)
        # Whether the run starts each group as many times as its multiplicity (groups as instances of a
        # transport) or once (everything in the engine's process).
        self.groups_multiply = groups_multiply
        self.cpu = cpu  # the CPU all of this group's engine threads run on (None: let the OS choose)
        self.options = options
        self.driver = driver
        self.snapshots_on = snapshots_on
        self.restore = restore
        self.faults = faults or FaultPlan()
        self.handle = handle or uuid.uuid4().hex
        self.activity = Activity()
        self.started = threading.Event()
        self._gc_thresholds: tuple[int, int, int] | None = None
        self.type_context = TypeContext(graph.vtypes or VTypeRegistry())
        self._stopping = threading.Event()
        # The engine threads of this group (of every group, when several share the process: the
        # thread transport); any other live non-daemon thread is a script's.
        self._engine_threads: set[int] = engine_threads if engine_threads is not None else set()
        self._stdout_lock = threading.Lock()
        self.stdout_sink: Callable[[str], None] | None = None  # set in group processes: output goes to the parent
        self.log_sink: Callable[[OperatorLog], None] | None = None  # set when groups forward their logs
        self.operators: dict[str, OperatorRuntime] = {}
        for name in members:
            process = graph.processes[name]
            inbox = Inbox(self.is_stopping, self.activity.note_received)
            logger = operator_logger(name, options.log_level, self.log_write)
            self.operators[name] = OperatorRuntime(process, self, inbox, logger)
        self.inbound: dict[Connection, Channel] = {}
        self._remote_out: list[tuple[Connection, Sender]] = []  # connections to other groups
        self._remote_in: list[tuple[Connection, RemoteInput]] = []  # connections from other groups
        for connection in graph.connections:
            receiver = self.operators.get(connection.tgt.process)
            if receiver is not None:
                self.inbound[connection] = receiver.inbox.add_channel(connection, options.channel_capacity)
        for connection, channel in self.inbound.items():
            sender = self.operators.get(connection.src.process)
            if sender is not None:
                receiver = self.operators[connection.tgt.process]
                sender.targets[connection.src.port].append(Target(channel, receiver.error_mode == RETRY))

    def connect_remote(self, connection: Connection, channel: Sender, receiver_retries: bool) -> None:
        """Attach an outgoing connection to another group (``channel`` has ``put(item)``).

        It goes before the port's local targets: publishing encodes for other groups first, so
        a value that cannot be encoded fails before any receiver got it.
        """
        self.operators[connection.src.process].targets[connection.src.port].insert(
            0, Target(channel, receiver_retries, local=False))
        self._remote_out.append((connection, channel))

    def connect_inbound(self, connection: Connection, source: RemoteInput) -> None:
        """Attach a pipe from another group that delivers ``connection``'s items (its receiver reads it)."""
        self.operators[connection.tgt.process].inbox.add_remote(self.inbound[connection], source)
        self._remote_in.append((connection, source))

    @property
    def sources(self) -> list[str]:
        """Operators with no connected input: where epochs start."""
        return [name for name in self.operators if not self.graph.connections_to(name)]

    # -- what operators call -----------------------------------------------------------
    def instances_of(self, process: str) -> int:
        """How many instances of ``process`` this run has."""
        group = self.graph.processes[process].group or "default"
        return self.graph.multiplicity_of(group) if self.groups_multiply else 1

    def runtime_info(self, process: Process) -> RuntimeInfo:
        dirs = self.options.operator_dirs
        return RuntimeInfo(
            graph_name=self.graph.name,
            graph_handle=self.handle,
            group_id=process.group,
            repo_root=str(self.graph.path.parent),
            subengine_root=str(dirs[0]) if dirs else str(self.graph.path.parent),
            multiplicity=self.multiplicity,
            multiplicity_index=self.multiplicity_index,
        )

    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def register_engine_thread(self) -> None:
        """Called first by every thread of this group's engine: count it as ours, pin it."""
        self._engine_threads.add(threading.get_ident())
        pin_thread(self.cpu)

    def fail(self, failure: OperatorFailure) -> None:
        self.driver.operator_failed(failure)
        self.stop()

    def fail_in_shutdown(self, failure: OperatorFailure) -> None:
        self.driver.shutdown_failed(failure)

    def terminate(self, by: str) -> None:
        self.driver.terminator_fired(by)

    def persist_state(self, process: str, epoch: str, data: bytes) -> None:
        self.driver.persist_state(process, epoch, data)

    def ack_epoch(self, process: str, epoch: str, stateful: bool) -> None:
        self.driver.epoch_acked(process, epoch, stateful)

    def stdout_write(self, text: str) -> None:
        if self.stdout_sink is not None:
            self.stdout_sink(text)
            return
        out = self.options.stdout or sys.stdout
        with self._stdout_lock:
            out.write(text)
            out.flush()

    def log_write(self, record: OperatorLog) -> None:
        """An operator's log line: to the driver when this group forwards its logs, else placed here."""
        if self.log_sink is not None:
            self.log_sink(record)
            return
        deliver(record)

    # -- what the driver calls -----------------------------------------------------------
    def load(self) -> list[OperatorFailure]:
        """Start the dispatchers and run every script body; returns the load failures."""
        # api.Table(..., infer_type=True) registers types where api.type_context finds them.
        set_default_type_context(self.type_context)
        for runtime in self.operators.values():
            runtime.thread.start()
        started = time.monotonic()
        warned = False
        for runtime in self.operators.values():
            while not runtime.loaded.wait(LOAD_POLL) and not self.is_stopping():
                if not warned and time.monotonic() - started >= LOAD_WARNING_AFTER:
                    warned = True
                    for name in self.still_loading():
                        self.operators[name].logger.warning(
                            "still running its script body after %.0f s (a loop at the top level of the "
                            "script?); the graph starts when every script body has returned", LOAD_WARNING_AFTER)
            if self.is_stopping():
                break  # a stop or another operator's failure: do not wait for the rest
        failures = [r.load_failure for r in self.operators.values() if r.load_failure]
        failures.sort(key=lambda f: not f.invalid)
        for failure in failures:
            logger = self.operators[failure.process].logger
            if failure.traceback:
                logger.error("script failed to load:\n%s", failure.traceback)
            else:  # a built-in's config it cannot run with, or an operator declared unusable: no script trace
                logger.error("cannot start: %s", failure.message)
        return failures

    def go(self) -> None:
        """Let every operator run: restore, prestart, then its event loop."""
        self._gc_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.activity.add(len(self.operators))  # start-up tokens, released after each prestart
        self.started.set()

    def stop(self) -> None:
        """Stop all dispatchers after their current callback; they run their shutdown callbacks."""
        self._stopping.set()
        self.started.set()
        self.activity.changed.set()
        for runtime in self.operators.values():
            runtime.inbox.wake()

    def take_snapshot(self, source: str, epoch: str) -> None:
        self.operators[source].request_snapshot(epoch)

    def epoch_complete(self, epoch: str, sealed: bool = False) -> None:
        """Run ``epoch_complete(epoch)`` on every operator; ``sealed``: the run's last final epoch,
        whose ``epoch_complete`` output is discarded (the graph ends after it)."""
        for runtime in self.operators.values():
            runtime.post(functools.partial(runtime.epoch_complete, epoch, sealed))

    def drop_timers(self) -> None:
        for runtime in self.operators.values():
            runtime.post(runtime.drop_timers)

    def stats(self) -> list[OperatorStats]:
        """A copy of every operator's counters (each is written only by its own dispatcher), with the
        bytes its connections to other groups carried and the items waiting in its input channels."""
        copies = {name: runtime.stats.copy() for name, runtime in self.operators.items()}
        for name, runtime in self.operators.items():
            for channel in list(runtime.inbox.channels):
                copies[name].inputs[channel.port].queued += len(channel.items)
        for connection, sender in self._remote_out:
            copies[connection.src.process].outputs[connection.src.port].bytes += sender.bytes_sent
        for connection, receiver in self._remote_in:
            copies[connection.tgt.process].inputs[connection.tgt.port].bytes += receiver.bytes_received
        return list(copies.values())

    def work_counts(self) -> WorkCounts:
        """This group's pending work, for the driver's completion detection."""
        return replace(self.activity.snapshot(), script_threads=self.script_threads_alive())

    def script_threads_alive(self) -> bool:
        main = threading.main_thread()
        me = threading.current_thread()
        return any(
            t.is_alive() and not t.daemon and t is not main and t is not me
            and t.ident not in self._engine_threads
            for t in threading.enumerate()
        )

    def still_loading(self) -> list[str]:
        """The operators whose script body has not returned."""
        return [name for name, runtime in self.operators.items() if not runtime.loaded.is_set()]

    def join(self) -> list[str]:
        """Wait for the dispatchers to finish; returns the operators still busy after JOIN_TIMEOUT.

        An operator still in its script body is not waited for (nothing of it ran, and a loop at
        the top level of a script may never return): it is listed at once.
        """
        deadline = time.monotonic() + JOIN_TIMEOUT
        loading = set(self.still_loading())
        stuck = [f"{name} (in its script body)" for name in self.operators if name in loading]
        for runtime in self.operators.values():
            if runtime.name in loading:
                continue
            runtime.thread.join(max(0.0, deadline - time.monotonic()))
            if runtime.thread.is_alive():
                stuck.append(runtime.name)
        if self._gc_thresholds is not None:
            gc.unfreeze()
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None
        return stuck
