"""The graph model: processes, ports, connections and groups.

Both graph formats (SAP DI ``graph.json`` and snapgraph's YAML) load into
these classes; validation, the runtime and the snapshot protocol only ever
see this model. It knows nothing of the runtime or the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snapgraph.model.builtins import BUILTIN_COMPONENTS as BUILTIN_COMPONENTS  # the built-ins' ids, re-exported
from snapgraph.model.builtins import GRAPH_TERMINATOR_V2 as GRAPH_TERMINATOR_V2
from snapgraph.model.builtins import TERMINAL_V2 as TERMINAL_V2
from snapgraph.model.builtins import WIRETAP_V2 as WIRETAP_V2
from snapgraph.model.delivery import DeliveryTraits
from snapgraph.model.types import PortType

if TYPE_CHECKING:
    from snapgraph.model.vtypes import VTypeRegistry

PYTHON3_V2 = "com.sap.system.python3Operator.v2"

TERMINATE_ON_ERROR = "terminate on error"
LOG_AND_IGNORE = "log and ignore"
PROPAGATE_TO_ERROR_PORT = "propagate to error port"
RETRY = "retry"
ERROR_HANDLING_MODES = (TERMINATE_ON_ERROR, LOG_AND_IGNORE, PROPAGATE_TO_ERROR_PORT, RETRY)


def error_handling_mode(config: dict[str, Any]) -> str:
    """The ``errorHandling`` mode of an operator config, in any of its three spellings.

    DI writes it as a plain string, as a JSON string (``'{"type": "retry"}'``)
    or as an object (``{"type": "retry"}``); absent means terminate on error.
    Raises ValueError naming the bad value.
    """
    value = config.get("errorHandling", TERMINATE_ON_ERROR)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"errorHandling is not valid JSON: {value!r} ({exc})") from None
    if isinstance(value, dict):
        value = value.get("type", TERMINATE_ON_ERROR)
    if not isinstance(value, str) or value.strip().lower() not in ERROR_HANDLING_MODES:
        raise ValueError(
            f"unknown errorHandling {value!r} (expected one of: {', '.join(ERROR_HANDLING_MODES)})"
        )
    return value.strip().lower()


SNAPSHOT_WHILE_BUSY = "snapshotWhileBusy"  # operator config: see snapshot_while_busy


def snapshot_while_busy(config: dict[str, Any]) -> float | None:
    """Seconds after which a callback of this (source) operator no longer holds up its snapshot.

    ``snapshotWhileBusy: N`` in an operator's config opts it in: its snapshot, normally taken
    between two of its callbacks, is taken while a callback runs once that callback has run
    N seconds (docs/snapshots.md, "Snapshots during long callbacks"). Absent: None (never).
    Raises ValueError naming the bad value.
    """
    value = config.get(SNAPSHOT_WHILE_BUSY)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{SNAPSHOT_WHILE_BUSY} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_PERIOD:
        raise ValueError(f"{SNAPSHOT_WHILE_BUSY} must be a number of seconds above 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Location:
    """Where something was defined, for error messages: file plus a path inside it."""

    file: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.where}" if self.where else self.file


@dataclass
class Port:
    name: str
    type: PortType


@dataclass
class ScriptSource:
    """The Python source of an operator and the name its tracebacks show.

    ``first_line``: the line of ``filename`` the source's first line is on — 1 for script files and
    inline code without a file line, the line after ``code: |`` for a YAML block, whose lines map one
    to one onto the graph file's — so tracebacks and syntax errors name the line people edit.
    """

    text: str
    filename: str  # a real path for script files and YAML blocks, a descriptive pseudo-name otherwise
    first_line: int = 1

    def compilable(self) -> str:
        """The text to compile under ``filename``: padded so that line numbers are the file's."""
        return "\n" * (self.first_line - 1) + self.text


@dataclass
class Process:
    """One operator instance in a graph (a key of ``processes`` in graph.json)."""

    name: str
    component: str
    config: dict[str, Any] = field(default_factory=dict)
    inports: dict[str, Port] = field(default_factory=dict)
    outports: dict[str, Port] = field(default_factory=dict)
    script: ScriptSource | None = None
    # The custom operator's folder (helper modules live there), if any.
    operator_dir: Path | None = None
    group: str = "default"
    location: Location = field(default_factory=lambda: Location("<graph>"))
    # What the graph declares about its delivery (YAML ``delivery``, graph.json ``metadata.snapgraph``);
    # None: nothing declared. A built-in's traits are on its descriptor instead (model/guarantees.py).
    delivery: DeliveryTraits | None = None

    @property
    def is_python(self) -> bool:
        return self.script is not None


@dataclass(frozen=True)
class Endpoint:
    process: str
    port: str

    def __str__(self) -> str:
        return f"{self.process}.{self.port}"


@dataclass(frozen=True)
class Connection:
    src: Endpoint
    tgt: Endpoint

    def __str__(self) -> str:
        return f"{self.src} -> {self.tgt}"


@dataclass
class Group:
    name: str
    nodes: list[str] = field(default_factory=list)
    multiplicity: int = 1
    restart_policy: str = "never"
    tags: dict[str, str] = field(default_factory=dict)


MIN_PERIOD = 1.0  # seconds: the shortest snapshot period (as DI's "Capture Snapshot every x s")
MAX_PERIOD = 86400.0  # seconds: one day


def period_problem(period: float) -> str | None:
    """Why ``period`` is not a valid snapshot period, or None: the one check the file and the CLI share."""
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        return f"snapshot period {period:g}s is outside {MIN_PERIOD:g} s .. {MAX_PERIOD:g} s (1 s to 24 h)"
    return None


@dataclass
class SnapshotSettings:
    """Snapshot and recovery settings a graph file may carry (CLI flags override them)."""

    period: float | None = None  # seconds; None means snapshots are off
    max_retries: int | None = None
    retry_interval: float | None = None
    retry_threshold: float | None = None


@dataclass
class Graph:
    name: str
    path: Path
    processes: dict[str, Process] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)
    description: str = ""
    settings: SnapshotSettings = field(default_factory=SnapshotSettings)
    vtypes: VTypeRegistry | None = None

    def connections_from(self, process: str, port: str | None = None) -> list[Connection]:
        return [
            c for c in self.connections
            if c.src.process == process and (port is None or c.src.port == port)
        ]

    def connections_to(self, process: str, port: str | None = None) -> list[Connection]:
        return [
            c for c in self.connections
            if c.tgt.process == process and (port is None or c.tgt.port == port)
        ]

    def multiplicity_of(self, group: str) -> int:
        """How many instances of ``group`` a run with groups as processes starts (1 for an undeclared group,
        such as ``default``)."""
        declared = self.groups.get(group)
        return max(1, declared.multiplicity) if declared is not None else 1


class Flow:
    """Who feeds whom: the connections between the graph's processes as successor and predecessor sets."""

    def __init__(self, graph: Graph) -> None:
        self.successors: dict[str, set[str]] = {name: set() for name in graph.processes}
        self.predecessors: dict[str, set[str]] = {name: set() for name in graph.processes}
        for conn in graph.connections:
            if conn.src.process in self.successors and conn.tgt.process in self.successors:
                self.successors[conn.src.process].add(conn.tgt.process)
                self.predecessors[conn.tgt.process].add(conn.src.process)

    def reach(self, start: str, step: dict[str, set[str]]) -> set[str]:
        """Every process reachable from ``start`` along ``step`` (successors or predecessors), not itself."""
        seen: set[str] = set()
        todo = list(step[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(step[name])
        return seen - {start}

    def sources_of(self, writer: str) -> list[str]:
        """The processes without inputs that feed ``writer`` (itself if it has none), in graph order."""
        upstream = self.reach(writer, self.predecessors) | {writer}
        return [name for name in self.predecessors if name in upstream and not self.predecessors[name]]
