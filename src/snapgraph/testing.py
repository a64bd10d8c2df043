"""Test Gen2 Python3 operator scripts with pytest, in this process, on the real runtime.

SAP Data Intelligence has no test harness for ``com.sap.system.python3Operator.v2`` scripts; people
stub the ``api`` object by hand. This module runs a script on snapgraph's own runtime instead (the
same :class:`~snapgraph.runtime.operator.OperatorRuntime` dispatcher, ``api`` object, channels and
snapshot protocol a graph run uses), with the inputs, the clock and the snapshots under the test's
control. See docs/testing.md for a walk-through.

* :class:`OperatorTest` runs one script: :meth:`~OperatorTest.send` messages to its input ports
  (any value ``publish`` accepts: scalars, ``api.Table`` or row lists, ``api.Record``, bytes,
  header-only), :meth:`~OperatorTest.advance` its :class:`ManualClock` to fire ``api.add_timer``
  callbacks, take :meth:`~OperatorTest.snapshot`\\ s, run ``epoch_complete`` and read what it
  published per output port (:class:`CapturedPort`, bodies and headers in order).
* :func:`run_operator` does the same from a list of steps (:class:`Send`, :class:`SendStream`,
  :class:`Tick`) ending at :data:`EOF` (input ends, the operator finishes) or :data:`ABORT` (it is
  stopped at once, as when its group fails).
* :func:`check_restore` checks what exactly-once needs from a stateful operator: ``serialize`` →
  ``restore`` round-trips, and replaying the inputs after a restore gives the outputs a run without
  a restore gave.
* :func:`run_graph` runs a small graph on the real :class:`~snapgraph.runtime.engine.Engine` and
  captures every output port; :func:`run_with_faults` runs a graph file under automatic recovery with
  crash faults at named protocol points, to compare its result with a failure-free run.
* :func:`batch_header` / :func:`last_batch` build ``com.sap.headers.batch`` headers, Gen2's
  end-of-input convention; :class:`Recorder` lets scripts record values for the test to read.
"""

from __future__ import annotations

import io
import logging
import pickle
import sys
import tempfile
import textwrap
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from snapgraph.api.operator_api import Outport, Registrations, ResponseCallback
from snapgraph.api.table import Record, Table
from snapgraph.model.graph import (
    PYTHON3_V2,
    Connection,
    Endpoint,
    Graph,
    Location,
    Port,
    Process,
    ScriptSource,
)
from snapgraph.model.problems import GraphError
from snapgraph.model.type_shorthand import parse_type_shorthand
from snapgraph.model.types import PortType
from snapgraph.model.validate import validate_graph
from snapgraph.model.vtypes import VTypeRegistry, load_vtype_files
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.group import GroupHost
from snapgraph.runtime.messages import STREAM_CAPACITY, Barrier, Message, MessageIds, Reply, StreamBuffer
from snapgraph.runtime.operator import OperatorRuntime
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.scripts import forget_script_modules, prepare_imports
from snapgraph.runtime.supervisor import SupervisedResult
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.state import unpack_state
from snapgraph.snapshot.store import RestorePoint

__all__ = [
    "ABORT", "EOF", "BATCH_HEADER", "CapturedMessage", "CapturedPort", "FaultRun", "GraphRun", "ManualClock",
    "OperatorBusy", "OperatorError", "OperatorRun", "OperatorTest", "Recorder", "RestoreCheck",
    "RestoreMismatch", "Send", "SendStream", "Step", "Tick", "batch_header", "check_restore",
    "last_batch", "run_graph", "run_operator", "run_with_faults",
]

BATCH_HEADER: Final = "com.sap.headers.batch"
TEST_PEER: Final = "<test>"  # the process name on the far end of every port of the operator under test
DEFAULT_TIMEOUT: Final = 10.0  # real seconds an operator gets to become idle
_POLL = 0.001


# -- errors ------------------------------------------------------------------------------------------

class OperatorError(AssertionError):
    """The operator failed (its script body, a callback under ``terminate on error``, its shutdown).

    ``failure`` says where and why; ``str()`` includes the script's traceback.
    """

    def __init__(self, failure: OperatorFailure) -> None:
        self.failure = failure
        detail = f"\n{failure.traceback}" if failure.traceback else ""
        super().__init__(f"{failure}{detail}")


class OperatorBusy(AssertionError):
    """The operator did not become idle in time (a long callback, a timer returning 0 for ever...)."""


class RestoreMismatch(AssertionError):
    """:func:`check_restore` found a difference; the message says which split point and port."""


# -- the clock ---------------------------------------------------------------------------------------

class ManualClock:
    """A monotonic clock that moves only when told to (the clock ``api.add_timer`` timers run on).

    :meth:`OperatorTest.advance` moves it and fires the timers that come due, in order; setting it
    directly does not run anything.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"a monotonic clock cannot go back (from {self._now:g} to {now:g})")
        self._now = float(now)


# -- headers -----------------------------------------------------------------------------------------

def batch_header(index: int, is_last: bool, count: int = 0, size: int = 0, unit: str = "rows",
                 **more: list[Any]) -> dict[str, list[Any]]:
    """A header with ``com.sap.headers.batch`` = ``[index, isLast, count, size, unit]`` (+ ``more`` keys)."""
    return {BATCH_HEADER: [index, is_last, count, size, unit], **more}


def last_batch(index: int = 0, count: int = 0, size: int = 0, unit: str = "rows") -> dict[str, list[Any]]:
    """The header that ends an input in Gen2 (``isLast`` true): there is no other end-of-input marker."""
    return batch_header(index, True, count, size, unit)


# -- steps -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """A message to input ``port``: ``body`` as ``publish`` takes it (None: header only)."""

    port: str
    body: Any = None
    header: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SendStream:
    """A ``with_writer`` stream to a table or binary input ``port``: ``chunks`` are row lists or bytes."""

    port: str
    chunks: Sequence[Any]
    header: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Tick:
    """Advance the clock by ``seconds``, firing the timers that come due."""

    seconds: float


class _Marker:
    def __init__(self, name: str, doc: str) -> None:
        self._name = name
        self.__doc__ = doc

    def __repr__(self) -> str:
        return self._name


EOF: Final = _Marker("EOF", "End of input: nothing more is sent; the operator runs until idle, then stops.")
ABORT: Final = _Marker("ABORT", "Stop at once, as when the group fails: what is still queued is not processed.")

Step = Send | SendStream | Tick | _Marker


# -- what the operator published -----------------------------------------------------------------------

@dataclass
class CapturedMessage:
    """One message the operator published: its body (a stream's whole Table or bytes), header, type id."""

    body: Any
    header: dict[str, Any]
    type_id: str
    msg_id: bytes
    streamed: bool = False
    closed: bool = True  # False while a with_writer stream is still open

    @property
    def is_last(self) -> bool:
        """Whether its header ends a batch sequence (``com.sap.headers.batch`` with ``isLast``)."""
        batch = self.header.get(BATCH_HEADER)
        return batch is not None and len(batch) > 1 and bool(list(batch)[1])


class CapturedPort(Sequence[CapturedMessage]):
    """The messages published on one output port, in order (index it, iterate it, ``len`` it)."""

    def __init__(self, name: str, port_type: PortType) -> None:
        self.name = name
        self.port_type = port_type
        self._messages: list[CapturedMessage] = []
        self.epochs: list[str] = []  # snapshot barriers the operator forwarded on this port
        self.bytes_sent = 0  # the link's counter (runtime.links.Sender): captured by reference, nothing encoded
        self._lock = threading.Lock()

    def __getitem__(self, index: Any) -> Any:
        with self._lock:
            return self._messages[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    @property
    def messages(self) -> list[CapturedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def bodies(self) -> list[Any]:
        """The bodies as published (``api.Table``, ``api.Record``, scalars, bytes, None)."""
        return [m.body for m in self.messages]

    @property
    def headers(self) -> list[dict[str, Any]]:
        return [m.header for m in self.messages]

    @property
    def values(self) -> list[Any]:
        """The bodies as plain Python: a Table as its list of rows, a Record as a list."""
        return [_plain(m.body) for m in self.messages]

    @property
    def ended(self) -> bool:
        """Whether the last message ended the port's output (a last-batch header)."""
        messages = self.messages
        return bool(messages) and messages[-1].is_last

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self.epochs.clear()

    # -- the channel side: the runtime puts items here ----------------------------------------------
    def put(self, item: Any) -> None:
        if isinstance(item, Barrier):
            with self._lock:
                self.epochs.append(item.epoch)
            return
        assert isinstance(item, Message), item
        header = {key: list(value) for key, value in item.header.items()}
        if not item.is_stream:
            with self._lock:
                self._messages.append(CapturedMessage(item.body, header, item.type_id, item.msg_id))
            if item.reply is not None:
                item.reply.done(None)  # processed: a response callback on the sender runs
            return
        captured = CapturedMessage(None, header, item.type_id, item.msg_id, streamed=True, closed=False)
        chunks: list[Any] = []
        table = item.port_type.category == "table" or not isinstance(item.body, StreamBuffer)
        reply = item.reply

        def close() -> None:
            if captured.closed:
                return
            is_bytes = bool(chunks) and isinstance(chunks[0], (bytes, bytearray))
            if is_bytes or (not chunks and not table):
                captured.body = b"".join(chunks)
            else:
                rows = [row for chunk in chunks for row in chunk]
                captured.body = Table(rows, "" if item.type_id == "*" else item.type_id)
            captured.closed = True
            if reply is not None:
                reply.done(None)

        with self._lock:
            self._messages.append(captured)
        item.body.forward(chunks.append, close)

    def __repr__(self) -> str:
        return f"CapturedPort({self.name!r}, {self.values!r})"


def _plain(value: Any) -> Any:
    if isinstance(value, Table):
        return [_plain_row(row) for row in value.body]
    if isinstance(value, Record):
        return [_plain(v) for v in value]
    return value


def _plain_row(row: Any) -> Any:
    return [_plain(v) for v in row] if isinstance(row, (list, tuple)) else row


# -- the harness ---------------------------------------------------------------------------------------

class _Driver:
    """Stands where the engine stands for a group: failures, persisted states, acknowledgements."""

    def __init__(self) -> None:
        self.failure: OperatorFailure | None = None
        self.shutdown_failure: OperatorFailure | None = None
        self.states: dict[str, bytes] = {}
        self.acked: list[str] = []
        self.terminated_by: str | None = None

    def operator_failed(self, failure: OperatorFailure) -> None:
        if self.failure is None:
            self.failure = failure

    def shutdown_failed(self, failure: OperatorFailure) -> None:
        if self.shutdown_failure is None:
            self.shutdown_failure = failure

    def terminator_fired(self, by: str) -> None:
        self.terminated_by = by

    def persist_state(self, process: str, epoch: str, data: bytes) -> None:
        self.states[epoch] = data

    def epoch_acked(self, process: str, epoch: str, stateful: bool) -> None:
        self.acked.append(epoch)


class _InputSide:
    """The OperatorHost of the test's own output ports (one per input of the operator under test).

    The test sends through real :class:`~snapgraph.api.operator_api.Outport` objects, so a value is
    checked against the port type, tables are typed and headers validated exactly as when an upstream
    script publishes it.
    """

    def __init__(self, harness: OperatorTest) -> None:
        self._harness = harness

    def check_output_window(self, what: str) -> None:
        return None

    def emit(self, port: str, body: Any, header: dict[str, Any], type_id: str,
             response_callback: ResponseCallback | None) -> bytes:
        h = self._harness
        msg_id = h._ids[port].next()
        message = Message(msg_id, header, body, h._inports[port], type_id, h._reply(msg_id))
        h._put(port, message)
        return msg_id

    def open_stream(self, port: str, header: dict[str, Any], type_id: str,
                    response_callback: ResponseCallback | None) -> tuple[bytes, list[Any]]:
        h = self._harness
        msg_id = h._ids[port].next()
        buffer = StreamBuffer(STREAM_CAPACITY, h._host.is_stopping)
        h._put(port, Message(msg_id, header, buffer, h._inports[port], type_id, h._reply(msg_id), is_stream=True))
        return msg_id, [buffer]

    def propagate_exception(self, exc: BaseException) -> None:
        raise exc


def _port_types(ports: Mapping[str, Any] | Iterable[str] | None, what: str) -> dict[str, PortType]:
    if ports is None:
        return {}
    if not isinstance(ports, Mapping):
        ports = {name: None for name in ports}
    result = {}
    for name, spelling in ports.items():
        try:
            result[str(name)] = spelling if isinstance(spelling, PortType) else parse_type_shorthand(spelling)
        except ValueError as exc:
            raise ValueError(f"{what} port {name!r}: {exc}") from None
    return result


def _script_source(script: str | Path, name: str) -> tuple[ScriptSource, Path | None]:
    if isinstance(script, Path):
        return ScriptSource(script.read_text(), str(script.resolve())), script.resolve().parent
    return ScriptSource(textwrap.dedent(script).lstrip("\n"), f"<script of {name}>"), None


class OperatorTest:
    """One Gen2 operator script, loaded and run by the real runtime, driven by the test.

    ``script`` is the source text (dedented) or a :class:`~pathlib.Path` to a ``.py`` file (modules
    beside it are importable, as beside a graph file). ``inputs`` / ``outputs`` map port names to
    types in the YAML spelling (``int64``, ``string``, ``binary``, ``table``, ``table:my.vtype``, ``*``
    or None for any; a list of names means any). ``config`` is ``api.config`` (``errorHandling``
    included). ``unconnected`` ports are declared but not connected (``api.is_outport_connected``).
    ``snapshots`` switches the state API on (stateful operators must then register serialize and
    restore); ``restore=(epoch, state)`` starts from a state that :meth:`snapshot` returned.
    ``vtypes`` is a folder of ``.vtype`` files.

    Use it as a context manager: :meth:`start` on entry (script body, restore, prestart, timers at
    the clock's start), :meth:`stop` on exit (the shutdown callback). Every method that lets the
    operator work waits until it is idle again, and raises :class:`OperatorError` if it failed.
    """

    def __init__(self, script: str | Path, *, inputs: Mapping[str, Any] | Iterable[str] | None = None,
                 outputs: Mapping[str, Any] | Iterable[str] | None = None,
                 config: Mapping[str, Any] | None = None, name: str = "op",
                 unconnected: Iterable[str] = (), snapshots: bool = False,
                 restore: tuple[str, bytes] | None = None, clock: ManualClock | None = None,
                 vtypes: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                 log_level: int = logging.INFO) -> None:
        self.name = name
        self.clock = clock or ManualClock()
        self.timeout = timeout
        self._inports = _port_types(inputs, "input")
        outports = _port_types(outputs, "output")
        source, folder = _script_source(script, name)
        self._folder = folder
        unconnected = set(unconnected)
        unknown = unconnected - set(self._inports) - set(outports)
        if unknown:
            raise ValueError(f"unconnected names unknown port(s): {', '.join(sorted(unknown))}")
        process = Process(name, PYTHON3_V2, dict(config or {}),
                          {n: Port(n, t) for n, t in self._inports.items()},
                          {n: Port(n, t) for n, t in outports.items()},
                          script=source, location=Location(source.filename))
        registry = VTypeRegistry()
        graph = Graph(f"test-{name}", (folder or Path.cwd()) / f"{name}.test", {name: process}, vtypes=registry)
        problems: list[Any] = []
        if vtypes is not None:
            load_vtype_files(Path(vtypes), registry, problems, scope="local")
        for port in self._inports:
            if port not in unconnected:
                graph.connections.append(Connection(Endpoint(TEST_PEER, port), Endpoint(name, port)))
        for port in outports:
            if port not in unconnected:
                graph.connections.append(Connection(Endpoint(name, port), Endpoint(TEST_PEER, port)))
        problems += validate_graph(graph, snapshots=snapshots, skip={TEST_PEER})
        if problems:
            raise GraphError(problems)
        self.graph = graph
        self._driver = _Driver()
        packed = None if restore is None else RestorePoint(restore[0], {name: restore[1]})
        if packed is not None and not snapshots:
            raise ValueError("restore= needs snapshots=True (the state API is off without snapshots)")
        self._host = GroupHost(graph, [name], RunOptions(log_level=log_level), self._driver,
                               snapshots_on=snapshots, restore=packed)
        self._runtime: OperatorRuntime = self._host.operators[name]
        self._runtime.timers.clock = self.clock
        self.logs: list[logging.LogRecord] = []
        self._runtime.logger.addHandler(_ListHandler(self.logs))
        self.outputs: dict[str, CapturedPort] = {}
        for port, port_type in outports.items():
            captured = CapturedPort(port, port_type)
            self.outputs[port] = captured
            if port not in unconnected:
                self._host.connect_remote(Connection(Endpoint(name, port), Endpoint(TEST_PEER, port)),
                                          captured, receiver_retries=False)
        self._channels = {c.tgt.port: ch for c, ch in self._host.inbound.items()}
        self._ids = {port: MessageIds() for port in self._inports}
        input_side = _InputSide(self)
        self._senders = {port: Outport(port, t, input_side, Registrations(), TEST_PEER, self._host.type_context)
                         for port, t in self._inports.items()}
        self.responses: dict[bytes, BaseException | None] = {}  # per message sent: what its processing raised
        self._writers: list[threading.Thread] = []
        self._epochs = 0
        self._started = False
        self._stopped = False
        self._modules: set[str] = set()
        self._threads_before: set[threading.Thread] = set()

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> OperatorTest:
        """Run the script body, then restore, prestart and the first timer calls; wait until idle."""
        if self._started:
            raise RuntimeError("the operator was started already")
        self._started = True
        self._modules = set(sys.modules)
        if self._folder is not None:
            prepare_imports(self._folder, [])
        failures = self._host.load()
        if failures:
            self._stopped = True
            self._host.stop()
            self._host.join()
            self._forget()
            raise OperatorError(failures[0])
        self._threads_before = set(threading.enumerate())
        self._host.go()
        try:
            self.run_until_idle()
        except BaseException:
            try:
                self.stop()
            except AssertionError:
                pass  # the first error is the one to see
            raise
        return self

    def stop(self) -> None:
        """Stop the operator (its shutdown callback runs); raises :class:`OperatorError` if that failed."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._host.stop()
            stuck = self._host.join()
            for writer in self._writers:
                writer.join(1.0)
        finally:
            self._forget()
        if stuck:
            raise OperatorBusy(f"operator {self.name!r} did not stop: still in a callback ({', '.join(stuck)})")
        failure = self._driver.failure or self._driver.shutdown_failure
        if failure is not None:
            raise OperatorError(failure)

    def _forget(self) -> None:
        if self._folder is not None:
            forget_script_modules(self._folder, self._modules)
        for module in set(sys.modules) - self._modules:
            if module.startswith("snapgraph_operator_"):
                sys.modules.pop(module, None)

    def __enter__(self) -> OperatorTest:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.stop()
            return
        try:
            self.stop()
        except AssertionError:
            pass  # the test's own error is the one to see

    # -- state ------------------------------------------------------------------------------------
    @property
    def failure(self) -> OperatorFailure | None:
        """Why the operator failed, or None."""
        return self._driver.failure

    @property
    def api(self) -> Any:
        """The ``api`` object the script sees (for looking at ``api.config`` and the like)."""
        return self._runtime.api

    @property
    def timers(self) -> int:
        """How many timers are active."""
        return len(self._runtime.timers.heap)

    @property
    def states(self) -> dict[str, bytes]:
        """Every state persisted so far, by epoch, as :meth:`snapshot` returned it."""
        return dict(self._driver.states)

    # -- input ------------------------------------------------------------------------------------
    def send(self, port: str, body: Any = None, header: Mapping[str, Any] | None = None, *,
             wait: bool = True) -> bytes:
        """Send one message to input ``port`` (as an upstream ``publish(body, header)`` would) and,
        with ``wait``, run the operator until idle. Returns the message id; after processing,
        ``responses[msg_id]`` holds what its port callback raised (``retry`` mode) or None."""
        sender = self._sender(port)
        try:
            msg_id = sender.publish(body, dict(header) if header is not None else None)
        except TypeError as exc:
            raise TypeError(self._refused(port, exc)) from None
        if wait:
            self.run_until_idle()
        return msg_id

    def send_stream(self, port: str, chunks: Iterable[Any], header: Mapping[str, Any] | None = None, *,
                    wait: bool = True) -> bytes:
        """Send a ``with_writer`` stream to a table or binary input ``port``: each chunk (a list of
        rows or bytes) is written, then the writer is closed (the reader then sees the end)."""
        sender = self._sender(port)
        parts = [chunk.body if isinstance(chunk, Table) else chunk for chunk in chunks]
        port_type = self._inports[port]
        if port_type.category == "table" and port_type.is_dynamic and sender.type_ref.type_id == "*":
            first = next((chunk[0] for chunk in parts if len(chunk)), None)
            if first is None:
                raise ValueError(f"a stream to the dynamic table port {port!r} needs a row to infer its type from")
            sender.set_dynamic_type(self._host.type_context.infer_table_type(first))
        try:
            msg_id, writer = sender.with_writer(dict(header) if header is not None else None)
        except TypeError as exc:
            raise TypeError(self._refused(port, exc)) from None

        def write() -> None:
            try:
                for chunk in parts:
                    writer.write(chunk)  # type: ignore[arg-type]  # rows or bytes, as the port takes
            except BaseException:  # noqa: BLE001 - the operator stopped; it reports its own failure
                pass
            finally:
                writer.close()

        thread = threading.Thread(target=write, name=f"test-stream:{port}", daemon=True)
        self._writers.append(thread)
        thread.start()
        if wait:
            self.run_until_idle()
        return msg_id

    def send_barrier(self, port: str, epoch: str) -> None:
        """Deliver a snapshot barrier on one input (alignment holds that input back until every input
        has it); :meth:`snapshot` sends it on all of them."""
        self._check_running()
        if port not in self._channels:
            raise ValueError(self._unknown_input(port))
        self._host.activity.add(1)
        self._channels[port].put(Barrier(epoch))

    def _sender(self, port: str) -> Outport:
        self._check_running()
        if port not in self._senders:
            raise ValueError(self._unknown_input(port))
        if port not in self._channels:
            raise ValueError(f"input port {port!r} of operator {self.name!r} is declared unconnected")
        return self._senders[port]

    def _refused(self, port: str, exc: Exception) -> str:
        reason = str(exc).replace(f"operator {TEST_PEER!r}: ", "")
        return f"cannot send to input port {port!r} of operator {self.name!r}: {reason}"

    def _unknown_input(self, port: str) -> str:
        known = ", ".join(self._inports) or "none"
        return f"operator {self.name!r} has no input port {port!r} (its input ports: {known})"

    def _put(self, port: str, message: Message) -> None:
        self._host.activity.add(1, published=1)
        self._channels[port].put(message)

    def _reply(self, msg_id: bytes) -> Reply:
        def deliver(mid: bytes, exc: BaseException | None) -> None:
            self.responses[mid] = exc

        return Reply(msg_id, 1, deliver)

    def _check_running(self) -> None:
        if not self._started:
            raise RuntimeError("start the operator first (use it in a with block, or call start())")
        if self._stopped:
            raise RuntimeError("the operator was stopped")
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._driver.failure is not None:
            raise OperatorError(self._driver.failure)

    # -- time -------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, running each timer as it comes due, in order."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._check_running()
        target = self.clock.now + seconds
        while True:
            self.run_until_idle()
            due = self._next_due()
            if due is None or due > target:
                break
            self.clock.set(max(due, self.clock.now))
            self._poke()
        self.clock.set(target)
        self._poke()
        self.run_until_idle()

    def _next_due(self) -> float | None:
        try:
            return self._runtime.timers.heap[0][0]
        except IndexError:
            return None

    def _poke(self) -> None:
        """Let the dispatcher look at the clock again (it may be waiting for its next item)."""
        self._runtime.post(lambda: None)

    # -- snapshots --------------------------------------------------------------------------------
    def snapshot(self, epoch: str | None = None) -> bytes | None:
        """Take a snapshot as the engine does (barriers on every input, or at a source its request)
        and return the persisted state (None for an operator that is not stateful)."""
        self._check_running()
        if not self._host.snapshots_on:
            raise RuntimeError("snapshots are off: create the OperatorTest with snapshots=True")
        self._epochs += 1
        epoch = epoch or f"epoch-{self._epochs}"
        if self._channels:
            for port in self._channels:
                self.send_barrier(port, epoch)
        else:
            self._runtime.request_snapshot(epoch)
        self.run_until_idle()
        if epoch not in self._driver.acked:
            raise OperatorBusy(f"the snapshot of epoch {epoch} was not taken (is an input declared unconnected?)")
        return self._driver.states.get(epoch)

    def complete_epoch(self, epoch: str) -> None:
        """Run the ``epoch_complete(epoch)`` callback (the engine does once every operator acknowledged)."""
        self._check_running()
        self._host.epoch_complete(epoch)
        self.run_until_idle()

    @staticmethod
    def script_state(state: bytes) -> bytes:
        """The bytes the script's serialize returned, from a state :meth:`snapshot` returned."""
        return unpack_state(state)[0]

    # -- waiting ------------------------------------------------------------------------------------
    def run_until_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued, no callback runs and no timer is due on the clock."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._idle():
            if self._host.is_stopping():
                break
            if time.monotonic() > deadline:
                raise OperatorBusy(
                    f"operator {self.name!r} is still busy after {self.timeout:g} s: a callback still runs, "
                    "or a timer keeps coming due (one that returns 0 runs again at once; return a delay "
                    "or a negative number to stop it)")
            time.sleep(_POLL)
        self._raise_failure()

    def _idle(self) -> bool:
        timers = self._runtime.timers.heap
        pending = self._host.activity.count
        inbox = self._runtime.inbox
        with inbox.cond:  # what waits behind a barrier (alignment) waits for the test, not for the operator
            held = sum(len(channel.items) for channel in inbox.channels if channel.blocked)
        if pending != len(timers) + held:
            return False
        due = self._next_due()
        if due is not None and due <= self.clock.now:
            return False
        if any(w.is_alive() for w in self._writers):
            return False
        return not self._script_threads_alive() and pending == self._host.activity.count

    def _script_threads_alive(self) -> bool:
        """Threads the script started that still run (as the engine counts them, but only new ones)."""
        engine = self._host._engine_threads
        return any(t.is_alive() and not t.daemon and t.ident not in engine and t not in self._threads_before
                   for t in threading.enumerate())


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)


# -- one-call runs --------------------------------------------------------------------------------------

@dataclass
class OperatorRun:
    """What :func:`run_operator` returns: outputs per port, the failure (or None), whether it aborted."""

    outputs: dict[str, CapturedPort]
    failure: OperatorFailure | None
    aborted: bool
    logs: list[logging.LogRecord] = field(default_factory=list)

    def __getitem__(self, port: str) -> CapturedPort:
        try:
            return self.outputs[port]
        except KeyError:
            raise KeyError(f"no output port {port!r} (ports: {', '.join(self.outputs) or 'none'})") from None


def _apply(op: OperatorTest, step: Any) -> None:
    if isinstance(step, Send):
        op.send(step.port, step.body, step.header)
    elif isinstance(step, SendStream):
        op.send_stream(step.port, step.chunks, step.header)
    elif isinstance(step, Tick):
        op.advance(step.seconds)
    elif isinstance(step, tuple) and len(step) in (2, 3) and isinstance(step[0], str):
        op.send(*step)
    else:
        raise TypeError(f"not a step: {step!r} (use Send, SendStream, Tick, EOF, ABORT or (port, body[, header]))")


def run_operator(script: str | Path, steps: Iterable[Step | tuple[Any, ...]], **options: Any) -> OperatorRun:
    """Run ``script`` through ``steps`` and return its outputs (``options`` as for :class:`OperatorTest`).

    A step is :class:`Send` (or a ``(port, body[, header])`` tuple), :class:`SendStream`, :class:`Tick`,
    :data:`EOF` (the input ends: the operator runs until idle and stops; also what happens after the
    last step) or :data:`ABORT` (the operator is stopped at once; ``aborted`` is True). A failure of the
    operator ends the run and is returned, not raised.
    """
    op = OperatorTest(script, **options)
    aborted = False
    try:
        op.start()
        for step in steps:
            if step is EOF:
                break
            if step is ABORT:
                aborted = True
                break
            _apply(op, step)
    except OperatorError:
        pass
    finally:
        try:
            op.stop()
        except OperatorError:
            pass
    return OperatorRun(op.outputs, op.failure or op._driver.shutdown_failure, aborted, op.logs)


# -- restore checks ---------------------------------------------------------------------------------------

@dataclass
class RestoreCheck:
    """What :func:`check_restore` verified: the split points and the state bytes taken at each."""

    split_points: list[int]
    states: dict[int, bytes]
    outputs: dict[str, list[Any]]  # the run without a snapshot, as plain values


def _observed(op: OperatorTest) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    return {port: [(m.body, m.header) for m in captured.messages] for port, captured in op.outputs.items()}


def _same_state(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    try:
        return bool(pickle.loads(a) == pickle.loads(b))
    except Exception:  # noqa: BLE001 - not pickles: the bytes decide
        return False


def check_restore(script: str | Path, steps: Sequence[Step | tuple[Any, ...]], *,
                  at: Iterable[int] | None = None,
                  same_state: Callable[[bytes, bytes], bool] | None = None,
                  **options: Any) -> RestoreCheck:
    """Check that a stateful operator survives a snapshot and a restore, at every split point.

    For each ``k`` in ``at`` (default: before the first step, between every two, after the last):

    1. a run with a snapshot after ``steps[:k]`` (then ``epoch_complete``) publishes what a run
       without any snapshot publishes;
    2. **round trip**: an operator restored from that state (restore, prestart, and
       ``epoch_complete`` again, as a recovery runs them) serializes the same state as the original
       after its ``epoch_complete`` (``same_state(a, b)`` decides; default: equal bytes, or equal
       unpickled values);
    3. **replay**: the restored operator, given ``steps[k:]``, publishes exactly what the original
       published after its snapshot: no message lost, none repeated.

    Raises :class:`RestoreMismatch` naming the split point, the port and both outputs; raises
    ValueError for an operator that is not stateful. ``options`` are those of :class:`OperatorTest`.
    """
    steps = [s for s in steps if s is not EOF]
    if any(s is ABORT for s in steps):
        raise ValueError("check_restore replays the steps itself: leave ABORT out")
    equal = same_state or _same_state
    options = {**options, "snapshots": True}
    options.pop("restore", None)

    def make(**extra: Any) -> OperatorTest:
        return OperatorTest(script, **options, **extra)

    with make() as plain:
        for step in steps:
            _apply(plain, step)
        expected = _observed(plain)
    points = list(range(len(steps) + 1)) if at is None else list(at)
    states: dict[int, bytes] = {}
    for k in points:
        if not 0 <= k <= len(steps):
            raise ValueError(f"split point {k} is outside 0..{len(steps)}")
        where = f"a snapshot after step {k} of {len(steps)}" + (f" ({steps[k - 1]!r})" if k else " (before any)")
        # The original: snapshot after k steps, epoch_complete, the rest.
        with make() as original:
            for step in steps[:k]:
                _apply(original, step)
            state = original.snapshot("epoch-1")
            if state is None:
                raise ValueError(
                    f"operator {original.name!r} is not stateful: call api.set_initial_snapshot_info("
                    "api.InitialProcessInfo(is_stateful=True)) and register serialize and restore")
            states[k] = state
            before = {port: len(c) for port, c in original.outputs.items()}
            original.complete_epoch("epoch-1")
            for step in steps[k:]:
                _apply(original, step)
            with_snapshot = _observed(original)
        _compare(expected, with_snapshot, f"with {where}", "a run without snapshots")
        # Round trip: the state after epoch_complete, serialized by the original and by a restored copy.
        with make() as again:
            for step in steps[:k]:
                _apply(again, step)
            again.snapshot("epoch-1")
            again.complete_epoch("epoch-1")
            reference = again.snapshot("epoch-2")
        with make(restore=("epoch-1", state)) as restored:
            round_trip = restored.snapshot("epoch-2")
        assert reference is not None and round_trip is not None
        a, b = unpack_state(reference)[0], unpack_state(round_trip)[0]
        if not equal(a, b):
            raise RestoreMismatch(
                f"serialize -> restore does not round-trip ({where}): after restore the operator serializes "
                f"{_show(b)}, but the original (after epoch_complete) serialized {_show(a)}")
        # Replay: restore, then the remaining steps.
        with make(restore=("epoch-1", state)) as replay:
            for step in steps[k:]:
                _apply(replay, step)
            replayed = _observed(replay)
        after = {port: messages[before[port]:] for port, messages in with_snapshot.items()}
        _compare(after, replayed, f"after a restore from {where}", "the original after its snapshot")
    return RestoreCheck(points, states, {port: [_plain(b) for b, _ in msgs] for port, msgs in expected.items()})


def _show(data: bytes) -> str:
    try:
        return repr(pickle.loads(data))
    except Exception:  # noqa: BLE001
        return repr(data)


def _compare(expected: dict[str, list[tuple[Any, dict[str, Any]]]],
             got: dict[str, list[tuple[Any, dict[str, Any]]]], what: str, against: str) -> None:
    for port in expected:
        if got[port] != expected[port]:
            raise RestoreMismatch(
                f"port {port!r} {what} got {_messages(got[port])}, but {against} got {_messages(expected[port])}")


def _messages(messages: list[tuple[Any, dict[str, Any]]]) -> str:
    return "[" + ", ".join(repr(_plain(b)) + (f" {h}" if h else "") for b, h in messages) + "]"


# -- graphs ---------------------------------------------------------------------------------------------------

@dataclass
class GraphRun:
    """What :func:`run_graph` returns: the run's status, what was printed, every output port's messages."""

    status: str
    reason: str
    failure: OperatorFailure | None
    stdout: str
    outputs: dict[str, CapturedPort]  # by "process.port"

    def __getitem__(self, endpoint: str) -> CapturedPort:
        try:
            return self.outputs[endpoint]
        except KeyError:
            raise KeyError(f"no output port {endpoint!r} (ports: {', '.join(self.outputs)})") from None

    def check(self) -> GraphRun:
        """Raise :class:`OperatorError` unless the run completed; returns itself."""
        if self.status != "completed":
            raise OperatorError(self.failure or OperatorFailure(
                "<graph>", "the run", f"{self.status}: {self.reason}", ""))
        return self


def run_graph(graph: str | Path, files: Mapping[str, str] | None = None, *,
              params: Mapping[str, str] | None = None, operator_dirs: Sequence[Path] = (),
              stop_after: float | None = 30.0, folder: Path | None = None) -> GraphRun:
    """Load and run a graph on the real in-process :class:`~snapgraph.runtime.engine.Engine`.

    ``graph`` is a graph file, or YAML text written (with ``files``: scripts and helpers by name)
    into ``folder`` (default: a temporary folder). Every output port of every operator is captured,
    connected or not. The graph runs in real time until it completes, fails or ``stop_after``.
    """
    from snapgraph.model.loader import LoadOptions, load_graph
    from snapgraph.runtime.engine import Engine

    temporary = None
    if isinstance(graph, str):
        if folder is None:
            temporary = tempfile.TemporaryDirectory(prefix="snapgraph-test-")
            folder = Path(temporary.name)
        for name, text in {"graph.yaml": graph, **dict(files or {})}.items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"))
        graph = Path(folder) / "graph.yaml"
    elif files:
        raise ValueError("files= goes with YAML text, not with a graph file")
    try:
        loaded = load_graph(graph, LoadOptions(params=dict(params or {}), operator_dirs=list(operator_dirs)))
        out = io.StringIO()
        engine = Engine(loaded, RunOptions(stop_after=stop_after, operator_dirs=list(operator_dirs), stdout=out))
        outputs: dict[str, CapturedPort] = {}
        for process in loaded.processes.values():
            for port in process.outports.values():
                captured = CapturedPort(f"{process.name}.{port.name}", port.type)
                outputs[captured.name] = captured
                engine.host.connect_remote(
                    Connection(Endpoint(process.name, port.name), Endpoint(TEST_PEER, port.name)),
                    captured, receiver_retries=False)
        result = engine.run()
        return GraphRun(result.status, result.reason, result.failure, out.getvalue(), outputs)
    finally:
        if temporary is not None:
            temporary.cleanup()


@dataclass
class FaultRun:
    """What :func:`run_with_faults` returns: the supervised run and the fault plan it ran under."""

    outcome: SupervisedResult
    plan: FaultPlan

    @property
    def status(self) -> str:
        return str(self.outcome.result.status)

    @property
    def unfired(self) -> list[str]:
        """The planned faults that never fired (a fault test asserts this is empty)."""
        return [str(fault) for fault in self.plan.remaining()]

    def check_recovered(self) -> FaultRun:
        """Raise :class:`OperatorError` unless the run completed after at least one failed attempt, every
        planned fault fired, and the last attempt restored a snapshot (it did not start from scratch);
        returns itself."""
        problems = []
        if self.status != "completed":
            problems.append(f"{self.status}: {self.outcome.result.reason}")
        if self.unfired:
            problems.append(f"faults that never fired: {', '.join(self.unfired)}")
        if self.outcome.attempts < 2:
            problems.append("no attempt failed")
        if self.outcome.restored_from[-1] is None:
            problems.append("the last attempt started from scratch")
        if problems:
            raise OperatorError(OperatorFailure("<graph>", "the run", "; ".join(problems), ""))
        return self


def run_with_faults(graph: Path, faults: str = "", *, period: float | None = 0.02, max_retries: int = 6,
                    connections: Path | None = None, in_process: bool = True, store: Path | None = None,
                    cwd: Path | None = None) -> FaultRun:
    """Run the graph file ``graph`` as ``snapgraph run`` would, under automatic recovery, with the crash
    faults ``faults`` (``SNAPGRAPH_FAULTS`` syntax: ``point:operator:nth[:raise|exit|kill]``, comma
    separated) and snapshots every ``period`` seconds (None: no snapshots; shorter than the CLI allows,
    so that a small test input spans many epochs).

    The snapshot store is ``store`` (default: a new SQLite file in the graph's folder), ``connections``
    the ``--connections`` file, ``cwd`` the working directory for the run (relative paths in configs);
    ``in_process`` False runs groups as processes. Compare what the graph wrote with a failure-free run
    (``faults=""``) and check :attr:`FaultRun.unfired`, or :meth:`FaultRun.check_recovered`.
    """
    import os
    import uuid

    from snapgraph.model.loader import LoadOptions, load_graph
    from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
    from snapgraph.snapshot.store import open_store

    plan = FaultPlan.parse(faults)
    loaded = load_graph(graph, LoadOptions(snapshots=period is not None, connections_file=connections))
    location = store or graph.parent / f"store-{uuid.uuid4().hex[:6]}.db"
    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        outcome = Supervisor(
            loaded, RunOptions(stdout=io.StringIO(), in_process=in_process),
            RecoveryPolicy(max_retries=max_retries, retry_interval=0, retry_threshold=30),
            store=open_store(str(location)) if period is not None else None,
            period=period, faults=plan, say=lambda text: None,
        ).run()
    finally:
        os.chdir(previous)
    return FaultRun(outcome, plan)


# -- recording from scripts --------------------------------------------------------------------------------------

class Recorder:
    """A module scripts import to report what they saw: ``import sg_rec; sg_rec.add("key", value)``.

    ``with Recorder("sg_rec") as rec:`` installs the module; ``rec["key"]`` is the list of values
    added under ``key`` (thread-safe); ``rec.shared`` is a dict scripts may share. On exit the module
    is removed again. Works for scripts run in this process (:class:`OperatorTest`, :func:`run_graph`,
    the in-process engine), not in group processes.
    """

    def __init__(self, module_name: str = "sg_rec") -> None:
        self.module_name = module_name
        self.data: dict[str, list[Any]] = {}
        self.shared: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.module = types.ModuleType(module_name)
        self.module.add = self.add  # type: ignore[attr-defined]
        self.module.data = self.data  # type: ignore[attr-defined]
        self.module.shared = self.shared  # type: ignore[attr-defined]

    def add(self, key: str, value: Any = None) -> None:
        with self._lock:
            self.data.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> list[Any]:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __enter__(self) -> Recorder:
        if self.module_name in sys.modules:
            raise RuntimeError(f"a module named {self.module_name!r} is already imported")
        sys.modules[self.module_name] = self.module
        return self

    def __exit__(self, *exc: object) -> None:
        sys.modules.pop(self.module_name, None)
