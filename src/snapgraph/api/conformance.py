"""Port conformance: whether a value may be published on (or sent to) a port of a given type, and
if not, a message that names the expected type.

This check runs on every publish to a typed port, so the common cases are decided by a value's exact
Python type before any ABC test.
"""

from __future__ import annotations

import datetime
import decimal
import numbers
from collections.abc import Sequence
from typing import Any

from snapgraph.api.table import Record, Table
from snapgraph.api.type_context import TypeContext
from snapgraph.model.types import (
    ANY,
    BINARY_TEMPLATES,
    CORE_SCALAR_TEMPLATES,
    DECIMAL_TEMPLATES,
    DYNAMIC,
    FLOAT_TEMPLATES,
    INT_TEMPLATE_RANGES,
    NONE,
    STRUCTURE,
    TABLE,
    PortType,
    VTypeTable,
)

__all__ = ["conforms"]

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
    if template in INT_TEMPLATE_RANGES:
        if not _is_int(value):
            return f"expected an int for {where}, got {got}"
        low, high = INT_TEMPLATE_RANGES[template]
        if not low <= int(value) <= high:
            return f"expected an int in [{low}, {high}] for {where}, got {value}"
        return None
    if template in FLOAT_TEMPLATES:
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
    if template in DECIMAL_TEMPLATES:
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
    **{template: frozenset({float, int}) for template in FLOAT_TEMPLATES},
    **{template: frozenset({bytes}) for template in BINARY_TEMPLATES},
    **{template: frozenset({decimal.Decimal, float, int, str}) for template in DECIMAL_TEMPLATES},
}


def _fits_quickly(value: Any, template: str) -> bool:
    """Whether ``value`` surely fits ``template``, told by its exact type (False: look closer)."""
    if type(value) is int:
        bounds = INT_TEMPLATE_RANGES.get(template)
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

