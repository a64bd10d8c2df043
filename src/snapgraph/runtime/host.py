"""What an operator's runtime needs from the group it runs in.

:class:`~snapgraph.runtime.group.GroupHost` provides it; the operator side
(:mod:`snapgraph.runtime.operator`, :mod:`snapgraph.runtime.builtins`) only
knows these protocols, so it does not import the group module that builds it
(no operator -> group -> operator cycle, not even for the type checker).
"""

from __future__ import annotations

import threading
from typing import Protocol

from snapgraph.api.operator_api import RuntimeInfo
from snapgraph.api.type_context import TypeContext
from snapgraph.model.graph import Graph, Process
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import RestorePoint


class PendingWork(Protocol):
    """The group's count of pending work (``GroupHost.activity``): zero means the group is idle."""

    def add(self, n: int, published: int = 0) -> None: ...


class BuiltinHost(Protocol):
    """The little a built-in operator reaches beyond its ``api``: output to the terminal, ending the run,
    whether the run takes snapshots, the graph and how many instances of each of its processes run (what
    feeds its ports)."""

    def terminate(self, by: str) -> None: ...
    def stdout_write(self, text: str) -> None: ...
    @property
    def snapshots_on(self) -> bool: ...
    @property
    def graph(self) -> Graph: ...
    def instances_of(self, process: str) -> int: ...


class OperatorHost(BuiltinHost, Protocol):
    """What :class:`~snapgraph.runtime.operator.OperatorRuntime` calls on its group."""
    @property
    def restore(self) -> RestorePoint | None: ...
    @property
    def faults(self) -> FaultPlan: ...
    @property
    def type_context(self) -> TypeContext: ...
    @property
    def activity(self) -> PendingWork: ...
    @property
    def started(self) -> threading.Event: ...

    def runtime_info(self, process: Process) -> RuntimeInfo: ...
    def is_stopping(self) -> bool: ...
    def register_engine_thread(self) -> None: ...
    def fail(self, failure: OperatorFailure) -> None: ...
    def fail_in_shutdown(self, failure: OperatorFailure) -> None: ...
    def persist_state(self, process: str, epoch: str, data: bytes) -> None: ...
    def ack_epoch(self, process: str, epoch: str, stateful: bool) -> None: ...
