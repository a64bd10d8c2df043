"""Unit tests for snapgraph.api.inference: scalar type ids for values and inferred dynamic table types."""

from __future__ import annotations

import datetime
import decimal

import pytest

from snapgraph.api.inference import scalar_type_id_for
from snapgraph.api.table import Table
from snapgraph.model.types import DataTypeReference, VTypeTable

# ---------------------------------------------------------------- inference


@pytest.mark.parametrize(
    ("value", "type_id"),
    [
        (1, "com.sap.core.int64"),
        (1.5, "com.sap.core.float64"),
        ("x", "com.sap.core.string"),
        (True, "com.sap.core.bool"),
        (b"x", "com.sap.core.binary"),
        (bytearray(b"x"), "com.sap.core.binary"),
        (datetime.date(2020, 1, 1), "com.sap.core.date"),
        (datetime.time(1, 2), "com.sap.core.time"),
        (datetime.datetime(2020, 1, 1, 1), "com.sap.core.timestamp"),
        (decimal.Decimal("1.5"), "com.sap.core.decimal"),
        (None, "com.sap.core.string"),
    ],
)
def test_scalar_type_id_for(value, type_id):
    assert scalar_type_id_for(value) == type_id


def test_scalar_type_id_for_rejects_containers():
    with pytest.raises(TypeError, match="dict"):
        scalar_type_id_for({"a": 1})


def test_infer_type_on_construction_registers_dynamic_table(ctx):
    table = Table([[1, "a", 2.5]], infer_type=True, colnames=["id", "name"])
    assert table.is_typed()
    ref = table.get_type_reference()
    assert ref.type_ == "table"
    assert ref.type_id.startswith("$DYNAMIC.")
    vtype = ctx.get_vtype(ref)
    assert isinstance(vtype, VTypeTable)
    assert vtype.scope == "dynamic"
    assert list(vtype.columns) == ["id", "name", "col2"]
    assert vtype.columns["id"] == DataTypeReference("scalar", "com.sap.core.int64")
    assert vtype.columns["name"] == DataTypeReference("scalar", "com.sap.core.string")
    assert vtype.columns["col2"] == DataTypeReference("scalar", "com.sap.core.float64")


def test_infer_dynamic_type_makes_table_typed(ctx):
    table = Table([[True, None, b"z", datetime.date(2020, 1, 1)]])
    ref = table.infer_dynamic_type()
    assert table.type_ref == ref
    assert table.is_typed()
    vtype = ctx.get_vtype(ref.type_id)
    assert list(vtype.columns) == ["col0", "col1", "col2", "col3"]
    assert [c.type_id for c in vtype.columns.values()] == [
        "com.sap.core.bool", "com.sap.core.string", "com.sap.core.binary", "com.sap.core.date"]


def test_infer_dynamic_type_gives_unique_ids(ctx):
    first = Table([[1]], infer_type=True).type_ref.type_id
    second = Table([[1]], infer_type=True).type_ref.type_id
    assert first != second
    assert first in ctx.registry and second in ctx.registry


def test_infer_on_empty_table_needs_colnames(ctx):
    with pytest.raises(ValueError, match="empty"):
        Table([], infer_type=True)
    table = Table([], infer_type=True, colnames=["a", "b"])
    assert list(ctx.get_vtype(table.type_ref).columns) == ["a", "b"]


def test_infer_duplicate_colnames_rejected(ctx):
    with pytest.raises(ValueError, match="duplicate"):
        Table([[1, 2]], infer_type=True, colnames=["a", "a"])


def test_type_id_wins_over_infer_type(ctx):
    table = Table([[1]], "t.x", infer_type=True)
    assert table.type_ref.type_id == "t.x"
    assert ctx.registry.types == {}
