"""The NATS JetStream source and sink: built-in operators over a JetStream server, with nats-py.

Both are written against the Gen2 ``api`` object exactly as a user script is (descriptors
``snapgraph.nats.source`` / ``snapgraph.nats.sink`` in :mod:`snapgraph.model.nats_builtins`; the config
keys in docs/connectors.md). nats-py is asyncio and Gen2 callbacks are not: each operator runs one event
loop on a thread of its own (:class:`_EventLoop`), its callbacks hand coroutines to it, and its shutdown
closes the connection, then stops and joins the thread.

**The source** reads one stream (optionally a subject filter) through a pull consumer, ``batch``
messages per fetch, one Gen2 message per NATS message: the payload as bytes, text or decoded JSON, each
NATS header ``Name: value`` as the Gen2 header ``Name: [value]``, and the position as
``snapgraph.nats.message: [stream, subject, sequence]``. Its protocol:

1. *Load*: connect, check that the stream exists (a config error otherwise).
2. *First timer tick* (after a restore, if any): create the consumer. It starts after the restored
   position; in a new run after what an existing durable ``consumer`` has acked, else at ``start``. A
   work-queue stream only allows consumers that deliver all it holds: messages at or before the position
   are skipped (and acked when their epoch is known complete). An existing durable is replaced, so that
   nothing it delivered before (and would redeliver only after its ack wait) is out of order.
3. *Timer*: fetch up to ``batch`` messages, publish each one after the position (crash point
   ``nats_source_published``: published, position not yet advanced), then advance the position to its
   stream sequence. Without ``streaming`` the timer ends once the consumer has nothing pending.
4. *serialize(E)*: the state is the position (the stream sequence published last); the messages
   published since the previous snapshot are set aside as epoch E's to acknowledge.
5. *epoch_complete(E)*: the messages of every epoch up to E are acked (crash point
   ``nats_source_acked``: acks sent). The state already holds the position, so acks are not needed for
   the replay: they tell the server the messages are done with, which a work-queue stream (it deletes
   acked messages) or an interest stream (it deletes what every consumer acked) needs to free them, and
   which keeps a durable consumer's ack floor, and its pending count in monitoring, truthful.
6. *restore(E)*: the position of E; the replay starts right after it.

*Gaps.* A stream with limits (``max_age``, ``max_msgs``, ``max_bytes``, a discard policy of ``old``) removes
old messages whether or not anyone read them, so the messages a replay needs may be gone: a restore (or a
durable consumer's new run) long after its position, or a consumer that lags behind the limits. The source
looks for that where it can know it: when it opens its consumer at a sequence (the stream's first sequence
is beyond it), and, without a ``subject`` filter, at every message (its sequence is not the one after the
position; with a filter, sequences of other subjects are skipped by design, so only the first check
applies and its count is an upper bound). ``gaps: fail`` (the default) fails the attempt naming the
sequences lost, so nothing is lost silently (recovery then meets the same gap: the run fails); ``gaps:
skip`` logs the loss as a warning and reads on (at-most-once for those messages). A work-queue stream
removes what is acked, so the check at opening is not made for it.

Acks are only kept (``AckPolicy.EXPLICIT``) with a durable consumer or a work-queue stream; an
ephemeral consumer over an ordinary stream acks nothing and is deleted at shutdown. Without snapshots no
epoch completes and nothing is acked (a recovery starts from scratch, so an ack sent earlier could lose
messages); the source warns.

**The sink** publishes each message on ``input`` to ``subject`` with JetStream's de-duplication: the
header ``Nats-Msg-Id`` is an id that the same message gets again in a replay, and the stream drops a
second message with an id it has stored within its ``duplicate_window``. The id is the value of the Gen2
header ``msgIdHeader`` when configured; otherwise ``<graph>/<operator>/<n>/<digest>``, where n counts
the messages the sink has received in the run (restored with its state, so the replay after epoch E
numbers its messages as the failed attempt did) and the digest is a SHA-256 of subject, headers and
payload (so a new run with other content never collides with the ids of an earlier one). Its protocol:

1. *Load*: connect, find the stream that captures ``subject`` (and check it is ``stream`` when given);
   it logs the duplicate window, the limit of the exactly-once claim.
2. *Port callback*: number the message, queue the publish on the event loop and return (at most
   :data:`MAX_IN_FLIGHT` publishes wait for their acks; crash point ``nats_sink_published``). One task
   publishes the queue in order.
3. *serialize(E)*: wait until the server has acked every publish so far (a failed publish fails the
   snapshot, hence the attempt), then return n (crash point ``nats_sink_acked``: all acked, state not
   yet persisted). So every message before barrier E is stored when E completes.
4. *restore(E)*: n of E; the replayed messages get the ids they had, and the stream drops those it
   already stored. *Without snapshots* a recovery starts from scratch with n = 0, to the same effect.
5. *Shutdown*: wait (briefly) for the acks still due, report the duplicates the stream dropped, close.

A replay more than ``duplicate_window`` after the first publish is stored again: exactly-once holds for
recoveries within the window (two minutes by default), at-least-once beyond it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamInfo
from nats.js.client import JetStreamContext

from snapgraph.api.operator_api import Api
from snapgraph.api.table import Table
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext, Setup, check_config, config_of
from snapgraph.model.builtin_operator import config_switch
from snapgraph.model.nats_builtins import NATS_SINK, NATS_SOURCE

MESSAGE_HEADER = "snapgraph.nats.message"  # [stream, subject, stream sequence], set by the source
MSG_ID = "Nats-Msg-Id"
DEFAULT_URL_PORT = 4222
DEFAULT_BATCH = 100
DEFAULT_POLL = 1.0
#: How long one fetch waits for messages when the server has none at hand (seconds).
FETCH_WAIT = 0.25
#: Publishes of the sink that may wait for their acks before its port callback waits too.
MAX_IN_FLIGHT = 1000
#: How long a snapshot waits for the acks of the sink's publishes (seconds).
ACK_TIMEOUT = 30.0
#: How long a consumer's delivered messages may stay unacked before the server redelivers them: they are
#: acked when their epoch completes, so this bounds the time an epoch may take (seconds).
ACK_WAIT = 3600.0
#: An ephemeral consumer left by an engine that died is removed by the server after this long (seconds).
EPHEMERAL_INACTIVE = 60.0

T = TypeVar("T")


class NatsConfigError(ConnectorConfigError):
    """A source or sink that cannot run as configured: names the operator and the config key."""


class NatsError(RuntimeError):
    """The server cannot be reached or refused an operation: a failure of the attempt (recovery retries)."""








def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _EventLoop:
    """One asyncio event loop on a thread of its own, for one operator's nats-py client."""

    def __init__(self, operator: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"snapgraph-nats-{operator}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result (its exception is raised here)."""
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        """Stop the loop (its remaining tasks are cancelled) and join its thread."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


def _server_urls(operator: str, config: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The server URLs and the credentials of ``url`` or of the managed ``connection``."""
    if config.get("url") is not None:
        return [part.strip() for part in str(config["url"]).split(",") if part.strip()], {}
    properties = dict(config["connection"].get("connectionProperties") or {})
    if properties.get("url"):
        urls = [part.strip() for part in str(properties["url"]).split(",") if part.strip()]
    elif properties.get("host"):
        urls = [f"nats://{properties['host']}:{properties.get('port', DEFAULT_URL_PORT)}"]
    else:
        raise NatsConfigError(f"operator {operator!r}: config 'connection': connection "
                              f"{config['connection'].get('connectionID', '?')!r} has neither 'url' nor 'host' "
                              "in its connectionProperties")
    credentials = {key: str(properties[key]) for key in ("user", "password", "token") if properties.get(key)}
    return urls, credentials


class _Server:
    """A connection to the NATS server, on the operator's own event loop."""

    def __init__(self, operator: str, api: Api, config: Mapping[str, Any]) -> None:
        self.operator = operator
        self.api = api
        urls, credentials = _server_urls(operator, config)
        self.where = ", ".join(urls)
        self.events = _EventLoop(operator)
        self.errors: list[str] = []
        try:
            self.client: Client = self.events.run(nats.connect(
                urls, connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=2,
                error_cb=self._on_error, name=f"snapgraph {api.graph_name}/{operator}", **credentials))
        except Exception as err:
            self.events.close()
            reason = self.errors[-1] if self.errors else _describe(err)
            raise NatsError(f"operator {operator!r}: cannot connect to the NATS server at {self.where}: "
                            f"{reason}") from err
        self.js: JetStreamContext = self.client.jetstream()

    async def _on_error(self, err: Exception) -> None:
        self.errors.append(_describe(err))
        self.api.logger.debug("NATS client error: %s", _describe(err))

    def stream_info(self, stream: str) -> StreamInfo:
        try:
            return self.events.run(self.js.stream_info(stream))
        except nats.js.errors.NotFoundError as err:
            names = self.events.run(self.js.streams_info())
            known = ", ".join(sorted(str(info.config.name) for info in names)) or "none"
            raise NatsConfigError(f"operator {self.operator!r}: config 'stream': no stream {stream!r} on the NATS "
                                  f"server at {self.where} (its streams: {known})") from err

    def close(self) -> None:
        """Close the connection (waiting for what it has buffered to be sent), stop the loop's thread."""
        try:
            if not self.client.is_closed:
                self.events.run(self.client.close(), timeout=10)
        finally:
            self.events.close()


# -- the source ------------------------------------------------------------------------------------------

def _decoder(operator: str, stream: str, fmt: str) -> Any:
    def decode(msg: Msg, sequence: int) -> Any:
        if fmt == "binary":
            return bytes(msg.data)
        try:
            text = msg.data.decode("utf-8")
            return text if fmt == "text" else json.loads(text)
        except ValueError as err:
            raise ValueError(f"operator {operator!r}: message {sequence} of stream {stream!r} (subject "
                             f"{msg.subject!r}) is not {'UTF-8 text' if fmt == 'text' else 'JSON'}, as config "
                             f"'format' {fmt!r} expects: {err}") from err

    return decode


class _Source:
    """The source's protocol (module docstring), its steps in that order."""

    def __init__(self, api: Api, context: ConnectorContext, config: Mapping[str, Any]) -> None:
        self.api = api
        self.operator = context.operator
        self.checkpoint = context.checkpoint
        self.stream = str(config["stream"])
        self.subject = config.get("subject")
        self.durable = config.get("consumer")
        self.start = config.get("start", "first")
        self.batch = int(config.get("batch", DEFAULT_BATCH))
        self.streaming = config_switch(config.get("streaming", False)) is True
        self.poll = float(config.get("poll", DEFAULT_POLL))
        self.decode = _decoder(self.operator, self.stream, str(config.get("format", "binary")))
        self.fail_on_gaps = config.get("gaps", "fail") == "fail"
        # 1. load
        self.server = _Server(self.operator, api, config)
        try:
            info = self.server.stream_info(self.stream)
        except BaseException:
            self.server.close()
            raise
        self.work_queue = info.config.retention == RetentionPolicy.WORK_QUEUE
        self.acking = self.durable is not None or self.work_queue
        if self.acking and not context.snapshots_on:
            api.logger.warning("snapshots are off, so no epoch completes and no message of stream %r is acked: "
                               "%s", self.stream, "the work queue keeps them all" if self.work_queue else
                               f"a new run of consumer {self.durable!r} starts where this one did")
        self.position = 0  # the stream sequence published last (0: none)
        self.complete_through = 0  # messages up to here belong to a complete epoch
        self.restored = False
        self.subscription: JetStreamContext.PullSubscription | None = None
        self.consumer_name: str | None = None
        self.unacked: list[Msg] = []  # published since the last snapshot
        self.to_ack: dict[str, list[Msg]] = {}  # epoch -> its messages, acked when it completes

    def register(self) -> None:
        api = self.api
        api.set_initial_snapshot_info(api.InitialProcessInfo(
            is_stateful=True, outports_info={"output": api.OutportInfo(is_generator=True)}))
        api.add_timer(self.read_batch)
        api.set_serialize_callback(self.serialize)
        api.set_restore_callback(self.restore)
        api.set_epoch_complete_callback(self.epoch_complete)
        api.set_shutdown(self.shutdown)

    # 2. the consumer, at the first timer tick
    def open_consumer(self) -> None:
        js, run = self.server.js, self.server.events.run
        config = ConsumerConfig(filter_subject=self.subject, ack_policy=AckPolicy.EXPLICIT if self.acking
                                else AckPolicy.NONE, ack_wait=ACK_WAIT if self.acking else None,
                                max_ack_pending=-1 if self.acking else None)
        start: int | str = self.position + 1 if self.restored and self.position else self.start
        if self.durable is not None:
            config.durable_name = config.name = str(self.durable)
            try:
                existing = run(js.consumer_info(self.stream, str(self.durable)))
            except nats.js.errors.NotFoundError:
                existing = None
            if existing is not None:
                if not self.restored and existing.ack_floor is not None and existing.ack_floor.stream_seq:
                    start = existing.ack_floor.stream_seq + 1  # continue after what earlier runs acked
                elif not self.restored and existing.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE:
                    start = int(existing.config.opt_start_seq or 1)  # it never acked: start where it did
        else:
            existing = None
            config.inactive_threshold = EPHEMERAL_INACTIVE
        if start not in ("first", "new") and not self.work_queue:  # before the durable goes: a failure keeps it
            first = int(self.server.stream_info(self.stream).state.first_seq)
            if first > int(start):
                self.gap(int(start), first - 1, "were removed from the stream (its limits) before this source "
                         "read them" + (f" (those of subject {self.subject!r} among them)" if self.subject else ""))
                self.position = max(self.position, first - 1)  # skipped: nothing is there to read
        if existing is not None:
            run(js.delete_consumer(self.stream, str(self.durable)))
        if self.work_queue:
            config.deliver_policy = DeliverPolicy.ALL  # required; what is at or before the position is skipped
        elif start == "new":
            config.deliver_policy = DeliverPolicy.NEW
        elif start != "first":
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, int(start)
        try:
            created = run(js.add_consumer(self.stream, config))
        except nats.js.errors.APIError as err:
            raise NatsError(f"operator {self.operator!r}: cannot create a consumer on stream {self.stream!r}: "
                            f"{_describe(err)}") from err
        self.consumer_name = created.name
        self.subscription = run(js.pull_subscribe_bind(consumer=created.name, stream=self.stream))

    # 3. timer
    def read_batch(self) -> float:
        if self.subscription is None:
            self.open_consumer()
        assert self.subscription is not None
        try:
            messages = self.server.events.run(self.subscription.fetch(self.batch, timeout=FETCH_WAIT))
        except TimeoutError:  # nothing arrived in time: nats-py raises its own TimeoutError or asyncio's
            messages = []
        pending = 0
        for msg in messages:
            metadata = msg.metadata
            sequence, pending = int(metadata.sequence.stream), int(metadata.num_pending)
            if sequence <= self.position:  # a redelivery, or a work-queue message before the position
                if self.acking and sequence <= self.complete_through:
                    self.server.events.run(msg.ack())
                continue
            if self.subject is None and self.position and sequence > self.position + 1:
                self.gap(self.position + 1, sequence - 1, "were removed from the stream (its limits) before "
                         "this source read them")
            header: dict[str, Any] = {name: [value] for name, value in (msg.headers or {}).items()}
            header[MESSAGE_HEADER] = [self.stream, msg.subject, sequence]
            self.api.outputs.output.publish(self.decode(msg, sequence), header)
            self.checkpoint("nats_source_published")
            self.position = sequence
            if self.acking:
                self.unacked.append(msg)
        if self.streaming:
            return 0 if messages else self.poll
        return 0 if messages and pending > 0 else -1  # the end: nothing was pending after the last one

    def gap(self, first: int, last: int, why: str) -> None:
        """Messages ``first``..``last`` of the stream are gone: fail the attempt, or (``gaps: skip``) say so."""
        count = last - first + 1
        what = f"{count} message{'s' if count != 1 else ''} of stream {self.stream!r} (sequence {first}" + (
            f" to {last})" if count != 1 else ")")
        if self.fail_on_gaps:
            raise NatsError(f"operator {self.operator!r}: {what} {why}; set config 'gaps' to skip to read on "
                            "without them")
        self.api.logger.warning("%s %s: lost (config 'gaps' is skip)", what, why)

    # 4. serialize(E)
    def serialize(self, epoch: str) -> bytes:
        if self.unacked:
            self.to_ack[epoch] = self.unacked
            self.unacked = []
        return json.dumps({"stream": self.stream, "sequence": self.position}).encode()

    # 5. epoch_complete(E)
    def epoch_complete(self, epoch: str) -> None:
        due = sorted(done for done in self.to_ack if done <= epoch)
        if not due:
            return
        messages = [msg for done in due for msg in self.to_ack.pop(done)]

        async def ack_all() -> None:
            for msg in messages:
                await msg.ack()
            await self.server.client.flush()

        self.server.events.run(ack_all())
        self.checkpoint("nats_source_acked")

    # 6. restore(E)
    def restore(self, epoch: str, state: bytes) -> None:
        saved = json.loads(state)
        if saved.get("stream") != self.stream:
            self.api.logger.warning("restoring a position in stream %r, but config 'stream' is %r now: "
                                    "starting at its sequence %d all the same", saved.get("stream"), self.stream,
                                    int(saved["sequence"]) + 1)
        self.position = self.complete_through = int(saved["sequence"])
        self.restored = True

    def shutdown(self) -> None:
        try:
            if self.durable is None and self.consumer_name is not None and self.server.client.is_connected:
                try:
                    self.server.events.run(self.server.js.delete_consumer(self.stream, self.consumer_name),
                                           timeout=5)
                except (TimeoutError, nats.errors.Error) as err:
                    self.api.logger.debug("cannot delete the ephemeral consumer: %s", _describe(err))
        finally:
            self.server.close()


def setup_nats_source(api: Api, context: ConnectorContext) -> None:
    """Register the source's callbacks on ``api`` (raises :class:`NatsConfigError` for a bad config or an
    unknown stream, :class:`NatsError` when the server cannot be reached)."""
    config = config_of(api)
    check_config(context.operator, NATS_SOURCE, config, NatsConfigError)
    _Source(api, context, config).register()


# -- the sink --------------------------------------------------------------------------------------------

def _payload(operator: str, value: Any) -> bytes:
    """A message body as the bytes to publish: bytes as they are, text as UTF-8, anything else as JSON
    (tables as their rows)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")

    def plain(item: Any) -> Any:
        if isinstance(item, Table):
            return item.body
        if isinstance(item, (list, tuple)) or hasattr(item, "__iter__") and not isinstance(item, Mapping):
            return list(item)
        raise TypeError(f"{type(item).__name__} is not JSON serializable")

    try:
        return json.dumps(value, default=plain, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError(f"operator {operator!r}: a message on port 'input' cannot be published: its body is "
                         f"not bytes, text or JSON ({err})") from err


def _nats_headers(header: Any) -> dict[str, str]:
    """Gen2 headers as NATS headers: ``Name: [value]`` as ``Name: value``, other values as JSON text."""
    result: dict[str, str] = {}
    for name, value in (header or {}).items():
        if not isinstance(name, str) or not name or any(c in name for c in ": \t\r\n") or name == MSG_ID:
            continue
        fields = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
        if len(fields) == 1 and isinstance(fields[0], str) and "\n" not in fields[0] and "\r" not in fields[0]:
            result[name] = fields[0]
        else:
            result[name] = json.dumps(fields if len(fields) != 1 else fields[0], default=str)
    return result


class _Sink:
    """The sink's protocol (module docstring), its steps in that order."""

    def __init__(self, api: Api, context: ConnectorContext, config: Mapping[str, Any]) -> None:
        self.api = api
        self.operator = context.operator
        self.checkpoint = context.checkpoint
        self.snapshots_on = context.snapshots_on
        self.subject = str(config["subject"])
        self.deduplicate = config_switch(config.get("deduplicate", True)) is True
        self.id_header = config.get("msgIdHeader")
        self.id_prefix = f"{api.graph_name}/{self.operator}"
        self.count = 0  # messages received in this run: the n of each message id
        self.window = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.stored = 0
        self.duplicates = 0
        # 1. load
        self.server = _Server(self.operator, api, config)
        try:
            self.stream = self._stream_of_subject(config.get("stream"))
            window = float(self.server.stream_info(self.stream).config.duplicate_window or 0)
            self.queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = self.server.events.run(self._new_queue())
        except BaseException:
            self.server.close()
            raise
        self.pump = self.server.events.submit(self._publish_in_order())
        if self.deduplicate:
            api.logger.info("publishing to %r (stream %r) with Nats-Msg-Id: exactly-once for replays within the "
                            "stream's duplicate window of %g s", self.subject, self.stream, window)
        else:
            api.logger.info("publishing to %r (stream %r) without Nats-Msg-Id: a replay after a recovery "
                            "publishes its messages again (at-least-once)", self.subject, self.stream)

    def _stream_of_subject(self, expected: Any) -> str:
        try:
            found = str(self.server.events.run(self.server.js.find_stream_name_by_subject(self.subject)))
        except nats.js.errors.NotFoundError as err:
            raise NatsConfigError(f"operator {self.operator!r}: config 'subject': no stream on the NATS server at "
                                  f"{self.server.where} captures subject {self.subject!r}") from err
        if expected is not None and found != str(expected):
            raise NatsConfigError(f"operator {self.operator!r}: config 'stream': subject {self.subject!r} is "
                                  f"captured by stream {found!r}, not {str(expected)!r}")
        return found

    async def _new_queue(self) -> asyncio.Queue[tuple[bytes, dict[str, str]]]:
        return asyncio.Queue()

    async def _publish_in_order(self) -> None:
        """The one task that publishes: the queue's messages in order, each ack awaited by a callback."""
        while True:
            payload, headers = await self.queue.get()
            try:
                acked = await self.server.js.publish_async(self.subject, payload, headers=headers,
                                                           stream=self.stream)
                acked.add_done_callback(self._on_ack)
            except Exception as err:  # the client refused the publish (closed, stalled)
                self._fail(_describe(err))
            finally:
                self.queue.task_done()

    def _on_ack(self, acked: asyncio.Future[Any]) -> None:
        error = None if acked.cancelled() else acked.exception()
        if acked.cancelled() or error is not None:
            self._fail("cancelled" if error is None else _describe(error))
            return
        with self.lock:
            if acked.result().duplicate:
                self.duplicates += 1
            else:
                self.stored += 1
        self.window.release()

    def _fail(self, reason: str) -> None:
        with self.lock:
            self.failures.append(reason)
        self.window.release()

    async def _all_acked(self) -> None:
        await self.queue.join()
        await self.server.js.publish_async_completed()

    def wait_for_acks(self, timeout: float) -> None:
        """Wait until every message handed over is acked by the server; raise if one was refused."""
        try:
            self.server.events.run(self._all_acked(), timeout)
        except TimeoutError as err:
            raise NatsError(f"operator {self.operator!r}: the NATS server at {self.server.where} did not ack the "
                            f"publishes to {self.subject!r} within {timeout:g} s") from err
        with self.lock:
            failures, self.failures = self.failures, []
        if failures:
            raise NatsError(f"operator {self.operator!r}: {len(failures)} publishes to {self.subject!r} failed "
                            f"(first: {failures[0]})")

    def register(self) -> None:
        api = self.api
        if self.snapshots_on:
            api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
            api.set_serialize_callback(self.serialize)
            api.set_restore_callback(self.restore)
        api.set_port_callback("input", self.on_input)
        api.set_shutdown(self.shutdown)

    def message_id(self, header: Any, payload: bytes, headers: Mapping[str, str]) -> str:
        if self.id_header is not None:
            value = header.get(self.id_header) if header is not None else None
            if value is None:
                raise ValueError(f"operator {self.operator!r}: a message on port 'input' has no header "
                                 f"{self.id_header!r}, which config 'msgIdHeader' names as its id")
            fields = list(value) if isinstance(value, (list, tuple)) else [value]
            return "/".join(str(field) for field in fields)
        digest = hashlib.sha256(self.subject.encode())
        digest.update(json.dumps(sorted(headers.items())).encode())
        digest.update(payload)
        return f"{self.id_prefix}/{self.count}/{digest.hexdigest()[:24]}"

    # 2. port callback
    def on_input(self, msg_id: bytes, header: Any, body: Any) -> None:
        payload = _payload(self.operator, body.get())
        headers = _nats_headers(header)
        if self.deduplicate:
            headers[MSG_ID] = self.message_id(header, payload, headers)
        self.count += 1
        self.window.acquire()
        self.server.events.loop.call_soon_threadsafe(self.queue.put_nowait, (payload, headers))
        self.checkpoint("nats_sink_published")

    # 3. serialize(E)
    def serialize(self, epoch: str) -> bytes:
        self.wait_for_acks(ACK_TIMEOUT)
        self.checkpoint("nats_sink_acked")
        return json.dumps({"count": self.count}).encode()

    # 4. restore(E)
    def restore(self, epoch: str, state: bytes) -> None:
        self.count = int(json.loads(state)["count"])

    # 5. shutdown
    def shutdown(self) -> None:
        try:
            if self.server.client.is_connected:
                self.wait_for_acks(ACK_TIMEOUT)
        except NatsError as err:
            self.api.logger.warning("%s", err)
        finally:
            self.pump.cancel()
            self.server.close()
        if self.duplicates:
            self.api.logger.info("stream %r dropped %d of the messages published as duplicates (a replay) and "
                                 "stored %d", self.stream, self.duplicates, self.stored)


def setup_nats_sink(api: Api, context: ConnectorContext) -> None:
    """Register the sink's callbacks on ``api`` (raises :class:`NatsConfigError` for a bad config or a subject
    no stream captures, :class:`NatsError` when the server cannot be reached)."""
    config = config_of(api)
    check_config(context.operator, NATS_SINK, config, NatsConfigError)
    _Sink(api, context, config).register()


__all__ = ["MESSAGE_HEADER", "MSG_ID", "NatsConfigError", "NatsError", "setup_nats_sink", "setup_nats_source"]


#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {NATS_SOURCE.component: setup_nats_source, NATS_SINK.component: setup_nats_sink}
