"""Unit tests for the Gen2 data model: Table and Record (snapgraph.api.table), TypeContext
(snapgraph.api.type_context), inference, pandas conversion, conforms and describe, and the
snapgraph.api.data import path that re-exports them."""

from __future__ import annotations

import datetime
import decimal
import pickle
import sys
import time

import pytest

from snapgraph.api import data as data_mod
from snapgraph.api.conformance import conforms
from snapgraph.api.inference import scalar_type_id_for
from snapgraph.api.printing import describe
from snapgraph.api.table import Record, Table, table_columns
from snapgraph.api.type_context import TypeContext, get_default_type_context, set_default_type_context
from snapgraph.model.types import (
    CORE_SCALAR_TEMPLATES,
    DataTypeReference,
    PortType,
    VType,
    VTypeScalar,
    VTypeStructure,
    VTypeTable,
)


class StandInRegistry:
    """The VTypeRegistry interface (get/register/__contains__) over a dict."""

    def __init__(self) -> None:
        self.types: dict[str, VType] = {}

    def get(self, vtype_id: str) -> VType | None:
        return self.types.get(vtype_id)

    def register(self, vtype: VType) -> None:
        self.types[vtype.name] = vtype

    def __contains__(self, vtype_id: object) -> bool:
        return vtype_id in self.types


def stand_in_converter(schema: dict, scope: str) -> VType:
    """A minimal vtype_from_schema: enough to check TypeContext's wiring."""
    kind = schema["vflow.type"]
    name = schema["name"]
    if kind == "table":
        columns = {}
        for component in schema["rows"]["components"]:
            (col, spec), = component.items()
            columns[col] = DataTypeReference("scalar", spec["vtype-ID"])
        return VTypeTable(name=name, category="table", scope=scope, columns=columns,
                          keys=list(schema.get("keys", [])))
    if kind == "scalar":
        return VTypeScalar(name=name, category="scalar", scope=scope, template=schema["template"],
                           length=schema.get("value.length"))
    raise ValueError(kind)


@pytest.fixture
def registry() -> StandInRegistry:
    return StandInRegistry()


@pytest.fixture
def ctx(registry: StandInRegistry):
    context = TypeContext(registry, stand_in_converter)
    previous = set_default_type_context(context)
    yield context
    set_default_type_context(previous)


def users_type(ctx: TypeContext, name: str = "extract.users") -> DataTypeReference:
    ctx.registry.register(VTypeTable(
        name=name, category="table", columns={
            "id": DataTypeReference("scalar", "com.sap.core.int64"),
            "name": DataTypeReference("scalar", "com.sap.core.string"),
        }, keys=["id"]))
    return DataTypeReference("table", name)


# ---------------------------------------------------------------- Table basics


def test_table_keeps_body_without_copy():
    rows = [[1, "a"], [2, "b"]]
    table = Table(rows)
    assert table.body is rows
    rows[0].append("x")
    assert table[0] == [1, "a", "x"]


def test_table_untyped_by_default():
    table = Table([[1]])
    assert not table.is_typed()
    assert table.get_type_reference() is None
    assert table.type_ref is None


def test_table_with_type_id_is_typed():
    table = Table([[1, "a"]], "extract.users")
    assert table.is_typed()
    assert table.type_ref == DataTypeReference("table", "extract.users")
    assert table.get_type_reference() is table.type_ref
    assert table.type_ref.type_ == "table"
    assert table.type_ref.type_id == "extract.users"


def test_table_keyword_type_id():
    assert Table(data=[[1]], type_id="$GRAPH.t").type_ref.type_id == "$GRAPH.t"


def test_table_accepts_type_reference_as_type_id():
    table = Table([[1]], DataTypeReference("table", "t.x"))
    assert table.type_ref == DataTypeReference("table", "t.x")
    with pytest.raises(TypeError, match="type_id"):
        Table([[1]], 5)


def test_table_none_data_is_empty():
    assert len(Table(None)) == 0
    assert Table().body == []


def test_table_from_iterable_of_tuples_becomes_row_lists():
    table = Table(((1, 2), (3, 4)))
    assert table.body == [[1, 2], [3, 4]]
    assert all(type(row) is list for row in table)


def test_table_from_table_shares_body_and_type():
    source = Table([[1]], "t.x")
    copy = Table(source)
    assert copy.body is source.body
    assert copy.type_ref == source.type_ref


def test_table_rejects_string_data():
    with pytest.raises(TypeError, match="list of rows"):
        Table("abc")


def test_table_construction_is_constant_time():
    small, big = [[1, 2]] * 10, [[1, 2]] * 1_000_000
    start = time.perf_counter()
    for _ in range(2000):
        Table(big, "t.x")
    big_time = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(2000):
        Table(small, "t.x")
    small_time = time.perf_counter() - start
    assert big_time < small_time * 5 + 0.05


def test_table_len_iter_index():
    rows = [[1, "a"], [2, "b"], [3, "c"]]
    table = Table(rows)
    assert len(table) == 3
    assert list(table) == rows
    assert [r for r in table][1] is rows[1]
    assert table[0] is rows[0]
    assert table[-1] == [3, "c"]
    with pytest.raises(IndexError):
        table[3]


def test_table_slices_are_tables_with_same_type():
    table = Table([[i] for i in range(250)], "t.x")
    head, tail = table[:100], table[100:]
    assert isinstance(head, Table) and isinstance(tail, Table)
    assert len(head) == 100 and len(tail) == 150
    assert head.type_ref == table.type_ref
    assert table[1:3].body == [[1], [2]]
    assert head[0] is table[0]  # rows are shared, not copied


def test_slice_of_untyped_table_is_untyped():
    assert Table([[1], [2]])[1:].type_ref is None


def test_table_contains_and_reversed():
    table = Table([[1], [2]])
    assert [2] in table
    assert [3] not in table
    assert list(reversed(table)) == [[2], [1]]


def test_table_equality_uses_body_and_type():
    assert Table([[1]], "a") == Table([[1]], "a")
    assert Table([[1]], "a") != Table([[1]], "b")
    assert Table([[1]]) != Table([[1]], "a")
    assert Table([[1]]) != Table([[2]])
    assert Table([[1]]) != [[1]]


def test_table_is_unhashable():
    with pytest.raises(TypeError):
        hash(Table([]))


def test_table_repr_readable_and_truncated():
    assert repr(Table([[1, "a"]], "t.x")) == "Table([[1, 'a']], type_id='t.x')"
    assert repr(Table([[1]])) == "Table([[1]])"
    big = repr(Table([[i] for i in range(100)]))
    assert "90 more rows" in big
    assert "[99]" not in big


def test_table_pickles():
    table = Table([[1, "a"]], "t.x")
    again = pickle.loads(pickle.dumps(table))
    assert again == table
    assert again.type_ref == DataTypeReference("table", "t.x")


def test_table_rows_feed_pandas_dataframe_constructor():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(Table([[1, "a"], [2, "b"]]), columns=["id", "name"])
    assert frame["id"].tolist() == [1, 2]
    assert frame["name"].tolist() == ["a", "b"]


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


# ---------------------------------------------------------------- TypeContext


def test_create_new_table(ctx):
    ref = ctx.create_new_table(
        {"a": DataTypeReference("scalar", "com.sap.core.int64"),
         "b": DataTypeReference("scalar", "com.sap.core.string")},
        keys=["a"],
    )
    assert ref.type_ == "table"
    assert ref.type_id.startswith("$DYNAMIC.table_")
    vtype = ctx.get_vtype(ref)
    assert vtype.name == ref.type_id
    assert vtype.scope == "dynamic"
    assert vtype.keys == ["a"]
    assert list(vtype.columns) == ["a", "b"]


def test_create_new_table_skips_taken_ids(ctx, registry):
    registry.register(VTypeTable(name="$DYNAMIC.table_1", category="table"))
    ref = ctx.create_new_table({"a": DataTypeReference("scalar", "com.sap.core.int64")})
    assert ref.type_id != "$DYNAMIC.table_1"


def test_create_new_table_validates(ctx):
    with pytest.raises(ValueError, match="key 'z'"):
        ctx.create_new_table({"a": DataTypeReference("scalar", "com.sap.core.int64")}, keys=["z"])
    with pytest.raises(TypeError, match="DataTypeReference"):
        ctx.create_new_table({"a": "com.sap.core.int64"})
    with pytest.raises(ValueError, match="scalars"):
        ctx.create_new_table({"a": DataTypeReference("table", "t.x")})


def test_infer_schema_from_row(ctx):
    schema = ctx.infer_schema_from_row([1, "x", 2.0], colnames=["id"])
    assert schema["vflow.type"] == "table"
    assert schema["row"] is schema["rows"]
    assert schema["row"]["components"] == [
        {"id": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
        {"col1": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"col2": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.float64"}},
    ]


def test_register_schema_returns_name_and_registers(ctx):
    schema = ctx.infer_schema_from_row([1, "x"], ["id", "name"])
    schema["name"] = "my_table"
    assert ctx.register_schema(schema, "dynamic") == "my_table"
    vtype = ctx.get_vtype("my_table")
    assert vtype.scope == "dynamic"
    assert list(vtype.columns) == ["id", "name"]


def test_register_schema_accepts_row_spelling(ctx):
    schema = {"name": "t_row", "vflow.type": "table",
              "row": {"components": [{"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}}]}}
    ctx.register_schema(schema, "inline")
    assert list(ctx.get_vtype("t_row").columns) == ["a"]
    assert "rows" not in schema  # the caller's dict is not changed


def test_register_schema_local_scalar(ctx):
    name = ctx.register_schema(
        {"name": "str_10", "vflow.type": "scalar", "template": "string", "value.length": 10}, "local")
    vtype = ctx.get_vtype(name)
    assert isinstance(vtype, VTypeScalar)
    assert vtype.length == 10 and vtype.scope == "local"


@pytest.mark.parametrize("schema", [{"vflow.type": "table"}, {"name": "x"}, {}])
def test_register_schema_needs_name_and_kind(ctx, schema):
    with pytest.raises(ValueError, match="name' and 'vflow.type"):
        ctx.register_schema(schema, "dynamic")


def test_register_schema_rejects_bad_scope(ctx):
    with pytest.raises(ValueError, match="scope"):
        ctx.register_schema({"name": "x", "vflow.type": "table"}, "global")


def test_register_schema_uses_real_converter_by_default(registry):
    vtypes = pytest.importorskip("snapgraph.model.vtypes")
    context = TypeContext(vtypes.VTypeRegistry())
    schema = {"name": "real_t", "vflow.type": "table",
              "rows": {"components": [{"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}}]}}
    name = context.register_schema(schema, "dynamic")
    assert isinstance(context.get_vtype(name), VTypeTable)


@pytest.mark.parametrize("type_id, template", sorted(CORE_SCALAR_TEMPLATES.items()))
def test_get_vtype_core_scalars_always_resolve(ctx, type_id, template):
    vtype = ctx.get_vtype(DataTypeReference("scalar", type_id))
    assert isinstance(vtype, VTypeScalar)
    assert vtype.template == template
    assert vtype.name == type_id
    assert vtype.scope == "global"
    assert ctx.get_vtype(type_id).template == template


def test_get_vtype_prefers_registry(ctx, registry):
    registry.register(VTypeStructure(name="com.sap.error", category="structure"))
    assert isinstance(ctx.get_vtype("com.sap.error"), VTypeStructure)


def test_get_vtype_unknown_raises_keyerror_naming_id(ctx):
    with pytest.raises(KeyError, match="no.such.type"):
        ctx.get_vtype("no.such.type")
    with pytest.raises(KeyError):
        ctx.get_vtype("*")
    with pytest.raises(TypeError):
        ctx.get_vtype(42)


def test_dynamic_types_with_real_registry():
    vtypes = pytest.importorskip("snapgraph.model.vtypes")
    context = TypeContext(vtypes.VTypeRegistry())
    previous = set_default_type_context(context)
    try:
        table = Table([[1, "a"]], infer_type=True, colnames=["id", "name"])
        assert table.type_ref.type_id in context.registry
        assert list(context.get_vtype(table.type_ref).columns) == ["id", "name"]
        assert context.get_vtype("com.sap.core.int16").template == "int16"
    finally:
        set_default_type_context(previous)


def test_default_context_is_created_lazily():
    pytest.importorskip("snapgraph.model.vtypes")
    previous = set_default_type_context(None)
    try:
        context = get_default_type_context()
        assert isinstance(context, TypeContext)
        assert get_default_type_context() is context
        assert context.get_vtype("com.sap.core.string").template == "string"
    finally:
        set_default_type_context(previous)


def test_default_context_can_be_swapped(registry):
    mine = TypeContext(registry)
    previous = set_default_type_context(mine)
    try:
        assert get_default_type_context() is mine
    finally:
        set_default_type_context(previous)


# ---------------------------------------------------------------- table_columns


def test_table_columns_typed_and_untyped(ctx):
    ref = users_type(ctx)
    assert table_columns(Table([[1, "a"]], ref.type_id), ctx.registry) == ["id", "name"]
    assert table_columns(Table([[1, "a"]], ref.type_id), ctx) == ["id", "name"]
    assert table_columns(Table([[1, "a", 3]]), ctx.registry) == ["col0", "col1", "col2"]
    assert table_columns(Table([]), ctx.registry) == []
    assert table_columns(Table([[1]], "unknown.t"), ctx.registry) == ["col0"]


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


# ---------------------------------------------------------------- Record


def test_record_basics():
    record = Record([1, "a", True])
    assert len(record) == 3
    assert list(record) == [1, "a", True]
    assert record[1] == "a"
    assert record[-1] is True
    assert "a" in record
    assert record == Record([1, "a", True])
    assert record != Record([1, "a", False])
    assert record == [1, "a", True]
    assert [1, "a", True] == record
    assert record != 5
    assert repr(record) == "Record([1, 'a', True])"


def test_record_slice_and_values():
    record = Record((1, 2, 3))
    assert record.values == [1, 2, 3]
    assert record[1:] == Record([2, 3])
    assert isinstance(record[1:], Record)


def test_record_holds_tables_and_pickles():
    record = Record([0, "op", Table([["k", "v"]])])
    again = pickle.loads(pickle.dumps(record))
    assert again == record
    assert isinstance(again[2], Table)


def test_record_rejects_string():
    with pytest.raises(TypeError):
        Record("abc")


def test_record_unhashable():
    with pytest.raises(TypeError):
        hash(Record([1]))


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


# ---------------------------------------------------------------- describe


def test_describe_table_rows_and_limit():
    table = Table([[1, "a"], [2, "b"], [3, "c"]], "t.x")
    text = describe(table)
    assert text.splitlines() == ["Table t.x (3 rows)", "[1, 'a']", "[2, 'b']", "[3, 'c']"]
    limited = describe(table, max_rows=1).splitlines()
    assert limited == ["Table t.x (3 rows)", "[1, 'a']", "... (2 more rows)"]
    assert describe(Table([[1]])).splitlines()[0] == "Table (1 row)"


def test_describe_bytes_truncated():
    assert describe(b"abc") == "b'abc'"
    text = describe(b"x" * 100)
    assert text.startswith("b'" + "x" * 64 + "'")
    assert "x" * 65 not in text
    assert "100 bytes" in text
    assert describe(bytearray(b"hi")) == "b'hi'"


def test_describe_scalars_and_records():
    assert describe("hello") == "hello"
    assert describe(None) == "None"
    assert describe(5) == "5"
    assert describe(Record([1, b"x" * 70])).startswith("Record([1, b'xxx")
    assert "70 bytes" in describe(Record([1, b"x" * 70]))
    assert describe([1, "a"]) == "[1, 'a']"
    assert describe({"k": b"v"}) == "{'k': b'v'}"
    nested = describe(Record([0, Table([["k", "v"]])]))
    assert "Table" in nested and "['k', 'v']" in nested


def test_module_exports_data_type_reference():
    assert data_mod.DataTypeReference is DataTypeReference


def test_the_documented_data_import_path_re_exports_the_same_objects():
    # docs/testing.md imports from snapgraph.api.data, and states pickled before the split name it
    assert (data_mod.Table, data_mod.Record, data_mod.TypeContext) == (Table, Record, TypeContext)
    assert (data_mod.conforms, data_mod.describe, data_mod.table_columns) == (conforms, describe, table_columns)
    assert data_mod.get_default_type_context is get_default_type_context
    assert data_mod.set_default_type_context is set_default_type_context
    assert data_mod.scalar_type_id_for is scalar_type_id_for
    assert all(hasattr(data_mod, name) for name in data_mod.__all__)
    # pickle.dumps(Table([[1]]), protocol=4) and pickle.dumps(Record([1, "a"]), protocol=4) made when
    # both classes were defined in snapgraph.api.data
    old_table = (b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00\x8c\x12snapgraph.api.data\x94\x8c\x05Table"
                 b"\x94\x93\x94)\x81\x94]\x94]\x94K\x01aaN\x86\x94b.")
    old_record = (b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00\x8c\x12snapgraph.api.data\x94\x8c\x06Record"
                  b"\x94\x93\x94)\x81\x94]\x94(K\x01\x8c\x01a\x94eb.")
    assert pickle.loads(old_table) == Table([[1]])
    assert pickle.loads(old_record) == Record([1, "a"])


# -- dynamic type ids, run-time types and what another group needs ----------------------


def test_dynamic_ids_carry_the_origin_of_their_context(registry):
    first, second = TypeContext(registry, stand_in_converter), TypeContext(registry, stand_in_converter)
    int64 = {"a": DataTypeReference("scalar", "com.sap.core.int64")}
    assert first.origin != second.origin and len(first.origin) == 12
    assert first.create_new_table(int64).type_id == f"$DYNAMIC.table_{first.origin}_1"
    assert first.create_new_table(int64).type_id == f"$DYNAMIC.table_{first.origin}_2"
    # A context made later (another group, a recovery attempt) starts its count again, on another origin.
    assert second.create_new_table(int64).type_id == f"$DYNAMIC.table_{second.origin}_1"


def test_run_time_types_are_tracked_with_the_types_they_refer_to(ctx, registry):
    registry.register(VTypeTable(name="static.rows", category="table"))
    table = ctx.create_new_table({"a": DataTypeReference("scalar", "com.sap.core.int64")})
    schema = {"name": "my.dyn", "vflow.type": "table",
              "rows": {"components": [{"b": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}]}}
    ctx.register_schema(schema, "dynamic")
    holder = VTypeStructure(name="my.holder", category="structure", scope="dynamic",
                            fields={"t": table, "fixed": DataTypeReference("table", "static.rows")})
    ctx.register_received([holder])
    assert ctx.run_time_type_ids == {table.type_id, "my.dyn", "my.holder"}
    names = sorted(vtype.name for vtype in ctx.run_time_definitions(["my.holder", "static.rows", "com.sap.core.int64"]))
    assert names == sorted(["my.holder", table.type_id])  # what every group knows is left out
    assert ctx.run_time_definitions(["static.rows"]) == []
    assert ctx.get_vtype("my.holder") is holder


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


def test_describe_leaves_out_generated_dynamic_ids(ctx):
    inferred = Table([[1]], infer_type=True)
    assert describe(inferred) == "Table (1 row)\n[1]"
    assert describe(Table([[1]], "demo.rows")) == "Table demo.rows (1 row)\n[1]"
    assert describe(Record([inferred])) == "Record([Table(1 rows: [1])])"
