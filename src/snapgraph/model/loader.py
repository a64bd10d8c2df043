"""Load any supported graph file into a validated :class:`Graph`.

:func:`load_graph` is the one entry point the CLI and the runtime use. It
picks the format by extension, loads vtypes and custom operators, substitutes
parameters, resolves managed connections and validates, then raises a single
:class:`GraphError` carrying every problem found, or returns the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from snapgraph.model.connections import ConnectionStore, load_connections, resolve_connections
from snapgraph.model.gen2_json import load_gen2_json
from snapgraph.model.graph import Graph
from snapgraph.model.graph_builder import LoadContext
from snapgraph.model.operators_repo import OperatorsRepo
from snapgraph.model.problems import GraphError, Problem
from snapgraph.model.validate import validate_graph
from snapgraph.model.vtypes import VTypeRegistry, load_vtype_files
from snapgraph.model.yaml_format import load_yaml_graph

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
VTYPES_FOLDER = "vtypes"


@dataclass
class LoadOptions:
    """How to load a graph: ``--param`` values, ``--operators`` folders, ``--connections`` file.

    ``snapshots`` selects the extra snapshot checks: True/False force them on
    or off; None (the default) follows the graph's own ``snapshots`` setting.
    """

    params: dict[str, str] = field(default_factory=dict)
    operator_dirs: list[Path] = field(default_factory=list)
    connections_file: Path | None = None
    snapshots: bool | None = None


def load_graph(path: Path, options: LoadOptions | None = None) -> Graph:
    """Load, resolve and validate the graph at ``path``; raise GraphError with every problem."""
    options = options or LoadOptions()
    path = Path(path)
    if not path.is_file():
        reason = "is a directory, not a graph file" if path.is_dir() else "does not exist"
        raise GraphError([Problem(str(path), f"graph file {reason}")])
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise GraphError([Problem(str(path), f"cannot read graph file: {exc.strerror or exc}")]) from None
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + YAML_SUFFIXES:
        raise GraphError([
            Problem(str(path), f"unknown graph file type '{path.suffix}' (expected .json for a DI "
                    "graph.json, or .yaml/.yml for a snapgraph YAML graph)")
        ])

    problems: list[Problem] = []
    registry = VTypeRegistry()
    load_vtype_files(path.parent / VTYPES_FOLDER, registry, problems, scope="local")
    repo = OperatorsRepo(list(options.operator_dirs), registry, problems)
    store: ConnectionStore | None = None
    if options.connections_file is not None:
        store = load_connections(Path(options.connections_file), problems)

    ctx = LoadContext(params=dict(options.params), repo=repo, problems=problems)
    if suffix in JSON_SUFFIXES:
        graph = load_gen2_json(path, ctx)
    else:
        graph = load_yaml_graph(path, ctx)
    if graph is None:
        raise GraphError(problems)

    for process in graph.processes.values():
        process.config = resolve_connections(process.config, store, str(process.location), problems)
    graph.vtypes = registry

    snapshots = options.snapshots
    if snapshots is None:
        snapshots = graph.settings.period is not None
    problems.extend(validate_graph(graph, snapshots=snapshots, skip=ctx.broken))
    if problems:
        raise GraphError(_dedupe(problems))
    return graph


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    unique: list[Problem] = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique
