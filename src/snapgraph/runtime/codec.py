"""How an item of a connection between groups becomes bytes, and back: the codec of every byte transport.

A frame is one item: its first byte says what it is (:data:`MESSAGE`, :data:`TABLE`, :data:`STREAM`,
:data:`BARRIER`, :data:`CHUNK`, :data:`CLOSE`, :data:`TYPES`), then the pickled item. Table bodies are
the hot path: their rows go as msgpack (ormsgpack) when every value is of a type msgpack restores
exactly (plain int, float, str, bytes, bool, None, list, dict with str keys), which encodes a 1000-row
table about 3.5x and decodes it about 1.3x faster than pickle (``docs/benchmarks.md``); anything else
(tuples, dates, Decimal, subclasses) falls back to pickle protocol 5, so every Gen2 value arrives intact
— binary values as ``bytes``. How frames travel (length prefixes on pipes) is :mod:`snapgraph.runtime.wire`.
A receiver's answer to a message that asked for a response (:func:`encode_answer`) travels back on the
link itself, to the sending instance, never through the driver.
"""

from __future__ import annotations

import pickle
from typing import Any

import ormsgpack

from snapgraph.api.table import Table
from snapgraph.runtime.messages import Message
from snapgraph.runtime.scripts import SCRIPT_MODULE_PREFIX

PROTOCOL = 5  # pickle protocol of every pickled part

# Item kinds: the first byte of each frame, then the pickled item. A table frame is b"T", the
# 4-byte length of the pickled envelope, the envelope, then the msgpack rows. A types frame (b"V")
# holds the definitions of run-time vtypes that the message after it is the first on its link to use.
MESSAGE, TABLE, STREAM, BARRIER, CHUNK, CLOSE, TYPES = b"M", b"T", b"S", b"B", b"C", b"E", b"V"
# ormsgpack encodes a 1000-row table 3.4x faster than msgpack-python (docs/benchmarks.md). Told to
# "pass through" the types it would otherwise convert (tuples, subclasses, dates, UUIDs, enums,
# dataclasses, ints beyond 64 bits), it refuses them instead, and pickle carries those tables. Left:
# binary values of any buffer type (bytearray, memoryview) arrive as bytes, the Gen2 binary type.
_EXACTTYPES_ONLY = (
    ormsgpack.OPT_PASSTHROUGH_SUBCLASS | ormsgpack.OPT_PASSTHROUGH_TUPLE | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME | ormsgpack.OPT_PASSTHROUGH_BIG_INT | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_UUID
)


def pack_rows(rows: list[Any]) -> bytes | None:
    """msgpack of table rows, or None when a value would not come back as the same type."""
    try:
        return ormsgpack.packb(rows, option=_EXACTTYPES_ONLY)
    except TypeError:
        return None


def unpack_rows(data: bytes | memoryview) -> list[Any]:
    """The rows of :func:`pack_rows`, as lists again."""
    rows: list[Any] = ormsgpack.unpackb(data, ext_hook=ormsgpack.Ext)
    return rows


def encode_message(item: Message, token: int | None, stream: int | None, try_msgpack: bool = True) -> list[bytes]:
    """One message as the parts of a frame (a table's rows as msgpack when ``try_msgpack`` and possible);
    ``token`` names its reply on the sending link, ``stream`` its stream."""
    body = item.body
    if try_msgpack and stream is None and type(body) is Table:
        rows = pack_rows(body.body)
        if rows is not None:
            table_type = body.type_ref.type_id if body.type_ref is not None else ""
            envelope = pickle.dumps((item.msg_id, item.header, table_type, item.port_type, item.type_id,
                                     token), protocol=PROTOCOL)
            return [TABLE, len(envelope).to_bytes(4, "big"), envelope, rows]
    return [STREAM if stream is not None else MESSAGE,
            pickle.dumps((item.msg_id, item.header, None if stream is not None else body,
                          item.port_type, item.type_id, token, stream), protocol=PROTOCOL)]


def decode_fields(data: bytes) -> tuple[Any, ...]:
    """The fields of a b"M", b"S" or b"T" frame: (msg_id, header, body, port_type, type_id, token, stream)."""
    if data[:1] != TABLE:
        fields: tuple[Any, ...] = pickle.loads(memoryview(data)[1:])
        return fields
    size = int.from_bytes(data[1:5], "big")
    view = memoryview(data)
    msg_id, header, table_type, port_type, type_id, token = pickle.loads(view[5:5 + size])
    rows = unpack_rows(view[5 + size:])
    return msg_id, header, Table(rows, table_type), port_type, type_id, token, None


def encode_answer(token: int, exc: BaseException | None) -> bytes:
    """A receiver's answer to the message ``token`` of its link: the reply frame, sent back to the sender."""
    return pickle.dumps((token, portable(exc)), protocol=PROTOCOL)


def decode_answer(frame: bytes) -> tuple[int, BaseException | None]:
    token, exc = pickle.loads(frame)
    return token, exc


def portable(exc: BaseException | None) -> BaseException | None:
    """An exception that another process can rebuild, else a RuntimeError with its text.

    Some exceptions carry unpicklable state; others are instances of a class defined in an
    operator script, which only the receiving group's process has imported.
    """
    if exc is None:
        return None
    try:
        data = pickle.dumps(exc)
        if SCRIPT_MODULE_PREFIX.encode() not in data:
            pickle.loads(data)
            return exc
    except Exception:  # noqa: BLE001 - whatever pickling raises, the text goes instead
        pass
    return RuntimeError(f"{type(exc).__name__}: {exc}")


__all__ = ["BARRIER", "CHUNK", "CLOSE", "MESSAGE", "PROTOCOL", "STREAM", "TABLE", "TYPES", "decode_answer",
           "decode_fields", "encode_answer", "encode_message", "pack_rows", "portable", "unpack_rows"]
