"""Connections between group processes: frames on OS pipes, sending and receiving items.

Items become frames with the codec of :mod:`snapgraph.runtime.codec`; this module carries them.

Inside a group, messages pass by reference. Between groups every item of a
connection (a message, a snapshot barrier, the chunks of a stream) becomes one
length-prefixed frame on an OS pipe.

Each connection between two group processes has three pipes:

* the **data pipe** carries messages and barriers, in publishing order. It is
  read by the receiving operator's own dispatcher thread, when it looks for
  its next input (:class:`InboundLink` is a remote input of its
  :class:`~snapgraph.runtime.channels.Inbox`). No thread hands the bytes
  over, so no other thread of the receiving process competes for the
  interpreter lock on the hot path (that hand-off cost W1 about a tenth of
  its throughput, ``docs/benchmarks.md``). The pipe is the bounded buffer:
  a dispatcher reads only while its channel has room, so a slow receiver
  fills the pipe and the sender blocks — back-pressure holds across processes.
* the **stream pipe** carries the chunks of ``with_writer`` streams. A port
  callback that reads a stream blocks its dispatcher until the chunks
  arrive, so they cannot wait behind it on the data pipe; a small thread per
  connection moves them into the streams' buffers. The writer's own thread
  encodes and writes each chunk, so a chunk that cannot be sent fails the
  script's ``write()`` call.

Types made at run time (dynamic tables, ``register_schema``) exist only in
the type context of the group process that made them. The first message on a
connection whose type id, or whose table's type, is such a type is preceded on
the data pipe by a types frame with the definitions (and those of the run-time
types they refer to); the receiving link registers them in its process's type
context before that message is decoded. Each definition goes once per
connection; a group that made no type at run time pays one set test per
message. Both ends use the process's default type context: a group process
hosts one group, whose ``GroupHost.load`` installs it.

* the **reply pipe**, the other way, carries the receiver's answers to
  messages that asked for a response (``publish(..., response_callback=)``,
  the retry error mode): ``(token, exception)`` straight back to the sending
  process, where a thread of the link, started with the first such message,
  resolves the :class:`ReplyTokens` of the link. Answers never pass through
  the driver.

:class:`PipeEnds`, :class:`OutboundLink` and :class:`InboundLink` are the pipe
implementation of the link-end protocols of :mod:`snapgraph.runtime.links`.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snapgraph.api.table import Table
from snapgraph.api.type_context import get_default_type_context
from snapgraph.model.types import VType
from snapgraph.runtime.codec import (
    BARRIER,
    CHUNK,
    CLOSE,
    MESSAGE,
    PROTOCOL,
    TYPES,
    decode_answer,
    decode_fields,
    encode_answer,
    encode_message,
)
from snapgraph.runtime.messages import (
    STREAM_CAPACITY,
    Barrier,
    Encoded,
    GraphStopping,
    Message,
    Reply,
    StreamBuffer,
)

MSGPACK_RETRY_AFTER = 100  # tables sent with pickle before msgpack is tried again on a connection
READ_SIZE = 1 << 18  # bytes asked for per read
# What a data pipe holds (Linux; 64 KiB by default): up to about 80 tables of 1000 short rows. A sender
# blocks only when the pipe is full, so a deep pipe lets a producer keep working while its consumer
# waits for a core; with 64 KiB, three busy stage processes on two cores left a core idle a fifth of
# the time (docs/benchmarks.md). The kernel counts pipe buffers per user and shrinks every new pipe of
# a user past /proc/sys/fs/pipe-user-pages-soft (64 MiB by default) to a page or two, so a run keeps
# its pipes within a budget: many connections share it, none drops below the default.
PIPE_BYTES = 1 << 20
PIPE_BUDGET = 32 << 20
DEFAULT_PIPE_BYTES = 1 << 16

_LENGTH = 8  # bytes of a frame's length prefix




def pipe_bytes(pipes: int) -> int:
    """The size for each of ``pipes`` data pipes of one run: PIPE_BYTES, less when the budget is shared."""
    share = PIPE_BUDGET // max(1, pipes)
    size = DEFAULT_PIPE_BYTES
    while size * 2 <= min(share, PIPE_BYTES):  # the kernel rounds sizes up to a power of two pages
        size *= 2
    return size


def enlarge_pipe(fd: int, size: int) -> None:
    """Give the pipe behind ``fd`` room for ``size`` bytes (best effort: the kernel may refuse)."""
    if size <= DEFAULT_PIPE_BYTES:
        return
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


# -- framing -----------------------------------------------------------------------------------
def write_frame(fd: int, parts: list[bytes]) -> int:
    """Write one frame (8-byte length, then ``parts``) to the blocking ``fd``, in one system call
    when the pipe has room; returns the bytes written. Raises OSError (BrokenPipeError) when the
    reader is gone."""
    size = sum(len(p) for p in parts)
    vector = [size.to_bytes(_LENGTH, "big"), *parts]
    written = os.writev(fd, vector)
    if written == size + _LENGTH:
        return written
    rest = memoryview(b"".join(vector))[written:]  # interrupted mid-frame: rare, finish it plainly
    while rest:
        rest = rest[os.write(fd, rest):]
    return size + _LENGTH


class FrameReader:
    """Splits what arrives on a pipe into frames; never blocks if the pipe is non-blocking."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.bytes_read = 0

    def read(self) -> list[bytes] | None:
        """The frames complete after one read ([] when nothing was waiting); None at end of file."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        self.bytes_read += len(data)
        if self._buffer:
            self._buffer += data
            frames, used = _split(self._buffer)
            del self._buffer[:used]
            return frames
        frames, used = _split(data)
        if used < len(data):
            self._buffer += memoryview(data)[used:]
        return frames


def _split(data: bytes | bytearray) -> tuple[list[bytes], int]:
    """The complete frames at the start of ``data`` and how many bytes they take."""
    frames = []
    pos, end = 0, len(data)
    while end - pos >= _LENGTH:
        stop = pos + _LENGTH + int.from_bytes(data[pos:pos + _LENGTH], "big")
        if stop > end:
            break
        frames.append(bytes(memoryview(data)[pos + _LENGTH:stop]))  # one copy, from bytes or bytearray
        pos = stop
    return frames, pos


# -- replies ---------------------------------------------------------------------------------------
class ReplyTokens:
    """The replies of messages that left on one link, by token, until the receiver answered."""

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
            reply = self._replies.pop(token, None)
        if reply is not None:
            reply.done(exc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._replies)


class _Answer:
    """Stands in for the sender's Reply in the receiving process: ``done`` answers on the reply pipe."""

    __slots__ = ("token", "_send")

    def __init__(self, token: int, send: Callable[[int, BaseException | None], None]) -> None:
        self.token = token
        self._send = send

    def done(self, exc: BaseException | None) -> bool:
        self._send(self.token, exc)
        return True


# -- the sending side ------------------------------------------------------------------------------
class OutboundLink:
    """The sending end of one cross-group connection (a :class:`~snapgraph.runtime.links.Sender`)."""

    def __init__(self, data_fd: int, stream_fd: int, reply_fd: int, on_sent: Callable[[], None],
                 stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> None:
        self._data_fd = data_fd
        self._stream_fd = stream_fd
        self._reply_fd = reply_fd
        self._on_sent = on_sent
        self._stopping = stopping
        self._on_thread_start = on_thread_start
        self._lock = threading.Lock()  # scripts may publish from threads of their own
        self._stream_lock = threading.Lock()
        self._streams = itertools.count(1)
        self.tokens = ReplyTokens()
        self._reading_replies = False
        # After a table that msgpack could not carry, the next ones on this connection are likely
        # alike: skip the attempt for a while instead of paying for a failed encoding each time.
        self._skip_msgpack = 0
        self._types_sent: set[str] = set()  # run-time vtypes whose definitions went on this link
        self.bytes_sent = 0

    def put(self, item: Any) -> None:
        if isinstance(item, Barrier):
            self._on_sent()
            self._write(self._data_fd, self._lock, [BARRIER, pickle.dumps(item.epoch, protocol=PROTOCOL)])
            return
        assert isinstance(item, Message)
        token = self._register(item.reply) if item.reply is not None else None
        stream = next(self._streams) if item.is_stream else None
        try:
            parts = encode_message(item, token, stream, try_msgpack=self._skip_msgpack == 0)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises; nothing was sent
            raise TypeError(f"a message to another group must be picklable: {type(exc).__name__}: {exc}") from exc
        self._on_sent()  # counted only once it is certain to go: the driver waits for sent == received
        if self._skip_msgpack:
            self._skip_msgpack -= 1
        elif parts[0] == MESSAGE and type(item.body) is Table:
            self._skip_msgpack = MSGPACK_RETRY_AFTER
        if stream is not None:
            # The writer's chunks go straight onto the stream pipe, encoded on the writer's own
            # thread: a chunk that cannot be sent fails its write() call, where the script sees it.
            item.body.forward(lambda chunk: self._write(self._stream_fd, self._stream_lock, [
                                  CHUNK, pickle.dumps((stream, chunk), protocol=PROTOCOL)]),
                              lambda: self._write(self._stream_fd, self._stream_lock, [
                                  CLOSE, pickle.dumps(stream, protocol=PROTOCOL)]))
        self._write(self._data_fd, self._lock, parts, item)

    def _register(self, reply: Reply) -> int:
        """A token for ``reply``; the first one starts the thread that reads the receiver's answers."""
        token = self.tokens.register(reply)
        if not self._reading_replies:
            with self._lock:
                if not self._reading_replies:
                    self._reading_replies = True
                    threading.Thread(target=self._read_replies, daemon=True,
                                     name=f"replies:{self._reply_fd}").start()
        return token

    def _read_replies(self) -> None:
        self._on_thread_start()
        reader = FrameReader(self._reply_fd)
        while (frames := reader.read()) is not None:  # None: the receiving process is gone
            for frame in frames:
                self.tokens.resolve(*decode_answer(frame))

    def _write(self, fd: int, lock: threading.Lock, parts: list[bytes], message: Message | None = None) -> None:
        """Write one frame; before a ``message``, the definitions it needs that this link has not
        carried yet (chosen under the lock, so no message can overtake the definitions it needs)."""
        with lock:
            if self._stopping():
                raise GraphStopping()
            definitions = self._definitions_to_send(message) if message is not None else []
            try:
                if definitions:
                    self.bytes_sent += write_frame(fd, [TYPES, pickle.dumps(definitions, protocol=PROTOCOL)])
                    self._types_sent.update(vtype.name for vtype in definitions)
                self.bytes_sent += write_frame(fd, parts)
            except OSError:
                raise GraphStopping() from None  # the receiving group is gone

    def _definitions_to_send(self, message: Message) -> list[VType]:
        """The run-time vtypes ``message`` names (its type id, its table's type) and those they
        refer to, that this link has not carried yet; none, at the cost of one set test, in a
        group that made no type at run time."""
        context = get_default_type_context()  # this process's: a group process hosts one group
        run_time = context.run_time_type_ids
        if not run_time:
            return []
        sent = self._types_sent
        body = message.body
        table_type = body.type_ref.type_id if type(body) is Table and body.type_ref is not None else None
        type_id = message.type_id
        if (type_id not in run_time or type_id in sent) and (table_type not in run_time or table_type in sent):
            return []  # the steady state: every type named went on this link already
        unsent = [named for named in (type_id, table_type) if named in run_time and named not in sent]
        return [vtype for vtype in context.run_time_definitions(unsent) if vtype.name not in sent]


# -- the ends a group process is handed --------------------------------------------------------------
@dataclass(frozen=True)
class PipeEnds:
    """One end of a link between group processes: descriptors of its data, stream and reply pipes."""

    data_fd: int
    stream_fd: int
    reply_fd: int

    def sending(self, on_sent: Callable[[], None], stopping: Callable[[], bool],
                on_thread_start: Callable[[], None]) -> OutboundLink:
        return OutboundLink(self.data_fd, self.stream_fd, self.reply_fd, on_sent, stopping, on_thread_start)

    def receiving(self, stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> InboundLink:
        link = InboundLink(self.data_fd, self.stream_fd, self.reply_fd, stopping, on_thread_start)
        link.start()
        return link


# -- the receiving side ------------------------------------------------------------------------------
class InboundLink:
    """The receiving end of one cross-group connection, read by the receiving operator's dispatcher.

    :meth:`pull` returns the items that have arrived, without blocking:
    barriers, and messages still encoded (:class:`Encoded`, decoded by the
    dispatcher when it takes them). The chunks of streams arrive on the
    stream pipe, which a thread of this link moves into the streams' buffers.
    """

    def __init__(self, data_fd: int, stream_fd: int, reply_fd: int,
                 stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> None:
        os.set_blocking(data_fd, False)
        self._reader = FrameReader(data_fd)
        self._stream_reader = FrameReader(stream_fd)
        self._reply_fd = reply_fd
        self._reply_lock = threading.Lock()
        self._stopping = stopping
        self._on_thread_start = on_thread_start
        self._streams = _StreamTable(stopping)
        self.closed = False

    def fileno(self) -> int:
        return self._reader.fd

    @property
    def bytes_received(self) -> int:
        """Bytes read so far from the data pipe and the stream pipe."""
        return self._reader.bytes_read + self._stream_reader.bytes_read

    def wakeup(self, notify: Callable[[], None]) -> int:
        """The data pipe: the receiving dispatcher polls it (no thread hands the bytes over)."""
        return self._reader.fd

    def start(self) -> None:
        """Start the thread that moves stream chunks into their buffers."""
        threading.Thread(target=self._read_streams, daemon=True, name=f"streams:{self._stream_reader.fd}").start()

    def pull(self) -> list[Any] | None:
        """Items that arrived since the last call ([] if none); None once the sender is gone."""
        frames = self._reader.read()
        if frames is None:
            self.closed = True
            return None
        items: list[Any] = []
        for frame in frames:
            kind = frame[:1]
            if kind == TYPES:
                # Registered at once: the messages after it are decoded (and their callbacks run) later.
                get_default_type_context().register_received(pickle.loads(memoryview(frame)[1:]))
            elif kind == BARRIER:
                items.append(Barrier(pickle.loads(memoryview(frame)[1:])))
            else:
                items.append(Encoded(frame, self._decode))
        return items

    def _decode(self, data: bytes) -> Message:
        msg_id, header, body, port_type, type_id, token, stream = decode_fields(data)
        reply = _Answer(token, self._answer) if token is not None else None
        if stream is not None:
            body = self._streams.opened(stream)
        return Message(msg_id, header, body, port_type, type_id, reply,  # type: ignore[arg-type]
                       is_stream=stream is not None)

    def _answer(self, token: int, exc: BaseException | None) -> None:
        """Tell the sending process that message ``token`` was processed (and how)."""
        with self._reply_lock:
            try:
                write_frame(self._reply_fd, [encode_answer(token, exc)])
            except OSError:
                pass  # the sending process is gone: nobody waits for the answer

    def _read_streams(self) -> None:
        self._on_thread_start()
        reader = self._stream_reader
        try:
            while True:
                frames = reader.read()
                if frames is None:
                    return
                for frame in frames:
                    if frame[:1] == CHUNK:
                        stream, chunk = pickle.loads(memoryview(frame)[1:])
                        self._streams.buffer(stream).put(chunk)
                    else:
                        self._streams.closed(pickle.loads(memoryview(frame)[1:]))
        except GraphStopping:
            return


class _StreamTable:
    """The buffers of a connection's open streams.

    A stream's chunks travel on the stream pipe and its message on the data
    pipe, so either may be seen first; the buffer is made by whichever side
    comes first and forgotten once both the message was taken and the
    stream was closed.
    """

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self._stopping = stopping
        self._lock = threading.Lock()
        self._open: dict[int, list[Any]] = {}  # stream -> [its buffer, sides seen (message taken, closed)]

    def buffer(self, stream: int) -> StreamBuffer:
        with self._lock:
            entry = self._open.setdefault(stream, [None, 0])
            if entry[0] is None:
                entry[0] = StreamBuffer(STREAM_CAPACITY, self._stopping)
            buffer: StreamBuffer = entry[0]
            return buffer

    def opened(self, stream: int) -> StreamBuffer:
        buffer = self.buffer(stream)
        self._seen(stream)
        return buffer

    def closed(self, stream: int) -> None:
        self.buffer(stream).close()
        self._seen(stream)

    def _seen(self, stream: int) -> None:
        with self._lock:
            entry = self._open[stream]
            entry[1] += 1
            if entry[1] == 2:
                del self._open[stream]


__all__ = ["FrameReader", "InboundLink", "OutboundLink", "PipeEnds", "ReplyTokens", "enlarge_pipe", "pipe_bytes",
           "write_frame"]
