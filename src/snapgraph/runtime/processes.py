"""Groups as OS processes on this machine: the transport behind the default engine.

As in Gen2, every group of a graph runs in a process of its own (operators in
no group form the ``default`` group), so a crash of user code in one group —
an exception, a segfault, ``os._exit``, an OOM kill — is an operator failure
the driver recovers from, not the end of the engine.

:class:`ProcessTransport` starts one process per group instance (forked from a
fork server that has imported snapgraph) with a control pipe to the driver, and
a data, a stream and a reply pipe per link between instances (:mod:`snapgraph.runtime.wire`); :func:`group_main` is the
child's entry point. :class:`ProcessEngine` is the remote engine on this
transport (the ``process`` backend of :mod:`snapgraph.runtime.backends`).

**No orphans**: a child exits at once when its control pipe reaches EOF (the
parent died, even by SIGKILL), and on Linux it also asks the kernel for
SIGKILL when its parent dies. Children and the fork server ignore SIGINT and
SIGTERM; the engine decides (:mod:`snapgraph.runtime.signals`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection as Pipe
from typing import Any, NoReturn

from snapgraph.model.graph import Connection, Graph
from snapgraph.runtime.control import ToDriver, ToGroup
from snapgraph.runtime.group import current_cpu
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.remote import RemoteEngine
from snapgraph.runtime.script_guards import die_with_parent
from snapgraph.runtime.transport import GroupHandle, GroupSpec, GroupStartFailed, Transport, serve_group
from snapgraph.runtime.wire import PipeEnds, enlarge_pipe, pipe_bytes
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig

# One link's pipes, each as its (read, write) ends: the data pipe and the stream pipe, which the
# sending instance writes, and the reply pipe, which the receiving instance writes.
_LinkPipes = tuple[tuple[Pipe, Pipe], tuple[Pipe, Pipe], tuple[Pipe, Pipe]]
_SideEnds = tuple[Pipe, Pipe, Pipe]  # what one instance holds of a link: (data, stream, reply)


class ProcessEngine(RemoteEngine):
    """Runs each group of the graph in an OS process of its own (the ``process`` backend of
    :mod:`snapgraph.runtime.backends`)."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None, **driver: Any) -> None:
        options = options or RunOptions()
        super().__init__(graph, ProcessTransport(options.pin_cpus), options, snapshots, faults, **driver)


# ---------------------------------------------------------------------------------------------
# The parent side


class _ProcessHandle(GroupHandle):
    def __init__(self, name: str, process: multiprocessing.process.BaseProcess, control: Pipe) -> None:
        self.name = name
        self._process = process
        self._control = control
        self._lock = threading.Lock()

    def send(self, message: ToGroup) -> None:
        with self._lock:
            try:
                self._control.send(message)
            except (BrokenPipeError, OSError):
                pass  # a dead child is noticed by receive()

    def receive(self) -> ToDriver:
        try:
            return self._control.recv()  # type: ignore[no-any-return]
        except OSError:
            raise EOFError from None

    def end_reason(self) -> str:
        self._process.join(1.0)
        return f"the group process died ({_describe_exit(self._process.exitcode)})"

    def finish(self, timeout: float) -> None:
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._control.close()


class ProcessTransport(Transport):
    """Starts each group instance as a process on this machine, linked by pipes."""

    def __init__(self, pin_cpus: bool = True) -> None:
        self._context = _start_context()
        self._links: dict[tuple[Connection, str, str], _LinkPipes] = {}
        self._cpus = _allowed_cpus() if pin_cpus else []
        self._pinned = 0
        self._sized = False

    def connect(self, connection: Connection, sender: str, receiver: str) -> None:
        self._links[(connection, sender, receiver)] = (self._context.Pipe(duplex=False),
                                                       self._context.Pipe(duplex=False),
                                                       self._context.Pipe(duplex=False))

    def start(self, spec: GroupSpec) -> GroupHandle:
        if not self._sized:  # every link is connected before the first start
            size = pipe_bytes(len(self._links))
            for (data, _, _) in self._links.values():
                enlarge_pipe(data[0].fileno(), size)
            self._sized = True
        outbound = [[_sending_ends(self._links[(connection, spec.instance, receiver)]) for receiver in receivers]
                     for connection, _, receivers in spec.outbound]
        inbound = [_receiving_ends(self._links[(connection, sender, spec.instance)])
                   for connection, sender in spec.inbound]
        parent_end, child_end = self._context.Pipe(duplex=True)
        # A forked child starts with the fork server's working directory, environment and import
        # path; serve_group takes over the driver's (spec.where), as a spawned child would have them.
        process = self._context.Process(target=group_main, name=f"snapgraph-group-{spec.instance}",
                                        args=(spec, child_end, outbound, inbound, self._cpu_for(spec)))
        try:
            process.start()
        except (EOFError, OSError) as exc:
            # The fork server died: a signal to the whole process group that reached it while it was
            # starting, before its preload ignores SIGTERM, or an OOM kill. The next attempt starts a new one.
            child_end.close()
            parent_end.close()
            raise GroupStartFailed(f"the fork server that starts group processes died "
                                   f"({type(exc).__name__}: {exc})") from None
        child_end.close()
        return _ProcessHandle(spec.instance, process, parent_end)

    def started(self) -> None:
        """The children hold their pipe ends now; close this process's copies."""
        for pipes in self._links.values():
            for read_end, write_end in pipes:
                read_end.close()
                write_end.close()
        self._links.clear()

    def _cpu_for(self, spec: GroupSpec) -> int | None:
        """A CPU for a group of several operators, round-robin; a group of one operator gets none.

        The dispatchers of a group of several operators hand messages to each other by reference
        and share one interpreter lock, so they run best on one core (see ``group.pin_thread``). A
        group of one operator has a single busy thread (its dispatcher reads its pipes itself): it
        is left to the OS, which moves it to whichever core is free — a static placement of three
        busy stages on two cores leaves one core idle a third of the time (docs/benchmarks.md).
        """
        if not self._cpus or len(spec.members) < 2:
            return None
        cpu = self._cpus[self._pinned % len(self._cpus)]
        self._pinned += 1
        return cpu


def _start_context() -> multiprocessing.context.SpawnContext | multiprocessing.context.ForkServerContext:
    """How group processes start: forked from a fork server that has imported snapgraph already.

    A fresh interpreter that imports snapgraph takes about 0.1 s, which every recovery and every
    start of a graph paid once per group; the fork server pays it once per engine. Where there is
    no fork server (not POSIX), processes are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["snapgraph.runtime.forkserver_init"])
    return context


def _sending_ends(pipes: _LinkPipes) -> _SideEnds:
    """What the sending instance holds of a link: the write ends of data and stream, the read end of replies."""
    data, stream, reply = pipes
    return data[1], stream[1], reply[0]


def _receiving_ends(pipes: _LinkPipes) -> _SideEnds:
    """What the receiving instance holds of a link: the read ends of data and stream, the write end of replies."""
    data, stream, reply = pipes
    return data[0], stream[0], reply[1]


def _allowed_cpus() -> list[int]:
    """The CPUs this engine may use, starting with the one it runs on."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []
    start = current_cpu()
    offset = allowed.index(start) if start in allowed else 0
    return allowed[offset:] + allowed[:offset]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------------------------------------
# The child side


def group_main(spec: GroupSpec, control: Pipe, outbound: list[list[_SideEnds]],
               inbound: list[_SideEnds], cpu: int | None) -> None:
    """Entry point of a group process (what only a process needs; the rest is :func:`serve_group`'s)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides how the graph stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not os.environ.get("PYTHONBREAKPOINT"):
        sys.breakpointhook = _breakpoint_without_terminal
    serve_group(spec, control, [[_raw(ends) for ends in links] for links in outbound],
                [_raw(ends) for ends in inbound], _parent_gone, cpu)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # script threads that never end must not keep the group alive


def _raw(pipes: _SideEnds) -> PipeEnds:
    """The raw descriptors of one side's (data, stream, reply) pipe ends: the wire frames its own bytes."""
    ends = PipeEnds(*(os.dup(pipe.fileno()) for pipe in pipes))
    for pipe in pipes:
        pipe.close()
    return ends


def _parent_gone() -> NoReturn:
    os._exit(1)  # the parent died: do not outlive it


def _breakpoint_without_terminal(*args: Any, **kwargs: Any) -> None:
    """``breakpoint()`` in a group process: there is no terminal to debug in, say what to do instead."""
    raise RuntimeError("breakpoint() in a group process, which has no terminal: run the graph with --in-process "
                       "to debug it there, or set PYTHONBREAKPOINT to a remote debugger")


__all__ = ["ProcessEngine", "ProcessTransport", "group_main"]
