"""Every connector's behaviour by component id (the descriptors, by the same ids, are
:data:`snapgraph.model.builtins.BUILTINS`). A family adds its ``BEHAVIOURS`` here with one line."""

from __future__ import annotations

from snapgraph.connectors import files, nats, sap_database, sap_files, sql
from snapgraph.connectors.base import Setup

BEHAVIOURS: dict[str, Setup] = {
    **sql.BEHAVIOURS,
    **sap_database.BEHAVIOURS,
    **files.BEHAVIOURS, **sap_files.BEHAVIOURS,
    **nats.BEHAVIOURS,
}

__all__ = ["BEHAVIOURS"]
