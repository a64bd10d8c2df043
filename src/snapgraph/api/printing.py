"""How message bodies print in the Terminal and Wiretap operators: :func:`describe`.

Tables print one row per line, bytes are cut short, and generated dynamic type ids are left out so
that printed output stays comparable from run to run.
"""

from __future__ import annotations

from typing import Any

from snapgraph.api.table import Record, Table
from snapgraph.api.type_context import DYNAMIC_TABLE_PREFIX

__all__ = ["describe"]

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
        rows = ", ".join(_describe_inline(r) for r in value.body[:5])
        return f"Table{type_part}({len(value)} rows: {rows}{', ...' if len(value) > 5 else ''})"
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
