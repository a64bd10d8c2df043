"""Unit tests for snapgraph.api.type_context: TypeContext and the process-wide default context."""

from __future__ import annotations

import pytest

from snapgraph.api.table import Table
from snapgraph.api.type_context import TypeContext, get_default_type_context, set_default_type_context
from snapgraph.model.types import CORE_SCALAR_TEMPLATES, DataTypeReference, VTypeScalar, VTypeStructure, VTypeTable

from .helpers import stand_in_converter

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
