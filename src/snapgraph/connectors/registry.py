"""Every connector's behaviour by component id (the descriptors, by the same ids, are
:data:`snapgraph.model.builtins.BUILTINS`). A family adds its ``BEHAVIOURS`` here with one line."""

from __future__ import annotations

from snapgraph.connectors import sql
from snapgraph.connectors.base import Setup

BEHAVIOURS: dict[str, Setup] = {
    **sql.BEHAVIOURS,
}

__all__ = ["BEHAVIOURS"]
