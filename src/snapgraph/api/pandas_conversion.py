"""Conversion between table rows and pandas DataFrames (``api.Table.to_dataframe`` /
``api.Table.from_dataframe``), following the Gen2 dtype mapping of the vtype templates.

pandas is optional: it is imported on first use, and its absence is reported as an ImportError that
says how to install it.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from snapgraph.api.inference import column_names, scalar_type_id_for
from snapgraph.api.type_context import TypeContext
from snapgraph.model.types import FLOAT_TEMPLATES, SCALAR, TABLE, DataTypeReference, VTypeTable

__all__ = ["dataframe_from_rows", "rows_from_dataframe"]

_PANDAS_MISSING = "api.Table.{method} needs pandas: pip install pandas"
_UINT_MAX = {"uint8": 2**8 - 1, "uint16": 2**16 - 1, "uint32": 2**32 - 1, "uint64": 2**64 - 1}


def _import_pandas(method: str) -> Any:
    """The pandas module; ImportError naming ``api.Table.<method>`` and the fix when it is missing."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(_PANDAS_MISSING.format(method=method)) from exc
    return pd


def dataframe_from_rows(
    body: list[list[Any]], type_ref: DataTypeReference | None, names: list[str], context: TypeContext
) -> tuple[Any, dict[str, Any]]:
    """``(pandas.DataFrame, {})`` for a table's rows: what ``api.Table.to_dataframe`` returns.

    ``names`` are the table's column names; the dtypes follow the templates of its vtype's columns
    (``type_ref`` resolved in ``context``), untyped columns are left to pandas.
    """
    pd = _import_pandas("to_dataframe")
    templates = _column_templates(type_ref, context, len(names))
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


def rows_from_dataframe(
    df: Any, vtype_id: str, infer_type: bool, context: TypeContext
) -> tuple[list[list[Any]], DataTypeReference | None]:
    """``(rows, type reference)`` for a DataFrame: what ``api.Table.from_dataframe`` builds a table of.

    With ``vtype_id`` the values follow that vtype's column templates and the reference names it;
    with ``infer_type`` a dynamic type is created in ``context`` (column names from the dataframe);
    else the reference is None.
    """
    pd = _import_pandas("from_dataframe")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"api.Table.from_dataframe expects a pandas.DataFrame, got {type(df).__name__}")
    width = df.shape[1]
    templates: list[str | None] = [None] * width
    if vtype_id:
        vtype = context.registry.get(vtype_id)
        if isinstance(vtype, VTypeTable) and len(vtype.columns) == width:
            templates = [context.scalar_template(ref.type_id) for ref in vtype.columns.values()]
    columns = [
        _from_series(pd, df.iloc[:, col], templates[col]) for col in range(width)
    ]
    body: list[list[Any]]
    if width:
        body = [list(row) for row in zip(*columns)]
    else:
        body = [[] for _ in range(len(df))]
    if vtype_id:
        return body, DataTypeReference(TABLE, vtype_id)
    if not infer_type:
        return body, None
    names = column_names(width, [str(c) for c in df.columns])
    type_columns = {
        name: DataTypeReference(SCALAR, _dataframe_column_type_id(df.iloc[:, col], values))
        for col, (name, values) in enumerate(zip(names, columns))
    }
    return body, context.create_new_table(type_columns)


def _column_templates(type_ref: DataTypeReference | None, context: TypeContext, width: int) -> list[str | None]:
    """The scalar template of each column, or None when the table is untyped."""
    if type_ref is not None:
        vtype = context.registry.get(type_ref.type_id)
        if isinstance(vtype, VTypeTable) and len(vtype.columns) == width:
            return [context.scalar_template(ref.type_id) for ref in vtype.columns.values()]
    return [None] * width


def _to_series(pd: Any, values: list[Any], template: str | None) -> Any:
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
        if template in FLOAT_TEMPLATES:
            return pd.Series(values, dtype="float64")
        if template in ("date", "timestamp"):
            return pd.Series(pd.to_datetime(values)).astype("datetime64[ns]")
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        pass  # values that do not fit the template stay Python objects
    return pd.Series(values, dtype=object)


def _from_series(pd: Any, series: Any, template: str | None) -> list[Any]:
    """A dataframe column as a list of plain Python values (missing -> None)."""
    values = series.tolist()
    out: list[Any] = []
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


def _dataframe_column_type_id(series: Any, values: list[Any]) -> str:
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

