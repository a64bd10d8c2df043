"""Gen2 port types, vtypes and the rules for connecting ports.

A Gen2 data type is a category (``scalar``, ``structure``, ``table`` or
``none``) plus a type id such as ``com.sap.core.string``; ``*`` as the id means
*dynamic* (category fixed, id chosen at run time). System operators such as
Terminal or Wiretap have *any* ports, modelled here as the category ``any``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALAR = "scalar"
STRUCTURE = "structure"
TABLE = "table"
NONE = "none"
ANY = "any"
CATEGORIES = (SCALAR, STRUCTURE, TABLE, NONE, ANY)
DYNAMIC = "*"

# Core scalar type id -> template, as in the Python3 Operator V2 data type table.
CORE_SCALAR_TEMPLATES: dict[str, str] = {
    "com.sap.core.binary": "binary",
    "com.sap.core.bool": "bool",
    "com.sap.core.byte": "uint8",
    "com.sap.core.date": "date",
    "com.sap.core.decfloat16": "decfloat16",
    "com.sap.core.decfloat34": "decfloat34",
    "com.sap.core.decimal": "decimal",
    "com.sap.core.float32": "float32",
    "com.sap.core.float64": "float64",
    "com.sap.core.geometry": "geometry",
    "com.sap.core.geometryewkb": "geometryewkb",
    "com.sap.core.int8": "int8",
    "com.sap.core.int16": "int16",
    "com.sap.core.int32": "int32",
    "com.sap.core.int64": "int64",
    "com.sap.core.string": "string",
    "com.sap.core.time": "time",
    "com.sap.core.timestamp": "timestamp",
    "com.sap.core.uint8": "uint8",
    "com.sap.core.uint64": "uint64",
}
BINARY_TEMPLATES = frozenset({"binary", "geometry", "geometryewkb"})
FLOAT_TEMPLATES = frozenset({"float32", "float64"})
DECIMAL_TEMPLATES = frozenset({"decimal", "decfloat16", "decfloat34"})
# Integer template -> the (lowest, highest) value it holds.
INT_TEMPLATE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint64": (0, 2**64 - 1),
}


@dataclass(frozen=True)
class PortType:
    """The declared type of a port: a category plus a vtype id (``*`` = dynamic)."""

    category: str
    vtype_id: str = DYNAMIC

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(
                f"unknown port type {self.category!r} (expected one of {', '.join(CATEGORIES)})"
            )

    @property
    def is_dynamic(self) -> bool:
        return self.vtype_id == DYNAMIC

    def __str__(self) -> str:
        if self.category in (ANY, NONE):
            return self.category
        return f"{self.category}:{self.vtype_id}"


ANY_PORT = PortType(ANY, DYNAMIC)


class DataTypeReference:
    """``api.DataTypeReference(type, ID)``: a category plus a type id."""

    __slots__ = ("type_", "type_id")

    def __init__(self, type: str, ID: str) -> None:  # noqa: A002 - Gen2 parameter names
        self.type_ = type
        self.type_id = ID

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DataTypeReference)
            and other.type_ == self.type_
            and other.type_id == self.type_id
        )

    def __hash__(self) -> int:
        return hash((self.type_, self.type_id))

    def __repr__(self) -> str:
        return f"DataTypeReference({self.type_!r}, {self.type_id!r})"


def incompatibility(src: PortType, tgt: PortType) -> str | None:
    """Why a connection from ``src`` to ``tgt`` is not allowed, or None if it is.

    The target must be at least as general as the source: a fixed type id
    cannot receive a dynamic type, ``none`` goes only to any or dynamic ports,
    and fixed ids must match exactly.
    """
    if tgt.category == ANY or src.category == ANY:
        return None
    if src.category == NONE:
        if tgt.category == NONE or tgt.is_dynamic:
            return None
        return f"a 'none' port can only feed an any, none or dynamic port, not {tgt}"
    if src.category != tgt.category:
        return f"{src.category} cannot feed {tgt.category}"
    if tgt.is_dynamic:
        return None
    if src.is_dynamic:
        return f"a dynamic {src.category} port cannot feed the fixed type {tgt.vtype_id}"
    if src.vtype_id != tgt.vtype_id:
        return f"type {src.vtype_id} cannot feed type {tgt.vtype_id}"
    return None


@dataclass
class VType:
    """A named vtype (what ``api.type_context.get_vtype`` returns)."""

    name: str
    category: str
    scope: str = "global"
    description: str = ""


@dataclass
class VTypeScalar(VType):
    template: str = "string"
    precision: int | None = None
    scale: int | None = None
    length: int | None = None


@dataclass
class VTypeStructure(VType):
    fields: dict[str, DataTypeReference] = field(default_factory=dict)


@dataclass
class VTypeTable(VType):
    columns: dict[str, DataTypeReference] = field(default_factory=dict)  # ordered
    keys: list[str] = field(default_factory=list)


@dataclass
class VTypeNone(VType):
    pass
