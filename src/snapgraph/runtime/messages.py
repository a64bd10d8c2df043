"""What travels on channels: data messages, streams and replies.

Every item is a plain object with no reference to the sending operator's
runtime except through :class:`Reply`, which the process transport replaces
with a serializable token when a channel crosses an OS-process boundary.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from snapgraph.model.types import PortType


class GraphStopping(BaseException):
    """Raised inside blocked engine calls when the graph is stopping.

    A BaseException so that a script's ``except Exception`` does not swallow
    it: the callback must unwind so the dispatcher can run shutdown.
    """


class MessageIds:
    """12-byte message ids: a random 4-byte prefix per output port + an 8-byte counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4)
        self._counter = count(1)

    def next(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(8, "big")


class Reply:
    """Collects the outcome of one published message across all its receivers.

    When every receiver has processed the message, ``deliver(msg_id, exc)``
    runs once with the first exception raised downstream (or None). The
    engine makes ``deliver`` post the response callback to the sender's
    dispatcher, so response callbacks run on the sender's thread.
    """

    __slots__ = ("msg_id", "_remaining", "_first_exc", "_lock", "_deliver")

    def __init__(self, msg_id: bytes, receivers: int, deliver: Callable[[bytes, BaseException | None], None]) -> None:
        self.msg_id = msg_id
        self._remaining = receivers
        self._first_exc: BaseException | None = None
        self._lock = threading.Lock()
        self._deliver = deliver

    def withdraw(self, receivers: int) -> None:
        """``receivers`` never got the message (publishing failed part way): stop waiting for them."""
        with self._lock:
            self._remaining -= receivers
            finished = self._remaining == 0
        if finished:
            self._deliver(self.msg_id, self._first_exc)

    def done(self, exc: BaseException | None) -> bool:
        """One receiver finished; True once all have (and the response was delivered)."""
        with self._lock:
            if exc is not None and self._first_exc is None:
                self._first_exc = exc
            self._remaining -= 1
            finished = self._remaining == 0
        if finished:
            self._deliver(self.msg_id, self._first_exc)
        return finished


@dataclass(slots=True)
class Message:
    """One Gen2 message as a receiver sees it."""

    msg_id: bytes
    header: dict[str, Any]
    body: Any  # the value, a StreamBuffer for with_writer streams, or None for 'none'
    port_type: PortType  # the sending port's type (the body's type id for dynamic ports)
    type_id: str = "*"
    reply: Reply | None = None
    is_stream: bool = False


STREAM_CAPACITY = 16  # chunks buffered per stream receiver before the writer blocks


class StreamBuffer:
    """A bounded, single-reader stream of chunks (rows or bytes) behind with_writer.

    The writer blocks when ``capacity`` chunks are waiting; the reader blocks
    until a chunk arrives or the writer closes. Closing wakes everyone.
    """

    def __init__(self, capacity: int, stopping: Callable[[], bool]) -> None:
        self._chunks: deque[Any] = deque()
        self._capacity = capacity
        self._closed = False
        self._cond = threading.Condition()
        self._stopping = stopping
        self._forward: tuple[Callable[[Any], None], Callable[[], None]] | None = None

    def forward(self, put: Callable[[Any], None], close: Callable[[], None]) -> None:
        """From now on hand the writer's chunks to ``put`` and its end to ``close`` instead of
        buffering them (the reader is in another process); what is buffered already goes first."""
        with self._cond:
            self._forward = (put, close)
            waiting, self._chunks = list(self._chunks), deque()
            closed = self._closed
        for chunk in waiting:
            put(chunk)
        if closed:
            close()

    def put(self, chunk: Any) -> None:
        if self._forward is not None:
            self._forward[0](chunk)
            return
        with self._cond:
            while len(self._chunks) >= self._capacity and not self._closed:
                if self._stopping():
                    raise GraphStopping()
                self._cond.wait(0.1)
            if self._closed:
                raise ValueError("write to a closed stream")
            self._chunks.append(chunk)
            self._cond.notify_all()

    def close(self) -> None:
        if self._forward is not None:
            self._forward[1]()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self) -> Any | None:
        """The next chunk, or None once the writer has closed and all chunks are read."""
        with self._cond:
            while not self._chunks:
                if self._closed:
                    return None
                if self._stopping():
                    raise GraphStopping()
                self._cond.wait(0.1)
            chunk = self._chunks.popleft()
            self._cond.notify_all()
            return chunk

    def push_back(self, chunk: Any) -> None:
        """Return an unread remainder to the front of the stream."""
        with self._cond:
            self._chunks.appendleft(chunk)


@dataclass(slots=True)
class Encoded:
    """A message from another group process, still encoded.

    The receiving dispatcher reads frames off the pipe in batches and decodes
    each message only when it takes it, so a batch costs one read and the
    rows of a message are allocated just before the callback uses them.
    """

    data: bytes
    decode: Callable[[bytes], Message]


@dataclass(slots=True)
class Barrier:
    """A snapshot barrier for epoch ``epoch`` (used by the snapshot protocol)."""

    epoch: str


@dataclass(slots=True)
class ControlEvent:
    """Work posted to an operator's dispatcher from elsewhere (a reply, an exception)."""

    run: Callable[[], object]
