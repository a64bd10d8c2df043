"""Load a SAP DI Modeler ``graph.json`` (Gen2) into the graph model.

What is read: ``processes`` (component, ``metadata.config``, ``inports`` /
``outports`` and ``additionalinports`` / ``additionaloutports``),
``connections``, ``groups`` (name, nodes, multiplicity, ``restartPolicy``,
tags), ``parameters``, the simple forms of ``parameterMapping`` and, beyond DI,
a process's ``metadata.snapgraph.delivery`` (its delivery traits, docs/guarantees.md).
UI-only keys (positions, labels, points) are ignored. Problems are collected,
never raised, so one load reports everything wrong at once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from snapgraph.model.delivery import DeliveryTraits, parse_declaration
from snapgraph.model.graph import Endpoint, Graph, Location, Port
from snapgraph.model.graph_builder import (
    GraphBuilder,
    LoadContext,
    declared_parameter,
    parameter_with_default,
    read_graph_text,
)
from snapgraph.model.operators_repo import parse_ports
from snapgraph.model.params import GraphParameter
from snapgraph.model.problems import Problem

__all__ = ["GENERATION", "LoadContext", "load_gen2_json", "parse_parameters"]

GENERATION = 2
SNAPGRAPH_METADATA = "snapgraph"  # a process's metadata key for what snapgraph reads beyond DI


def parse_parameters(value: Any, where: str, problems: list[Problem]) -> dict[str, GraphParameter]:
    """DI ``parameters``: ``{name: {type, default, description}}`` (a bare value is the default)."""
    params: dict[str, GraphParameter] = {}
    if value is None:
        return params
    if isinstance(value, list):  # tolerate [{"name": ..., "default": ...}]
        items = []
        for entry in value:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                items.append((entry["name"], entry))
            else:
                problems.append(Problem(where, f"parameters: each entry needs a name, got {entry!r}"))
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        problems.append(Problem(where, "parameters must be an object"))
        return params
    for name, spec in items:
        params[name] = declared_parameter(name, spec) if isinstance(spec, dict) else parameter_with_default(name, spec)
    return params


def _set_path(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nested = target.get(key)
        if not isinstance(nested, dict):
            nested = {}
            target[key] = nested
        target = nested
    target[keys[-1]] = value


def _apply_parameter_mapping(data: dict[str, Any], where: str, problems: list[Problem]) -> None:
    """Apply DI ``parameterMapping`` entries (``processes.<p>.configuration.<key>``,
    ``groups.<i>.multiplicity``) to ``data`` in place; other targets are Problems."""
    mapping = data.get("parameterMapping")
    if not mapping:
        return
    if not isinstance(mapping, dict):
        problems.append(Problem(where, "parameterMapping must be an object"))
        return
    processes = data.get("processes")
    if not isinstance(processes, dict):
        processes = {}
    groups = data.get("groups")
    if not isinstance(groups, list):
        groups = []
    for target, value in mapping.items():
        parts = str(target).split(".")
        if (len(parts) >= 4 and parts[0] == "processes"
                and parts[2] in ("configuration", "config") and parts[1] in processes):
            spec = processes[parts[1]]
            if isinstance(spec, dict):
                metadata = spec.setdefault("metadata", {})
                if isinstance(metadata, dict):
                    config = metadata.setdefault("config", {})
                    if isinstance(config, dict):
                        _set_path(config, parts[3:], value)
                        continue
        if (len(parts) == 3 and parts[0] == "groups" and parts[1].isdigit()
                and int(parts[1]) < len(groups) and parts[2] in ("multiplicity", "restartPolicy")
                and isinstance(groups[int(parts[1])], dict)):
            groups[int(parts[1])][parts[2]] = value
            continue
        problems.append(
            Problem(where, f"parameterMapping target '{target}' is not supported (snapgraph maps "
                    "processes.<name>.configuration.<key> and groups.<index>.multiplicity)")
        )


def _ports_of(spec: dict[str, Any], meta: dict[str, Any], key: str, where: str,
              problems: list[Problem]) -> dict[str, Port] | None:
    value = meta.get(key, spec.get(key))
    if value is None:
        return None
    return parse_ports(value, where, key, problems)


def _int_value(value: Any, where: str, what: str, problems: list[Problem], default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        problems.append(Problem(where, f"{what} must be an integer, got {value!r}"))
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    problems.append(Problem(where, f"{what} must be an integer, got {value!r}"))
    return default


def _parse_snapgraph_metadata(value: Any, where: str, problems: list[Problem]) -> DeliveryTraits | None:
    """A process's ``metadata.snapgraph``: what snapgraph reads beyond DI (``delivery``); DI ignores it."""
    if not isinstance(value, dict):
        problems.append(Problem(where, f"metadata.{SNAPGRAPH_METADATA} must be an object with 'delivery', "
                                f"got {value!r}"))
        return None
    for key in value:
        if key != "delivery":
            problems.append(Problem(where, f"unknown key '{key}' in metadata.{SNAPGRAPH_METADATA} "
                                    "(allowed: delivery)"))
    if "delivery" not in value:
        return None
    traits, found = parse_declaration(value["delivery"], f"metadata.{SNAPGRAPH_METADATA}.delivery")
    problems.extend(Problem(where, problem.message) for problem in found)
    return traits


def load_gen2_json(path: Path, ctx: LoadContext) -> Graph | None:
    """Parse ``path`` as a DI Gen2 graph.json; None if it cannot be parsed at all.

    Every problem goes to ``ctx.problems``. Parameters are substituted here
    (process configs and group multiplicity); managed connections, vtypes
    and validation are the loader's job.
    """
    problems = ctx.problems
    file = str(path)
    text = read_graph_text(path, problems)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"{file}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(file, "a graph.json must be a JSON object with 'processes' and 'connections'"))
        return None
    metadata = data.get("metadata") or {}
    generation = metadata.get("generation") if isinstance(metadata, dict) else None
    if generation is not None and str(generation) != str(GENERATION):
        problems.append(
            Problem(file, f"metadata.generation is {generation!r}: snapgraph runs Gen2 graphs only "
                    "(metadata.generation 2)")
        )
        return None
    data = copy.deepcopy(data)
    _apply_parameter_mapping(data, file, problems)

    declared = parse_parameters(data.get("parameters"), file, problems)
    name = data.get("name") if isinstance(data.get("name"), str) and data.get("name") else None
    description = data.get("description", "")
    builder = GraphBuilder(path, ctx, declared, name=name,
                           description=description if isinstance(description, str) else "")
    resolver = builder.resolver

    processes = data.get("processes", {})
    if not isinstance(processes, dict):
        problems.append(Problem(file, "processes must be an object mapping process names to processes"))
        processes = {}
    for proc_name, spec in processes.items():
        location = Location(file, f"process '{proc_name}'")
        where = str(location)
        if not isinstance(spec, dict):
            problems.append(Problem(where, "a process must be a JSON object"))
            ctx.broken.add(proc_name)
            continue
        component = spec.get("component")
        if not isinstance(component, str) or not component:
            problems.append(Problem(where, "process has no component"))
            ctx.broken.add(proc_name)
            continue
        meta = spec.get("metadata") or {}
        if not isinstance(meta, dict):
            problems.append(Problem(where, "metadata must be an object"))
            meta = {}
        config: dict[str, Any] = {}
        for source in (spec.get("config"), meta.get("config")):
            if source is None:
                continue
            if isinstance(source, dict):
                config.update(source)
            else:
                problems.append(Problem(where, "config must be an object"))
        inports = _ports_of(spec, meta, "inports", where, problems)
        outports = _ports_of(spec, meta, "outports", where, problems)
        extra_in = _ports_of(spec, meta, "additionalinports", where, problems)
        extra_out = _ports_of(spec, meta, "additionaloutports", where, problems)
        process = builder.add_process(
            proc_name,
            component,
            location,
            config=config,
            inports=inports,
            outports=outports,
            extra_inports=extra_in,
            extra_outports=extra_out,
            script_name=f"{file}::processes.{proc_name}.config.script",
            not_kept_if_broken=("script", "codelanguage"),
        )
        if SNAPGRAPH_METADATA in meta:
            process.delivery = _parse_snapgraph_metadata(meta[SNAPGRAPH_METADATA], where, problems)

    groups = data.get("groups") or []
    if not isinstance(groups, list):
        problems.append(Problem(file, "groups must be a list"))
        groups = []
    for index, spec in enumerate(groups):
        if not isinstance(spec, dict):
            problems.append(Problem(file, f"groups[{index}] must be an object"))
            continue
        group_name = spec.get("name") or f"group{index + 1}"
        where = f"{file}: group '{group_name}'"
        if group_name in builder.graph.groups:
            problems.append(Problem(where, f"group name '{group_name}' is used twice"))
            continue
        nodes = spec.get("nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            problems.append(Problem(where, "nodes must be a list of process names"))
            nodes = []
        multiplicity = _int_value(resolver.apply(spec.get("multiplicity"), where, "multiplicity"),
                                  where, "multiplicity", problems, 1)
        policy = resolver.apply(spec.get("restartPolicy", "never"), where, "restartPolicy")
        tags = spec.get("tags") or {}
        if not isinstance(tags, dict):
            problems.append(Problem(where, "tags must be an object"))
            tags = {}
        builder.add_group(group_name, list(nodes), multiplicity=multiplicity,
                          restart_policy=str(policy) if policy is not None else "never", tags=tags)

    connections = data.get("connections") or []
    if not isinstance(connections, list):
        problems.append(Problem(file, "connections must be a list"))
        connections = []
    for index, spec in enumerate(connections):
        where = f"{file}: connections[{index}]"
        ends: list[Endpoint] = []
        if isinstance(spec, dict):
            for side in ("src", "tgt"):
                end = spec.get(side)
                if (isinstance(end, dict) and isinstance(end.get("process"), str)
                        and isinstance(end.get("port"), str)):
                    ends.append(Endpoint(end["process"], end["port"]))
                else:
                    problems.append(Problem(where, f"'{side}' must be {{\"process\": ..., \"port\": ...}}"))
        else:
            problems.append(Problem(where, "a connection must be an object with src and tgt"))
        if len(ends) == 2:
            builder.add_connection(ends[0], ends[1], location=file)

    return builder.finish()
