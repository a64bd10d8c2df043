"""The transport boundary: how a driver runs groups outside its own process and talks to them.

A driver (:class:`snapgraph.runtime.remote.RemoteEngine`) never touches the
operators of a group that runs elsewhere. It asks a :class:`Transport` to set
up the data links between group instances and to start each instance from a
:class:`GroupSpec`; from then on it only exchanges small picklable messages
with each instance through its :class:`GroupHandle`:

* driver → group: ``go``, ``snapshot(source, epoch)``, ``epoch_complete(epoch, sealed)``,
  ``drop_timers``, ``probe(seq)``, ``reply(token, exc)``, ``stop``;
* group → driver: ``loaded(failures)``, ``failed(failure)``,
  ``shutdown_failed(failure)``, ``terminate(by)``, ``state(process, epoch, data)``,
  ``ack(process, epoch, stateful)``, ``reply(origin, token, exc)``,
  ``probe(seq, counts, script_threads)``, ``stdout(text)``, ``fault(fault)``,
  ``kill_engine(message)``, ``done(stuck)``.

:class:`snapgraph.runtime.processes.ProcessTransport` starts OS processes on
this machine with pipes for control and data. A transport that hosts groups
elsewhere — actors on a cluster — implements the same three calls and runs
:func:`serve_group` at the far end.
"""

from __future__ import annotations

import pickle
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from snapgraph.model.graph import Connection, Graph
from snapgraph.runtime.channels import RemoteInput
from snapgraph.runtime.group import GroupHost, Restore
from snapgraph.runtime.operator import OperatorFailure
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.scripts import SCRIPT_MODULE_PREFIX
from snapgraph.runtime.wire import OutboundLink, ReplyTokens, RoundRobinLink
from snapgraph.snapshot.faults import Fault, FaultPlan, set_active_plan


@dataclass
class GroupSpec:
    """Everything needed to host one instance of a group (picklable)."""

    graph: Graph
    group: str
    members: list[str]
    options: RunOptions
    snapshots_on: bool
    restore: Restore | None
    faults: list[Fault]
    handle: str
    instance: str = ""  # this instance's name ("group" or "group#i"), used to route replies back
    index: int = 0
    multiplicity: int = 1
    # Connections to other groups: (connection, whether the receiver retries, the receiving instances).
    outbound: list[tuple[Connection, bool, list[str]]] = field(default_factory=list)
    # Connections from other groups: (connection, the sending instance), one per incoming link.
    inbound: list[tuple[Connection, str]] = field(default_factory=list)


class GroupHandle(ABC):
    """The driver's end of one running group instance."""

    name: str

    @abstractmethod
    def send(self, *command: Any) -> None:
        """Deliver a command. A group that is gone ignores it; :meth:`receive` notices its end."""

    @abstractmethod
    def receive(self) -> tuple[Any, ...]:
        """The group's next report (blocking); raises EOFError once the group is gone, and any
        other exception for a single report that cannot be read (the next one still can)."""

    @abstractmethod
    def end_reason(self) -> str:
        """Why the group ended without saying ``done``, as the failure message of its operators
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

    def send(self, message: tuple[Any, ...]) -> None: ...
    def recv(self) -> tuple[Any, ...]: ...


class LinkEnd(Protocol):
    """One end of a data link as a transport hands it to a group; the group makes it a sender or receiver."""

    def sending(self, origin: str, tokens: ReplyTokens, on_sent: Callable[[], None],
                stopping: Callable[[], bool]) -> OutboundLink:
        """The sending side (``put(item)``), for messages published by instance ``origin``."""

    def receiving(self, report_reply: Callable[[str, int, BaseException | None], None],
                  stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> RemoteInput:
        """The receiving side, read by the receiving operator's dispatcher."""


class _ReportingDriver:
    """The Driver of a group that runs away from its driver: every report becomes a message."""

    def __init__(self, control: ControlEnd, driver_gone: Callable[[], NoReturn]) -> None:
        self._control = control
        self._driver_gone = driver_gone
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            try:
                self._control.send(message)
            except (BrokenPipeError, EOFError, OSError):
                self._driver_gone()  # nothing left to report to

    def operator_failed(self, failure: OperatorFailure) -> None:
        self.send("failed", failure)

    def shutdown_failed(self, failure: OperatorFailure) -> None:
        self.send("shutdown_failed", failure)

    def terminator_fired(self, by: str) -> None:
        self.send("terminate", by)

    def persist_state(self, process: str, epoch: str, data: bytes) -> None:
        self.send("state", process, epoch, data)

    def epoch_acked(self, process: str, epoch: str, stateful: bool) -> None:
        self.send("ack", process, epoch, stateful)


def serve_group(spec: GroupSpec, control: ControlEnd, outbound: list[list[LinkEnd]], inbound: list[LinkEnd],
                driver_gone: Callable[[], NoReturn], cpu: int | None = None) -> list[str]:
    """Host one group instance until the driver says stop; the operators that did not stop in time.

    ``outbound`` holds the link ends of each ``spec.outbound`` connection, one per receiving
    instance; ``inbound`` one link end per ``spec.inbound`` entry. ``driver_gone`` is called
    (and must not return) when the control channel breaks: a group never outlives its driver.
    """
    driver = _ReportingDriver(control, driver_gone)
    faults = FaultPlan(spec.faults, on_fire=lambda fault: driver.send("fault", fault),
                       kill_engine=lambda message: driver.send("kill_engine", message))
    set_active_plan(faults)
    host = GroupHost(spec.graph, spec.members, spec.options, driver, snapshots_on=spec.snapshots_on,
                     restore=spec.restore, faults=faults, handle=spec.handle, cpu=cpu,
                     multiplicity=(spec.multiplicity, spec.index))
    host.register_engine_thread()  # the control loop runs on this thread
    host.stdout_sink = lambda text: driver.send("stdout", text)
    tokens = ReplyTokens()
    for (connection, retries, _), ends in zip(spec.outbound, outbound, strict=True):
        links = [end.sending(spec.instance, tokens, host.activity.note_sent, host.is_stopping) for end in ends]
        host.connect_remote(connection, links[0] if len(links) == 1 else RoundRobinLink(links), retries)

    def report_reply(origin: str, token: int, exc: BaseException | None) -> None:
        driver.send("reply", origin, token, portable(exc))

    for (connection, _), end in zip(spec.inbound, inbound, strict=True):
        host.connect_inbound(connection, end.receiving(report_reply, host.is_stopping, host.register_engine_thread))
    driver.send("loaded", host.load())
    while True:
        try:
            command, *args = control.recv()
        except (EOFError, OSError):
            driver_gone()
        except Exception as exc:  # noqa: BLE001 - a command this process cannot rebuild
            driver.operator_failed(OperatorFailure(
                ", ".join(spec.members), f"group {spec.instance!r}",
                f"a command from the driver could not be read: {type(exc).__name__}: {exc}", ""))
            continue
        if command == "go":
            host.go()
        elif command == "snapshot":
            host.take_snapshot(*args)
        elif command == "epoch_complete":
            host.epoch_complete(*args)
        elif command == "drop_timers":
            host.drop_timers()
        elif command == "probe":
            driver.send("probe", args[0], host.activity.snapshot(), host.script_threads_alive())
        elif command == "reply":
            tokens.resolve(*args)
        elif command == "stop":
            host.stop()
            break
    stuck = host.join()
    driver.send("done", stuck)
    return stuck


def portable(exc: BaseException | None) -> BaseException | None:
    """An exception that another process can rebuild, else a RuntimeError with its text.

    Some exceptions carry unpicklable state; others are instances of a class defined in an
    operator script, which only this group's process has (the driver could not unpickle it).
    """
    if exc is None:
        return None
    try:
        data = pickle.dumps(exc)
        if SCRIPT_MODULE_PREFIX.encode() not in data:
            pickle.loads(data)
            return exc
    except Exception:  # noqa: BLE001 - whatever pickling raises, the text goes instead
        pass
    return RuntimeError(f"{type(exc).__name__}: {exc}")
