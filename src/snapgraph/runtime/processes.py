"""Groups as OS processes: the parent drives, one child process hosts each group.

As in Gen2, every group of a graph runs in a process of its own (operators in
no group form the ``default`` group), so a crash of user code in one group —
an exception, a segfault, ``os._exit``, an OOM kill — is an operator failure
the parent recovers from, not the end of the engine.

The process boundary is a transport: the parent talks to each group only
through messages on one control pipe (``go``, ``snapshot``, ``epoch_complete``,
``drop_timers``, ``probe``, ``reply``, ``stop``; and back ``loaded``,
``failed``, ``state``, ``ack``, ``terminate``, ``reply``, ``probe``, ``stdout``,
``fault``, ``done``). Connections between groups are pipes of their own
(:mod:`snapgraph.runtime.wire`). A later transport can host groups as actors
elsewhere behind the same messages.

**Completion across processes** uses two probe waves (Mattern's four-counter
method): the graph is idle when every group reports no pending work and no
live script thread, the messages sent between groups equal those received,
and a second wave reports the very same counts.

**No orphans**: a child exits at once when its control pipe reaches EOF (the
parent died, even by SIGKILL), and on Linux it also asks the kernel for
SIGKILL when its parent dies. Children ignore SIGINT; the parent decides.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from typing import Any

from snapgraph.model.graph import RETRY, Connection, Graph, error_handling_mode
from snapgraph.runtime.engine import GraphDriver, Quiet
from snapgraph.runtime.group import JOIN_TIMEOUT, GroupHost, Restore, current_cpu
from snapgraph.runtime.operator import OperatorFailure
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.scripts import prepare_imports
from snapgraph.runtime.wire import InboundLink, OutboundLink, ReplyTokens, RoundRobinLink, enlarge_pipe
from snapgraph.snapshot.faults import KILL_EXIT_CODE, Fault, FaultPlan, set_active_plan
from snapgraph.snapshot.protocol import SnapshotConfig

PROBE_TIMEOUT = 5.0  # seconds to wait for every group's answer to a probe
EXIT_GRACE = 5.0  # seconds a child gets to exit after reporting done, before it is killed


def groups_of(graph: Graph) -> dict[str, list[str]]:
    """Group name -> its operators (operators in no group are in ``default``)."""
    groups: dict[str, list[str]] = {}
    for name, process in graph.processes.items():
        groups.setdefault(process.group or "default", []).append(name)
    return groups


def multiplicity_of(graph: Graph, group: str) -> int:
    declared = graph.groups.get(group)
    return max(1, declared.multiplicity) if declared is not None else 1


@dataclass
class GroupSpec:
    """Everything a child needs to host one group (pickled to the child at spawn)."""

    graph: Graph
    group: str
    members: list[str]
    options: RunOptions
    snapshots_on: bool
    restore: Restore | None
    faults: list[Fault]
    handle: str
    cpu: int | None = None
    instance: str = ""  # this instance's name ("group" or "group#i"), used to route replies back
    index: int = 0
    multiplicity: int = 1
    # Outgoing connections to other groups: (connection, receiver retries, receiver instances); the
    # (data, stream) pipe pairs come in the same order, one pair per receiver instance.
    outbound: list[tuple[Connection, bool, int]] = field(default_factory=list)
    inbound: list[Connection] = field(default_factory=list)  # one entry per incoming pipe pair


# ---------------------------------------------------------------------------------------------
# The child side


class _ChildDriver:
    """The Driver of a group in a child process: everything goes to the parent."""

    def __init__(self, control: Pipe) -> None:
        self._control = control
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            try:
                self._control.send(message)
            except (BrokenPipeError, OSError):
                os._exit(1)  # the parent is gone: nothing left to report to

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


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def group_main(spec: GroupSpec, control: Pipe, outbound: list[tuple[Pipe, Pipe]],
               inbound: list[tuple[Pipe, Pipe]]) -> None:
    """Entry point of a group process."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    driver = _ChildDriver(control)
    faults = FaultPlan(spec.faults, on_fire=lambda fault: driver.send("fault", fault),
                       kill_engine=lambda message: driver.send("kill_engine", message))
    set_active_plan(faults)
    prepare_imports(spec.graph.path.parent, spec.options.operator_dirs)
    host = GroupHost(spec.graph, spec.members, spec.options, driver, snapshots_on=spec.snapshots_on,
                     restore=spec.restore, faults=faults, handle=spec.handle, cpu=spec.cpu,
                     multiplicity=(spec.multiplicity, spec.index))
    host.register_engine_thread()  # the control loop runs on this thread
    host.stdout_sink = lambda text: driver.send("stdout", text)
    tokens = ReplyTokens()
    pipes = iter(outbound)
    for connection, retries, instances in spec.outbound:
        links = [OutboundLink(*_fds(next(pipes)), spec.instance, tokens, host.activity.note_sent, host.is_stopping)
                 for _ in range(instances)]
        host.connect_remote(connection, links[0] if len(links) == 1 else RoundRobinLink(links), retries)
    report_reply = lambda origin, token, exc: driver.send("reply", origin, token, _portable(exc))  # noqa: E731
    for connection, pipe_pair in zip(spec.inbound, inbound, strict=True):
        link = InboundLink(*_fds(pipe_pair), report_reply, host.is_stopping, host.register_engine_thread)
        host.connect_inbound(connection, link)
        link.start()
    driver.send("loaded", host.load())
    while True:
        try:
            command, *args = control.recv()
        except (EOFError, OSError):
            os._exit(1)  # the parent died: do not outlive it
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
    driver.send("done", host.join())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # script threads that never end must not keep the group alive


def _fds(pipes: tuple[Pipe, Pipe]) -> tuple[int, int]:
    """The raw descriptors of a (data, stream) pipe pair; the wire frames its own bytes."""
    fds = (os.dup(pipes[0].fileno()), os.dup(pipes[1].fileno()))
    pipes[0].close()
    pipes[1].close()
    return fds


def _portable(exc: BaseException | None) -> BaseException | None:
    """An exception that survives pickling (some carry unpicklable state)."""
    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# The parent side


class _Child:
    def __init__(self, group: str, members: list[str], index: int = 0, multiplicity: int = 1) -> None:
        self.group = group
        self.index = index
        self.multiplicity = multiplicity
        self.name = group if multiplicity == 1 else f"{group}#{index}"
        self.members = members
        self.process: multiprocessing.process.BaseProcess | None = None
        self.control: Pipe | None = None
        self.loaded = threading.Event()
        self.load_failures: list[OperatorFailure] = []
        self.done = threading.Event()
        self.stuck: list[str] = []
        self.probe: tuple[int, tuple[int, int, int, int], bool] | None = None
        self.lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self.lock:
            try:
                assert self.control is not None
                self.control.send(message)
            except (BrokenPipeError, OSError, AssertionError):
                pass  # a dead child is noticed by its reader


class ProcessEngine(GraphDriver):
    """Runs each group of the graph in an OS process of its own."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None) -> None:
        super().__init__(graph, options, snapshots, faults)
        self.instances: dict[str, list[_Child]] = {}
        for group, members in groups_of(graph).items():
            count = multiplicity_of(graph, group)
            self.instances[group] = [_Child(group, members, i, count) for i in range(count)]
        self.children = {child.name: child for group in self.instances.values() for child in group}
        self._home = {name: group for group, members in groups_of(graph).items() for name in members}
        self._stdout_lock = threading.Lock()
        self._probe_seq = 0
        self._probe_event = threading.Event()
        self._last_counts: tuple[int, int] | None = None

    # -- starting -----------------------------------------------------------------------------
    def _load(self) -> list[OperatorFailure]:
        context = multiprocessing.get_context("spawn")
        # A (data, stream) pair of pipes per (connection between groups, sender instance, receiver
        # instance); each pipe as its (receiving, sending) ends.
        links: dict[tuple[Connection, str, str], tuple[tuple[Pipe, Pipe], tuple[Pipe, Pipe]]] = {}
        for connection in self.graph.connections:
            source, target = self._home[connection.src.process], self._home[connection.tgt.process]
            if source != target:
                for sender in self.instances[source]:
                    for receiver in self.instances[target]:
                        data, stream = context.Pipe(duplex=False), context.Pipe(duplex=False)
                        enlarge_pipe(data[0].fileno())
                        links[(connection, sender.name, receiver.name)] = (data, stream)
        options = replace(self.options, stdout=None)
        cpus = _cpu_plan([child for child in self.children.values() if len(child.members) > 1]) \
            if self.options.pin_cpus else {}
        for child in self.children.values():
            cpu = cpus.get(child.name)
            outbound: list[tuple[Connection, bool, int]] = []
            send_ends: list[tuple[Pipe, Pipe]] = []
            for connection in self.graph.connections:
                receivers = self.instances[self._home[connection.tgt.process]]
                if self._home[connection.src.process] == child.group and receivers[0].group != child.group:
                    retries = error_handling_mode(self.graph.processes[connection.tgt.process].config) == RETRY
                    outbound.append((connection, retries, len(receivers)))
                    send_ends += [(data[1], stream[1]) for data, stream in
                                  (links[(connection, child.name, r.name)] for r in receivers)]
            incoming = [(key, ends) for key, ends in links.items() if key[2] == child.name]
            restore = None
            if self.restore is not None:
                restore = Restore(self.restore.epoch,
                                  {k: v for k, v in self.restore.states.items() if k in child.members})
            spec = GroupSpec(self.graph, child.group, child.members, options, self.snapshots is not None,
                             restore, self.faults.remaining(), self.handle, cpu,
                             instance=child.name, index=child.index, multiplicity=child.multiplicity,
                             outbound=outbound, inbound=[key[0] for key, _ in incoming])
            parent_end, child_end = context.Pipe(duplex=True)
            child.control = parent_end
            child.process = context.Process(
                target=group_main, name=f"snapgraph-group-{child.name}",
                args=(spec, child_end, send_ends, [(data[0], stream[0]) for _, (data, stream) in incoming]),
            )
            child.process.start()
            child_end.close()
            threading.Thread(target=self._listen, args=(child,), daemon=True,
                             name=f"control:{child.name}").start()
        for pair in links.values():
            for receive_end, send_end in pair:
                receive_end.close()
                send_end.close()
        failures: list[OperatorFailure] = []
        for child in self.children.values():
            while not child.loaded.wait(0.1):
                if self.is_stopping():
                    break
            failures += child.load_failures
        failures.sort(key=lambda f: not f.invalid)
        return failures

    def _listen(self, child: _Child) -> None:
        """Handle everything one group reports; notice when its process dies."""
        assert child.control is not None
        while True:
            try:
                kind, *args = child.control.recv()
            except (EOFError, OSError):
                break
            if kind == "loaded":
                child.load_failures = args[0]
                child.loaded.set()
            elif kind == "failed":
                self.operator_failed(args[0])
            elif kind == "shutdown_failed":
                self.shutdown_failed(args[0])
            elif kind == "terminate":
                self.terminator_fired(args[0])
            elif kind == "state":
                try:
                    self.persist_state(*args)
                except Exception as exc:  # noqa: BLE001 - the store failing fails the attempt
                    self.operator_failed(OperatorFailure(args[0], "persisting state", f"{type(exc).__name__}: {exc}", ""))
            elif kind == "ack":
                self.epoch_acked(*args)
            elif kind == "reply":
                origin, token, exc = args
                self.children[origin].send("reply", token, exc)
            elif kind == "probe":
                child.probe = (args[0], args[1], args[2])
                self._probe_event.set()
            elif kind == "stdout":
                self.stdout_write(args[0])
            elif kind == "fault":
                self.faults.mark_fired(args[0])
            elif kind == "kill_engine":
                sys.stderr.write(args[0] + "\n")
                sys.stderr.flush()
                os._exit(KILL_EXIT_CODE)
            elif kind == "done":
                child.stuck = args[0]
                child.done.set()
        if not child.done.is_set():
            process = child.process
            if process is not None:
                process.join(1.0)
            code = process.exitcode if process is not None else None
            reason = _describe_exit(code)
            self.operator_failed(OperatorFailure(
                ", ".join(child.members), f"group {child.name!r}",
                f"the group process died ({reason})", ""))
            child.loaded.set()
            child.done.set()

    def stdout_write(self, text: str) -> None:
        """Terminal/Wiretap output of the groups; each group's listener thread calls this."""
        out = self.options.stdout or sys.stdout
        with self._stdout_lock:
            out.write(text)
            out.flush()

    def _go(self) -> None:
        for child in self.children.values():
            child.send("go")

    # -- driving ---------------------------------------------------------------------------------
    def _take_snapshot(self, source: str, epoch: str) -> None:
        for child in self.instances[self._home[source]]:
            child.send("snapshot", source, epoch)

    def _epoch_complete(self, epoch: str) -> None:
        for child in self.children.values():
            child.send("epoch_complete", epoch)

    def _drop_timers(self) -> None:
        for child in self.children.values():
            child.send("drop_timers")

    def _quiet(self) -> Quiet:
        """One probe wave; idle only if it matches the previous idle wave exactly."""
        self._probe_seq += 1
        seq = self._probe_seq
        self._probe_event.clear()
        for child in self.children.values():
            child.send("probe", seq)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while not all(c.probe is not None and c.probe[0] == seq for c in self.children.values()):
            if self.is_stopping() or time.monotonic() > deadline:
                return Quiet(False, 0)
            self._probe_event.wait(0.05)
            self._probe_event.clear()
        pending = messages = sent = received = 0
        threads = False
        for child in self.children.values():
            assert child.probe is not None
            count, published, out, came = child.probe[1]
            pending += count
            messages += published
            sent += out
            received += came
            threads = threads or child.probe[2]
        idle_now = pending == 0 and not threads and sent == received
        counts = (sent, messages)
        idle = idle_now and self._last_counts == counts
        self._last_counts = counts if idle_now else None
        if idle_now and not idle:
            self.wake.set()  # confirm with a second wave right away
        return Quiet(idle, messages)

    # -- stopping -----------------------------------------------------------------------------------
    def _stop_groups(self) -> None:
        for child in self.children.values():
            child.send("stop")

    def _join(self) -> list[str]:
        deadline = time.monotonic() + JOIN_TIMEOUT + EXIT_GRACE
        stuck: list[str] = []
        for child in self.children.values():
            child.done.wait(max(0.0, deadline - time.monotonic()))
            stuck += child.stuck if child.done.is_set() else child.members
            process = child.process
            if process is None:
                continue
            process.join(max(0.1, min(EXIT_GRACE, deadline - time.monotonic())))
            if process.is_alive():
                process.kill()
                process.join(5)
            if child.control is not None:
                child.control.close()
        return stuck


def _cpu_plan(children: list[_Child]) -> dict[str, int]:
    """A CPU for each child that hosts several operators, round-robin over the CPUs this engine may use.

    The dispatchers of such a group hand messages to each other by reference and share one
    interpreter lock, so they run best on one core (see ``group.pin_thread``). A group of one
    operator has a single busy thread (its dispatcher reads its pipes itself): it is left to the OS,
    which moves it to whichever core is free — a static placement of three busy stages on two
    cores leaves one core idle a third of the time (docs/benchmarks.md).
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return {}
    start = current_cpu()
    offset = allowed.index(start) if start in allowed else 0
    return {child.name: allowed[(offset + i) % len(allowed)] for i, child in enumerate(children)}


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


__all__ = ["GroupSpec", "ProcessEngine", "group_main", "groups_of"]
