"""``api.Table`` and ``api.Record``: the table and structure values operator scripts send and receive.

Plain data with no engine dependency. Tables are the hot path (the same 1000-row table may be passed
on thousands of times a second), so building a ``Table`` without type inference is O(1): the list of
row lists given is stored as ``.body`` as is, never copied or scanned. Type inference and the pandas
conversions use the default :class:`~snapgraph.api.type_context.TypeContext`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from snapgraph.api.pandas_conversion import dataframe_from_rows, rows_from_dataframe
from snapgraph.api.type_context import get_default_type_context, resolve_registry
from snapgraph.model.types import TABLE, DataTypeReference, VTypeTable

__all__ = ["Record", "Table", "table_columns"]


class Table(Sequence[Any]):
    """``api.Table(data, type_id="", infer_type=False, colnames=None)``.

    ``data`` is a list of rows, each a list; it is kept as ``.body`` without
    copying (scripts mutate rows in place). ``type_id`` names the table vtype
    (a ``DataTypeReference`` is accepted too);
    ``infer_type=True`` (with no ``type_id``) creates a dynamic type from the
    first row. Iterating yields the row lists; ``t[i]`` is a row, ``t[a:b]`` a
    new Table with the same type.
    """

    __slots__ = ("body", "type_ref")

    body: list[Any]
    type_ref: DataTypeReference | None

    def __init__(
        self,
        data: list[Any] | None = None,
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
    def _wrap(cls, body: list[Any], type_ref: DataTypeReference | None) -> Table:
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

    def __iter__(self) -> Iterator[Any]:
        return iter(self.body)

    def __reversed__(self) -> Iterator[Any]:
        rows: Iterator[Any] = reversed(self.body)
        return rows

    def __contains__(self, row: object) -> bool:
        return row in self.body

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Table: ...

    def __getitem__(self, index: int | slice) -> Any:
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

    def __getstate__(self) -> tuple[list[Any], DataTypeReference | None]:
        return (self.body, self.type_ref)

    def __setstate__(self, state: tuple[list[Any], DataTypeReference | None]) -> None:
        self.body, self.type_ref = state

    # -- pandas ------------------------------------------------------------

    def to_dataframe(self) -> tuple[Any, dict[str, Any]]:
        """``(pandas.DataFrame, headers dict)``: a tuple, as in Gen2.

        Columns are named after the table vtype's columns when typed, else
        ``col0..``. Dtypes follow the vtype templates (ints -> int64, floats ->
        float64, date/timestamp -> datetime64[ns], strings/decimals -> object);
        a column holding None becomes object dtype with ``pd.NA``.
        """
        context = get_default_type_context()
        return dataframe_from_rows(self.body, self.type_ref, table_columns(self, context), context)

    @classmethod
    def from_dataframe(cls, df: Any, vtype_id: str = "", infer_type: bool = False) -> Table:
        """A Table from a pandas DataFrame (values as plain Python objects).

        With ``vtype_id`` the table gets that type; with ``infer_type`` a new
        dynamic type is created whose column names come from the dataframe.
        Missing values (NaN, NaT, pd.NA) become None; Timestamps become
        ``datetime.datetime`` (``datetime.date`` in a date-template column).
        """
        body, type_ref = rows_from_dataframe(df, vtype_id, infer_type, get_default_type_context())
        return cls._wrap(body, type_ref)


def table_columns(table: Table, registry: Any = None) -> list[str]:
    """The column names of a table: its vtype's columns, else ``col0..``.

    ``registry`` is a vtype registry (or a TypeContext; None means the default
    context). An untyped table, or one whose vtype is unknown, gets
    ``col<index>`` names sized by its first row.
    """
    if table.type_ref is not None:
        vtype = resolve_registry(registry).get(table.type_ref.type_id)
        if isinstance(vtype, VTypeTable):
            return list(vtype.columns.keys())
    width = len(table.body[0]) if table.body else 0
    return [f"col{index}" for index in range(width)]


class Record(Sequence[Any]):
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
    def values(self) -> list[Any]:
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

    def __getstate__(self) -> list[Any]:
        return self._values

    def __setstate__(self, state: list[Any]) -> None:
        self._values = state

