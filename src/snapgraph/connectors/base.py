"""What every connector is given and may raise: the contract between a connector and the runtime.

A connector's behaviour is a :data:`Setup`: called where a script body would run, with the operator's
``api`` (the same Gen2 object scripts get) and a :class:`ConnectorContext`, it registers its callbacks on
``api``. The runtime calls every registered setup the same way (:mod:`snapgraph.connectors.registry`,
:mod:`snapgraph.runtime.builtins`): a :class:`ConnectorConfigError` becomes an invalid operator (exit 2,
nothing of the run written), anything else an operator failure that recovery handles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from snapgraph.api.operator_api import Api

#: A named crash point of a connector's protocol: ``checkpoint("sql_writer_staged")`` fires the faults that
#: SNAPGRAPH_FAULTS plans as ``sql_writer_staged:<operator>:<nth>[:action]`` (docs/testing.md).
Checkpoint = Callable[[str], None]


class ConnectorConfigError(ValueError):
    """A connector that cannot run as configured (a missing key, an unknown table, …): the message names
    the operator and the config key."""


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector knows of its run besides its ``api``."""

    operator: str  # the operator's name in the graph
    snapshots_on: bool  # whether the run takes snapshots (epochs, epoch_complete) at all
    checkpoint: Checkpoint  # the connector's named crash points


Setup = Callable[[Api, ConnectorContext], None]

__all__ = ["Checkpoint", "ConnectorConfigError", "ConnectorContext", "Setup"]
