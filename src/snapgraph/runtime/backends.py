"""Engine backends by name: where the groups of a graph run.

Every attempt of a run is one engine (a :class:`~snapgraph.runtime.engine.GraphDriver`); the
backend decides which. The supervisor and ``snapgraph run --backend NAME`` choose through
this one registry:

* ``process`` (the default): each group instance in an OS process of its own on this machine,
  linked by pipes (:class:`~snapgraph.runtime.processes.ProcessEngine`, re-exported here);
* ``inprocess``: every operator in this process, one dispatcher thread each, groups not
  separated (:class:`~snapgraph.runtime.engine.Engine`; ``--in-process`` and
  ``RunOptions(in_process=True)`` select it too), for debuggers and breakpoints;
* ``thread``: each group instance served on threads of this process through in-memory links
  (:mod:`snapgraph.runtime.threads`): the transport seam without processes, for tests.

A new backend (a transport that hosts groups elsewhere) registers itself with
:func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from snapgraph.model.graph import Graph
from snapgraph.runtime.engine import Engine, GraphDriver
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.processes import ProcessEngine
from snapgraph.runtime.threads import ThreadEngine
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig

DEFAULT_BACKEND = "process"
IN_PROCESS = "inprocess"

EngineFactory = Callable[..., GraphDriver]  # (graph, options, snapshots=..., faults=...) -> one attempt's engine


class UnknownBackend(ValueError):
    """No backend of that name is registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown engine backend {name!r}; known backends: {', '.join(backend_names())}")
        self.name = name


@dataclass(frozen=True)
class Backend:
    name: str
    engine: EngineFactory
    summary: str


_BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, engine: EngineFactory, summary: str) -> None:
    """Make ``engine`` available as backend ``name`` (a name registered again is replaced)."""
    _BACKENDS[name] = Backend(name, engine, summary)


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; :class:`UnknownBackend` (naming the known ones) if there is none."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise UnknownBackend(name) from None


def backend_name(options: RunOptions, name: str | None = None) -> str:
    """The backend a run uses: ``name`` if given, else ``inprocess`` for ``options.in_process``, else the default."""
    if name is not None:
        return name
    return IN_PROCESS if options.in_process else DEFAULT_BACKEND


def make_engine(name: str, graph: Graph, options: RunOptions, *, snapshots: SnapshotConfig | None = None,
                faults: FaultPlan | None = None) -> GraphDriver:
    """One attempt's engine of backend ``name``."""
    return get_backend(name).engine(graph, options, snapshots=snapshots, faults=faults)


register_backend(DEFAULT_BACKEND, ProcessEngine, "each group instance in an OS process of its own (default)")
register_backend(IN_PROCESS, Engine, "every operator in this process, groups not separated (debugging)")
register_backend("thread", ThreadEngine, "each group instance on threads of this process, in-memory links")

__all__ = ["DEFAULT_BACKEND", "IN_PROCESS", "Backend", "ProcessEngine", "UnknownBackend", "backend_name",
           "backend_names", "get_backend", "make_engine", "register_backend"]
