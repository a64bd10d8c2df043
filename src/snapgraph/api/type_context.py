"""``api.type_context``: the :class:`TypeContext` that creates, registers and looks up vtypes at run
time, and the process-wide default one that ``api.Table`` uses.

The engine installs the context it exposes as ``api.type_context`` with
:func:`set_default_type_context`; ``Table`` and the pandas conversions find it through
:func:`get_default_type_context`.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from snapgraph.api.inference import column_names, scalar_type_id_for
from snapgraph.model.types import (
    CORE_SCALAR_TEMPLATES,
    DYNAMIC,
    SCALAR,
    TABLE,
    DataTypeReference,
    VType,
    VTypeScalar,
    VTypeStructure,
    VTypeTable,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from snapgraph.model.vtypes import VTypeRegistry

__all__ = [
    "DYNAMIC_TABLE_PREFIX",
    "SCHEMA_SCOPES",
    "TypeContext",
    "get_default_type_context",
    "resolve_registry",
    "set_default_type_context",
]

SCHEMA_SCOPES = ("dynamic", "local", "inline")
# Dynamic table ids are "$DYNAMIC.table_<origin>_<n>": <origin> is 12 random hex digits drawn by
# each TypeContext (one per group process and attempt; one per attempt with --in-process), <n>
# counts from 1 within it. The origin keeps ids unique across the groups of a graph and across
# recovery attempts, so a type ref held in restored state never names a type a later attempt made.
DYNAMIC_TABLE_PREFIX = "$DYNAMIC.table_"
ORIGIN_BYTES = 6


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
        schema_converter: Callable[[dict[str, Any], str], VType] | None = None,
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

    def register_schema(self, schema: dict[str, Any], scope: str) -> str:
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

    def infer_schema_from_row(self, row: Sequence[Any], colnames: Iterable[Any] | None = None) -> dict[str, Any]:
        """A table vtype schema dict inferred from one row's Python values.

        Columns are listed under both ``row`` and ``rows`` (the same dict), so
        code written for either spelling works. Names default to ``col<index>``.
        The dict has no ``name``: add one before :meth:`register_schema`.
        """
        values = list(row)
        names = column_names(len(values), colnames)
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
            names = column_names(len(list(colnames)), colnames)
            columns = {name: DataTypeReference(SCALAR, "com.sap.core.string") for name in names}
        else:
            values = list(row)
            names = column_names(len(values), colnames)
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


def resolve_registry(registry: Any) -> Any:
    """Accept a registry, a TypeContext or None (the default context's registry)."""
    if registry is None:
        return get_default_type_context().registry
    if isinstance(registry, TypeContext):
        return registry.registry
    return registry
