"""The Gen2 data model that operator scripts see: ``api.Table``, ``api.Record``
and ``api.type_context``, plus the checks and printers the engine needs.

Everything here is plain data with no engine dependency. Tables are the hot
path (the same 1000-row table may be passed on thousands of times a second),
so building a ``Table`` without type inference is O(1): the list of row lists
given is stored as ``.body`` as is, never copied or scanned.

Type inference and the pandas conversions need a :class:`TypeContext` (the
object the engine exposes as ``api.type_context``). ``Table`` finds it through
:func:`get_default_type_context`; the engine installs its own with
:func:`set_default_type_context`.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import math
import numbers
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from snapgraph.model.types import (
    ANY,
    BINARY_TEMPLATES,
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

if TYPE_CHECKING:  # pragma: no cover - typing only
    from snapgraph.model.vtypes import VTypeRegistry

__all__ = [
    "DataTypeReference",
    "Record",
    "Table",
    "TypeContext",
    "VType",
    "VTypeNone",
    "VTypeScalar",
    "VTypeStructure",
    "VTypeTable",
    "conforms",
    "describe",
    "get_default_type_context",
    "scalar_type_id_for",
    "set_default_type_context",
    "table_columns",
]

SCHEMA_SCOPES = ("dynamic", "local", "inline")
# Dynamic table ids are "$DYNAMIC.table_<origin>_<n>": <origin> is 12 random hex digits drawn by
# each TypeContext (one per group process and attempt; one per attempt with --in-process), <n>
# counts from 1 within it. The origin keeps ids unique across the groups of a graph and across
# recovery attempts, so a type ref held in restored state never names a type a later attempt made.
DYNAMIC_TABLE_PREFIX = "$DYNAMIC.table_"
ORIGIN_BYTES = 6

_PANDAS_MISSING = "api.Table.{method} needs pandas: pip install pandas"

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint64": (0, 2**64 - 1),
}
_FLOAT_TEMPLATES = frozenset({"float32", "float64"})
_DECIMAL_TEMPLATES = frozenset({"decimal", "decfloat16", "decfloat34"})
_SCALAR_PY_TYPES: tuple[type, ...] = (
    bool,
    int,
    float,
    str,
    bytes,
    bytearray,
    memoryview,
    datetime.date,
    datetime.time,
    decimal.Decimal,
    numbers.Number,
)


# --------------------------------------------------------------------------
# Scalar type inference
# --------------------------------------------------------------------------


def scalar_type_id_for(value: Any) -> str:
    """The core scalar type id a Python value is inferred as (for dynamic tables).

    ``None`` is inferred as a string, as DI does for an unknown column. Raises
    TypeError for values that cannot be a table cell (lists, dicts, ...).
    """
    # Order matters: bool is an int, datetime is a date.
    if value is None or isinstance(value, str):
        return "com.sap.core.string"
    if isinstance(value, bool):
        return "com.sap.core.bool"
    if isinstance(value, numbers.Integral):
        return "com.sap.core.int64"
    if isinstance(value, decimal.Decimal):
        return "com.sap.core.decimal"
    if isinstance(value, numbers.Real):
        return "com.sap.core.float64"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "com.sap.core.binary"
    if isinstance(value, datetime.datetime):
        return "com.sap.core.timestamp"
    if isinstance(value, datetime.date):
        return "com.sap.core.date"
    if isinstance(value, datetime.time):
        return "com.sap.core.time"
    # numpy.bool_ is neither bool nor numbers.Integral.
    if type(value).__name__ == "bool_":
        return "com.sap.core.bool"
    raise TypeError(f"cannot infer a scalar vtype from a {type(value).__name__} value: {value!r}")


def _column_names(count: int, colnames: Iterable[Any] | None) -> list[str]:
    """``count`` column names from ``colnames``; missing or None names become ``col<index>``."""
    given = list(colnames) if colnames is not None else []
    names = []
    for index in range(count):
        name = given[index] if index < len(given) else None
        names.append(f"col{index}" if name is None else str(name))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate column name {name!r} in {names}")
        seen.add(name)
    return names


# --------------------------------------------------------------------------
# TypeContext (api.type_context)
# --------------------------------------------------------------------------


class TypeContext:
    """``api.type_context``: creates, registers and looks up vtypes at run time.

    Wraps a vtype registry (``get``/``register``/``__contains__``) shared by the
    operators of one process, so a dynamic type created by one operator can be
    resolved by the operators that receive its tables. A group in another
    process learns the types made here at run time from the connection that
    brings it a message using them (``runtime/wire.py``, which calls
    :meth:`run_time_definitions` on the sending side and :meth:`register_received`
    on the receiving one). ``schema_converter`` turns a DI vtype JSON dict into a
    VType; it defaults to ``snapgraph.model.vtypes.vtype_from_schema``.
    """

    def __init__(
        self,
        registry: VTypeRegistry,
        schema_converter: Callable[[dict, str], VType] | None = None,
    ) -> None:
        self.registry = registry
        self._schema_converter = schema_converter
        self.origin = secrets.token_hex(ORIGIN_BYTES)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._core_cache: dict[str, VTypeScalar] = {}
        # Ids registered while the graph runs (created, registered by a script, or received from
        # another group): other group processes do not know them, so runtime/wire.py sends their
        # definitions along with the first message on each link that refers to them.
        self.run_time_type_ids: set[str] = set()

    def __repr__(self) -> str:
        return f"TypeContext({self.registry!r})"

    # -- creation --------------------------------------------------------

    def _new_dynamic_id(self) -> str:
        while True:
            candidate = f"{DYNAMIC_TABLE_PREFIX}{self.origin}_{next(self._counter)}"
            if candidate not in self.registry:
                return candidate

    def _register_run_time(self, vtype: VType) -> None:
        """Register a type made while the graph runs (the caller holds the lock)."""
        self.registry.register(vtype)
        self.run_time_type_ids.add(vtype.name)

    def create_new_table(
        self,
        columns: Mapping[str, DataTypeReference],
        keys: Iterable[str] | None = None,
    ) -> DataTypeReference:
        """Create and register a new dynamic table vtype; return its reference.

        ``columns`` maps each column name (in order) to a scalar
        ``DataTypeReference``; ``keys`` names key columns. The id is generated,
        ``$DYNAMIC.table_<origin>_<n>``, unique in the graph and across attempts.
        """
        if not isinstance(columns, Mapping):
            raise TypeError(
                f"create_new_table: columns must be a dict of name -> api.DataTypeReference, "
                f"got {type(columns).__name__}"
            )
        cols: dict[str, DataTypeReference] = {}
        for name, ref in columns.items():
            if not isinstance(name, str):
                raise TypeError(f"create_new_table: column names must be str, got {name!r}")
            if not isinstance(ref, DataTypeReference):
                raise TypeError(
                    f"create_new_table: column {name!r} must map to an api.DataTypeReference, "
                    f"got {type(ref).__name__}"
                )
            if ref.type_ != SCALAR:
                raise ValueError(
                    f"create_new_table: column {name!r} has type {ref.type_!r}; "
                    "table columns must be scalars"
                )
            cols[name] = ref
        key_list = list(keys) if keys is not None else []
        for key in key_list:
            if key not in cols:
                raise ValueError(f"create_new_table: key {key!r} is not one of the columns {list(cols)}")
        with self._lock:
            type_id = self._new_dynamic_id()
            self._register_run_time(
                VTypeTable(name=type_id, category=TABLE, scope="dynamic", columns=cols, keys=key_list)
            )
        return DataTypeReference(TABLE, type_id)

    def register_schema(self, schema: dict, scope: str) -> str:
        """Register a vtype given as DI JSON (``name`` and ``vflow.type`` required).

        ``scope`` is ``'dynamic'``, ``'local'`` or ``'inline'``. Returns the name
        the type was registered under. A table schema may list its columns
        under ``rows`` (the .vtype file spelling) or ``row`` (what
        :meth:`infer_schema_from_row` documents); both are accepted.
        """
        if not isinstance(schema, Mapping):
            raise ValueError(f"register_schema: schema must be a dict, got {type(schema).__name__}")
        missing = [key for key in ("name", "vflow.type") if not schema.get(key)]
        if missing:
            raise ValueError(
                f"register_schema: the schema needs at least 'name' and 'vflow.type'; "
                f"missing {', '.join(repr(m) for m in missing)}"
            )
        if scope not in SCHEMA_SCOPES:
            raise ValueError(
                f"register_schema: scope must be one of {', '.join(repr(s) for s in SCHEMA_SCOPES)}, "
                f"got {scope!r}"
            )
        schema = dict(schema)
        if "rows" not in schema and "row" in schema:
            schema["rows"] = schema["row"]
        converter = self._schema_converter
        if converter is None:
            from snapgraph.model.vtypes import vtype_from_schema

            converter = vtype_from_schema
        vtype = converter(schema, scope)
        with self._lock:
            self._register_run_time(vtype)
        return vtype.name

    def infer_schema_from_row(self, row: Sequence[Any], colnames: Iterable[Any] | None = None) -> dict:
        """A table vtype schema dict inferred from one row's Python values.

        Columns are listed under both ``row`` and ``rows`` (the same dict), so
        code written for either spelling works. Names default to ``col<index>``.
        The dict has no ``name``: add one before :meth:`register_schema`.
        """
        values = list(row)
        names = _column_names(len(values), colnames)
        components = [
            {name: {"vflow.type": "scalar", "vtype-ID": scalar_type_id_for(value)}}
            for name, value in zip(names, values)
        ]
        rows = {"components": components}
        return {"vflow.type": "table", "row": rows, "rows": rows}

    def infer_table_type(
        self, row: Sequence[Any] | None, colnames: Iterable[Any] | None = None
    ) -> DataTypeReference:
        """Create a dynamic table type from a sample row (None: all string columns).

        Used by ``Table(infer_type=True)`` and ``Table.infer_dynamic_type``.
        """
        if row is None:
            if colnames is None:
                raise ValueError(
                    "cannot infer a table type from an empty table without colnames"
                )
            names = _column_names(len(list(colnames)), colnames)
            columns = {name: DataTypeReference(SCALAR, "com.sap.core.string") for name in names}
        else:
            values = list(row)
            names = _column_names(len(values), colnames)
            columns = {
                name: DataTypeReference(SCALAR, scalar_type_id_for(value))
                for name, value in zip(names, values)
            }
        return self.create_new_table(columns)

    # -- between groups --------------------------------------------------

    def run_time_definitions(self, type_ids: Iterable[str]) -> list[VType]:
        """The run-time types ``type_ids`` name, with the run-time types their columns or fields
        refer to (a structure made at run time may hold a dynamic table): what another group
        needs to resolve them. Ids of types every group knows (core, graph, repository) are left out."""
        found: dict[str, VType] = {}
        pending = [type_id for type_id in type_ids if type_id in self.run_time_type_ids]
        while pending:
            type_id = pending.pop()
            vtype = self.registry.get(type_id)
            if type_id in found or vtype is None:
                continue
            found[type_id] = vtype
            members = vtype.columns if isinstance(vtype, VTypeTable) else (
                vtype.fields if isinstance(vtype, VTypeStructure) else {})
            pending.extend(ref.type_id for ref in members.values() if ref.type_id in self.run_time_type_ids)
        return list(found.values())

    def all_run_time_definitions(self) -> list[VType]:
        """Every type made or received here at run time (what a snapshot keeps for the next attempt)."""
        with self._lock:
            return self.run_time_definitions(list(self.run_time_type_ids))

    def register_received(self, vtypes: Iterable[VType]) -> None:
        """Register run-time types defined in another group (they may travel on from here)."""
        with self._lock:
            for vtype in vtypes:
                self._register_run_time(vtype)

    # -- lookup ----------------------------------------------------------

    def get_vtype(self, reference: DataTypeReference | str) -> VType:
        """The VType for a reference or type id.

        Core scalars (``com.sap.core.*``) always resolve, registered or not.
        Raises KeyError naming the id when the type is unknown.
        """
        if isinstance(reference, DataTypeReference):
            type_id = reference.type_id
        elif isinstance(reference, str):
            type_id = reference
        else:
            raise TypeError(
                f"get_vtype expects an api.DataTypeReference or a type id str, "
                f"got {type(reference).__name__}"
            )
        if type_id == DYNAMIC:
            raise KeyError("'*' is a dynamic type placeholder, not a vtype id")
        vtype = self.registry.get(type_id)
        if vtype is not None:
            return vtype
        template = CORE_SCALAR_TEMPLATES.get(type_id)
        if template is not None:
            cached = self._core_cache.get(type_id)
            if cached is None:
                cached = VTypeScalar(name=type_id, category=SCALAR, scope="global", template=template)
                self._core_cache[type_id] = cached
            return cached
        raise KeyError(f"unknown vtype {type_id!r}: it is not a core scalar and not registered")

    def scalar_template(self, type_id: str) -> str | None:
        """The template of a scalar type id, or None if unknown or not a scalar."""
        template = CORE_SCALAR_TEMPLATES.get(type_id)
        if template is not None:
            return template
        try:
            vtype = self.get_vtype(type_id)
        except KeyError:
            return None
        return vtype.template if isinstance(vtype, VTypeScalar) else None


_default_context: TypeContext | None = None
_default_lock = threading.Lock()


def set_default_type_context(context: TypeContext | None) -> TypeContext | None:
    """Install the TypeContext that ``Table`` uses; return the previous one.

    The engine calls this with the context it exposes as ``api.type_context``.
    """
    global _default_context
    with _default_lock:
        previous, _default_context = _default_context, context
    return previous


def get_default_type_context() -> TypeContext:
    """The TypeContext ``Table`` uses; a fresh one over an empty registry if none was set."""
    global _default_context
    context = _default_context
    if context is not None:
        return context
    with _default_lock:
        if _default_context is None:
            from snapgraph.model.vtypes import VTypeRegistry

            _default_context = TypeContext(VTypeRegistry())
        return _default_context


def _registry_of(registry: Any) -> Any:
    """Accept a registry, a TypeContext or None (the default context's registry)."""
    if registry is None:
        return get_default_type_context().registry
    if isinstance(registry, TypeContext):
        return registry.registry
    return registry


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------


class Table(Sequence):
    """``api.Table(data, type_id="", infer_type=False, colnames=None)``.

    ``data`` is a list of rows, each a list; it is kept as ``.body`` without
    copying (scripts mutate rows in place). ``type_id`` names the table vtype
    (a ``DataTypeReference`` is accepted too);
    ``infer_type=True`` (with no ``type_id``) creates a dynamic type from the
    first row. Iterating yields the row lists; ``t[i]`` is a row, ``t[a:b]`` a
    new Table with the same type.
    """

    __slots__ = ("body", "type_ref")

    body: list
    type_ref: DataTypeReference | None

    def __init__(
        self,
        data: list | None = None,
        type_id: str = "",
        infer_type: bool = False,
        colnames: Iterable[Any] | None = None,
    ) -> None:
        if data is None:
            data = []
        elif isinstance(data, Table):
            if not type_id and data.type_ref is not None and not infer_type:
                type_id = data.type_ref.type_id
            data = data.body
        elif not isinstance(data, list):
            if isinstance(data, (str, bytes, Mapping)):
                raise TypeError(f"api.Table data must be a list of rows, got {type(data).__name__}")
            data = [list(row) for row in data]
        self.body = data
        if type_id:
            if isinstance(type_id, DataTypeReference):
                self.type_ref = DataTypeReference(TABLE, type_id.type_id)
                return
            if not isinstance(type_id, str):
                raise TypeError(f"api.Table type_id must be a str, got {type(type_id).__name__}")
            self.type_ref = DataTypeReference(TABLE, type_id)
        else:
            self.type_ref = None
            if infer_type:
                self.infer_dynamic_type(colnames)

    @classmethod
    def _wrap(cls, body: list, type_ref: DataTypeReference | None) -> Table:
        """Build a Table without any checks (slicing, readers)."""
        table = cls.__new__(cls)
        table.body = body
        table.type_ref = type_ref
        return table

    # -- typing ----------------------------------------------------------

    def is_typed(self) -> bool:
        """Whether the table has a vtype."""
        return self.type_ref is not None

    def get_type_reference(self) -> DataTypeReference | None:
        """The table's ``DataTypeReference``, or None when untyped."""
        return self.type_ref

    def infer_dynamic_type(self, colnames: Iterable[Any] | None = None) -> DataTypeReference:
        """Create a dynamic table vtype from the first row and make this table typed.

        Column names come from ``colnames`` (missing ones are ``col<index>``).
        """
        row = self.body[0] if self.body else None
        ref = get_default_type_context().infer_table_type(row, colnames)
        self.type_ref = ref
        return ref

    # -- sequence protocol -------------------------------------------------

    def __len__(self) -> int:
        return len(self.body)

    def __iter__(self) -> Iterator[list]:
        return iter(self.body)

    def __reversed__(self) -> Iterator[list]:
        return reversed(self.body)

    def __contains__(self, row: object) -> bool:
        return row in self.body

    @overload
    def __getitem__(self, index: int) -> list: ...

    @overload
    def __getitem__(self, index: slice) -> Table: ...

    def __getitem__(self, index: int | slice) -> list | Table:
        if isinstance(index, slice):
            return Table._wrap(self.body[index], self.type_ref)
        return self.body[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return self.type_ref == other.type_ref and self.body == other.body

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        type_part = f", type_id={self.type_ref.type_id!r}" if self.type_ref is not None else ""
        limit = 10
        if len(self.body) <= limit:
            rows = repr(self.body)
        else:
            shown = ", ".join(repr(row) for row in self.body[:limit])
            rows = f"[{shown}, ... ({len(self.body) - limit} more rows)]"
        return f"Table({rows}{type_part})"

    def __getstate__(self) -> tuple:
        return (self.body, self.type_ref)

    def __setstate__(self, state: tuple) -> None:
        self.body, self.type_ref = state

    # -- pandas ------------------------------------------------------------

    def to_dataframe(self) -> tuple[Any, dict]:
        """``(pandas.DataFrame, headers dict)``: a tuple, as in Gen2.

        Columns are named after the table vtype's columns when typed, else
        ``col0..``. Dtypes follow the vtype templates (ints -> int64, floats ->
        float64, date/timestamp -> datetime64[ns], strings/decimals -> object);
        a column holding None becomes object dtype with ``pd.NA``.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(_PANDAS_MISSING.format(method="to_dataframe")) from exc
        context = get_default_type_context()
        names = table_columns(self, context)
        templates = _column_templates(self, context, len(names))
        body = self.body
        width = len(names)
        for index, row in enumerate(body):
            if len(row) != width:
                raise ValueError(
                    f"to_dataframe: row {index} has {len(row)} values but the table has {width} columns"
                )
        data = {}
        for col, (name, template) in enumerate(zip(names, templates)):
            data[name] = _to_series(pd, [row[col] for row in body], template)
        frame = pd.DataFrame(data, columns=names)
        if not body:
            frame = frame.reset_index(drop=True)
        return frame, {}

    @classmethod
    def from_dataframe(cls, df: Any, vtype_id: str = "", infer_type: bool = False) -> Table:
        """A Table from a pandas DataFrame (values as plain Python objects).

        With ``vtype_id`` the table gets that type; with ``infer_type`` a new
        dynamic type is created whose column names come from the dataframe.
        Missing values (NaN, NaT, pd.NA) become None; Timestamps become
        ``datetime.datetime`` (``datetime.date`` in a date-template column).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(_PANDAS_MISSING.format(method="from_dataframe")) from exc
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"api.Table.from_dataframe expects a pandas.DataFrame, got {type(df).__name__}")
        context = get_default_type_context()
        width = df.shape[1]
        templates: list[str | None] = [None] * width
        if vtype_id:
            vtype = context.registry.get(vtype_id)
            if isinstance(vtype, VTypeTable) and len(vtype.columns) == width:
                templates = [context.scalar_template(ref.type_id) for ref in vtype.columns.values()]
        columns = [
            _from_series(pd, df.iloc[:, col], templates[col]) for col in range(width)
        ]
        if width:
            body = [list(row) for row in zip(*columns)]
        else:
            body = [[] for _ in range(len(df))]
        if vtype_id:
            return cls._wrap(body, DataTypeReference(TABLE, vtype_id))
        table = cls._wrap(body, None)
        if infer_type:
            names = _column_names(width, [str(c) for c in df.columns])
            type_columns = {
                name: DataTypeReference(SCALAR, _dataframe_column_type_id(df.iloc[:, col], values))
                for col, (name, values) in enumerate(zip(names, columns))
            }
            table.type_ref = context.create_new_table(type_columns)
        return table


def table_columns(table: Table, registry: Any = None) -> list[str]:
    """The column names of a table: its vtype's columns, else ``col0..``.

    ``registry`` is a vtype registry (or a TypeContext; None means the default
    context). An untyped table, or one whose vtype is unknown, gets
    ``col<index>`` names sized by its first row.
    """
    if table.type_ref is not None:
        vtype = _registry_of(registry).get(table.type_ref.type_id)
        if isinstance(vtype, VTypeTable):
            return list(vtype.columns.keys())
    width = len(table.body[0]) if table.body else 0
    return [f"col{index}" for index in range(width)]


def _column_templates(table: Table, context: TypeContext, width: int) -> list[str | None]:
    """The scalar template of each column, or None when the table is untyped."""
    if table.type_ref is not None:
        vtype = context.registry.get(table.type_ref.type_id)
        if isinstance(vtype, VTypeTable) and len(vtype.columns) == width:
            return [context.scalar_template(ref.type_id) for ref in vtype.columns.values()]
    return [None] * width


def _to_series(pd: Any, values: list, template: str | None) -> Any:
    """One dataframe column following the Gen2 dtype mapping."""
    if any(value is None for value in values):
        return pd.Series([pd.NA if value is None else value for value in values], dtype=object)
    if template is None:
        # Untyped: let pandas infer, but keep text as object (pandas 3 infers
        # its own string dtype) and datetimes in nanoseconds, as typed columns.
        series = pd.Series(values, dtype=None if values else object)
        if series.dtype.kind == "M":
            try:
                return series.astype("datetime64[ns]")
            except (ValueError, pd.errors.OutOfBoundsDatetime):
                return pd.Series(values, dtype=object)
        if series.dtype.kind in "biuf":
            return series
        return series.astype(object)
    try:
        if template == "bool":
            return pd.Series(values, dtype=bool)
        if template in ("int8", "int16", "int32", "int64"):
            return pd.Series(values, dtype="int64")
        if template in ("uint8", "uint64"):
            top = max(values, default=0)
            for dtype in ("uint8", "uint16", "uint32", "uint64"):
                if top <= _UINT_MAX[dtype]:
                    return pd.Series(values, dtype=dtype)
        if template in _FLOAT_TEMPLATES:
            return pd.Series(values, dtype="float64")
        if template in ("date", "timestamp"):
            return pd.Series(pd.to_datetime(values)).astype("datetime64[ns]")
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        pass  # values that do not fit the template stay Python objects
    return pd.Series(values, dtype=object)


_UINT_MAX = {"uint8": 2**8 - 1, "uint16": 2**16 - 1, "uint32": 2**32 - 1, "uint64": 2**64 - 1}


def _from_series(pd: Any, series: Any, template: str | None) -> list:
    """A dataframe column as a list of plain Python values (missing -> None)."""
    values = series.tolist()
    out = []
    for value in values:
        if value is None or value is pd.NA or value is pd.NaT:
            out.append(None)
            continue
        if isinstance(value, float) and math.isnan(value):
            out.append(None)
            continue
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        elif hasattr(value, "item") and type(value).__module__ == "numpy":
            value = value.item()
        if template == "date" and isinstance(value, datetime.datetime):
            value = value.date()
        out.append(value)
    return out


def _dataframe_column_type_id(series: Any, values: list) -> str:
    """The core scalar type id for a dataframe column, from its dtype or values."""
    kind = series.dtype.kind
    if kind == "b":
        return "com.sap.core.bool"
    if kind == "i":
        return "com.sap.core.int64"
    if kind == "u":
        return "com.sap.core.uint8" if series.dtype.itemsize == 1 else "com.sap.core.uint64"
    if kind == "f":
        return "com.sap.core.float64"
    if kind == "M":
        return "com.sap.core.timestamp"
    for value in values:
        if value is not None:
            return scalar_type_id_for(value)
    return "com.sap.core.string"


# --------------------------------------------------------------------------
# Record
# --------------------------------------------------------------------------


class Record(Sequence):
    """``api.Record(values)``: an ordered collection of field values.

    Used for structure bodies and header values. Compares equal to another
    Record or to a list/tuple with the same values, so header checks such as
    ``header['com.sap.headers.batch'] == [0, True, 1, 0, '']`` work either way.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[Any] = ()) -> None:
        if isinstance(values, (str, bytes, Mapping)):
            raise TypeError(f"api.Record expects a list of field values, got {type(values).__name__}")
        self._values = values if isinstance(values, list) else list(values)

    @property
    def values(self) -> list:
        """The field values (the list itself)."""
        return self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Record(self._values[index])
        return self._values[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._values == other._values
        if isinstance(other, (list, tuple)):
            return self._values == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Record({self._values!r})"

    def __getstate__(self) -> list:
        return self._values

    def __setstate__(self, state: list) -> None:
        self._values = state


# --------------------------------------------------------------------------
# Port conformance
# --------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_scalar_value(value: Any) -> bool:
    return value is not None and (
        isinstance(value, _SCALAR_PY_TYPES) or type(value).__name__ == "bool_"
    )


def _scalar_problem(value: Any, template: str, where: str) -> str | None:
    """Why ``value`` does not fit a scalar template, or None."""
    got = _type_name(value)
    if template == "bool":
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return None
        return f"expected a bool for {where}, got {got}"
    if template in _INT_RANGES:
        if not _is_int(value):
            return f"expected an int for {where}, got {got}"
        low, high = _INT_RANGES[template]
        if not low <= int(value) <= high:
            return f"expected an int in [{low}, {high}] for {where}, got {value}"
        return None
    if template in _FLOAT_TEMPLATES:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return None
        return f"expected a float (or int) for {where}, got {got}"
    if template == "string":
        return None if isinstance(value, str) else f"expected a str for {where}, got {got}"
    if template in BINARY_TEMPLATES:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return None
        return f"expected bytes for {where}, got {got}"
    if template == "date":
        if isinstance(value, (datetime.date, str)):
            return None
        return f"expected a datetime.date (or ISO str) for {where}, got {got}"
    if template == "time":
        if isinstance(value, (datetime.time, str)):
            return None
        return f"expected a datetime.time (or ISO str) for {where}, got {got}"
    if template == "timestamp":
        if isinstance(value, (datetime.datetime, str)):
            return None
        return f"expected a datetime.datetime (or ISO str) for {where}, got {got}"
    if template in _DECIMAL_TEMPLATES:
        if isinstance(value, (decimal.Decimal, str)) or (
            isinstance(value, numbers.Real) and not isinstance(value, bool)
        ):
            return None
        return f"expected a decimal.Decimal (or str, int, float) for {where}, got {got}"
    # Unknown template: any scalar will do.
    if _is_scalar_value(value):
        return None
    return f"expected a scalar for {where}, got {got}"


# Exact Python types that fit a template whatever their value: tested before _scalar_problem, whose
# tests against numbers.Integral and the other ABCs cost several times more (publish on a typed port
# checks a row of every table).
_EXACT_FITS: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "bool": frozenset({bool}),
    **{template: frozenset({float, int}) for template in _FLOAT_TEMPLATES},
    **{template: frozenset({bytes}) for template in BINARY_TEMPLATES},
    **{template: frozenset({decimal.Decimal, float, int, str}) for template in _DECIMAL_TEMPLATES},
}


def _fits_quickly(value: Any, template: str) -> bool:
    """Whether ``value`` surely fits ``template``, told by its exact type (False: look closer)."""
    if type(value) is int:
        bounds = _INT_RANGES.get(template)
        if bounds is not None:
            return bounds[0] <= value <= bounds[1]
    return type(value) in _EXACT_FITS.get(template, ())


def _first_row_problem(row: Sequence[Any], vtype: VTypeTable, type_context: TypeContext) -> str | None:
    """Why a table's first row does not fit ``vtype``'s columns (their number, then each value), or None.

    Only the first row is checked: checking every row would cost a scan of each table published,
    on the hot path. None fits any column (a null).
    """
    columns = vtype.columns
    if not isinstance(row, (list, tuple)):
        return f"row 0 of the table is a {_type_name(row)}, not a list of values for {vtype.name}"
    if len(row) != len(columns):
        return (
            f"row 0 has {len(row)} value{'' if len(row) == 1 else 's'} but {vtype.name} has "
            f"{len(columns)} column{'' if len(columns) == 1 else 's'} ({', '.join(columns)})"
        )
    for value, (name, ref) in zip(row, columns.items()):
        if value is None:
            continue
        template = type_context.scalar_template(ref.type_id)
        if template is None:
            fits = _is_scalar_value(value)
        else:
            fits = _fits_quickly(value, template) or _scalar_problem(value, template, name) is None
        if not fits:
            where = f"column {name!r} ({ref.type_id}) of {vtype.name}, row 0"  # formatted for failures only
            if template is None:
                return f"expected a scalar for {where}, got {_type_name(value)}"
            return _scalar_problem(value, template, where)
    return None


def conforms(value: Any, port_type: PortType, type_context: TypeContext | None = None) -> str | None:
    """Why ``value`` cannot be published on a port of ``port_type``, or None if it can.

    The message names the expected type, e.g. ``"expected a str for
    scalar:com.sap.core.string, got int"``. ``type_context`` resolves the
    template of non-core scalar ids (e.g. ``$GRAPH.str_10``); without it, or if
    the id is unknown, such ports accept any scalar value. With it, a table's first
    row is checked against the columns of its vtype (the table's own type, else the
    port's), when that vtype is known.
    """
    category = port_type.category
    where = str(port_type)
    got = _type_name(value)
    if category == ANY:
        return None
    if category == NONE:
        return None if value is None else f"expected None (no body) for a none port, got {got}"
    if category == TABLE:
        if isinstance(value, Table):
            ref = value.type_ref
            if ref is not None and not port_type.is_dynamic and ref.type_id != port_type.vtype_id:
                return f"expected a table of type {port_type.vtype_id} for {where}, got a table of type {ref.type_id}"
            rows = value.body
            table_type_id = ref.type_id if ref is not None else port_type.vtype_id
        elif isinstance(value, list):
            for index, row in enumerate(value):
                if not isinstance(row, (list, tuple)):
                    return (
                        f"expected an api.Table or a list of row lists for {where}, "
                        f"got a list whose row {index} is a {_type_name(row)}"
                    )
            rows = value
            table_type_id = port_type.vtype_id
        else:
            return f"expected an api.Table or a list of row lists for {where}, got {got}"
        if not rows or type_context is None or table_type_id == DYNAMIC:
            return None
        vtype = type_context.registry.get(table_type_id)
        if not isinstance(vtype, VTypeTable):
            return None
        return _first_row_problem(rows[0], vtype, type_context)
    if category == STRUCTURE:
        if isinstance(value, (Record, list, tuple)):
            return None
        return f"expected an api.Record or a list for {where}, got {got}"
    # scalar
    if isinstance(value, (Table, Record, list, tuple, dict)) or value is None:
        return f"expected a scalar for {where}, got {got}"
    if port_type.is_dynamic:
        return None if _is_scalar_value(value) else f"expected a scalar for {where}, got {got}"
    template = CORE_SCALAR_TEMPLATES.get(port_type.vtype_id)
    if template is None and type_context is not None:
        template = type_context.scalar_template(port_type.vtype_id)
    if template is None:
        return None if _is_scalar_value(value) else f"expected a scalar for {where}, got {got}"
    return _scalar_problem(value, template, where)


# --------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------

_BYTES_SHOWN = 64


def _describe_bytes(value: bytes | bytearray | memoryview) -> str:
    data = bytes(value[:_BYTES_SHOWN]) if len(value) > _BYTES_SHOWN else bytes(value)
    text = repr(data)
    if len(value) > _BYTES_SHOWN:
        text += f"... ({len(value)} bytes)"
    return text


def _shown_type_id(table: Table) -> str:
    """`` <type id>`` for a printed table; nothing when untyped or when the id is a generated
    dynamic one, which differs from run to run (printed output stays comparable)."""
    ref = table.type_ref
    if ref is None or ref.type_id.startswith(DYNAMIC_TABLE_PREFIX):
        return ""
    return f" {ref.type_id}"


def _describe_inline(value: Any) -> str:
    """A one-line rendering of a value nested inside another one."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _describe_bytes(value)
    if isinstance(value, Table):
        type_part = _shown_type_id(value)
        return f"Table{type_part}({len(value)} rows: {', '.join(_describe_inline(r) for r in value.body[:5])}{', ...' if len(value) > 5 else ''})"
    if isinstance(value, Record):
        return f"Record([{', '.join(_describe_inline(v) for v in value)}])"
    if isinstance(value, list):
        return f"[{', '.join(_describe_inline(v) for v in value)}]"
    if isinstance(value, tuple):
        inner = ", ".join(_describe_inline(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe_inline(v)}" for k, v in value.items()) + "}"
    return repr(value)


def describe(value: Any, max_rows: int | None = None) -> str:
    """Render a message body readably for the Terminal and Wiretap printers.

    Strings print as they are; tables print one row per line under a title
    line (at most ``max_rows`` rows, then a count of the rest); bytes print as
    ``b'...'`` cut to 64 bytes; records and other values print as one line.
    """
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _describe_bytes(value)
    if isinstance(value, Table):
        type_part = _shown_type_id(value)
        count = len(value)
        lines = [f"Table{type_part} ({count} row{'' if count == 1 else 's'})"]
        shown = value.body if max_rows is None else value.body[: max(max_rows, 0)]
        lines.extend(_describe_inline(row) for row in shown)
        if len(shown) < count:
            rest = count - len(shown)
            lines.append(f"... ({rest} more row{'' if rest == 1 else 's'})")
        return "\n".join(lines)
    return _describe_inline(value)
