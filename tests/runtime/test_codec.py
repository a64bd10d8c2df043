"""Unit tests for snapgraph.runtime.codec: which path a message takes, and the msgpack path keeps every type."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_wire import PLAIN_ROWS, RICH_ROWS, message, types_of

from snapgraph.api.table import Table
from snapgraph.model.types import PortType
from snapgraph.runtime.codec import encode_message, pack_rows, unpack_rows


def test_plain_tables_take_the_msgpack_path_and_others_fall_back_to_pickle() -> None:
    assert encode_message(message(Table(PLAIN_ROWS)), None, None)[0] == b"T"
    assert encode_message(message(Table(RICH_ROWS)), None, None)[0] == b"M"
    assert encode_message(message("text", PortType("scalar", "com.sap.core.string")), None, None)[0] == b"M"


# -- values: the fast path never changes a type ----------------------------------------------------
class Count(int):
    """A subclass, as enums, numpy scalars and ORM types are: it must not arrive as its base."""


class Name(str):
    pass


leaves = (st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80)
          | st.floats(allow_nan=True) | st.text() | st.binary() | st.binary().map(bytearray)
          | st.integers(min_value=0, max_value=9).map(Count) | st.text(max_size=3).map(Name)
          | st.decimals(allow_nan=False) | st.dates() | st.datetimes())
values = st.recursive(
    leaves,
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(st.text() | st.integers() | st.binary(), inner, max_size=3)),
    max_leaves=20,
)


def _bytes_for_buffers(value: Any) -> Any:
    """What the fast path promises to deliver: the same value, buffers as bytes."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, list):
        return [_bytes_for_buffers(v) for v in value]
    if isinstance(value, dict):
        return {k: _bytes_for_buffers(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(values, max_size=4), max_size=4))
def test_the_msgpack_path_restores_every_value_it_takes_exactly(rows: list[list[Any]]) -> None:
    packed = pack_rows(rows)
    if packed is None:
        return  # pickle carries it (exact by construction)
    back = unpack_rows(packed)
    expected = _bytes_for_buffers(rows)
    assert types_of(back) == types_of(expected)
    assert repr(back) == repr(expected)  # repr: NaN != NaN, and -0.0 == 0.0 would hide a change
