"""Unit tests for snapgraph.runtime.wire: connections between group processes, frames on real pipes.

Exact types on the fast and the slow path (what the codec does with them: tests/runtime/test_codec.py),
streams beside the data, and a receiving dispatcher that reads its pipes itself.
"""

from __future__ import annotations

import datetime
import decimal
import os
import select
import threading
from typing import Any

import pytest

from snapgraph.api.table import Record, Table
from snapgraph.model.graph import Connection, Endpoint
from snapgraph.model.types import PortType
from snapgraph.runtime.codec import encode_message
from snapgraph.runtime.messages import Barrier, Encoded, Message, Reply, StreamBuffer
from snapgraph.runtime.wire import FrameReader, InboundLink, OutboundLink, write_frame

CONNECTION = Connection(Endpoint("a", "out"), Endpoint("b", "in"))
TABLE_PORT = PortType("table", "*")


def links(fds: tuple[int, int, int, int], reply: tuple[int, int] = (-1, -1)) -> tuple[OutboundLink, InboundLink]:
    """Both ends of a link on ``fds`` (data and stream pipes) and ``reply`` (the reply pipe's read and
    write ends; none by default: only a message that asks for a response uses it)."""
    data_r, data_w, stream_r, stream_w = fds
    sender = OutboundLink(data_w, stream_w, reply[0], lambda: None, lambda: False, lambda: None)
    receiver = InboundLink(data_r, stream_r, reply[1], lambda: False, lambda: None)
    return sender, receiver


def roundtrip(fds: tuple[int, int, int, int], *items: object) -> list[object]:
    """Send items with an OutboundLink (from a thread: a full pipe blocks it); pull them at the other end."""
    sender, receiver = links(fds)

    def send() -> None:
        for item in items:
            sender.put(item)
        os.close(fds[1])

    writer = threading.Thread(target=send)
    writer.start()
    got: list[object] = []
    while (pulled := receiver.pull()) is not None:
        got += pulled
        if not pulled:
            select.select([fds[0]], [], [], 10)  # nothing there yet: wait for the writer
    writer.join(10)
    return [item.decode(item.data) if isinstance(item, Encoded) else item for item in got]


def message(body: object, port: PortType = TABLE_PORT, is_stream: bool = False) -> Message:
    return Message(b"\x00" * 12, {"com.sap.headers.batch": [0, True, 1, 0, "rows"]}, body, port, "*",
                   is_stream=is_stream)


def types_of(value: Any) -> Any:
    """The value's structure with every leaf replaced by its type (dict keys included)."""
    if isinstance(value, (list, tuple)):
        return type(value), [types_of(v) for v in value]
    if isinstance(value, dict):
        return type(value), [(types_of(k), types_of(v)) for k, v in value.items()]
    return type(value)


PLAIN_ROWS = [[1, 2.5, "x", b"\x00\xff", True, None, [1, 2], {"k": 1}, -2**63, 2**64 - 1]]
RICH_ROWS = [
    [1, (2, 3)],                                     # a tuple stays a tuple
    [decimal.Decimal("1.10"), datetime.date(2026, 11, 30)],
    [datetime.datetime(2026, 11, 30, 12, 0), datetime.time(1, 2, 3)],
    [2**70, -2**64],                                 # ints beyond 64 bits
    ["\udc80", {1: "int key"}],                      # a lone surrogate; a non-str key
    [{"k": (1,)}, {b"k": 1}],                         # a tuple inside a dict; a bytes key
]


@pytest.mark.parametrize("rows", [PLAIN_ROWS, RICH_ROWS] + [[row] for row in RICH_ROWS])
def test_table_rows_arrive_with_their_exact_types(pipes, rows: list[list[object]]) -> None:
    [got] = roundtrip(pipes, message(Table(rows, "my.table")))
    assert isinstance(got, Message)
    assert isinstance(got.body, Table)
    assert got.body.body == rows
    assert types_of(got.body.body) == types_of(rows)
    assert got.body.type_ref is not None and got.body.type_ref.type_id == "my.table"
    assert got.header == {"com.sap.headers.batch": [0, True, 1, 0, "rows"]}


def test_binary_values_of_any_buffer_type_arrive_as_bytes(pipes) -> None:
    """Documented (docs/gen2-compatibility.md): the Gen2 binary type crosses processes as bytes."""
    [got] = roundtrip(pipes, message(Table([[bytearray(b"ab"), memoryview(b"cd"), b"ef"]])))
    assert got.body.body == [[b"ab", b"cd", b"ef"]]
    assert [type(v) for v in got.body.body[0]] == [bytes, bytes, bytes]


def test_untyped_tables_stay_untyped_and_other_bodies_and_barriers_pass(pipes) -> None:
    got = roundtrip(pipes, message(Table([[1]])), Barrier("2026-11-30T12:00:00.000Z"),
                    message(Record([1, "a"]), PortType("structure", "*")))
    assert got[0].body.type_ref is None and got[0].body.body == [[1]]
    assert got[1] == Barrier("2026-11-30T12:00:00.000Z")
    assert got[2].body == Record([1, "a"])


def test_a_table_larger_than_the_pipe_arrives_whole_and_in_order(pipes) -> None:
    big = [[i, f"row{i}" * 20] for i in range(50_000)]  # several MB: many reads per frame
    got = roundtrip(pipes, message(Table([[0]])), message(Table(big)), message(Table([[1]])))
    assert [m.body.body for m in got] == [[[0]], big, [[1]]]


# -- frames -------------------------------------------------------------------------------------------
def test_frames_split_across_reads_at_every_byte_are_reassembled(pipes) -> None:
    data_r, data_w, _, _ = pipes
    frames = [b"M" + bytes(range(n % 256)) * (n % 5 + 1) for n in range(1, 40)] + [b"B"]
    stream = b"".join(len(f).to_bytes(8, "big") + f for f in frames)
    os.set_blocking(data_r, False)
    reader = FrameReader(data_r)
    got: list[bytes] = []
    for i in range(len(stream)):  # one byte at a time: every split point occurs
        os.write(data_w, stream[i:i + 1])
        got += reader.read() or []
    assert got == frames
    assert reader.read() == []  # nothing waiting
    os.close(data_w)
    assert reader.read() is None  # end of file


def test_write_frame_writes_one_length_prefixed_frame(pipes) -> None:
    data_r, data_w, _, _ = pipes
    write_frame(data_w, [b"T", b"ab", b"", b"cde"])
    assert os.read(data_r, 100) == (6).to_bytes(8, "big") + b"Tabcde"


# -- streams --------------------------------------------------------------------------------------------
def test_stream_chunks_travel_beside_the_data_and_may_arrive_first(pipes) -> None:
    """The stream's chunks (stream pipe) can be read before its message (data pipe): both find one buffer."""
    sender, receiver = links(pipes)
    buffer = StreamBuffer(16, lambda: False)
    for chunk in ([[1], [2]], [[3]]):
        buffer.put(chunk)
    buffer.close()
    receiver.start()  # the stream thread reads chunks and the close now; the message waits in its pipe
    sender.put(message(buffer, is_stream=True))
    [got] = roundtrip_pull(receiver)
    assert got.is_stream
    chunks = []
    while (chunk := got.body.take()) is not None:
        chunks.append(chunk)
    assert chunks == [[[1], [2]], [[3]]]
    assert receiver.bytes_received == sender.bytes_sent > 0  # the stream pipe's bytes count on both sides


def roundtrip_pull(receiver: InboundLink) -> list[Any]:
    """The next items the receiver pulls (waiting for them), decoded as the dispatcher would."""
    while not (items := receiver.pull()):
        select.select([receiver.fileno()], [], [], 10)
    return [item.decode(item.data) if isinstance(item, Encoded) else item for item in items]


def test_a_reader_blocked_on_a_stream_does_not_hold_back_the_stream_it_reads(pipes) -> None:
    """The receiving dispatcher blocks inside a callback reading a stream; its chunks still arrive."""
    sender, receiver = links(pipes)
    receiver.start()
    writer_side = StreamBuffer(2, lambda: False)
    sender.put(message(writer_side, is_stream=True))
    [got] = roundtrip_pull(receiver)
    total: list[int] = []
    reading = threading.Thread(target=lambda: total.extend(iter(got.body.take, None)))
    reading.start()
    for i in range(100):  # more chunks than any buffer holds: the reader must drain as they come
        writer_side.put([i])
    writer_side.close()
    reading.join(10)
    assert not reading.is_alive()
    assert total == [[i] for i in range(100)]


def test_data_pipes_share_a_budget_and_never_drop_below_the_default() -> None:
    from snapgraph.runtime.wire import DEFAULT_PIPE_BYTES, PIPE_BUDGET, PIPE_BYTES, pipe_bytes

    assert pipe_bytes(1) == PIPE_BYTES == 1 << 20
    assert pipe_bytes(PIPE_BUDGET // PIPE_BYTES) == PIPE_BYTES
    assert pipe_bytes(PIPE_BUDGET // PIPE_BYTES + 1) == PIPE_BYTES // 2  # powers of two, within budget
    sizes = [pipe_bytes(n) for n in range(1, 2000)]
    assert all(n * size <= PIPE_BUDGET or size == DEFAULT_PIPE_BYTES for n, size in enumerate(sizes, 1))
    assert min(sizes) == DEFAULT_PIPE_BYTES


def test_an_answer_goes_straight_back_to_the_sender_on_the_reply_pipe(pipes: tuple[int, int, int, int]) -> None:
    reply_r, reply_w = os.pipe()
    try:
        sender, receiver = links(pipes, (reply_r, reply_w))
        answered = threading.Event()
        delivered: list[tuple[bytes, BaseException | None]] = []

        def deliver(msg_id: bytes, exc: BaseException | None) -> None:
            delivered.append((msg_id, exc))
            answered.set()

        asking = message(Table([[1]]))
        asking.reply = Reply(asking.msg_id, 1, deliver)
        sender.put(asking)
        assert len(sender.tokens) == 1
        (encoded,) = receiver.pull() or []
        assert isinstance(encoded, Encoded)
        received = encoded.decode(encoded.data)
        assert received.reply is not None and received.reply is not asking.reply
        received.reply.done(ValueError("bad row"))
        assert answered.wait(10)
        ((msg_id, exc),) = delivered
        assert msg_id == asking.msg_id and isinstance(exc, ValueError) and str(exc) == "bad row"
        assert len(sender.tokens) == 0
    finally:
        for fd in (reply_r, reply_w):
            os.close(fd)


def test_an_answer_to_a_sender_that_is_gone_is_dropped_quietly(pipes: tuple[int, int, int, int]) -> None:
    reply_r, reply_w = os.pipe()
    os.close(reply_r)  # the sending process died
    try:
        sender, receiver = links(pipes, (-1, reply_w))
        asking = message(Table([[1]]))
        asking.reply = Reply(asking.msg_id, 1, lambda msg_id, exc: None)
        sender.tokens.register(asking.reply)  # as put() would, without starting the reader of answers
        write_frame(pipes[1], encode_message(asking, 1, None))
        (encoded,) = receiver.pull() or []
        assert isinstance(encoded, Encoded)
        reply = encoded.decode(encoded.data).reply
        assert reply is not None and reply.done(None) is True  # no BrokenPipeError
    finally:
        os.close(reply_w)
