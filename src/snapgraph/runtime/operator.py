"""One operator at run time: its dispatcher thread, its event loop and its side of the channels.

Every callback of an operator (prestart, timers, port callbacks, response
callbacks, shutdown, and the snapshot callbacks) runs on the operator's own
dispatcher thread, one at a time, as Gen2 does. Operators run concurrently
with each other. :class:`OperatorRuntime` is also the
:class:`~snapgraph.api.operator_api.OperatorHost` behind the operator's ``api``
object (publishing) and the :class:`~snapgraph.snapshot.aligner.Participant`
of its snapshot :class:`~snapgraph.snapshot.aligner.Aligner`.

The event loop composes the operator's parts, each in a module of its own:

* loading the script body or a built-in: :mod:`snapgraph.runtime.loading`;
* timers, driven by an injected clock: :mod:`snapgraph.runtime.timers`;
* rebuilding messages from other groups: :mod:`snapgraph.runtime.decoding`;
* ``errorHandling``: :mod:`snapgraph.runtime.error_modes`;
* barrier alignment, snapshot, epoch_complete and restore: :mod:`snapgraph.snapshot.aligner`;
* why an operator failed: :mod:`snapgraph.runtime.failures`;
* what the operator needs from its group: :mod:`snapgraph.runtime.host`.

What is left here is the loop itself, publishing (the hot path: publish → channel → dispatcher →
callback, kept free of indirection) and the accounting of pending work (``host.activity``): every
message, control event and active timer counts until it is processed, so an idle group is one
whose count is zero.
"""

from __future__ import annotations

import enum
import threading
import time
import traceback
from bisect import bisect_left
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from snapgraph.api.header import Header
from snapgraph.api.operator_api import Api, ResponseCallback, RuntimeInfo
from snapgraph.api.streams import InputBody
from snapgraph.api.table import Table
from snapgraph.instruments.stats import CALLBACK_BUCKETS, OperatorStats
from snapgraph.model.graph import Process, snapshot_while_busy
from snapgraph.model.types import VType
from snapgraph.runtime import script_guards
from snapgraph.runtime.channels import Channel, Inbox
from snapgraph.runtime.decoding import decode
from snapgraph.runtime.error_modes import ErrorHandling
from snapgraph.runtime.failures import (
    InvalidOperator,
    OperatorFailure,
    UndeliverableMessage,
    describe,
    one_line,
    script_failure,
)
from snapgraph.runtime.host import OperatorHost
from snapgraph.runtime.loading import is_stateful, load_operator
from snapgraph.runtime.messages import (
    STREAM_CAPACITY,
    Barrier,
    ControlEvent,
    Encoded,
    GraphStopping,
    Message,
    MessageIds,
    Reply,
    StreamBuffer,
)
from snapgraph.runtime.scripts import format_script_error
from snapgraph.runtime.timers import BadInterval, TimerWheel
from snapgraph.snapshot.aligner import Aligner

__all__ = ["OperatorRuntime", "Phase", "Target"]


class Phase(enum.Enum):
    LOADING = "loading"      # script body running: only registrations allowed
    STARTING = "starting"    # restore running: no output yet
    RUNNING = "running"      # prestart, timers, callbacks: output allowed
    SHUTDOWN = "shutdown"    # shutdown callback: no output
    DONE = "done"


class Outlet(Protocol):
    """Where a target's messages and barriers go: a local :class:`Channel` or a link to another group."""

    def put(self, item: Any) -> None: ...


@dataclass
class Target:
    """A receiver of one output port: its channel and whether it reports errors back (retry)."""

    channel: Outlet
    wants_reply: bool
    local: bool = True  # False: the channel leads to another group process (it counts what it sends)


class OperatorRuntime:
    """Runs one process of the graph on its own dispatcher thread."""

    def __init__(self, process: Process, host: OperatorHost, inbox: Inbox, logger: Any) -> None:
        self.process = process
        self.name = process.name
        self.host = host
        self.inbox = inbox
        self.logger = logger
        self.errors = ErrorHandling(process, logger, self._fail,
                                    lambda port, body, type_id: self.emit(port, body, {}, type_id, None))
        self.error_mode = self.errors.mode
        self._retries = self.errors.retries  # retry mode: a port callback's error goes back to the sender
        self.targets: dict[str, list[Target]] = {port: [] for port in process.outports}
        self._ids = {port: MessageIds() for port in process.outports}
        self.phase = Phase.LOADING
        self.api: Api | None = None
        self.thread = threading.Thread(target=self._main, name=f"op:{self.name}")
        self.loaded = threading.Event()
        self.load_failure: OperatorFailure | None = None
        self.timers = TimerWheel()
        # Counters (snapgraph.instruments.stats): written by this dispatcher only, read as copies. The
        # stopwatch times callbacks and protocol steps.
        self.stats = OperatorStats.for_ports(self.name, process.inports, process.outports, process.group)
        self._in_stats = self.stats.inputs
        self._out_stats = self.stats.outputs
        self.stopwatch: Callable[[], float] = time.perf_counter
        self._callback_seconds = 0.0  # how long the last callback run by _guarded took
        self._prefer_timer = False
        self._warned_no_callback: set[str] = set()
        self._sealed: str | None = None  # the sealed final epoch once its epoch_complete began
        self._warned_sealed: set[str] = set()
        # snapshotWhileBusy (sources only, opted in): the snapshot need not wait for a long callback.
        self.snapshot_while_busy = snapshot_while_busy(process.config) if host.snapshots_on else None
        self._busy_since: float | None = None  # when the running callback began (opted-in operators)
        self.aligner = Aligner(self.name, self, host.faults, self.stats, logger=logger,
                               snapshot_while_busy=self.snapshot_while_busy, busy_since=lambda: self._busy_since,
                               stopwatch=self.stopwatch)
        self._output_lock = self.aligner.output_lock  # held while a snapshot is taken beside a long callback

    # -- construction ---------------------------------------------------------
    def make_api(self, info: RuntimeInfo) -> Api:
        graph = self.host.graph
        connected_in = {c.tgt.port for c in graph.connections_to(self.name)}
        connected_out = {c.src.port for c in graph.connections_from(self.name)}
        self.api = Api(
            process=self.name,
            config=self.process.config,
            inports={n: p.type for n, p in self.process.inports.items()},
            outports={n: p.type for n, p in self.process.outports.items()},
            connected_in=connected_in,
            connected_out=connected_out,
            host=self,
            type_context=self.host.type_context,
            logger=self.logger,
            info=info,
        )
        return self.api

    @property
    def is_stateful(self) -> bool:
        return bool(self.api and is_stateful(self.api.registrations))

    # -- OperatorHost (publishing) ------------------------------------------------------
    def check_output_window(self, what: str) -> None:
        if self.phase is Phase.RUNNING:
            return
        if self.phase is Phase.LOADING:
            raise RuntimeError(
                f"operator {self.name!r}: {what} was called at script top level; output is only "
                "possible from prestart, timer and port callbacks"
            )
        raise RuntimeError(f"operator {self.name!r}: {what} is not allowed during {self.phase.value}")

    def emit(self, port: str, body: Any, header: dict[str, Any], type_id: str,
             response_callback: ResponseCallback | None) -> bytes:
        msg_id = self._ids[port].next()
        targets = self.targets[port]
        if self._sealed is not None:
            self._discard(port)
            return msg_id
        if not targets:
            return msg_id
        reply = self._reply_for(msg_id, targets, response_callback)
        port_type = self.process.outports[port].type
        stats = self._out_stats[port]
        started = self.stopwatch()
        self._fan_out(targets, reply, lambda target: Message(msg_id, header, body, port_type, type_id, reply))
        stats.send_seconds += self.stopwatch() - started
        stats.messages += 1
        if type(body) is Table:
            stats.rows += len(body.body)
        return msg_id

    def open_stream(self, port: str, header: dict[str, Any], type_id: str,
                    response_callback: ResponseCallback | None) -> tuple[bytes, list[Any]]:
        msg_id = self._ids[port].next()
        targets = self.targets[port]
        if self._sealed is not None:
            self._discard(port)
            return msg_id, []
        port_type = self.process.outports[port].type
        reply = self._reply_for(msg_id, targets, response_callback) if targets else None
        sinks = []

        def stream_message(target: Target) -> Message:
            buffer = StreamBuffer(STREAM_CAPACITY, self.host.is_stopping)
            sinks.append(buffer)
            return Message(msg_id, header, buffer, port_type, type_id, reply, is_stream=True)

        self._fan_out(targets, reply, stream_message)
        if targets:
            self._out_stats[port].messages += 1
        return msg_id, sinks

    def _discard(self, port: str) -> None:
        if port not in self._warned_sealed:
            self._warned_sealed.add(port)
            self.logger.warning(
                "output on port %r after the graph's last final epoch %s (published from its epoch_complete) "
                "is discarded: the graph is ending; a --resume runs that epoch_complete again", port, self._sealed)

    def _fan_out(self, targets: list[Target], reply: Reply | None, message_for: Callable[[Target], Message]) -> None:
        """Put one message on every target, counting it as pending work until it is processed.

        Targets in other groups come first (GroupHost.connect_remote): a message that cannot be
        encoded for them fails before any receiver got it. Whatever failed part way is taken off
        the count again, or the graph would never look idle.
        """
        if self._output_lock is not None:
            with self._output_lock:  # not while a snapshot is taken beside a long callback
                self._put_all(targets, reply, message_for)
        else:
            self._put_all(targets, reply, message_for)

    def _put_all(self, targets: list[Target], reply: Reply | None, message_for: Callable[[Target], Message]) -> None:
        self.host.activity.add(_local_count(targets), published=len(targets))
        for i, target in enumerate(targets):
            try:
                target.channel.put(message_for(target))
            except Exception:
                unsent = targets[i:]
                self.host.activity.add(-_local_count(unsent))
                if reply is not None and i == 0:
                    self.host.activity.add(-1)  # nobody got it: no response will come
                elif reply is not None:
                    reply.withdraw(len(unsent))
                raise

    def propagate_exception(self, exc: BaseException) -> None:
        def raise_here() -> None:
            raise exc

        self.post(lambda: self._guarded("propagate_exception", raise_here))

    def post(self, work: Callable[[], object]) -> None:
        """Run ``work`` on this operator's dispatcher; counts as pending activity until done."""
        self.host.activity.add(1)
        self.inbox.post(ControlEvent(work))

    def _reply_for(self, msg_id: bytes, targets: list[Target],
                   response_callback: ResponseCallback | None) -> Reply | None:
        if response_callback is None and not any(t.wants_reply for t in targets):
            return None
        callback = response_callback or _default_response_callback
        self.host.activity.add(1)

        def deliver(mid: bytes, exc: BaseException | None) -> None:
            # Back on the sender's dispatcher: response callbacks never run concurrently
            # with the sender's other callbacks.
            self.inbox.post(ControlEvent(lambda: self._guarded("response callback", callback, mid, exc)))

        return Reply(msg_id, len(targets), deliver)

    # -- the dispatcher ---------------------------------------------------------------
    def _main(self) -> None:
        self.host.register_engine_thread()
        script_guards.dispatcher(self.name)
        try:
            api = self.make_api(self.host.runtime_info(self.process))
            load_operator(self.process, api, self.host, snapshots_on=self.host.snapshots_on)
            self.aligner.bind(api.registrations, self.is_stateful)
        except BaseException as exc:  # noqa: BLE001 - any load failure is reported, not raised
            if isinstance(exc, InvalidOperator):
                self.load_failure = OperatorFailure(self.name, "start", str(exc), "", invalid=True)
            else:
                # a built-in has no script body: it failed while starting (a database it cannot reach, ...)
                phase = "script body" if self.process.is_python else "start"
                self.load_failure = OperatorFailure(self.name, phase, describe(exc), format_script_error(exc))
            self.phase = Phase.DONE
            self.stats.state = "done"
            self.loaded.set()
            return
        self.loaded.set()
        self.host.started.wait()
        if self.host.is_stopping():
            # Another operator already ended the run before this one started: its script
            # body ran, so its shutdown still runs (shutdown runs on every exit path).
            self.host.activity.add(-1)
            self._shutdown()
            return
        try:
            registrations = api.registrations
            self._restore()
            self.phase = Phase.RUNNING
            self.stats.state = "running"
            if registrations.prestart is not None:
                self._guarded("prestart", registrations.prestart)
            self._repeat_restored_epoch_complete()
            started = self.timers.start(registrations.timers)
            if started:
                self.host.activity.add(started)  # an active timer is pending work until it stops
            self.host.activity.add(-1)  # the start-up token taken by the engine
            self._loop()
        except GraphStopping:
            pass
        except Exception as exc:  # noqa: BLE001 - a fault of the engine itself
            # It must fail the run: a dispatcher that ended quietly would let the graph look idle
            # and "complete" without the messages still queued for this operator.
            failure = OperatorFailure(self.name, "the engine's dispatcher", one_line(exc),
                                      "".join(traceback.format_exception(exc)).rstrip())
            self.logger.error("internal error: %s", failure.traceback)
            self.host.fail(failure)
        finally:
            self._shutdown()

    def _loop(self) -> None:
        timers = self.timers
        heap = timers.heap
        inbox = self.inbox
        is_stopping = self.host.is_stopping
        while not is_stopping():
            now = timers.clock()
            timer_due = bool(heap) and heap[0][0] <= now
            if timer_due and (self._prefer_timer or not inbox.has_input()):
                self._prefer_timer = False
                self._run_timer()
                continue
            if timer_due:
                timeout: float | None = 0.0
            elif heap:
                timeout = heap[0][0] - now
            else:
                timeout = None
            item = inbox.next_item(timeout)
            if item is None:
                continue
            self._prefer_timer = True
            channel, payload = item
            if channel is None:
                try:
                    payload.run()
                finally:
                    self.host.activity.add(-1)
            else:
                self._deliver(channel, payload)

    def _run_timer(self) -> None:
        timer = self.timers.pop()
        ok, returned = self._guarded("timer callback", timer.callback)
        if not ok:
            # The error was handled (log and ignore / error port): keep ticking at the last
            # interval, so a failing poller does not become a busy loop flooding the log.
            returned = timer.interval
        try:
            kept = self.timers.again(timer, returned, self.logger)
        except BadInterval as exc:
            self._fail("timer callback", TypeError(str(exc)))
        if not kept:
            self.host.activity.add(-1)

    def _deliver(self, channel: Channel, message: Any) -> None:
        try:
            if isinstance(message, Encoded):
                try:
                    message = decode(channel, message)
                except UndeliverableMessage as undeliverable:
                    self._fail(f"receiving on port {channel.port!r}", undeliverable)
            if isinstance(message, Barrier):
                self.aligner.on_barrier(channel, message.epoch)
                return
            stats = self._in_stats[channel.port]
            stats.messages += 1
            if type(message.body) is Table:
                stats.rows += len(message.body.body)
            callback = self.api.registrations.port_callbacks.get(channel.port)  # type: ignore[union-attr]
            body = InputBody(
                None if message.is_stream else message.body,
                message.port_type if message.port_type.category != "any" else self.process.inports[channel.port].type,
                message.type_id,
                message.body if message.is_stream else None,
            )
            exc: BaseException | None = None
            self._protocol_step(f"port callback of {channel.port!r}",
                                lambda: self.host.faults.hit("port_callback", self.name))
            try:
                if callback is None:
                    if channel.port not in self._warned_no_callback:
                        self._warned_no_callback.add(channel.port)
                        self.logger.warning("no callback registered for input port %r: its messages are dropped",
                                            channel.port)
                elif self._retries:
                    started = self.stopwatch()
                    try:
                        callback(message.msg_id, Header(message.header), body)
                    except GraphStopping:
                        raise
                    except Exception as err:  # noqa: BLE001 - handed back to the sender
                        exc = err
                        self.errors.retried(channel.port, err)
                    except BaseException as err:  # noqa: BLE001 - sys.exit and the like end the operator
                        self._fail(f"port callback of {channel.port!r}", err)
                    finally:
                        elapsed = self.stopwatch() - started
                        stats.callback_seconds += elapsed
                        self.stats.callbacks += 1
                        self.stats.callback_seconds += elapsed
                        self.stats.callback_buckets[bisect_left(CALLBACK_BUCKETS, elapsed)] += 1
                        script_guards.leave_if_forked()
                else:
                    try:
                        self._guarded(f"port callback of {channel.port!r}", callback,
                                      message.msg_id, Header(message.header), body)
                    finally:
                        stats.callback_seconds += self._callback_seconds
            finally:
                # A stream the callback did not read stays open, as in Gen2: a script
                # thread may still be reading it (the Modeler template does that).
                if message.reply is not None:
                    message.reply.done(exc)
        finally:
            self.host.activity.add(-1)

    # -- snapshots: the aligner does the protocol; these are the calls into it ------------------------
    def _restore(self) -> None:
        """Script body -> restore(epoch, bytes) -> prestart: prestart sees the restored state."""
        restore = self.host.restore
        if restore is None or not self.is_stateful or self.name not in restore.states:
            return
        self.phase = Phase.STARTING
        self.aligner.restore(restore.epoch, restore.states[self.name])

    def _repeat_restored_epoch_complete(self) -> None:
        """After a recovery, run ``epoch_complete`` once more for the restored epoch.

        The failed attempt may have died before or while running it (a writer
        that commits or cleans up there would never get another chance), so
        it runs again after prestart: ``epoch_complete`` must be idempotent.
        """
        if self.host.restore is not None:
            self.epoch_complete(self.host.restore.epoch)

    def request_snapshot(self, epoch: str) -> None:
        """Epoch ``epoch`` starts at this source: its snapshot is taken between two of its callbacks.

        Opted in with ``snapshotWhileBusy: N``, a callback that has run N seconds no longer holds
        it up: the snapshot is then taken beside the callback (on a thread of its own), with the
        operator's output held back meanwhile, so every message published before the snapshot
        precedes the barrier and none slips in during it. Whichever comes first takes it.
        """
        self.post(lambda: self.aligner.snapshot_once(epoch))
        if self.snapshot_while_busy is not None:
            threading.Thread(target=self._snapshot_beside_long_callback, args=(epoch,),
                             name=f"snapshot:{self.name}", daemon=True).start()

    def _snapshot_beside_long_callback(self, epoch: str) -> None:
        try:
            self.aligner.beside_long_callback(epoch)
        except GraphStopping:
            pass  # the failure is reported; the graph stops

    def take_snapshot(self, epoch: str, aligned_seconds: float = 0.0) -> None:
        """Pause, serialize, persist, forward the barrier, resume, acknowledge (sources start here)."""
        self.aligner.take_snapshot(epoch, aligned_seconds)

    def epoch_complete(self, epoch: str, sealed: bool = False) -> None:
        """Runs ``epoch_complete(epoch)``; it may publish (that data belongs to the next epoch).

        ``sealed``: the run's last final epoch. No epoch follows that could cover what the callback
        publishes, so it is discarded (with a warning), and a resume runs this callback again.
        """
        if sealed:
            self._sealed = epoch
        self.aligner.epoch_complete(epoch)

    def drop_timers(self) -> None:
        """Stop all timers (the graph is draining before its final epoch)."""
        self._protocol_step("drain", lambda: self.host.faults.hit("drain", self.name))
        self.host.activity.add(-self.timers.clear())

    # -- Participant (what the aligner calls back) --------------------------------------------------
    @property
    def input_count(self) -> int:
        return len(self.inbox.channels)

    def block(self, channel: Any) -> None:
        with self.inbox.cond:
            channel.blocked = True

    def unblock(self, channels: Collection[Any]) -> None:
        with self.inbox.cond:
            for channel in channels:
                channel.blocked = False
            self.inbox.cond.notify_all()

    def run_step(self, phase: str, step: Callable[[], object]) -> None:
        self._protocol_step(phase, step)

    def run_callback(self, phase: str, callback: Callable[..., Any], *args: Any) -> None:
        self._guarded(phase, callback, *args)

    def persist(self, epoch: str, data: bytes) -> None:
        self.host.persist_state(self.name, epoch, data)

    def forward(self, epoch: str) -> None:
        for targets in self.targets.values():
            for target in targets:
                if target.local:
                    self.host.activity.add(1)
                target.channel.put(Barrier(epoch))

    def ack(self, epoch: str, stateful: bool) -> None:
        self.host.ack_epoch(self.name, epoch, stateful)

    def run_time_types(self) -> list[VType]:
        return self.host.type_context.all_run_time_definitions()

    def received_types(self, vtypes: list[VType]) -> None:
        self.host.type_context.register_received(vtypes)

    def is_stopping(self) -> bool:
        return self.host.is_stopping()

    # -- running script code ------------------------------------------------------------------------
    def _protocol_step(self, phase: str, step: Callable[[], Any]) -> None:
        """Protocol steps fail the operator whatever its errorHandling (state must not be skipped)."""
        try:
            step()
        except GraphStopping:
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit included
            self._fail(phase, exc)
        finally:
            script_guards.leave_if_forked()

    def _guarded(self, phase: str, callback: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run a script callback; apply the operator's error handling to what it raises.

        What is not an ``Exception`` (``sys.exit``, ``os._exit``, ``KeyboardInterrupt``) is no error to
        ignore or to send on: it fails the operator whatever its error handling.
        """
        if self.snapshot_while_busy is not None:
            self._busy_since = time.monotonic()
        started = self.stopwatch()
        try:
            return True, callback(*args)
        except GraphStopping:
            raise
        except Exception as exc:  # noqa: BLE001 - every script error goes through errorHandling
            self.errors.handle(phase, exc)
            return False, None
        except BaseException as exc:  # noqa: BLE001
            self._fail(phase, exc)
        finally:
            self._busy_since = None
            elapsed = self._callback_seconds = self.stopwatch() - started
            stats = self.stats
            stats.callbacks += 1
            stats.callback_seconds += elapsed
            stats.callback_buckets[bisect_left(CALLBACK_BUCKETS, elapsed)] += 1
            script_guards.leave_if_forked()

    def _fail(self, phase: str, exc: BaseException) -> NoReturn:
        failure = script_failure(self.name, phase, exc)
        # One line: the failure ends the attempt, and its traceback is printed once, by whoever reports
        # the attempt's end (the recovery's note, or the run's last lines).
        self.logger.error("%s failed: %s", phase, failure.message)
        self.host.fail(failure)
        raise GraphStopping()

    def _shutdown(self) -> None:
        registrations = self.api.registrations if self.api else None
        self.phase = Phase.SHUTDOWN
        self.stats.state = "shutdown"
        if registrations is not None and registrations.shutdown is not None:
            try:
                registrations.shutdown()
            except GraphStopping:
                pass
            except BaseException as exc:  # noqa: BLE001 - sys.exit included
                self.host.fail_in_shutdown(script_failure(self.name, "shutdown", exc))
                self.logger.error("shutdown failed: %s", format_script_error(exc))
            finally:
                script_guards.leave_if_forked()
        self.phase = Phase.DONE
        self.stats.state = "done"


def _local_count(targets: list[Target]) -> int:
    return sum(1 for t in targets if t.local)


def _default_response_callback(msg_id: bytes, ex: BaseException | None) -> None:
    """Gen2's default: a downstream error (retry mode) is raised in the sender."""
    if ex is not None:
        raise ex
