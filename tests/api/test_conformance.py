"""Unit tests for snapgraph.api.conformance: conforms, a value checked against a port type."""

from __future__ import annotations

import datetime
import decimal

import pytest

from snapgraph.api.conformance import conforms
from snapgraph.api.table import Record, Table
from snapgraph.model.types import DataTypeReference, PortType, VTypeScalar, VTypeTable

# ---------------------------------------------------------------- conforms


def scalar(type_id: str) -> PortType:
    return PortType("scalar", type_id)


def test_conforms_any_accepts_everything():
    any_port = PortType("any")
    for value in (None, 1, "x", Table([]), Record([]), object()):
        assert conforms(value, any_port) is None


def test_conforms_none_port():
    assert conforms(None, PortType("none")) is None
    message = conforms(1, PortType("none"))
    assert message is not None and "None" in message and "int" in message


def test_conforms_table_port():
    port = PortType("table", "*")
    assert conforms(Table([[1]]), port) is None
    assert conforms([[1, 2], [3, 4]], port) is None
    assert conforms([], port) is None
    assert "row 1" in conforms([[1], 2], port)
    assert "api.Table" in conforms("x", port)
    assert "dict" in conforms({"a": 1}, port)


def test_conforms_fixed_table_type():
    port = PortType("table", "extract.users")
    assert conforms(Table([[1]], "extract.users"), port) is None
    assert conforms(Table([[1]]), port) is None
    message = conforms(Table([[1]], "other.t"), port)
    assert "extract.users" in message and "other.t" in message


def test_conforms_structure_port():
    port = PortType("structure", "com.sap.error")
    for value in (Record([1]), [1], (1,)):
        assert conforms(value, port) is None
    assert "api.Record" in conforms(1, port)
    assert "Table" in conforms(Table([]), port)


def test_conforms_string_message_names_expected_type():
    assert conforms("x", scalar("com.sap.core.string")) is None
    assert conforms(5, scalar("com.sap.core.string")) == \
        "expected a str for scalar:com.sap.core.string, got int"


@pytest.mark.parametrize(
    ("type_id", "good", "bad"),
    [
        ("com.sap.core.bool", [True, False], [1, "true", None]),
        ("com.sap.core.int64", [0, -5, 2**62], [True, 1.0, "1", 2**63]),
        ("com.sap.core.int8", [127, -128], [128, False]),
        ("com.sap.core.int16", [32767], [32768]),
        ("com.sap.core.int32", [2**31 - 1], [2**31]),
        ("com.sap.core.uint8", [0, 255], [-1, 256]),
        ("com.sap.core.byte", [7], [256, b"x"]),
        ("com.sap.core.uint64", [2**64 - 1], [-1]),
        ("com.sap.core.float64", [1.5, 2], [True, "1.5"]),
        ("com.sap.core.float32", [1.5], [None]),
        ("com.sap.core.binary", [b"x", bytearray(b"y"), memoryview(b"z")], ["x", 1]),
        ("com.sap.core.geometry", [b"x"], ["x"]),
        ("com.sap.core.date", [datetime.date(2020, 1, 1), "2020-01-01"], [1]),
        ("com.sap.core.time", [datetime.time(1), "01:00:00"], [datetime.date(2020, 1, 1)]),
        ("com.sap.core.timestamp", [datetime.datetime(2020, 1, 1), "2020-01-01T00:00:00"],
         [datetime.date(2020, 1, 1), 1]),
        ("com.sap.core.decimal", [decimal.Decimal("1.5"), "1.5", 2], [b"1", True]),
    ],
)
def test_conforms_scalar_templates(type_id, good, bad):
    port = scalar(type_id)
    for value in good:
        assert conforms(value, port) is None, (type_id, value)
    for value in bad:
        message = conforms(value, port)
        assert message is not None, (type_id, value)
        assert f"scalar:{type_id}" in message


def test_conforms_scalar_rejects_containers():
    for value in (Table([]), Record([]), [1], {"a": 1}, None):
        assert conforms(value, scalar("com.sap.core.string")) is not None
        assert conforms(value, scalar("*")) is not None


def test_conforms_dynamic_scalar_accepts_any_scalar():
    port = scalar("*")
    for value in (1, 1.5, "x", True, b"x", datetime.date(2020, 1, 1), decimal.Decimal(1)):
        assert conforms(value, port) is None
    assert "scalar" in conforms(object(), port)


def test_conforms_local_scalar_uses_type_context(ctx, registry):
    registry.register(VTypeScalar(name="$GRAPH.str_10", category="scalar", template="string"))
    port = scalar("$GRAPH.str_10")
    assert conforms("x", port, ctx) is None
    assert "expected a str" in conforms(5, port, ctx)
    assert conforms(5, port) is None  # without a context any scalar will do
    assert conforms(5, scalar("$GRAPH.unknown"), ctx) is None


def test_a_typed_port_checks_the_first_row_against_its_columns(ctx, registry):
    registry.register(VTypeTable(name="demo.rows", category="table", columns={
        "id": DataTypeReference("scalar", "com.sap.core.int64"),
        "name": DataTypeReference("scalar", "com.sap.core.string")}))
    port = PortType("table", "demo.rows")
    assert conforms(Table([[1, "a"], ["unchecked"]]), port, ctx) is None  # only the first row is checked
    assert conforms([[None, None]], port, ctx) is None  # nulls fit any column
    assert conforms(Table([]), port, ctx) is None
    assert conforms([[1]], port, ctx) == "row 0 has 1 value but demo.rows has 2 columns (id, name)"
    assert conforms(Table([[1, 2]], "demo.rows"), port, ctx) == (
        "expected a str for column 'name' (com.sap.core.string) of demo.rows, row 0, got int")
    # A typed table on a dynamic port is checked against its own type; without a context nothing is.
    assert conforms(Table([["x", "y"]], "demo.rows"), PortType("table", "*"), ctx).startswith("expected an int")
    assert conforms([[1]], port) is None
    assert conforms([[1]], PortType("table", "unknown.rows"), ctx) is None
