"""What a built-in operator is, for the model: one :class:`BuiltinOperator` descriptor each.

A descriptor says everything the model needs to know of a built-in: its component id, the short names a
YAML graph may use for it, its default ports (*any*, or *table* where it says so), whether the ports a
graph declares replace the default inputs, whether an unconnected input is a problem, what its config must
hold (:meth:`BuiltinOperator.config_problems`, checked without touching a database or a file) and what it
promises for delivery (:meth:`BuiltinOperator.delivery_of`, which may depend on the config: the SQL
writer's mode) and the crash points its connector reaches (:meth:`BuiltinOperator.crash_points_of`, for
``SNAPGRAPH_FAULTS`` and ``snapgraph chaos``). The descriptors live in one module per family (the core three in
:mod:`snapgraph.model.builtins`, which assembles them all; ``sql_builtins``, …); what a built-in does at run
time is keyed by the same component id (:mod:`snapgraph.runtime.builtins`, the connectors' registry).

Also here: the small readers of config values the families' checks share.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from snapgraph.model.delivery import UNDECLARED, DeliveryTraits

ConfigCheck = Callable[[Mapping[str, Any]], list[str]]
DeliveryByConfig = Callable[[Mapping[str, Any]], DeliveryTraits]
ConfigCondition = Callable[[Mapping[str, Any]], bool]
#: How often a crash point is reached in one engine run: once per message the operator receives
#: (``input``) or sends (``output``), once per epoch, or once.
CrashPointFrequency = Literal["input", "output", "epoch", "once"]


@dataclass(frozen=True)
class CrashPoint:
    """A named crash point of a built-in's connector (its ``context.checkpoint(name)``), reached ``per``
    message received or sent, per epoch or once; ``when``: the configs that reach it (None: every config)."""

    name: str
    per: CrashPointFrequency
    when: ConfigCondition | None = None


@dataclass(frozen=True)
class BuiltinOperator:
    component: str  # the Gen2 component id
    title: str  # how messages name it
    aliases: tuple[str, ...] = ()  # short names for ``component:`` in YAML graphs
    inports: tuple[str, ...] = ()  # default input ports (type any)
    outports: tuple[str, ...] = ()  # default output ports (type any)
    # The input ports a graph declares replace the default ones (the terminator has one per upstream).
    declared_inports_replace_defaults: bool = False
    # Why an unconnected input port is a problem (None: it is not).
    unconnected_input_problem: str | None = None
    # What it promises for the delivery guarantee (model/guarantees.py) whatever its config; see delivery_of.
    delivery: DeliveryTraits = UNDECLARED
    # Default ports of type table (the others are any).
    table_ports: tuple[str, ...] = ()
    # The problems of a config (each names the config key), None: no checks.
    config_check: ConfigCheck | None = None
    # The delivery traits of one config, where they depend on it (None: always ``delivery``).
    delivery_by_config: DeliveryByConfig | None = None
    # The crash points its connector reaches (in any config; each says which configs reach it).
    crash_points: tuple[CrashPoint, ...] = ()
    # Every config key it reads, so that a misspelt one is reported (None: not checked; SAP's operators,
    # whose configs carry many keys of the Modeler that snapgraph has no use for).
    config_keys: tuple[str, ...] | None = None

    def config_problems(self, config: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``config`` for this built-in, one message per problem (each names its key)."""
        problems = self.config_check(config) if self.config_check is not None else []
        return problems + self._unknown_keys(config)

    def _unknown_keys(self, config: Mapping[str, Any]) -> list[str]:
        if self.config_keys is None:
            return []
        problems = []
        for key in config:
            if str(key) in self.config_keys or str(key).startswith("$"):
                continue
            close = difflib.get_close_matches(str(key), self.config_keys, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"its keys: {', '.join(self.config_keys)}"
            problems.append(f"config '{key}' is not a key of the {self.title} ({hint})")
        return problems

    def delivery_of(self, config: Mapping[str, Any]) -> DeliveryTraits:
        """What this built-in promises with ``config`` (a config with problems: the weakest of its modes)."""
        if self.delivery_by_config is None or self.config_problems(config):
            return self.delivery
        return self.delivery_by_config(config)

    def crash_points_of(self, config: Mapping[str, Any]) -> tuple[CrashPoint, ...]:
        """The crash points reached with ``config`` (a config with problems: none, it does not run)."""
        if self.config_problems(config):
            return ()
        return tuple(point for point in self.crash_points if point.when is None or point.when(config))


# -- reading config values ---------------------------------------------------------------------------

def column_names(value: Any) -> list[str] | None:
    """Column names given as a list of strings or one comma-separated string; None if malformed."""
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(part, str) for part in value):
        names = [part.strip() for part in value]
    else:
        return None
    return names if names and all(names) else None


def config_switch(value: Any) -> bool | None:
    """A config switch: a bool or true/false/yes/no/1/0 as a string; None if it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    return None


def config_number(value: Any, *, integer: bool) -> float | None:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        return None
    if isinstance(value, bool) or (integer and isinstance(value, float) and not value.is_integer()):
        return None
    return number


__all__ = ["BuiltinOperator", "ConfigCheck", "ConfigCondition", "CrashPoint", "CrashPointFrequency",
           "DeliveryByConfig", "column_names", "config_number", "config_switch"]
