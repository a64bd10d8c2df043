"""Every connector's behaviour by component id (the descriptors, by the same ids, are
:data:`snapgraph.model.builtins.BUILTINS`). A family adds its ``BEHAVIOURS`` here with one line.

A family whose driver is an optional extra (NATS: ``nats-py``) is imported only when one of its
operators loads, so that snapgraph without that extra runs every other graph; a graph that uses it
without the driver is refused with the ``pip install`` line to run (exit 2, nothing written)."""

from __future__ import annotations

import importlib

from snapgraph.api.operator_api import Api
from snapgraph.connectors import files, sap_codecs, sap_database, sap_files, sap_hana_sql, sql
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext, Setup
from snapgraph.model.nats_builtins import NATS_BUILTINS


def _with_extra(module: str, component: str, extra: str, driver: str) -> Setup:
    """The setup of ``component`` from ``module``, imported when the operator loads."""
    def setup(api: Api, context: ConnectorContext) -> None:
        try:
            behaviours = importlib.import_module(module).BEHAVIOURS
        except ImportError as err:
            raise ConnectorConfigError(
                f"operator {context.operator!r} ({component}) needs the {driver} driver, which is not installed: "
                f"pip install 'snapgraph[{extra}]' ({err})") from err
        behaviours[component](api, context)

    return setup


BEHAVIOURS: dict[str, Setup] = {
    **sql.BEHAVIOURS,
    **sap_database.BEHAVIOURS, **sap_hana_sql.BEHAVIOURS,
    **files.BEHAVIOURS, **sap_files.BEHAVIOURS,
    **sap_codecs.BEHAVIOURS,
    **{b.component: _with_extra("snapgraph.connectors.nats", b.component, "nats", "nats-py") for b in NATS_BUILTINS},
}

__all__ = ["BEHAVIOURS"]
