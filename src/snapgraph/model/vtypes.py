"""The vtype registry: every named data type a graph's ports and tables can refer to.

A graph sees the core scalars (``com.sap.core.*``), the ``com.sap.error``
structure used by error ports, the ``*.vtype`` files beside the graph (graph-local,
also reachable as ``$GRAPH.<name>``) and the ``*.vtype`` files under every
``--operators`` folder. DI stores each vtype as a small JSON document; this
module turns those documents into the VType dataclasses of
:mod:`snapgraph.model.types`, which is what ``api.type_context.get_vtype``
returns at run time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from snapgraph.model.problems import Problem
from snapgraph.model.types import (
    ANY,
    CATEGORIES,
    CORE_SCALAR_TEMPLATES,
    DYNAMIC,
    NONE,
    SCALAR,
    STRUCTURE,
    TABLE,
    DataTypeReference,
    PortType,
    VType,
    VTypeNone,
    VTypeScalar,
    VTypeStructure,
    VTypeTable,
)

# The prefix DI uses for graph-local types (``$GRAPH.str_10``).
GRAPH_PREFIX = "$GRAPH."

# The body type of error ports (``propagate to error port``). The id of the
# ``details`` table is not documented; snapgraph calls it com.sap.error.details.
ERROR_STRUCTURE_ID = "com.sap.error"
ERROR_DETAILS_ID = "com.sap.error.details"

_KIND_FOLDERS = {"tables": TABLE, "structures": STRUCTURE, "scalars": SCALAR}
_KIND_FILES = {"table.vtype", "structure.vtype", "scalar.vtype"}


def _builtin_vtypes() -> list[VType]:
    """The vtypes every graph can use without declaring them."""
    builtins: list[VType] = [
        VTypeScalar(name=vid, category=SCALAR, scope="global", template=template)
        for vid, template in CORE_SCALAR_TEMPLATES.items()
    ]
    string = DataTypeReference(SCALAR, "com.sap.core.string")
    builtins.append(
        VTypeTable(
            name=ERROR_DETAILS_ID,
            category=TABLE,
            scope="global",
            description="key/value details of an error message",
            columns={"key": string, "value": string},
        )
    )
    builtins.append(
        VTypeStructure(
            name=ERROR_STRUCTURE_ID,
            category=STRUCTURE,
            scope="global",
            description="the message an operator sends to its error port",
            fields={
                "code": DataTypeReference(SCALAR, "com.sap.core.int32"),
                "operatorID": string,
                "processID": string,
                "text": string,
                "details": DataTypeReference(TABLE, ERROR_DETAILS_ID),
            },
        )
    )
    return builtins


class VTypeRegistry:
    """Named vtypes by id, pre-populated with the core scalars and ``com.sap.error``.

    Ids are the strings ports use as ``vtype-ID`` (``com.sap.core.string``,
    ``demo.users``, ``$GRAPH.str_10``). The registry also remembers which file
    defined each type so conflicting definitions can be reported.
    """

    def __init__(self) -> None:
        self._types: dict[str, VType] = {}
        self._sources: dict[str, str] = {}
        for vtype in _builtin_vtypes():
            self.register(vtype, source="<built-in>")

    def get(self, vtype_id: str) -> VType | None:
        """The vtype registered under ``vtype_id``, or None."""
        return self._types.get(vtype_id)

    def register(self, vtype: VType, vtype_id: str | None = None, *, source: str = "") -> None:
        """Register ``vtype`` under ``vtype_id`` (default: its name), replacing any earlier one."""
        key = vtype_id or vtype.name
        self._types[key] = vtype
        self._sources[key] = source

    def source_of(self, vtype_id: str) -> str | None:
        """The file that defined ``vtype_id`` (``<built-in>`` for core types), or None."""
        return self._sources.get(vtype_id)

    def ids(self) -> list[str]:
        """Every registered id, sorted."""
        return sorted(self._types)

    def __contains__(self, vtype_id: object) -> bool:
        return vtype_id in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def copy(self) -> VTypeRegistry:
        """An independent registry with the same types (so a run can add dynamic ones)."""
        other = VTypeRegistry.__new__(VTypeRegistry)
        other._types = dict(self._types)
        other._sources = dict(self._sources)
        return other


# --- vtype JSON documents -----------------------------------------------------


def _component_ref(name: str, spec: Any, owner: str) -> DataTypeReference:
    """The type reference of one column or field of a table or structure schema."""
    if not isinstance(spec, dict):
        raise ValueError(f"{owner}: component {name!r} must be an object, got {spec!r}")
    category = spec.get("vflow.type", SCALAR)
    if category not in (SCALAR, STRUCTURE, TABLE):
        raise ValueError(f"{owner}: component {name!r} has unknown vflow.type {category!r}")
    vtype_id = spec.get("vtype-ID")
    if isinstance(vtype_id, str) and vtype_id:
        return DataTypeReference(category, vtype_id)
    # An inline scalar without an id: fall back to the core scalar of its template.
    template = spec.get("template")
    if category == SCALAR and isinstance(template, str):
        core = f"com.sap.core.{template}"
        if core in CORE_SCALAR_TEMPLATES:
            return DataTypeReference(SCALAR, core)
        for core_id, core_template in CORE_SCALAR_TEMPLATES.items():
            if core_template == template:
                return DataTypeReference(SCALAR, core_id)
        raise ValueError(f"{owner}: component {name!r} has unknown scalar template {template!r}")
    raise ValueError(f"{owner}: component {name!r} has no vtype-ID")


def _components(value: Any, owner: str) -> dict[str, DataTypeReference]:
    """Ordered name -> reference for DI's ``components`` list (or a plain mapping)."""
    result: dict[str, DataTypeReference] = {}
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for entry in value:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(
                    f"{owner}: each component must be an object with exactly one key "
                    f"(the column name), got {entry!r}"
                )
            items.extend(entry.items())
    else:
        raise ValueError(f"{owner}: 'components' must be a list, got {type(value).__name__}")
    for name, spec in items:
        if name in result:
            raise ValueError(f"{owner}: component {name!r} appears twice")
        result[str(name)] = _component_ref(str(name), spec, owner)
    return result


def _optional_int(schema: dict[str, Any], key: str, owner: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{owner}: {key} must be an integer, got {value!r}") from None


def vtype_from_schema(schema: dict[str, Any], scope: str, *, name: str | None = None) -> VType:
    """Convert a DI vtype JSON document into a VType.

    ``name`` overrides (or supplies) the schema's ``name``; files without a
    name field get theirs from the folder layout. Raises ValueError with a
    readable reason when the document is not a valid vtype.
    """
    if not isinstance(schema, dict):
        raise ValueError(f"a vtype must be a JSON object, got {type(schema).__name__}")
    type_name = name or schema.get("name")
    if not isinstance(type_name, str) or not type_name:
        raise ValueError("the vtype has no 'name'")
    owner = f"vtype {type_name!r}"
    category = schema.get("vflow.type")
    description = schema.get("description") or ""
    if not isinstance(description, str):
        description = str(description)
    if category == SCALAR:
        template = schema.get("template")
        if template is None:
            base = schema.get("vtype-ID")
            template = CORE_SCALAR_TEMPLATES.get(base) if isinstance(base, str) else None
        if not isinstance(template, str) or not template:
            raise ValueError(f"{owner}: a scalar needs a 'template' (e.g. \"string\")")
        known_templates = set(CORE_SCALAR_TEMPLATES.values())
        if template not in known_templates:
            raise ValueError(
                f"{owner}: unknown scalar template {template!r} "
                f"(expected one of: {', '.join(sorted(known_templates))})"
            )
        return VTypeScalar(
            name=type_name,
            category=SCALAR,
            scope=scope,
            description=description,
            template=template,
            precision=_optional_int(schema, "value.precision", owner),
            scale=_optional_int(schema, "value.scale", owner),
            length=_optional_int(schema, "value.length", owner),
        )
    if category == STRUCTURE:
        if "components" not in schema:
            raise ValueError(f"{owner}: a structure needs 'components'")
        return VTypeStructure(
            name=type_name,
            category=STRUCTURE,
            scope=scope,
            description=description,
            fields=_components(schema["components"], owner),
        )
    if category == TABLE:
        rows = schema.get("rows", schema.get("row"))
        if not isinstance(rows, dict) or "components" not in rows:
            raise ValueError(f"{owner}: a table needs 'rows': {{'components': [...]}}")
        columns = _components(rows["components"], owner)
        for column, ref in columns.items():
            if ref.type_ != SCALAR:
                raise ValueError(
                    f"{owner}: column {column!r} is a {ref.type_}; table columns must be scalars"
                )
        keys = schema.get("keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{owner}: 'keys' must be a list of column names")
        unknown = [k for k in keys if k not in columns]
        if unknown:
            raise ValueError(f"{owner}: key column(s) {', '.join(map(repr, unknown))} are not columns")
        return VTypeTable(
            name=type_name,
            category=TABLE,
            scope=scope,
            description=description,
            columns=columns,
            keys=list(keys),
        )
    if category == NONE:
        return VTypeNone(name=type_name, category=NONE, scope=scope, description=description)
    raise ValueError(
        f"{owner}: unknown vflow.type {category!r} (expected scalar, structure, table or none)"
    )


def vtype_id_from_path(file: Path, root: Path) -> str:
    """The id DI's folder layout gives a ``.vtype`` file that lacks a ``name``.

    ``vtypes/tables/demo/users/table.vtype`` is ``demo.users``; a file named
    anything else, such as ``vtypes/demo.orders.vtype``, is named by its stem.
    """
    if file.name not in _KIND_FILES:
        return file.stem
    try:
        parts = list(file.relative_to(root).parts[:-1])
    except ValueError:
        parts = list(file.parts[:-1])
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in _KIND_FOLDERS:
            dotted = parts[index + 1:]
            if dotted:
                return ".".join(dotted)
            break
    return file.parent.name


def load_vtype_files(
    root: Path, registry: VTypeRegistry, problems: list[Problem], *, scope: str = "global"
) -> int:
    """Register every ``*.vtype`` file under ``root``; return how many loaded.

    With ``scope="local"`` (the ``vtypes/`` folder beside a graph) each type is
    also registered as ``$GRAPH.<name>``, the spelling DI graphs use for
    graph-local types. A file that is not valid JSON or not a valid vtype, and
    an id defined differently by two files, each become a Problem naming the file.
    """
    if not root.is_dir():
        return 0
    loaded = 0
    for file in sorted(root.rglob("*.vtype")):
        where = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Problem(where, f"cannot read vtype file: {exc.strerror or exc}"))
            continue
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(f"{where}:{exc.lineno}:{exc.colno}", f"invalid JSON in vtype file: {exc.msg}")
            )
            continue
        name = schema.get("name") if isinstance(schema, dict) else None
        if not isinstance(name, str) or not name:
            name = vtype_id_from_path(file, root)
        try:
            vtype = vtype_from_schema(schema, scope, name=name)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        ids = [name]
        if scope == "local" and not name.startswith(GRAPH_PREFIX):
            ids.append(GRAPH_PREFIX + name)
        accepted = False
        for vtype_id in ids:
            existing = registry.get(vtype_id)
            if existing is not None:
                if existing == vtype and registry.source_of(vtype_id) != "<built-in>":
                    accepted = True
                    continue
                origin = registry.source_of(vtype_id)
                if origin == "<built-in>":
                    message = f"vtype {vtype_id!r} is a built-in type and cannot be redefined"
                else:
                    message = f"vtype {vtype_id!r} is already defined differently by {origin}"
                problems.append(Problem(where, message))
                continue
            registry.register(vtype, vtype_id, source=where)
            accepted = True
        if accepted:
            loaded += 1
    return loaded


# --- port types ---------------------------------------------------------------


def port_type_from_json(spec: dict[str, Any]) -> PortType:
    """The PortType of a DI port object ``{"name", "type", "vtype-ID"}``.

    A missing ``vtype-ID`` or ``*`` means dynamic; ``"type": "*"`` or ``any``
    (or no type and no id at all) is an any port. Raises ValueError.
    """
    category = spec.get("type")
    vtype_id = spec.get("vtype-ID", spec.get("vtype"))
    if category is None and vtype_id in (None, "", DYNAMIC):
        return PortType(ANY)
    if category in ("*", ANY):
        return PortType(ANY)
    if category is None:
        raise ValueError(f"port has vtype-ID {vtype_id!r} but no 'type'")
    if not isinstance(category, str) or category not in CATEGORIES:
        raise ValueError(
            f"unknown port type {category!r} (expected scalar, structure, table, none or *)"
        )
    if category == NONE:
        return PortType(NONE)
    if vtype_id in (None, ""):
        vtype_id = DYNAMIC
    if not isinstance(vtype_id, str):
        raise ValueError(f"vtype-ID must be a string, got {vtype_id!r}")
    return PortType(category, vtype_id)


def referenced_vtype_ids(registry: VTypeRegistry, vtype_id: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Follow ``vtype_id`` through columns and fields.

    Returns the ids reached (including ``vtype_id`` if known) and the dangling
    references as ``(owner id, column/field, missing id)``.
    """
    seen: list[str] = []
    missing: list[tuple[str, str, str]] = []
    stack = [vtype_id]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        vtype = registry.get(current)
        if vtype is None:
            continue
        seen.append(current)
        members: dict[str, DataTypeReference] = {}
        if isinstance(vtype, VTypeTable):
            members = vtype.columns
        elif isinstance(vtype, VTypeStructure):
            members = vtype.fields
        for member, ref in members.items():
            if ref.type_id == DYNAMIC:
                continue
            if ref.type_id not in registry:
                missing.append((current, member, ref.type_id))
            else:
                stack.append(ref.type_id)
    return seen, missing

