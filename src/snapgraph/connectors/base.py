"""What every connector is given and may raise: the contract between a connector and the runtime.

A connector's behaviour is a :data:`Setup`: called where a script body would run, with the operator's
``api`` (the same Gen2 object scripts get) and a :class:`ConnectorContext`, it registers its callbacks on
``api``. The runtime calls every registered setup the same way (:mod:`snapgraph.connectors.registry`,
:mod:`snapgraph.runtime.builtins`): a :class:`ConnectorConfigError` becomes an invalid operator (exit 2,
nothing of the run written), anything else an operator failure that recovery handles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from snapgraph.api.operator_api import Api
from snapgraph.model.builtin_operator import BuiltinOperator
from snapgraph.model.graph import Process

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
    #: every process upstream of the operator (whose messages can reach it, however many hops away), each once:
    #: a writer learns from it whether an operator before it prepares its table (Initialize HANA Table V2)
    upstream: tuple[Process, ...] = ()


Setup = Callable[[Api, ConnectorContext], None]


class EpochCommitter(Protocol):
    """A writer that commits by epoch: stages in ``serialize``, commits in ``epoch_complete``, and repairs
    in ``restore`` (the SQL writer's transactional mode, the part-file writers)."""

    def serialize(self, epoch: str) -> bytes: ...
    def epoch_complete(self, epoch: str) -> None: ...
    def restore(self, epoch: str, state: bytes) -> None: ...


def register_epoch_commits(api: Api, writer: EpochCommitter, snapshots_on: bool) -> None:
    """Make ``writer`` a stateful operator whose ``serialize``, ``epoch_complete`` and ``restore`` take
    part in snapshots, when the run takes them (without snapshots there are no epochs to commit by)."""
    if snapshots_on:
        api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
        api.set_serialize_callback(writer.serialize)
        api.set_epoch_complete_callback(writer.epoch_complete)
        api.set_restore_callback(writer.restore)


def config_of(api: Api) -> dict[str, Any]:
    """The operator's whole config (``api.config``, connections resolved) as a plain mapping."""
    return {name: getattr(api.config, name) for name in dir(api.config)}


def check_config(operator: str, descriptor: BuiltinOperator, config: Mapping[str, Any],
                 error: type[ConnectorConfigError] = ConnectorConfigError) -> None:
    """Raise ``error`` with every problem the descriptor's checks find in ``config`` (the same checks the
    model runs at validation, here against the config the operator really got)."""
    problems = descriptor.config_problems(config)
    if problems:
        raise error(f"operator {operator!r} ({descriptor.title}): " + "; ".join(problems))


__all__ = ["Checkpoint", "ConnectorConfigError", "ConnectorContext", "EpochCommitter", "Setup", "check_config",
           "config_of", "register_epoch_commits"]
