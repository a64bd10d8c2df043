"""The port-type shorthands of snapgraph's YAML files: ``table``, ``string``, ``table:demo.users``,
``{type: table, vtype: demo.users}`` and the like, parsed into :class:`PortType`.

Used by the YAML graph format (``yaml_format.py``) and by ``snapgraph.testing``, which declares an
operator's ports the same way.
"""

from __future__ import annotations

import difflib
from typing import Any

from snapgraph.model.types import ANY, CORE_SCALAR_TEMPLATES, DYNAMIC, NONE, SCALAR, STRUCTURE, TABLE, PortType

__all__ = ["CORE_SHORT_NAMES", "parse_type_shorthand"]

# Core scalar short name (``string``, ``int64``, ...) -> its full type id (``com.sap.core.string``).
CORE_SHORT_NAMES = {vid.rsplit(".", 1)[1]: vid for vid in CORE_SCALAR_TEMPLATES}


def parse_type_shorthand(value: Any) -> PortType:
    """A PortType from the YAML port-type spelling; raises ValueError.

    ``table``/``structure``/``scalar`` (dynamic), ``none``, ``any`` (or ``*`` or
    null), ``table:<vtype>``, ``structure:<vtype>``, ``scalar:<vtype>``, core
    scalar short names (``string``, ``int64``, ...), a full ``com.sap.core.*``
    id, or the long form ``{type: table, vtype: demo.users}``.
    """
    if value is None:
        return PortType(ANY)
    if isinstance(value, dict):
        unknown = set(map(str, value)) - {"type", "vtype", "vtype-ID"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in port type "
                             "(expected type and vtype)")
        category = value.get("type", ANY)
        vtype_id = value.get("vtype", value.get("vtype-ID", DYNAMIC))
        if category in ("*", ANY):
            return PortType(ANY)
        if category == NONE:
            return PortType(NONE)
        if category not in (SCALAR, STRUCTURE, TABLE):
            raise ValueError(f"unknown port type {category!r} (expected scalar, structure, table, "
                             "none or any)")
        if not isinstance(vtype_id, str) or not vtype_id:
            raise ValueError(f"vtype must be a type id, got {vtype_id!r}")
        return PortType(category, vtype_id)
    if not isinstance(value, str):
        raise ValueError(f"a port type must be a string such as 'table' or 'string', got {value!r}")
    text = value.strip()
    if text in ("*", ANY):
        return PortType(ANY)
    if text == NONE:
        return PortType(NONE)
    if text in (SCALAR, STRUCTURE, TABLE):
        return PortType(text, DYNAMIC)
    category, sep, vtype_id = text.partition(":")
    if sep:
        category, vtype_id = category.strip(), vtype_id.strip()
        if category not in (SCALAR, STRUCTURE, TABLE):
            raise ValueError(f"unknown port type {category!r} in {text!r} (expected scalar:, "
                             "structure: or table: before the vtype id)")
        if not vtype_id:
            raise ValueError(f"missing vtype id after '{category}:'")
        if category == SCALAR and vtype_id in CORE_SHORT_NAMES:
            vtype_id = CORE_SHORT_NAMES[vtype_id]
        return PortType(category, vtype_id)
    if text in CORE_SHORT_NAMES:
        return PortType(SCALAR, CORE_SHORT_NAMES[text])
    if text in CORE_SCALAR_TEMPLATES:
        return PortType(SCALAR, text)
    words = ["table", "structure", "scalar", "none", "any", *CORE_SHORT_NAMES]
    close = difflib.get_close_matches(text, words, n=1, cutoff=0.7)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(
        f"unknown port type {text!r} ({hint}use table, structure, none, any, a core scalar such as "
        f"string or int64, or table:<vtype id> / structure:<vtype id> / scalar:<vtype id>)"
    )
