"""Type inference from Python values: the core scalar type id a cell value is inferred as, and the
column names a row gets (``col<index>`` where none is given).

What ``Table(infer_type=True)``, ``api.type_context.infer_schema_from_row`` and
``Table.from_dataframe(infer_type=True)`` build their dynamic types from.
"""

from __future__ import annotations

import datetime
import decimal
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["column_names", "scalar_type_id_for"]


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


def column_names(count: int, colnames: Iterable[Any] | None) -> list[str]:
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

