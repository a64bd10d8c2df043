"""Helpers for the tests of snapgraph.api: a stand-in vtype registry and converter, a table type."""

from __future__ import annotations

from snapgraph.api.type_context import TypeContext
from snapgraph.model.types import DataTypeReference, VType, VTypeScalar, VTypeTable


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


def users_type(ctx: TypeContext, name: str = "extract.users") -> DataTypeReference:
    ctx.registry.register(VTypeTable(
        name=name, category="table", columns={
            "id": DataTypeReference("scalar", "com.sap.core.int64"),
            "name": DataTypeReference("scalar", "com.sap.core.string"),
        }, keys=["id"]))
    return DataTypeReference("table", name)
