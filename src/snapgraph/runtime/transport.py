"""The transport boundary: how a driver runs groups outside its own process and talks to them.

A driver (:class:`snapgraph.runtime.remote.RemoteEngine`) never touches the
operators of a group that runs elsewhere. It asks a :class:`Transport` to set
up the data links between group instances and to start each instance from a
:class:`GroupSpec`; from then on it only exchanges small picklable messages
with each instance through its :class:`GroupHandle`:

* driver → group (:data:`snapgraph.runtime.control.ToGroup`): ``Go``, ``TakeSnapshot``,
  ``EpochComplete``, ``DropTimers``, ``Probe``, ``Stop``;
* group → driver (:data:`snapgraph.runtime.control.ToDriver`): ``Loaded``, ``Failed``,
  ``ShutdownFailed``, ``Terminate``, ``State``, ``StateSaved``, ``Ack``, ``ProbeAnswer``,
  ``Stdout``, ``OperatorLog``, ``Stderr``, ``FaultFired``, ``KillEngine``, ``Done``.

Both are defined once, in :mod:`snapgraph.runtime.control`; a message a side does not
know fails the attempt with :class:`~snapgraph.runtime.control.UnknownControlMessage`.

:class:`snapgraph.runtime.processes.ProcessTransport` starts OS processes on
this machine with pipes for control and data;
:class:`snapgraph.runtime.threads.ThreadTransport` serves each instance on threads of
this process with in-memory links. A transport that hosts groups elsewhere — actors on
a cluster — implements the same three calls, hands out link ends that follow the
protocols of :mod:`snapgraph.runtime.links` (``LinkEnd``: ``Sender``, ``Receiver``; no
file descriptor needed), and runs :func:`serve_group` at the far end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from snapgraph.instruments.output import LineStream, captured_fd
from snapgraph.model.graph import Connection, Graph
from snapgraph.runtime import control as msg
from snapgraph.runtime.control import ToDriver, ToGroup, UnknownControlMessage
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.group import GroupHost
from snapgraph.runtime.links import LinkEnd, RoundRobinLink
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.scripts import prepare_imports
from snapgraph.snapshot.faults import Fault, FaultPlan, set_active_plan
from snapgraph.snapshot.store import Fence, RestorePoint, SnapshotStore, StoreError, open_store


@dataclass
class Where:
    """The working directory, environment and import path a group runs with: the driver's."""

    cwd: str
    environ: dict[str, str]
    sys_path: list[str]

    @classmethod
    def here(cls) -> Where:
        return cls(os.getcwd(), dict(os.environ), list(sys.path))

    def apply(self) -> None:
        """Take them over (what already matches is left alone: a group on a thread of the driver's
        process changes nothing)."""
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if sys.path != self.sys_path:
            sys.path[:] = self.sys_path


@dataclass
class GroupSpec:
    """Everything needed to host one instance of a group (picklable)."""

    graph: Graph
    group: str
    members: list[str]
    options: RunOptions
    snapshots_on: bool
    restore: RestorePoint | None
    faults: list[Fault]
    handle: str
    instance: str = ""  # this instance's name ("group" or "group#i"), used to route replies back
    index: int = 0
    multiplicity: int = 1
    # Connections to other groups: (connection, whether the receiver retries, the receiving instances).
    outbound: list[tuple[Connection, bool, list[str]]] = field(default_factory=list)
    # Connections from other groups: (connection, the sending instance), one per incoming link.
    inbound: list[tuple[Connection, str]] = field(default_factory=list)
    # The driver's working directory, environment and import path when it planned this instance.
    where: Where | None = None
    # Where the group writes its operators' states itself (a store every process reaches), else None.
    shared_store: SharedStore | None = None


@dataclass(frozen=True)
class SharedStore:
    """A snapshot store the group opens itself, the run it writes for, and the engine's lease."""

    location: str
    run_id: str
    fence: Fence


class GroupHandle(ABC):
    """The driver's end of one running group instance."""

    name: str

    @abstractmethod
    def send(self, message: ToGroup) -> None:
        """Deliver a control message. A group that is gone ignores it; :meth:`receive` notices its end."""

    @abstractmethod
    def receive(self) -> ToDriver:
        """The group's next report (blocking); raises EOFError once the group is gone, and any
        other exception for a single report that cannot be read (the next one still can)."""

    @abstractmethod
    def end_reason(self) -> str:
        """Why the group ended without saying ``Done``, as the failure message of its operators
        ("the group process died (killed by SIGKILL)")."""

    @abstractmethod
    def finish(self, timeout: float) -> None:
        """Give the group ``timeout`` seconds to exit, then end it by force; release its resources."""


class GroupStartFailed(Exception):
    """A group instance could not be started (its host is gone, it died while starting)."""


class Transport(ABC):
    """Starts group instances and the data links between them: every link is connected before the
    first instance starts, and :meth:`started` follows the last start."""

    @abstractmethod
    def connect(self, connection: Connection, sender: str, receiver: str) -> None:
        """Set up the data link that carries ``connection`` from instance ``sender`` to ``receiver``."""

    @abstractmethod
    def start(self, spec: GroupSpec) -> GroupHandle:
        """Start one group instance, handing it the ends of its links; :class:`GroupStartFailed` if it cannot."""

    @abstractmethod
    def started(self) -> None:
        """Every instance has started: release what only the starting needed."""


class ControlEnd(Protocol):
    """The group's end of its control channel."""

    def send(self, message: ToDriver) -> None: ...
    def recv(self) -> ToGroup: ...


@dataclass
class Colocated:
    """A group served on threads of the driver's own process (the thread transport): what it shares.

    Such a group installs no fault plan of its own (the driver's is the process's) and counts the
    engine threads of every group of the process as engine threads, not as script threads.
    """

    engine_threads: set[int]


@contextlib.contextmanager
def _forwarding_streams(driver: _ReportingDriver) -> Iterator[None]:
    """Until the end, forward this process's output to the driver as whole lines, so that nothing of the
    group writes to the terminal the driver's display owns: ``sys.stdout`` and ``sys.stderr`` by forwarding
    streams, and file descriptors 1 and 2 (written by C code and child processes) by captured pipes."""
    def stdout(text: str) -> None:
        driver.send(msg.Stdout(text))

    def stderr(text: str) -> None:
        driver.send(msg.Stderr(text))

    saved = sys.stdout, sys.stderr
    for stream in saved:
        stream.flush()
    with captured_fd(1, stdout, name="stdout"), captured_fd(2, stderr, name="stderr"):
        sys.stdout = LineStream(stdout, saved[0].encoding)
        sys.stderr = LineStream(stderr, saved[1].encoding)
        try:
            yield
        finally:
            forwarded = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = saved
            for stream in forwarded:
                stream.flush()


class _ReportingDriver:
    """The Driver of a group that runs away from its driver: every report becomes a message."""

    def __init__(self, control: ControlEnd, driver_gone: Callable[[], NoReturn],
                 shared: SharedStore | None = None) -> None:
        self._control = control
        self._driver_gone = driver_gone
        self._lock = threading.Lock()
        self._shared = shared
        self._store: SnapshotStore | None = None  # opened at the first state
        self._store_lock = threading.Lock()

    def send(self, message: ToDriver) -> None:
        with self._lock:
            try:
                self._control.send(message)
            except (BrokenPipeError, EOFError, OSError):
                self._driver_gone()  # nothing left to report to

    def operator_failed(self, failure: OperatorFailure) -> None:
        self.send(msg.Failed(failure))

    def shutdown_failed(self, failure: OperatorFailure) -> None:
        self.send(msg.ShutdownFailed(failure))

    def terminator_fired(self, by: str) -> None:
        self.send(msg.Terminate(by))

    def persist_state(self, process: str, epoch: str, data: bytes) -> None:
        """To the shared store directly, sending the driver only a handle; else the bytes to the driver."""
        if self._shared is None:
            self.send(msg.State(process, epoch, data))
            return
        started = time.monotonic()
        self._shared_store().save_state(self._shared.run_id, epoch, process, data)
        self.send(msg.StateSaved(process, epoch, len(data), time.monotonic() - started))

    def open_shared_store(self) -> None:
        """Connect to the shared store now (at start), not at the first epoch's state."""
        if self._shared is not None:
            self._shared_store()

    def _shared_store(self) -> SnapshotStore:
        assert self._shared is not None
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self._shared.location, create=False)
                self._store.write_under(self._shared.fence)
            return self._store

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def epoch_acked(self, process: str, epoch: str, stateful: bool) -> None:
        self.send(msg.Ack(process, epoch, stateful))


def serve_group(spec: GroupSpec, control: ControlEnd, outbound: list[list[LinkEnd]], inbound: list[LinkEnd],
                driver_gone: Callable[[], NoReturn], cpu: int | None = None,
                colocated: Colocated | None = None) -> list[str]:
    """Host one group instance until the driver says stop; the operators that did not stop in time.

    ``outbound`` holds the link ends of each ``spec.outbound`` connection, one per receiving
    instance; ``inbound`` one link end per ``spec.inbound`` entry. ``driver_gone`` is called
    (and must not return) when the control channel breaks: a group never outlives its driver.
    The group first takes over the driver's working directory, environment and import path
    (``spec.where``) and makes the graph's modules importable, whatever the transport.
    """
    if spec.where is not None:
        spec.where.apply()
    prepare_imports(spec.graph.path.parent, spec.options.operator_dirs)
    driver = _ReportingDriver(control, driver_gone, spec.shared_store)
    faults = FaultPlan(spec.faults, on_fire=lambda fault: driver.send(msg.FaultFired(fault)),
                       kill_engine=lambda message: driver.send(msg.KillEngine(message)))
    if colocated is None:
        set_active_plan(faults)
    host = GroupHost(spec.graph, spec.members, spec.options, driver, snapshots_on=spec.snapshots_on,
                     restore=spec.restore, faults=faults, handle=spec.handle, cpu=cpu,
                     multiplicity=(spec.multiplicity, spec.index), groups_multiply=True,
                     engine_threads=colocated.engine_threads if colocated is not None else None)
    host.register_engine_thread()  # the control loop runs on this thread
    host.stdout_sink = lambda text: driver.send(msg.Stdout(text))
    forwarding: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if spec.options.forward_output:
        host.log_sink = driver.send
        if colocated is None:  # a process of its own: its script output must not reach the terminal either
            forwarding = _forwarding_streams(driver)
    for (connection, retries, _), ends in zip(spec.outbound, outbound, strict=True):
        links = [end.sending(host.activity.note_sent, host.is_stopping, host.register_engine_thread) for end in ends]
        host.connect_remote(connection, links[0] if len(links) == 1 else RoundRobinLink(links), retries)
    for (connection, _), end in zip(spec.inbound, inbound, strict=True):
        host.connect_inbound(connection, end.receiving(host.is_stopping, host.register_engine_thread))
    with forwarding:
        stuck = _serve(spec, control, host, driver, driver_gone)
    driver.send(msg.Done(stuck, host.stats()))
    return stuck


def _serve(spec: GroupSpec, control: ControlEnd, host: GroupHost, driver: _ReportingDriver,
           driver_gone: Callable[[], NoReturn]) -> list[str]:
    """Load the group, obey the driver until it says stop, wait for the operators; the stuck ones."""
    try:
        try:
            driver.open_shared_store()
        except StoreError as err:
            driver.operator_failed(OperatorFailure(", ".join(spec.members), "opening the snapshot store",
                                                   str(err), ""))
        driver.send(msg.Loaded(host.load()))
        while True:
            try:
                command = control.recv()
            except (EOFError, OSError):
                driver_gone()
            except Exception as exc:  # noqa: BLE001 - a command this process cannot rebuild
                driver.operator_failed(OperatorFailure(
                    ", ".join(spec.members), f"group {spec.instance!r}",
                    f"a command from the driver could not be read: {type(exc).__name__}: {exc}", ""))
                continue
            try:
                if not obey(host, driver, command):
                    break
            except UnknownControlMessage as unknown:
                driver.operator_failed(OperatorFailure(", ".join(spec.members), f"group {spec.instance!r}",
                                                       str(unknown), ""))
    except BaseException:
        # The driver is gone (driver_gone unwinds where it cannot end the process: a group on threads
        # of another process) or this loop broke: nothing of the group may keep running.
        host.stop()
        driver.close()
        raise
    stuck = host.join()
    driver.close()
    return stuck


def obey(host: GroupHost, driver: _ReportingDriver, command: ToGroup) -> bool:
    """Carry out one command of the driver; False once it was :class:`~snapgraph.runtime.control.Stop`.

    Raises :class:`~snapgraph.runtime.control.UnknownControlMessage` for anything else.
    """
    match command:
        case msg.Go():
            host.go()
        case msg.TakeSnapshot(source, epoch):
            host.take_snapshot(source, epoch)
        case msg.EpochComplete(epoch, sealed):
            host.epoch_complete(epoch, sealed)
        case msg.DropTimers():
            host.drop_timers()
        case msg.Probe(seq, with_stats):
            driver.send(msg.ProbeAnswer(seq, host.work_counts(), host.stats() if with_stats else None))
        case msg.Stop():
            host.stop()
            return False
        case _:
            raise UnknownControlMessage("a group", command)
    return True

