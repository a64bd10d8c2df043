"""Unit tests for snapgraph.api.pandas_conversion: Table.to_dataframe and Table.from_dataframe."""

from __future__ import annotations

import datetime
import decimal
import sys

import pytest

from snapgraph.api.table import Table
from snapgraph.model.types import DataTypeReference

from .helpers import users_type

# ---------------------------------------------------------------- pandas


def test_to_dataframe_returns_tuple_with_typed_columns(ctx):
    pd = pytest.importorskip("pandas")
    ref = users_type(ctx)
    result = Table([[1, "a"], [2, "b"]], ref.type_id).to_dataframe()
    assert isinstance(result, tuple) and len(result) == 2
    frame, headers = result
    assert isinstance(frame, pd.DataFrame)
    assert headers == {}
    assert list(frame.columns) == ["id", "name"]
    assert str(frame["id"].dtype) == "int64"
    assert frame["name"].dtype == object
    assert frame["name"].tolist() == ["a", "b"]


def test_to_dataframe_untyped_uses_col_names(ctx):
    pytest.importorskip("pandas")
    frame, _ = Table([[1, "a", 1.5]]).to_dataframe()
    assert list(frame.columns) == ["col0", "col1", "col2"]
    assert str(frame["col0"].dtype) == "int64"
    assert frame["col1"].dtype == object
    assert str(frame["col2"].dtype) == "float64"


def test_to_dataframe_dtype_mapping(ctx):
    pd = pytest.importorskip("pandas")
    cols = {
        "b": "com.sap.core.bool", "i8": "com.sap.core.int8", "i32": "com.sap.core.int32",
        "u": "com.sap.core.uint64", "f": "com.sap.core.float32", "d": "com.sap.core.date",
        "ts": "com.sap.core.timestamp", "dec": "com.sap.core.decimal", "s": "com.sap.core.string",
    }
    ref = ctx.create_new_table({k: DataTypeReference("scalar", v) for k, v in cols.items()})
    row = [True, 1, 2, 300, 1.5, datetime.date(2020, 1, 2), datetime.datetime(2020, 1, 2, 3, 4, 5),
           decimal.Decimal("1.25"), "x"]
    frame, _ = Table([row], ref.type_id).to_dataframe()
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes == {
        "b": "bool", "i8": "int64", "i32": "int64", "u": "uint16", "f": "float64",
        "d": "datetime64[ns]", "ts": "datetime64[ns]", "dec": "object", "s": "object",
    }
    assert frame["ts"][0] == pd.Timestamp("2020-01-02 03:04:05")
    assert frame["dec"][0] == decimal.Decimal("1.25")


def test_to_dataframe_nulls_become_pd_na_object(ctx):
    pd = pytest.importorskip("pandas")
    ref = ctx.create_new_table({"x": DataTypeReference("scalar", "com.sap.core.int64")})
    frame, _ = Table([[1], [None]], ref.type_id).to_dataframe()
    assert frame["x"].dtype == object
    assert frame["x"][1] is pd.NA


def test_to_dataframe_empty_typed_table_keeps_columns(ctx):
    pytest.importorskip("pandas")
    ref = users_type(ctx)
    frame, _ = Table([], ref.type_id).to_dataframe()
    assert list(frame.columns) == ["id", "name"]
    assert len(frame) == 0


def test_to_dataframe_ragged_rows_rejected(ctx):
    pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="row 1"):
        Table([[1, 2], [3]]).to_dataframe()


def test_from_dataframe_untyped(ctx):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None]})
    table = Table.from_dataframe(df)
    assert not table.is_typed()
    assert table.body == [[1, "x", 0.5], [2, "y", None]]
    assert type(table[0][0]) is int
    assert all(type(row) is list for row in table)


def test_from_dataframe_with_vtype_id(ctx):
    pd = pytest.importorskip("pandas")
    ref = users_type(ctx)
    table = Table.from_dataframe(pd.DataFrame({"id": [1], "name": ["a"]}), vtype_id=ref.type_id)
    assert table.type_ref == ref
    assert table.body == [[1, "a"]]


def test_from_dataframe_infer_type_uses_dataframe_names(ctx):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": [1, 2], "name": ["a", None], "score": [1.5, 2.5],
                       "ok": [True, False], "when": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    table = Table.from_dataframe(df, infer_type=True)
    vtype = ctx.get_vtype(table.type_ref)
    assert list(vtype.columns) == ["id", "name", "score", "ok", "when"]
    assert [c.type_id for c in vtype.columns.values()] == [
        "com.sap.core.int64", "com.sap.core.string", "com.sap.core.float64",
        "com.sap.core.bool", "com.sap.core.timestamp"]
    assert table[0][4] == datetime.datetime(2020, 1, 1)
    assert type(table[0][4]) is datetime.datetime


def test_from_dataframe_rejects_non_dataframe(ctx):
    pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="DataFrame"):
        Table.from_dataframe([[1]])


def test_pandas_round_trip_typed(ctx):
    pytest.importorskip("pandas")
    original = Table(
        [[1, "a", 1.5, True, datetime.date(2020, 1, 2), datetime.datetime(2021, 3, 4, 5, 6, 7)],
         [2, "b", None, False, datetime.date(2020, 1, 3), datetime.datetime(2021, 3, 4, 5, 6, 8)]],
        infer_type=True, colnames=["id", "name", "score", "ok", "day", "ts"])
    frame, _ = original.to_dataframe()
    assert list(frame.columns) == ["id", "name", "score", "ok", "day", "ts"]
    again = Table.from_dataframe(frame, original.type_ref.type_id)
    assert again == original
    assert type(again[0][4]) is datetime.date


def test_pandas_round_trip_untyped(ctx):
    pytest.importorskip("pandas")
    original = Table([[1, "x", 2.5], [3, "y", 4.0]])
    frame, _ = original.to_dataframe()
    assert Table.from_dataframe(frame) == original


def test_pandas_round_trip_inferred_keeps_names(ctx):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"k": [1, 2], "v": ["a", "b"]})
    frame, _ = Table.from_dataframe(df, infer_type=True).to_dataframe()
    assert list(frame.columns) == ["k", "v"]
    assert frame["k"].tolist() == [1, 2]
    assert frame["v"].tolist() == ["a", "b"]


def test_pandas_missing_gives_clear_import_error(ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"api.Table.to_dataframe needs pandas: pip install pandas"):
        Table([[1]]).to_dataframe()
    with pytest.raises(ImportError, match="pip install pandas"):
        Table.from_dataframe(object())
