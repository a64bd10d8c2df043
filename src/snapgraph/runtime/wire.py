"""Connections between group processes: encoding, sending and receiving items.

Inside a group, messages pass by reference. Between groups every item of a
connection (a message, a snapshot barrier, the chunks of a stream) is pickled
with protocol 5 and written to an OS pipe. Table bodies are the hot path: their
rows go as msgpack when every value is of a type msgpack restores exactly
(``strict_types``: plain int, float, str, bytes, bool, None, list, dict),
which encodes and decodes a 1000-row table 1.1–1.5x faster than pickle
(``docs/benchmarks.md``); anything else (tuples, dates, Decimal, subclasses)
falls back to pickle, so every Gen2 value arrives intact.
The pipe is the bounded buffer: when the receiving group stops reading
because its channel is full, the pipe fills and the sender blocks, so
back-pressure holds across processes.

Replies (for response callbacks) do not travel on the pipe: the receiver
reports ``(token, exception)`` to the parent, which routes it to the sender.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from multiprocessing.connection import Connection as Pipe
from typing import Any
from collections.abc import Callable

import msgpack

from snapgraph.api.data import Table
from snapgraph.model.graph import Connection
from snapgraph.runtime.messages import (
    STREAM_CAPACITY,
    Barrier,
    Encoded,
    GraphStopping,
    Message,
    Reply,
    StreamBuffer,
)

PROTOCOL = 5
MSGPACK_RETRY_AFTER = 100  # tables sent with pickle before msgpack is tried again on a connection

# Item kinds on a link: the first byte of each frame, then the pickled item. A table frame is
# b"T", the 4-byte length of the pickled envelope, the envelope, then the msgpack rows.
_MESSAGE, _TABLE, _STREAM, _BARRIER, _CHUNK, _CLOSE = b"M", b"T", b"S", b"B", b"C", b"E"
_PACK_ERRORS = (TypeError, ValueError, OverflowError)  # what msgpack raises for values it cannot keep intact


def pack_rows(rows: list[Any]) -> bytes | None:
    """msgpack of table rows, or None when a value would not come back as the same type."""
    try:
        return msgpack.packb(rows, strict_types=True, use_bin_type=True)
    except _PACK_ERRORS:
        return None


def unpack_rows(data: bytes) -> list[Any]:
    """The rows of :func:`pack_rows`, as lists again."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_message(item: Message, token: int | None, group: str, stream: int | None,
                   try_msgpack: bool = True) -> bytes:
    """One message as a frame (a table's rows as msgpack when ``try_msgpack`` and possible)."""
    body = item.body
    if try_msgpack and stream is None and type(body) is Table:
        rows = pack_rows(body.body)
        if rows is not None:
            table_type = body.type_ref.type_id if body.type_ref is not None else ""
            envelope = pickle.dumps((item.msg_id, item.header, table_type, item.port_type, item.type_id,
                                     token, group), protocol=PROTOCOL)
            return b"".join((_TABLE, len(envelope).to_bytes(4, "big"), envelope, rows))
    return _MESSAGE + pickle.dumps((item.msg_id, item.header, None if stream is not None else body,
                                    item.port_type, item.type_id, token, group, stream), protocol=PROTOCOL)


def decode_table(data: bytes) -> tuple[Any, ...]:
    """The fields of a b"T" frame, in the order of a pickled message, with the Table rebuilt."""
    size = int.from_bytes(data[1:5], "big")
    msg_id, header, table_type, port_type, type_id, token, group = pickle.loads(data[5:5 + size])
    rows = unpack_rows(data[5 + size:])
    return msg_id, header, Table(rows, table_type), port_type, type_id, token, group, None


class ReplyTokens:
    """Replies of messages that left this process, by token, until every receiver answered."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._replies: dict[int, Reply] = {}
        self._lock = threading.Lock()

    def register(self, reply: Reply) -> int:
        token = next(self._next)
        with self._lock:
            self._replies[token] = reply
        return token

    def resolve(self, token: int, exc: BaseException | None) -> None:
        with self._lock:
            reply = self._replies.get(token)
        if reply is not None and reply.done(exc):
            with self._lock:
                self._replies.pop(token, None)


class RemoteReply:
    """Stands in for the sender's Reply in the receiving process."""

    __slots__ = ("token", "origin", "_report")

    def __init__(self, token: int, origin: str, report: Callable[[str, int, BaseException | None], None]) -> None:
        self.token = token
        self.origin = origin
        self._report = report

    def done(self, exc: BaseException | None) -> bool:
        self._report(self.origin, self.token, exc)
        return True


class OutboundLink:
    """The sending end of one cross-group connection; used as a channel by the sender's operator."""

    def __init__(self, pipe: Pipe, group: str, tokens: ReplyTokens, on_sent: Callable[[], None],
                 stopping: Callable[[], bool]) -> None:
        self._pipe = pipe
        self._group = group
        self._tokens = tokens
        self._on_sent = on_sent
        self._stopping = stopping
        self._lock = threading.Lock()
        self._streams = itertools.count(1)
        # After a table that msgpack could not carry, the next ones on this connection are likely
        # alike: skip the attempt for a while instead of paying for a failed encoding each time.
        self._skip_msgpack = 0

    def put(self, item: Any) -> None:
        if isinstance(item, Barrier):
            self._on_sent()
            self._send(_BARRIER, item.epoch)
            return
        assert isinstance(item, Message)
        token = self._tokens.register(item.reply) if item.reply is not None else None
        stream = next(self._streams) if item.is_stream else None
        self._on_sent()
        frame = encode_message(item, token, self._group, stream, try_msgpack=self._skip_msgpack == 0)
        if self._skip_msgpack:
            self._skip_msgpack -= 1
        elif frame[:1] == _MESSAGE and type(item.body) is Table:
            self._skip_msgpack = MSGPACK_RETRY_AFTER
        self._write(_STREAM + frame[1:] if stream is not None else frame)
        if stream is not None:
            threading.Thread(target=self._pump, args=(item.body, stream), daemon=True,
                             name=f"stream-pump-{stream}").start()

    def _pump(self, buffer: StreamBuffer, stream: int) -> None:
        """Move a stream's chunks from the writer's buffer onto the pipe as they come."""
        try:
            while (chunk := buffer.take()) is not None:
                self._send(_CHUNK, (stream, chunk))
            self._send(_CLOSE, stream)
        except (GraphStopping, OSError):
            pass

    def _send(self, kind: bytes, item: Any) -> None:
        self._write(kind + pickle.dumps(item, protocol=PROTOCOL))

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._stopping():
                raise GraphStopping()
            try:
                self._pipe.send_bytes(data)
            except (BrokenPipeError, OSError):
                raise GraphStopping() from None


class RoundRobinLink:
    """A connection into a group with multiplicity > 1: messages go to its instances in turn.

    Barriers go to every instance (each must align); a message goes to one.
    """

    def __init__(self, links: list[OutboundLink]) -> None:
        self._links = links
        self._next = itertools.cycle(links)

    def put(self, item: Any) -> None:
        if isinstance(item, Barrier):
            for link in self._links:
                link.put(item)
            return
        next(self._next).put(item)


def receive(pipe: Pipe, connection: Connection, deliver: Callable[[Connection, Any], None],
            report_reply: Callable[[str, int, BaseException | None], None],
            stopping: Callable[[], bool], on_start: Callable[[], None]) -> None:
    """Read one cross-group connection until it closes, handing items to the local group.

    Plain messages are handed over still encoded (:class:`Encoded`); the
    receiving dispatcher decodes them.
    """
    on_start()
    streams: dict[int, StreamBuffer] = {}

    def decode(data: bytes) -> Message:
        fields = decode_table(data) if data[:1] == _TABLE else pickle.loads(data[1:])
        msg_id, header, body, port_type, type_id, token, origin, stream = fields
        reply = RemoteReply(token, origin, report_reply) if token is not None else None
        if stream is not None:
            body = streams[stream] = StreamBuffer(STREAM_CAPACITY, stopping)
        return Message(msg_id, header, body, port_type, type_id, reply,  # type: ignore[arg-type]
                       is_stream=stream is not None)

    try:
        while True:
            try:
                data = pipe.recv_bytes()
            except (EOFError, OSError):
                return
            kind = data[:1]
            if kind in (_MESSAGE, _TABLE):
                deliver(connection, Encoded(data, decode))
            elif kind == _STREAM:
                deliver(connection, decode(data))  # its chunks follow: the buffer must exist now
            elif kind == _BARRIER:
                deliver(connection, Barrier(pickle.loads(data[1:])))
            elif kind == _CHUNK:
                stream, chunk = pickle.loads(data[1:])
                streams[stream].put(chunk)
            else:
                streams.pop(pickle.loads(data[1:])).close()
    except GraphStopping:
        return
