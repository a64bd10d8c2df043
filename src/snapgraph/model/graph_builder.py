"""Building a :class:`Graph` from what a graph-file format has parsed, shared by both formats.

The DI ``graph.json`` loader (``gen2_json.py``) and the snapgraph YAML loader (``yaml_format.py``)
each check their own spelling of processes, groups, connections and parameters and report problems
in their own words (``file:line`` for YAML, ``file: process 'x'`` for JSON); what they then build is
the same, and is built here: the graph, its parameter resolver, each process (assembled from its
component, or a stand-in marked broken when it cannot be), each group and its members, each
connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapgraph.model.graph import Endpoint, Graph, Group, Location, Port, Process
from snapgraph.model.operators_repo import OperatorsRepo, assemble_process
from snapgraph.model.params import GraphParameter, ParamResolver
from snapgraph.model.problems import Problem
from snapgraph.model.validate import LocatedConnection

__all__ = [
    "GraphBuilder",
    "LoadContext",
    "declared_parameter",
    "graph_name_from_path",
    "parameter_with_default",
    "read_graph_text",
]


@dataclass
class LoadContext:
    """What a format loader needs besides the file: params, operators and a problem list.

    ``broken`` collects processes that could not be built (unknown component,
    unreadable operator); validation skips their connections to avoid noise.
    """

    params: Mapping[str, str]
    repo: OperatorsRepo
    problems: list[Problem]
    broken: set[str] = field(default_factory=set)


def graph_name_from_path(path: Path) -> str:
    """A graph's name from where it lives.

    ``vflow/graphs/extract/usage/graph.json`` is ``extract.usage`` (the DI graph
    id); another ``graph.json`` is named after its folder, any other file by
    its stem.
    """
    path = path.resolve()
    parts = path.parts
    if path.stem == "graph":
        for index in range(len(parts) - 2, -1, -1):
            if parts[index] == "graphs" and index < len(parts) - 2:
                return ".".join(parts[index + 1:-1])
        if path.parent.name:
            return path.parent.name
    return path.stem


def read_graph_text(path: Path, problems: list[Problem]) -> str | None:
    """The text of a graph file; None (and a Problem naming the file) if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), f"cannot read graph file: {getattr(exc, 'strerror', None) or exc}"))
        return None


def declared_parameter(name: str, spec: Mapping[str, Any]) -> GraphParameter:
    """A graph parameter declared as ``{default, type, description}`` (each optional)."""
    default = spec.get("default")
    ptype = spec.get("type", "")
    return GraphParameter(
        name=name,
        default=default,
        has_default=default is not None,
        type=ptype if isinstance(ptype, str) else "",
        description=str(spec.get("description") or ""),
    )


def parameter_with_default(name: str, default: Any) -> GraphParameter:
    """A graph parameter given as just its default value (None: no default)."""
    return GraphParameter(name=name, default=default, has_default=default is not None)


class GraphBuilder:
    """One graph being loaded: the :class:`Graph`, the resolver of its ``${parameters}``, and the
    steps that add processes, groups and connections to it.

    Parameters are substituted in each process's config as it is added; :meth:`finish` reports the
    parameters that were missing or unused (into ``ctx.problems``) and returns the graph.
    """

    def __init__(self, path: Path, ctx: LoadContext, declared: dict[str, GraphParameter], *,
                 name: str | None, description: str) -> None:
        self.path = path
        self.ctx = ctx
        self.resolver = ParamResolver(declared, ctx.params, source=str(path))
        self.graph = Graph(name=name or graph_name_from_path(path), path=path, description=description)

    def add_process(
        self,
        name: str,
        component: str,
        location: Location,
        *,
        config: dict[str, Any],
        inports: dict[str, Port] | None,
        outports: dict[str, Port] | None,
        extra_inports: dict[str, Port] | None,
        extra_outports: dict[str, Port] | None,
        script_name: str,
        not_kept_if_broken: tuple[str, ...],
        script_first_line: int = 1,
    ) -> Process:
        """Add the process ``component`` makes with this config and these ports.

        A process that cannot be assembled (unknown component, unreadable script or operator) is
        added as a stand-in with the declared ports and the config less ``not_kept_if_broken``,
        and marked broken in ``ctx``; :func:`assemble_process` has reported why. Either way its
        config has its parameters substituted.
        """
        process = assemble_process(
            name,
            component,
            location,
            config=config,
            inports=inports,
            outports=outports,
            extra_inports=extra_inports,
            extra_outports=extra_outports,
            script_dir=self.path.parent,
            script_name=script_name,
            script_first_line=script_first_line,
            repo=self.ctx.repo,
            problems=self.ctx.problems,
        )
        if process is None:
            self.ctx.broken.add(name)
            process = Process(
                name=name,
                component=component,
                config={k: v for k, v in config.items() if k not in not_kept_if_broken},
                inports={**(inports or {}), **(extra_inports or {})},
                outports={**(outports or {}), **(extra_outports or {})},
                location=location,
            )
        process.config = self.resolver.apply(process.config, str(location), "")
        self.graph.processes[name] = process
        return process

    def add_group(self, name: str, nodes: list[str], *, multiplicity: int, restart_policy: str,
                  tags: Mapping[Any, Any]) -> None:
        """Add a group; its nodes that are not in another group yet become its members."""
        self.graph.groups[name] = Group(
            name=name,
            nodes=nodes,
            multiplicity=multiplicity,
            restart_policy=restart_policy,
            tags={str(k): str(v) for k, v in tags.items()},
        )
        for node in nodes:
            process = self.graph.processes.get(node)
            if process is not None and process.group == "default":
                process.group = name

    def add_connection(self, src: Endpoint, tgt: Endpoint, location: str) -> None:
        """Add a connection; ``location`` is where the graph file declares it."""
        self.graph.connections.append(LocatedConnection(src, tgt, location=location))

    def finish(self) -> Graph:
        """The graph, after reporting its missing and unused parameters."""
        self.ctx.problems.extend(self.resolver.problems())
        return self.graph
