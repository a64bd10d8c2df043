"""Messages between group processes keep every Gen2 value intact, on the fast and the slow path."""

from __future__ import annotations

import datetime
import decimal
import multiprocessing
import threading

import pytest

from snapgraph.api.data import Record, Table
from snapgraph.model.graph import Connection, Endpoint
from snapgraph.model.types import PortType
from snapgraph.runtime.messages import Barrier, Encoded, Message
from snapgraph.runtime.wire import OutboundLink, ReplyTokens, encode_message, receive

CONNECTION = Connection(Endpoint("a", "out"), Endpoint("b", "in"))
TABLE_PORT = PortType("table", "*")


def roundtrip(*items: object) -> list[object]:
    """Send items over a real pipe with an OutboundLink; return what the receiving side decodes."""
    receive_end, send_end = multiprocessing.Pipe(duplex=False)
    got: list[object] = []
    link = OutboundLink(send_end, "a", ReplyTokens(), lambda: None, lambda: False)
    reader = threading.Thread(target=receive, args=(receive_end, CONNECTION, lambda c, item: got.append(item),
                                                    lambda *a: None, lambda: False, lambda: None))
    reader.start()
    for item in items:
        link.put(item)
    send_end.close()
    reader.join(10)
    return [item.decode(item.data) if isinstance(item, Encoded) else item for item in got]


def message(body: object, port: PortType = TABLE_PORT) -> Message:
    return Message(b"\x00" * 12, {"com.sap.headers.batch": [0, True, 1, 0, "rows"]}, body, port, "*")


PLAIN_ROWS = [[1, 2.5, "x", b"\x00\xff", True, None, [1, 2], {"k": 1}]]
RICH_ROWS = [
    [1, (2, 3)],                                     # a tuple stays a tuple
    [decimal.Decimal("1.10"), datetime.date(2026, 11, 30)],
    [datetime.datetime(2026, 11, 30, 12, 0), datetime.time(1, 2, 3)],
    [bytearray(b"ab"), 2**70],                       # bytearray and a big int
    ["\udc80", {1: "int key"}],                      # a lone surrogate; a non-str key
]


@pytest.mark.parametrize("rows", [PLAIN_ROWS, RICH_ROWS] + [[row] for row in RICH_ROWS])
def test_table_rows_arrive_with_their_exact_types(rows: list[list[object]]) -> None:
    [got] = roundtrip(message(Table(rows, "my.table")))
    assert isinstance(got, Message)
    assert isinstance(got.body, Table)
    assert got.body.body == rows
    assert [[type(v) for v in row] for row in got.body.body] == [[type(v) for v in row] for row in rows]
    assert got.body.type_ref is not None and got.body.type_ref.type_id == "my.table"
    assert got.header == {"com.sap.headers.batch": [0, True, 1, 0, "rows"]}


def test_plain_tables_take_the_msgpack_path_and_others_fall_back_to_pickle() -> None:
    assert encode_message(message(Table(PLAIN_ROWS)), None, "a", None)[:1] == b"T"
    assert encode_message(message(Table(RICH_ROWS)), None, "a", None)[:1] == b"M"
    assert encode_message(message("text", PortType("scalar", "com.sap.core.string")), None, "a", None)[:1] == b"M"


def test_untyped_tables_stay_untyped_and_other_bodies_and_barriers_pass() -> None:
    got = roundtrip(message(Table([[1]])), Barrier("2026-11-30T12:00:00.000Z"),
                    message(Record([1, "a"]), PortType("structure", "*")))
    assert got[0].body.type_ref is None and got[0].body.body == [[1]]
    assert got[1] == Barrier("2026-11-30T12:00:00.000Z")
    assert got[2].body == Record([1, "a"])
