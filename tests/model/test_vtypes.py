from __future__ import annotations

from pathlib import Path

import pytest

from snapgraph.model.problems import Problem
from snapgraph.model.types import (
    CORE_SCALAR_TEMPLATES,
    DataTypeReference,
    PortType,
    VTypeNone,
    VTypeScalar,
    VTypeStructure,
    VTypeTable,
)
from snapgraph.model.vtypes import (
    VTypeRegistry,
    load_vtype_files,
    port_type_from_json,
    referenced_vtype_ids,
    vtype_from_schema,
    vtype_id_from_path,
)

from .helpers import write

USERS = {
    "name": "extract.users",
    "description": "users",
    "vflow.type": "table",
    "keys": ["username"],
    "rows": {"components": [
        {"tenant": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"username": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"age": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
    ]},
}


def test_registry_has_every_core_scalar() -> None:
    registry = VTypeRegistry()
    for vtype_id, template in CORE_SCALAR_TEMPLATES.items():
        assert vtype_id in registry
        vtype = registry.get(vtype_id)
        assert isinstance(vtype, VTypeScalar)
        assert vtype.template == template
        assert vtype.name == vtype_id
        assert vtype.scope == "global"
    assert registry.get("com.sap.core.nope") is None
    assert "com.sap.core.nope" not in registry


def test_registry_has_error_structure() -> None:
    registry = VTypeRegistry()
    error = registry.get("com.sap.error")
    assert isinstance(error, VTypeStructure)
    assert list(error.fields) == ["code", "operatorID", "processID", "text", "details"]
    details = registry.get(error.fields["details"].type_id)
    assert isinstance(details, VTypeTable)
    assert list(details.columns) == ["key", "value"]


def test_register_and_copy() -> None:
    registry = VTypeRegistry()
    table = vtype_from_schema(USERS, "global")
    registry.register(table)
    assert registry.get("extract.users") is table
    registry.register(table, "$GRAPH.users")
    assert "$GRAPH.users" in registry
    clone = registry.copy()
    clone.register(VTypeNone(name="x", category="none"))
    assert "x" in clone and "x" not in registry
    assert len(clone) == len(registry) + 1


def test_table_schema() -> None:
    table = vtype_from_schema(USERS, "global")
    assert isinstance(table, VTypeTable)
    assert table.name == "extract.users"
    assert table.description == "users"
    assert list(table.columns) == ["tenant", "username", "age"]  # order kept
    assert table.columns["age"] == DataTypeReference("scalar", "com.sap.core.int64")
    assert table.keys == ["username"]


def test_table_schema_accepts_row_as_well_as_rows() -> None:
    schema = {"name": "t", "vflow.type": "table",
              "row": {"components": [{"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.bool"}}]}}
    table = vtype_from_schema(schema, "dynamic")
    assert isinstance(table, VTypeTable)
    assert table.scope == "dynamic"
    assert table.columns == {"a": DataTypeReference("scalar", "com.sap.core.bool")}
    assert table.keys == []


def test_structure_schema() -> None:
    schema = {"name": "extract.connection_http", "vflow.type": "structure", "components": [
        {"host": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"rows": {"vflow.type": "table", "vtype-ID": "extract.users"}},
    ]}
    structure = vtype_from_schema(schema, "global")
    assert isinstance(structure, VTypeStructure)
    assert structure.fields == {
        "host": DataTypeReference("scalar", "com.sap.core.string"),
        "rows": DataTypeReference("table", "extract.users"),
    }


def test_local_scalar_schema() -> None:
    scalar = vtype_from_schema(
        {"name": "str_10", "vflow.type": "scalar", "template": "string", "value.length": 10}, "local")
    assert isinstance(scalar, VTypeScalar)
    assert (scalar.name, scalar.template, scalar.length, scalar.scope) == ("str_10", "string", 10, "local")
    decimal = vtype_from_schema({"name": "money", "vflow.type": "scalar", "template": "decimal",
                                 "value.precision": 10, "value.scale": 2}, "global")
    assert (decimal.precision, decimal.scale) == (10, 2)


def test_inline_scalar_component_uses_core_template() -> None:
    schema = {"name": "t", "vflow.type": "table", "rows": {"components": [
        {"a": {"vflow.type": "scalar", "template": "float64"}}]}}
    assert vtype_from_schema(schema, "inline").columns["a"] == DataTypeReference(
        "scalar", "com.sap.core.float64")


def test_none_schema() -> None:
    assert isinstance(vtype_from_schema({"name": "n", "vflow.type": "none"}, "global"), VTypeNone)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"vflow.type": "scalar", "template": "string"}, "no 'name'"),
        ({"name": "s", "vflow.type": "scalar"}, "needs a 'template'"),
        ({"name": "s", "vflow.type": "scalar", "template": "strng"}, "unknown scalar template 'strng'"),
        ({"name": "s", "vflow.type": "blob"}, "unknown vflow.type 'blob'"),
        ({"name": "t", "vflow.type": "table"}, "needs 'rows'"),
        ({"name": "t", "vflow.type": "table", "keys": ["x"],
          "rows": {"components": [{"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}}]}},
         "key column(s) 'x' are not columns"),
        ({"name": "t", "vflow.type": "table",
          "rows": {"components": [{"a": {"vflow.type": "structure", "vtype-ID": "s"}}]}},
         "table columns must be scalars"),
        ({"name": "t", "vflow.type": "structure", "components": [{"a": {"vflow.type": "scalar"}}]},
         "component 'a' has no vtype-ID"),
        ({"name": "t", "vflow.type": "structure", "components": [{"a": 1, "b": 2}]},
         "exactly one key"),
        ({"name": "s", "vflow.type": "scalar", "template": "string", "value.length": "ten"},
         "value.length must be an integer"),
    ],
)
def test_bad_schemas(schema: dict, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        vtype_from_schema(schema, "global")
    assert message in str(info.value)


def test_vtype_id_from_path(tmp_path: Path) -> None:
    root = tmp_path / "vtypes"
    assert vtype_id_from_path(root / "tables/extract/users/table.vtype", root) == "extract.users"
    assert vtype_id_from_path(root / "structures/a/b/c/structure.vtype", root) == "a.b.c"
    assert vtype_id_from_path(root / "scalars/str_10/scalar.vtype", root) == "str_10"
    assert vtype_id_from_path(root / "my.orders.vtype", root) == "my.orders"
    assert vtype_id_from_path(root / "orders/table.vtype", root) == "orders"


def test_load_vtype_files_names_and_paths(tmp_path: Path) -> None:
    root = tmp_path / "vtypes"
    write(root, "tables/extract/users/table.vtype", USERS)
    unnamed = {k: v for k, v in USERS.items() if k != "name"}
    write(root, "tables/shop/orders/table.vtype", unnamed)
    write(root, "scalars/str_10/scalar.vtype",
          {"vflow.type": "scalar", "template": "string", "value.length": 10})
    registry = VTypeRegistry()
    problems: list[Problem] = []
    assert load_vtype_files(root, registry, problems) == 3
    assert problems == []
    assert isinstance(registry.get("extract.users"), VTypeTable)
    assert registry.get("shop.orders").name == "shop.orders"
    assert registry.get("str_10").length == 10
    assert registry.source_of("str_10").endswith("scalar.vtype")
    assert "$GRAPH.str_10" not in registry


def test_local_vtypes_also_registered_with_graph_prefix(tmp_path: Path) -> None:
    root = tmp_path / "vtypes"
    write(root, "scalars/str_10/scalar.vtype",
          {"name": "str_10", "vflow.type": "scalar", "template": "string", "value.length": 10})
    registry = VTypeRegistry()
    problems: list[Problem] = []
    load_vtype_files(root, registry, problems, scope="local")
    assert problems == []
    assert registry.get("$GRAPH.str_10") is registry.get("str_10")
    assert registry.get("str_10").scope == "local"


def test_load_vtype_files_reports_every_bad_file(tmp_path: Path) -> None:
    root = tmp_path / "vtypes"
    bad_json = write(root, "tables/a/table.vtype", '{"name": "a",\n "vflow.type": }')
    bad_type = write(root, "tables/b/table.vtype", {"name": "b", "vflow.type": "tabel"})
    write(root, "tables/c/table.vtype", USERS)
    core = write(root, "core.vtype", {"name": "com.sap.core.string", "vflow.type": "scalar",
                                       "template": "int64"})
    registry = VTypeRegistry()
    problems: list[Problem] = []
    assert load_vtype_files(root, registry, problems) == 1
    wheres = [p.where for p in problems]
    assert f"{bad_json}:2:16" in wheres
    assert str(bad_type) in wheres
    assert str(core) in wheres
    text = "\n".join(map(str, problems))
    assert "invalid JSON in vtype file" in text
    assert "unknown vflow.type 'tabel'" in text
    assert "built-in type and cannot be redefined" in text
    assert registry.get("com.sap.core.string").template == "string"


def test_conflicting_definitions(tmp_path: Path) -> None:
    registry = VTypeRegistry()
    problems: list[Problem] = []
    write(tmp_path / "one", "users.vtype", USERS)
    load_vtype_files(tmp_path / "one", registry, problems)
    write(tmp_path / "two", "same.vtype", USERS)  # identical: fine
    load_vtype_files(tmp_path / "two", registry, problems)
    assert problems == []
    other = dict(USERS, keys=[])
    other_file = write(tmp_path / "three", "users.vtype", other)
    load_vtype_files(tmp_path / "three", registry, problems)
    assert len(problems) == 1
    assert problems[0].where == str(other_file)
    assert "already defined differently by" in problems[0].message
    assert registry.get("extract.users").keys == ["username"]  # first wins


def test_missing_folder_is_not_an_error(tmp_path: Path) -> None:
    problems: list[Problem] = []
    assert load_vtype_files(tmp_path / "nope", VTypeRegistry(), problems) == 0
    assert problems == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "p", "type": "table", "vtype-ID": "x.y"}, PortType("table", "x.y")),
        ({"name": "p", "type": "table"}, PortType("table", "*")),
        ({"name": "p", "type": "structure", "vtype-ID": "*"}, PortType("structure", "*")),
        ({"name": "p", "type": "scalar", "vtype-ID": "com.sap.core.string"},
         PortType("scalar", "com.sap.core.string")),
        ({"name": "p", "type": "none"}, PortType("none")),
        ({"name": "p", "type": "*"}, PortType("any")),
        ({"name": "p", "type": "any"}, PortType("any")),
        ({"name": "p"}, PortType("any")),
    ],
)
def test_port_type_from_json(spec: dict, expected: PortType) -> None:
    assert port_type_from_json(spec) == expected


def test_port_type_from_json_errors() -> None:
    with pytest.raises(ValueError, match="unknown port type 'message'"):
        port_type_from_json({"name": "p", "type": "message"})
    with pytest.raises(ValueError, match="no 'type'"):
        port_type_from_json({"name": "p", "vtype-ID": "x"})


def test_referenced_vtype_ids_finds_dangling_references() -> None:
    registry = VTypeRegistry()
    registry.register(vtype_from_schema({"name": "t", "vflow.type": "table", "rows": {"components": [
        {"a": {"vflow.type": "scalar", "vtype-ID": "$GRAPH.str_10"}},
        {"b": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}}]}}, "global"))
    seen, missing = referenced_vtype_ids(registry, "t")
    assert "t" in seen and "com.sap.core.int64" in seen
    assert missing == [("t", "a", "$GRAPH.str_10")]
