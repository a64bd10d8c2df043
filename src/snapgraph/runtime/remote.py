"""Driving groups that run outside this process, through a transport.

:class:`RemoteEngine` is the graph driver for groups hosted elsewhere: it
plans the group instances (multiplicity), has the transport connect and
start them, turns what they report into the :class:`GraphDriver` calls
(failures, snapshot state and acknowledgements, the terminator), and
collects the waves of pending-work counts that completion detection needs
(:mod:`snapgraph.runtime.completion`) by probing every instance. Replies
between instances do not pass through it: they travel back on the links.

A group whose transport reports its end before it said ``done`` died (a
segfault, ``os._exit``, an OOM kill, SIGKILL): that is an operator failure of
its members, which the supervisor recovers from like any other.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from snapgraph.model.graph import RETRY, Connection, Graph, error_handling_mode
from snapgraph.runtime import control as msg
from snapgraph.runtime.completion import WorkCounts
from snapgraph.runtime.control import ToDriver, ToGroup, UnknownControlMessage
from snapgraph.runtime.engine import GraphDriver
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.group import JOIN_TIMEOUT
from snapgraph.runtime.logs import deliver, deliver_process_output
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.transport import GroupHandle, GroupSpec, GroupStartFailed, SharedStore, Transport, Where
from snapgraph.snapshot.faults import KILL_EXIT_CODE, FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig

PROBE_TIMEOUT = 5.0  # seconds to wait for every group's answer to a probe
STATS_EVERY = 0.2  # seconds between two probes that ask for the operators' counters
EXIT_GRACE = 5.0  # seconds a group gets to exit after reporting done, before it is ended by force
START_FAILURE_GRACE = 1.0  # seconds a failed group start waits for a stop that may have caused it


def groups_of(graph: Graph) -> dict[str, list[str]]:
    """Group name -> its operators (operators in no group are in ``default``)."""
    groups: dict[str, list[str]] = {}
    for name, process in graph.processes.items():
        groups.setdefault(process.group or "default", []).append(name)
    return groups


class _Instance:
    """What the driver knows of one group instance."""

    def __init__(self, group: str, members: list[str], index: int = 0, multiplicity: int = 1) -> None:
        self.group = group
        self.index = index
        self.multiplicity = multiplicity
        self.name = group if multiplicity == 1 else f"{group}#{index}"
        self.members = members
        self.handle: GroupHandle | None = None
        self.loaded = threading.Event()
        self.load_failures: list[OperatorFailure] = []
        self.done = threading.Event()
        self.stuck: list[str] = []
        self.probe: msg.ProbeAnswer | None = None

    def send(self, command: ToGroup) -> None:
        if self.handle is not None:
            self.handle.send(command)


class RemoteEngine(GraphDriver):
    """Runs each group of the graph as instances a :class:`Transport` hosts."""

    def __init__(self, graph: Graph, transport: Transport, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None, **driver: Any) -> None:
        super().__init__(graph, options, snapshots, faults, **driver)
        self.transport = transport
        self.instances: dict[str, list[_Instance]] = {}
        for group, members in groups_of(graph).items():
            count = graph.multiplicity_of(group)
            self.instances[group] = [_Instance(group, members, i, count) for i in range(count)]
        self.children = {child.name: child for group in self.instances.values() for child in group}
        self._home = {name: group for group, members in groups_of(graph).items() for name in members}
        self._stdout_lock = threading.Lock()
        self._probe_seq = 0
        self._stats_asked = -STATS_EVERY  # when a probe last asked for the operators' counters
        self._probe_event = threading.Event()

    # -- starting -----------------------------------------------------------------------------
    def _load(self) -> list[OperatorFailure]:
        # One link per (connection between groups, sending instance, receiving instance).
        crossing = [c for c in self.graph.connections if self._home[c.src.process] != self._home[c.tgt.process]]
        for connection in crossing:
            for sender in self.instances[self._home[connection.src.process]]:
                for receiver in self.instances[self._home[connection.tgt.process]]:
                    self.transport.connect(connection, sender.name, receiver.name)
        options = replace(self.options, stdout=None)
        try:
            self._start_instances(crossing, options, Where.here())
        finally:
            self.transport.started()
        failures: list[OperatorFailure] = []
        for child in self.children.values():
            while not child.loaded.wait(0.1):
                if self.is_stopping():
                    break
            failures += child.load_failures
        failures.sort(key=lambda f: not f.invalid)
        return failures

    def _start_instances(self, crossing: list[Connection], options: RunOptions, where: Where) -> None:
        """Start every instance with the ends of its links, and a thread that listens to it."""
        for child in self.children.values():
            outbound: list[tuple[Connection, bool, list[str]]] = []
            inbound: list[tuple[Connection, str]] = []
            for connection in crossing:
                if self._home[connection.src.process] == child.group:
                    retries = error_handling_mode(self.graph.processes[connection.tgt.process].config) == RETRY
                    receivers = self.instances[self._home[connection.tgt.process]]
                    outbound.append((connection, retries, [r.name for r in receivers]))
                if self._home[connection.tgt.process] == child.group:
                    inbound += [(connection, s.name) for s in self.instances[self._home[connection.src.process]]]
            restore = self.restore.share(child.members) if self.restore is not None else None
            spec = GroupSpec(self.graph, child.group, child.members, options, self.snapshots is not None,
                             restore, self.faults.remaining(), self.handle, instance=child.name,
                             index=child.index, multiplicity=child.multiplicity, outbound=outbound, inbound=inbound,
                             where=where, shared_store=self._shared_store())
            try:
                child.handle = self.transport.start(spec)
            except GroupStartFailed as failed:
                # A signal to the whole process group can end what starts the groups a moment before
                # this engine has handled the same signal: given that moment, it is the stop it asked for.
                self._stopping.wait(START_FAILURE_GRACE)
                if self.stopped_on_request():
                    return
                self.operator_failed(OperatorFailure(", ".join(child.members), f"starting group {child.name!r}",
                                                     str(failed), ""))
                return
            threading.Thread(target=self._listen, args=(child,), daemon=True,
                             name=f"control:{child.name}").start()

    def _listen(self, child: _Instance) -> None:
        """Handle everything one group reports; notice when it is gone."""
        assert child.handle is not None
        while True:
            try:
                report = child.handle.receive()
            except EOFError:
                break
            except Exception as exc:  # noqa: BLE001 - a report this process cannot rebuild
                self.operator_failed(OperatorFailure(
                    ", ".join(child.members), f"group {child.name!r}",
                    f"a report of the group could not be read: {type(exc).__name__}: {exc}", ""))
                continue
            try:
                self._handle(child, report)
            except UnknownControlMessage as unknown:
                self.operator_failed(OperatorFailure(", ".join(child.members), f"group {child.name!r}",
                                                     str(unknown), ""))
        if not child.done.is_set():
            self.operator_failed(OperatorFailure(
                ", ".join(child.members), f"group {child.name!r}", child.handle.end_reason(), ""))
            child.loaded.set()
            child.done.set()

    def _shared_store(self) -> SharedStore | None:
        """Where group instances write their states themselves: a store every process reaches, under
        this engine's lease (else their states come to the driver, which writes them)."""
        if self.snapshots is None:
            return None
        store = self.snapshots.store
        location, fence = store.shared_location(), store.fence
        if location is None or fence is None:
            return None
        return SharedStore(location, self.snapshots.run_id, fence)

    def _handle(self, child: _Instance, report: ToDriver) -> None:
        """Act on one report of ``child``; :class:`UnknownControlMessage` for anything unknown."""
        match report:
            case msg.Loaded(failures):
                child.load_failures = failures
                child.loaded.set()
            case msg.Failed(failure):
                self.operator_failed(failure)
            case msg.ShutdownFailed(failure):
                self.shutdown_failed(failure)
            case msg.Terminate(by):
                self.terminator_fired(by)
            case msg.State(process, epoch, data):
                try:
                    self.persist_state(process, epoch, data)
                except Exception as exc:  # noqa: BLE001 - the store failing fails the attempt
                    self.operator_failed(OperatorFailure(process, "persisting state",
                                                         f"{type(exc).__name__}: {exc}", ""))
            case msg.StateSaved(process, epoch, size, seconds):
                self.state_saved(process, epoch, size, seconds)
            case msg.Ack(process, epoch, stateful):
                self.epoch_acked(process, epoch, stateful)
            case msg.ProbeAnswer():
                if report.stats is not None:
                    self.stats_reported(child.name, report.stats)
                child.probe = report
                self._probe_event.set()
            case msg.Stdout(text):
                self.stdout_write(text)
            case msg.OperatorLog():
                deliver(report)
            case msg.Stderr(text):
                deliver_process_output(text)
            case msg.FaultFired(fault):
                self.faults.mark_fired(fault)
            case msg.KillEngine(message):
                self.kill_engine(message)
            case msg.Done(stuck, stats):
                self.stats_reported(child.name, stats)
                child.stuck = stuck
                child.done.set()
            case _:
                raise UnknownControlMessage("the driver", report)

    def stdout_write(self, text: str) -> None:
        """Terminal/Wiretap output of the groups; each group's listener thread calls this."""
        out = self.options.stdout or sys.stdout
        with self._stdout_lock:
            out.write(text)
            out.flush()

    def kill_engine(self, message: str) -> None:
        """A ``kill`` fault fired in a group: the whole engine dies at once, as if killed (crash tests)."""
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(KILL_EXIT_CODE)

    def _go(self) -> None:
        for child in self.children.values():
            child.send(msg.Go())

    # -- driving ---------------------------------------------------------------------------------
    def _take_snapshot(self, source: str, epoch: str) -> None:
        for child in self.instances[self._home[source]]:
            child.send(msg.TakeSnapshot(source, epoch))

    def _epoch_complete(self, epoch: str, sealed: bool) -> None:
        for child in self.children.values():
            child.send(msg.EpochComplete(epoch, sealed))

    def _drop_timers(self) -> None:
        for child in self.children.values():
            child.send(msg.DropTimers())

    def _work(self) -> list[WorkCounts] | None:
        """One probe wave: every instance's answer, or None if one did not answer in time."""
        self._probe_seq += 1
        seq = self._probe_seq
        self._probe_event.clear()
        # The operators' counters travel with a probe only while an instrument listens, and at most every
        # STATS_EVERY seconds (probes go out every watch-loop tick; a display samples a few times a second).
        now = time.monotonic()
        with_stats = bool(self.instruments) and now - self._stats_asked >= STATS_EVERY
        if with_stats:
            self._stats_asked = now
        for child in self.children.values():
            child.send(msg.Probe(seq, with_stats))
        deadline = time.monotonic() + PROBE_TIMEOUT
        while not all(c.probe is not None and c.probe.seq == seq for c in self.children.values()):
            if self.is_stopping() or time.monotonic() > deadline:
                return None
            self._probe_event.wait(0.05)
            self._probe_event.clear()
        return [child.probe.work for child in self.children.values() if child.probe is not None]

    # -- stopping -----------------------------------------------------------------------------------
    def _stop_groups(self) -> None:
        for child in self.children.values():
            child.send(msg.Stop())

    def _join(self) -> list[str]:
        # Once more to every instance: one started after the run ended (a stop while the groups were
        # being started) has not heard it yet. An instance that already stopped ignores it.
        self._stop_groups()
        deadline = time.monotonic() + JOIN_TIMEOUT + EXIT_GRACE
        stuck: list[str] = []
        for child in self.children.values():
            if not child.loaded.is_set():
                # Still in its script bodies (a loop at top level?) when the run ended: it cannot
                # read Stop before they return, and nothing of it ran yet, so it is ended now.
                if child.handle is not None:
                    child.handle.finish(0.0)
                continue
            child.done.wait(max(0.0, deadline - time.monotonic()))
            stuck += child.stuck if child.done.is_set() else child.members
            if child.handle is not None:
                child.handle.finish(max(0.1, min(EXIT_GRACE, deadline - time.monotonic())))
        return stuck


__all__ = ["RemoteEngine", "groups_of"]
