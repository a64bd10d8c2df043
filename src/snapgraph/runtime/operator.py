"""One operator at run time: its dispatcher thread and its side of the channels.

Every callback of an operator (prestart, timers, port callbacks, response
callbacks, shutdown, and the snapshot callbacks) runs on the operator's own
dispatcher thread, one at a time, as Gen2 does. Operators run concurrently
with each other. :class:`OperatorRuntime` is also the :class:`OperatorHost`
behind the operator's ``api`` object.
"""

from __future__ import annotations

import enum
import heapq
import pickle
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from collections.abc import Callable

from snapgraph.api.data import Record, Table
from snapgraph.api.header import Header
from snapgraph.api.operator_api import Api, OperatorException, ResponseCallback, RuntimeInfo
from snapgraph.api.streams import InputBody
from snapgraph.instruments.base import NO_INSTRUMENTS, Instruments
from snapgraph.instruments.stats import OperatorStats
from snapgraph.model.types import VType
from snapgraph.model.graph import (
    LOG_AND_IGNORE,
    PROPAGATE_TO_ERROR_PORT,
    RETRY,
    Process,
    error_handling_mode,
    snapshot_while_busy,
)
from snapgraph.runtime import script_guards
from snapgraph.runtime.channels import Channel, Inbox
from snapgraph.runtime.messages import (
    Barrier,
    ControlEvent,
    Encoded,
    GraphStopping,
    Message,
    STREAM_CAPACITY,
    MessageIds,
    Reply,
    StreamBuffer,
)
from snapgraph.runtime.scripts import SCRIPT_MODULE_PREFIX, format_script_error, run_script, script_line
from snapgraph.snapshot.faults import FaultPlan

if TYPE_CHECKING:
    from snapgraph.runtime.group import GroupHost



BUSY_POLL = 0.05  # seconds between looks at a long callback (snapshotWhileBusy)


class Phase(enum.Enum):
    LOADING = "loading"      # script body running: only registrations allowed
    STARTING = "starting"    # restore running: no output yet
    RUNNING = "running"      # prestart, timers, callbacks: output allowed
    SHUTDOWN = "shutdown"    # shutdown callback: no output
    DONE = "done"


@dataclass
class Target:
    """A receiver of one output port: its channel and whether it reports errors back (retry)."""

    channel: Channel
    wants_reply: bool
    local: bool = True  # False: the channel leads to another group process (it counts what it sends)


@dataclass
class OperatorFailure:
    """Why an operator failed: which process, in which callback, and the script traceback."""

    process: str
    phase: str
    message: str
    traceback: str
    invalid: bool = False  # the script itself is unusable (exit 2), not a run-time failure

    def __str__(self) -> str:
        return f"operator {self.process!r} failed in {self.phase}: {self.message}"


class _Timer:
    __slots__ = ("callback", "index", "interval")

    def __init__(self, callback: Callable[[], Any], index: int) -> None:
        self.callback = callback
        self.index = index
        self.interval = 0.0  # the last interval the callback returned


class OperatorRuntime:
    """Runs one process of the graph on its own dispatcher thread."""

    def __init__(self, process: Process, host: GroupHost, inbox: Inbox, logger: Any) -> None:
        self.process = process
        self.name = process.name
        self.host = host
        self.inbox = inbox
        self.logger = logger
        self.error_mode = error_handling_mode(process.config)
        self.targets: dict[str, list[Target]] = {port: [] for port in process.outports}
        self._ids = {port: MessageIds() for port in process.outports}
        self.phase = Phase.LOADING
        self.api: Api | None = None
        self.thread = threading.Thread(target=self._main, name=f"op:{self.name}")
        self.loaded = threading.Event()
        self.load_failure: OperatorFailure | None = None
        self._timers: list[tuple[float, int, _Timer]] = []
        # What timers read the time from (seconds, monotonic); snapgraph.testing puts a manual clock here.
        self.clock: Callable[[], float] = time.monotonic
        # Counters (snapgraph.instruments.stats): written by this dispatcher only, read as copies. The
        # stopwatch times callbacks and protocol steps; instruments hear the operator-level protocol
        # steps (barrier_aligned, state_serialized, state_restored): the in-process Engine sets them.
        self.stats = OperatorStats.for_ports(self.name, process.inports, process.outports, process.group)
        self._in_stats = self.stats.inputs
        self._out_stats = self.stats.outputs
        self.stopwatch: Callable[[], float] = time.perf_counter
        self.instruments: Instruments = NO_INSTRUMENTS
        self._aligning_since = 0.0  # when the first barrier of the epoch being aligned arrived
        self._callback_seconds = 0.0  # how long the last callback run by _guarded took
        self._prefer_timer = False
        self._warned_no_callback: set[str] = set()
        self._sealed: str | None = None  # the sealed final epoch once its epoch_complete began
        self._warned_sealed: set[str] = set()
        self._aligned: set[Channel] = set()  # inputs that delivered the current epoch's barrier
        # snapshotWhileBusy (sources only, opted in): the snapshot need not wait for a long callback.
        self.snapshot_while_busy = snapshot_while_busy(process.config) if host.snapshots_on else None
        self._output_lock = threading.Lock() if self.snapshot_while_busy is not None else None
        self._busy_since: float | None = None  # when the running callback began (opted-in operators)
        self._snapshot_claim = threading.Lock()
        self._snapshotted: str | None = None  # the newest epoch whose snapshot was taken or claimed

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

    # -- OperatorHost ---------------------------------------------------------------
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

    def post(self, work: Callable[[], None]) -> None:
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
            self._load()
        except BaseException as exc:  # noqa: BLE001 - any load failure is reported, not raised
            if isinstance(exc, _InvalidOperator):
                self.load_failure = OperatorFailure(self.name, "start", str(exc), "", invalid=True)
            else:
                self.load_failure = OperatorFailure(
                    self.name, "script body", _describe(exc), format_script_error(exc)
                )
            self.phase = Phase.DONE
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
            registrations = self.api.registrations  # type: ignore[union-attr]
            self._restore()
            self.phase = Phase.RUNNING
            if registrations.prestart is not None:
                self._guarded("prestart", registrations.prestart)
            self._repeat_restored_epoch_complete()
            now = self.clock()
            for index, callback in enumerate(registrations.timers):
                self.host.activity.add(1)
                heapq.heappush(self._timers, (now, index, _Timer(callback, index)))
            self.host.activity.add(-1)  # the start-up token taken by the engine
            self._loop()
        except GraphStopping:
            pass
        except Exception as exc:  # noqa: BLE001 - a fault of the engine itself
            # It must fail the run: a dispatcher that ended quietly would let the graph look idle
            # and "complete" without the messages still queued for this operator.
            failure = OperatorFailure(self.name, "the engine's dispatcher", _one_line(exc),
                                      "".join(traceback.format_exception(exc)).rstrip())
            self.logger.error("internal error: %s", failure.traceback)
            self.host.fail(failure)
        finally:
            self._shutdown()

    def _load(self) -> None:
        api = self.make_api(self.host.runtime_info(self.process))
        if self.process.script is not None:
            try:
                run_script(self.process.script, self.name, {"api": api})
            finally:
                script_guards.leave_if_forked()
        else:
            from snapgraph.runtime.builtins import setup_builtin

            setup_builtin(self.process, api, self.host)
        api.finish_loading()
        registrations = api.registrations
        if self.host.snapshots_on and self.is_stateful and (
                registrations.serialize is None or registrations.restore is None):
            raise _InvalidOperator(
                f"operator {self.name!r} is declared stateful (api.set_initial_snapshot_info) but does not "
                "register both api.set_serialize_callback and api.set_restore_callback"
            )

    @property
    def is_stateful(self) -> bool:
        info = self.api.registrations.snapshot_info if self.api else None
        return bool(info and info.is_stateful)

    def _loop(self) -> None:
        while not self.host.is_stopping():
            now = self.clock()
            timer_due = bool(self._timers) and self._timers[0][0] <= now
            if timer_due and (self._prefer_timer or not self.inbox.has_input()):
                self._prefer_timer = False
                self._run_timer()
                continue
            if timer_due:
                timeout = 0.0
            elif self._timers:
                timeout = self._timers[0][0] - now
            else:
                timeout = None
            item = self.inbox.next_item(timeout)
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
        _, index, timer = heapq.heappop(self._timers)
        ok, interval = self._guarded("timer callback", timer.callback)
        if not ok:
            # The error was handled (log and ignore / error port): keep ticking at the last
            # interval, so a failing poller does not become a busy loop flooding the log.
            interval = timer.interval
        if interval is None:
            self.logger.warning(
                "timer callback %s returned None; the timer stops (return a number of seconds to "
                "keep it running, or a negative number to stop it explicitly)",
                getattr(timer.callback, "__name__", "?"),
            )
            interval = -1
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            self._fail("timer callback", TypeError(
                f"timer callback returned {interval!r}; it must return the seconds until its next call"))
            return
        if interval < 0:
            self.host.activity.add(-1)
            return
        timer.interval = interval
        heapq.heappush(self._timers, (self.clock() + interval, index, timer))

    def _deliver(self, channel: Channel, message: Any) -> None:
        try:
            if isinstance(message, Encoded):
                message = self._decode(channel, message)
            if isinstance(message, Barrier):
                self._on_barrier(channel, message.epoch)
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
                elif self.error_mode == RETRY:
                    started = self.stopwatch()
                    try:
                        callback(message.msg_id, Header(message.header), body)
                    except GraphStopping:
                        raise
                    except Exception as err:  # noqa: BLE001 - handed back to the sender
                        exc = err
                        self.logger.warning("port %r: %s (reported back to the sender for retry)",
                                            channel.port, _one_line(err))
                    except BaseException as err:  # noqa: BLE001 - sys.exit and the like end the operator
                        self._fail(f"port callback of {channel.port!r}", err)
                    finally:
                        elapsed = self.stopwatch() - started
                        stats.callback_seconds += elapsed
                        self.stats.callbacks += 1
                        self.stats.callback_seconds += elapsed
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

    def _decode(self, channel: Channel, message: Encoded) -> Message:
        """Rebuild a message from another group; one that cannot be rebuilt fails this operator."""
        try:
            return message.decode(message.data)
        except Exception as exc:  # noqa: BLE001 - whatever unpickling raises
            sender = channel.connection.src.process
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith(SCRIPT_MODULE_PREFIX):
                hint = (f"; the value's class is defined in the script of {sender!r}, which only its own group "
                        "loads: define it in a helper module beside the graph and import it in both scripts")
            self._fail(f"receiving on port {channel.port!r}", UndeliverableMessage(
                f"a message from operator {sender!r} (another group) could not be rebuilt here: "
                f"{_one_line(exc)}{hint}"))

    # -- snapshots -------------------------------------------------------------------
    def _restore(self) -> None:
        """Script body -> restore(epoch, bytes) -> prestart: prestart sees the restored state."""
        restore = self.host.restore
        if restore is None or not self.is_stateful or self.name not in restore.states:
            return
        self.phase = Phase.STARTING
        data, run_time_types = unpack_state(restore.states[self.name])
        self.host.type_context.register_received(run_time_types)  # type ids the restored state may hold
        self._protocol_step("restore", lambda: (
            self.host.faults.hit("restore", self.name),
            self.api.registrations.restore(restore.epoch, data),  # type: ignore[union-attr, misc]
        ))
        if "state_restored" in self.instruments:
            self.instruments.call("state_restored", self.name, restore.epoch, len(restore.states[self.name]))

    def _repeat_restored_epoch_complete(self) -> None:
        """After a recovery, run ``epoch_complete`` once more for the restored epoch.

        The failed attempt may have died before or while running it (a writer
        that commits or cleans up there would never get another chance), so
        it runs again after prestart: ``epoch_complete`` must be idempotent.
        """
        if self.host.restore is not None:
            self.epoch_complete(self.host.restore.epoch)

    def _on_barrier(self, channel: Channel, epoch: str) -> None:
        """Align: block each input that delivered ``epoch`` until all have, then snapshot."""
        if not self._aligned:
            self._aligning_since = self.stopwatch()
        self._aligned.add(channel)
        with self.inbox.cond:
            channel.blocked = True
        if len(self._aligned) < len(self.inbox.channels):
            return
        self.take_snapshot(epoch, self.stopwatch() - self._aligning_since)
        with self.inbox.cond:
            for aligned in self._aligned:
                aligned.blocked = False
            self.inbox.cond.notify_all()
        self._aligned.clear()

    def request_snapshot(self, epoch: str) -> None:
        """Epoch ``epoch`` starts at this source: its snapshot is taken between two of its callbacks.

        Opted in with ``snapshotWhileBusy: N``, a callback that has run N seconds no longer holds
        it up: the snapshot is then taken beside the callback (on a thread of its own), with the
        operator's output held back meanwhile, so every message published before the snapshot
        precedes the barrier and none slips in during it. Whichever comes first takes it.
        """
        self.post(lambda: self._snapshot_once(epoch))
        if self.snapshot_while_busy is not None:
            threading.Thread(target=self._snapshot_beside_long_callback, args=(epoch, self.snapshot_while_busy),
                             name=f"snapshot:{self.name}", daemon=True).start()

    def _claim_snapshot(self, epoch: str, busy_for: float | None = None) -> bool | None:
        """Whether this caller takes ``epoch``'s snapshot: True; None if it is taken or claimed already;
        False if not yet (``busy_for``: only once the running callback has run that long)."""
        with self._snapshot_claim:
            if self._snapshotted == epoch:
                return None
            if busy_for is not None:
                since = self._busy_since
                if since is None or time.monotonic() - since < busy_for:
                    return False
            self._snapshotted = epoch
            return True

    def _snapshot_once(self, epoch: str) -> None:
        if self._claim_snapshot(epoch):
            self.take_snapshot(epoch)

    def _snapshot_beside_long_callback(self, epoch: str, busy_for: float) -> None:
        while not self.host.is_stopping():
            claimed = self._claim_snapshot(epoch, busy_for)
            if claimed is None:
                return  # taken between two callbacks
            if claimed:
                self.logger.info("snapshot of epoch %s taken while a callback has been running for %.1f s "
                                 "(snapshotWhileBusy)", epoch, busy_for)
                try:
                    self.take_snapshot(epoch)
                except GraphStopping:
                    pass  # the failure is reported; the graph stops
                return
            time.sleep(BUSY_POLL)

    def take_snapshot(self, epoch: str, aligned_seconds: float = 0.0) -> None:
        """Pause, serialize, persist, forward the barrier, resume, acknowledge (sources start here).

        The fault points of the protocol steps are where the instruments hear of them too:
        ``before_serialize`` is ``barrier_aligned``, ``after_serialize`` is ``state_serialized``
        (the store's side of ``after_persist`` is the driver's ``state_persisted``).
        """
        registrations = self.api.registrations  # type: ignore[union-attr]
        faults: FaultPlan = self.host.faults
        stateful = self.is_stateful
        instruments = self.instruments
        clock = self.stopwatch
        stats = self.stats

        def step() -> None:
            if "barrier_aligned" in instruments:
                instruments.call("barrier_aligned", self.name, epoch, aligned_seconds)
            faults.hit("before_serialize", self.name)
            if registrations.pause is not None:
                registrations.pause()
            nbytes = 0
            if stateful:
                started = clock()
                data = registrations.serialize(epoch)  # type: ignore[misc]
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"serialize({epoch!r}) returned {type(data).__name__}; it must return bytes "
                        "(for example pickle.dumps(state))"
                    )
                serialized = clock() - started
                stats.serialize_seconds += serialized
                stats.last_serialize_seconds = serialized
                if "state_serialized" in instruments:
                    instruments.call("state_serialized", self.name, epoch, len(data), serialized)
                faults.hit("after_serialize", self.name)
                packed = pack_state(bytes(data), self.host.type_context.all_run_time_definitions())
                started = clock()
                self.host.persist_state(self.name, epoch, packed)
                persisted = clock() - started
                stats.persist_seconds += persisted
                stats.last_persist_seconds = persisted
                nbytes = len(packed)
            stats.snapshots += 1
            stats.last_epoch = epoch
            stats.state_bytes = nbytes
            stats.state_bytes_total += nbytes
            stats.alignment_seconds += aligned_seconds
            stats.last_alignment_seconds = aligned_seconds
            faults.hit("after_persist", self.name)
            for targets in self.targets.values():
                for target in targets:
                    if target.local:
                        self.host.activity.add(1)
                    target.channel.put(Barrier(epoch))
            if registrations.resume is not None:
                registrations.resume()

        if self._output_lock is not None:
            with self._output_lock:
                self._protocol_step(f"snapshot of epoch {epoch}", step)
        else:
            self._protocol_step(f"snapshot of epoch {epoch}", step)
        self.host.ack_epoch(self.name, epoch, stateful)

    def epoch_complete(self, epoch: str, sealed: bool = False) -> None:
        """Runs ``epoch_complete(epoch)``; it may publish (that data belongs to the next epoch).

        ``sealed``: the run's last final epoch. No epoch follows that could cover what the callback
        publishes, so it is discarded (with a warning), and a resume runs this callback again.
        """
        callback = self.api.registrations.epoch_complete  # type: ignore[union-attr]
        if sealed:
            self._sealed = epoch
        self._protocol_step("epoch_complete", lambda: self.host.faults.hit("epoch_complete", self.name))
        if callback is not None:
            self._guarded("epoch_complete", callback, epoch)

    def drop_timers(self) -> None:
        """Stop all timers (the graph is draining before its final epoch)."""
        self._protocol_step("drain", lambda: self.host.faults.hit("drain", self.name))
        self.host.activity.add(-len(self._timers))
        self._timers.clear()

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
            self._handle_error(phase, exc)
            return False, None
        except BaseException as exc:  # noqa: BLE001
            self._fail(phase, exc)
        finally:
            self._busy_since = None
            elapsed = self._callback_seconds = self.stopwatch() - started
            stats = self.stats
            stats.callbacks += 1
            stats.callback_seconds += elapsed
            script_guards.leave_if_forked()

    def _handle_error(self, phase: str, exc: Exception) -> None:
        if self.error_mode == LOG_AND_IGNORE:
            self.logger.error("%s raised (ignored: log and ignore)\n%s", phase, format_script_error(exc))
            return
        if self.error_mode == PROPAGATE_TO_ERROR_PORT and "error" in self.process.outports:
            self.logger.error("%s raised (sent to the error port)\n%s", phase, format_script_error(exc))
            self._publish_error(exc)
            return
        self._fail(phase, exc)

    def _publish_error(self, exc: Exception) -> None:
        if isinstance(exc, OperatorException):
            code, text, details = exc.code, exc.text, exc.details
        else:
            code, text, details = 0, str(exc) or type(exc).__name__, None
        if details is None:
            details = Table([], "")
        error = Record([code, self.process.component, self.name, text, details])
        try:
            self.emit("error", error, {}, "com.sap.error", None)
        except GraphStopping:
            raise
        except Exception as err:  # noqa: BLE001
            self._fail("error port", err)

    def _fail(self, phase: str, exc: BaseException) -> NoReturn:
        where = script_line(exc)
        message = _describe(exc) + (f" (at {where})" if where else "")
        failure = OperatorFailure(self.name, phase, message, format_script_error(exc))
        self.logger.error("%s failed: %s", phase, failure.traceback)
        self.host.fail(failure)
        raise GraphStopping()

    def _shutdown(self) -> None:
        registrations = self.api.registrations if self.api else None
        self.phase = Phase.SHUTDOWN
        if registrations is not None and registrations.shutdown is not None:
            try:
                registrations.shutdown()
            except GraphStopping:
                pass
            except BaseException as exc:  # noqa: BLE001 - sys.exit included
                where = script_line(exc)
                self.host.fail_in_shutdown(OperatorFailure(
                    self.name, "shutdown", _describe(exc) + (f" (at {where})" if where else ""),
                    format_script_error(exc)))
                self.logger.error("shutdown failed: %s", format_script_error(exc))
            finally:
                script_guards.leave_if_forked()
        self.phase = Phase.DONE


class UndeliverableMessage(Exception):
    """A message from another group that cannot be rebuilt in the receiving process."""


class _InvalidOperator(Exception):
    """An operator that cannot run as declared (reported with exit code 2)."""


# A persisted operator state is the script's serialize() bytes, unchanged — unless the operator's
# process made or received types at run time (dynamic tables): then the definitions go with it, so a
# restore in a new process (whose type context starts empty) still resolves the type ids the state holds.
_STATE_WITH_TYPES = b"\x00snapgraph-state-with-types\x00"


def pack_state(data: bytes, run_time_types: list[VType]) -> bytes:
    """What is persisted for an operator: ``data``, with ``run_time_types`` ahead of it if there are any."""
    if not run_time_types:
        return data
    types = pickle.dumps(run_time_types, protocol=pickle.HIGHEST_PROTOCOL)
    return _STATE_WITH_TYPES + len(types).to_bytes(8, "big") + types + data


def unpack_state(stored: bytes) -> tuple[bytes, list[VType]]:
    """The script's bytes and the run-time types persisted with them (see :func:`pack_state`)."""
    if not stored.startswith(_STATE_WITH_TYPES):
        return stored, []
    start = len(_STATE_WITH_TYPES) + 8
    end = start + int.from_bytes(stored[len(_STATE_WITH_TYPES):start], "big")
    return stored[end:], pickle.loads(stored[start:end])


def _local_count(targets: list[Target]) -> int:
    return sum(1 for t in targets if t.local)


def _default_response_callback(msg_id: bytes, ex: BaseException | None) -> None:
    """Gen2's default: a downstream error (retry mode) is raised in the sender."""
    if ex is not None:
        raise ex


def _describe(exc: BaseException) -> str:
    """One line on what a script raised; an attempt to end the process says so, with its code."""
    return script_guards.describe_exit(exc) or _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


