"""snapgraph's native YAML graph format, for graphs written by hand.

A short example (docs/graph-formats.md has the full reference)::

    name: orders-demo
    parameters: {rows: 1000}
    operators:
      gen:
        script: gen.py
        outputs: {output: table}
        config: {rows: "${rows}"}
      stop: {component: graphTerminator}
    connections:
      - gen.output -> stop.in

The file is loaded with the line-numbering YAML loader of ``yaml_lines.py``, so every
problem names ``file:line``; duplicate keys (an easy way to lose an operator)
are errors rather than silently overwritten. Port types are spelled as
``type_shorthand.py`` parses them. This module checks the YAML spelling and
reports its problems; ``graph_builder.py`` builds the graph, as for graph.json.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, overload

import yaml

from snapgraph.model.builtins import BUILTIN_ALIASES
from snapgraph.model.delivery import DeliveryTraits, parse_declaration
from snapgraph.model.graph import (
    BUILTIN_COMPONENTS,
    PYTHON3_V2,
    Endpoint,
    Graph,
    Location,
    Port,
    SnapshotSettings,
    period_problem,
)
from snapgraph.model.graph_builder import (
    GraphBuilder,
    LoadContext,
    declared_parameter,
    parameter_with_default,
    read_graph_text,
)
from snapgraph.model.operators_repo import FILE_PREFIX
from snapgraph.model.params import GraphParameter, ParamResolver
from snapgraph.model.problems import Problem
from snapgraph.model.type_shorthand import parse_type_shorthand
from snapgraph.model.types import ANY, PortType
from snapgraph.model.yaml_lines import (
    MarkedDict,
    MarkedList,
    load_marked_yaml,
    plain,
    yaml_error_location,
    yaml_error_reason,
)

__all__ = ["COMPONENT_ALIASES", "load_yaml_graph"]

# Component short names accepted in ``component:``.
COMPONENT_ALIASES = {
    "python": PYTHON3_V2,
    "python3": PYTHON3_V2,
    **BUILTIN_ALIASES,  # graphTerminator, terminator, terminal, wiretap (model/builtins.py)
}


# --- the format ---------------------------------------------------------------

TOP_KEYS = ("name", "description", "parameters", "operators", "connections", "groups",
            "snapshots", "recovery")
OPERATOR_KEYS = ("script", "code", "component", "inputs", "outputs", "config", "group",
                 "stateful", "description", "delivery")
GROUP_KEYS = ("multiplicity", "restartPolicy", "tags", "nodes", "description")
RECOVERY_KEYS = ("max_retries", "retry_interval", "retry_threshold")
_KEY_HINTS = {
    "processes": "operators",
    "inports": "inputs", "outports": "outputs",
    "additionalinports": "inputs", "additionaloutports": "outputs",
    "errorHandling": "config: {errorHandling: ...}",
    "restart_policy": "restartPolicy",
}


class _Ctx:
    """Per-file state: the path, problems and a helper to locate lines."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.file = str(path)
        self.problems = problems

    def at(self, line: int | None) -> str:
        return f"{self.file}:{line}" if line else self.file

    def line_of(self, container: Any, key: Any = None) -> int | None:
        if isinstance(container, MarkedDict):
            if key is not None and key in container.key_lines:
                return container.key_lines[key]
            return container.line or None
        if isinstance(container, MarkedList):
            if isinstance(key, int) and 0 <= key < len(container.item_lines):
                return container.item_lines[key]
            return container.line or None
        return None

    def add(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.at(line), message))

    def check_keys(self, mapping: dict[Any, Any], allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            hint = _KEY_HINTS.get(str(key))
            if hint is None:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = close[0] if close else None
            suggestion = f" (did you mean '{hint}'?)" if hint else f" (allowed: {', '.join(allowed)})"
            self.add(self.line_of(mapping, key), f"unknown key '{key}' in {what}{suggestion}")


def _parse_parameters(value: Any, c: _Ctx) -> dict[str, GraphParameter]:
    params: dict[str, GraphParameter] = {}
    if value is None:
        return params
    if not isinstance(value, dict):
        c.add(c.line_of(value), "parameters must be a mapping of name: default")
        return params
    for name, spec in value.items():
        name = str(name)
        if (isinstance(spec, dict) and spec
                and set(map(str, spec)) <= {"default", "description", "type"}):
            params[name] = declared_parameter(name, plain(spec))
        else:
            params[name] = parameter_with_default(name, plain(spec))
    return params


def _parse_ports(value: Any, c: _Ctx, where: str, line: int | None) -> dict[str, Port] | None:
    if value is None:
        return None
    ports: dict[str, Port] = {}
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                c.add(c.line_of(value, index), f"{where}: a port list holds port names, got {item!r}")
                continue
            if item in ports:
                c.add(c.line_of(value, index), f"{where}: port '{item}' is declared twice")
                continue
            ports[item] = Port(item, PortType(ANY))
        return ports
    if not isinstance(value, dict):
        c.add(c.line_of(value), f"{where}: ports must be a mapping of name: type (or a list of names)")
        return ports
    for name, spec in value.items():
        try:
            port_type = parse_type_shorthand(spec)
        except ValueError as exc:
            c.add(c.line_of(value, name), f"{where}, port '{name}': {exc}")
            port_type = PortType(ANY)  # keep the port so its connections are not reported too
        ports[str(name)] = Port(str(name), port_type)
    return ports


def _endpoint(text: str) -> Endpoint:
    text = text.strip()
    process, sep, port = text.rpartition(".")
    if not sep or not process or not port:
        raise ValueError(f"'{text}' is not process.port")
    return Endpoint(process.strip(), port.strip())


def _parse_connection(item: Any) -> list[tuple[Endpoint, Endpoint, str]]:
    """(src, tgt, text) triples for one connection entry; raises ValueError."""
    if isinstance(item, str):
        src_text, arrow, tgt_text = item.partition("->")
        if not arrow:
            raise ValueError("expected 'process.port -> process.port'")
        targets = [t for t in (s.strip() for s in tgt_text.split(",")) if t]
        if not targets:
            raise ValueError("no target after '->'")
        src = _endpoint(src_text)
        return [(src, _endpoint(t), f"{src} -> {t}") for t in targets]
    if isinstance(item, dict):
        unknown = set(map(str, item)) - {"from", "to"}
        if unknown or "from" not in item or "to" not in item:
            raise ValueError("a connection mapping needs exactly 'from' and 'to'")
        src = _endpoint(str(item["from"]))
        targets = item["to"] if isinstance(item["to"], list) else [item["to"]]
        return [(src, _endpoint(str(t)), f"{src} -> {str(t).strip()}") for t in targets]
    raise ValueError("a connection is 'a.out -> b.in' or {from: a.out, to: b.in}")


@overload
def _number(value: Any, c: _Ctx, line: int | None, what: str, *, integer: Literal[True],
            allow_zero: bool = False) -> int | None: ...


@overload
def _number(value: Any, c: _Ctx, line: int | None, what: str, *, integer: Literal[False] = False,
            allow_zero: bool = False) -> float | int | None: ...


def _number(value: Any, c: _Ctx, line: int | None, what: str, *, integer: bool = False,
            allow_zero: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer and not float(value).is_integer():
        ok = False
    if ok and (value < 0 or (value == 0 and not allow_zero)):
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        c.add(line, f"{what} must be {kind} {bound}, got {value!r}")
        return None
    return int(value) if integer else value


def _parse_settings(data: dict[str, Any], c: _Ctx, resolver: ParamResolver) -> SnapshotSettings:
    settings = SnapshotSettings()
    snaps = data.get("snapshots")
    line = c.line_of(data, "snapshots")
    if isinstance(snaps, dict):
        c.check_keys(snaps, ("period",), "snapshots")
        settings.period = _number(resolver.apply(snaps.get("period"), c.at(line), "snapshots.period"),
                                  c, c.line_of(snaps, "period"), "snapshots.period")
    elif snaps is False or snaps is None:
        settings.period = None
    elif isinstance(snaps, (int, float, str)) and not isinstance(snaps, bool):
        settings.period = _number(resolver.apply(snaps, c.at(line), "snapshots"), c, line, "snapshots")
    else:
        c.add(line, "snapshots must be {period: <seconds>} (or just the number of seconds)")
    problem = period_problem(settings.period) if settings.period is not None else None
    if problem is not None:
        period_line = c.line_of(snaps, "period") if isinstance(snaps, dict) else line
        c.add(period_line, problem)
        settings.period = None
    recovery = data.get("recovery")
    if recovery is not None:
        rline = c.line_of(data, "recovery")
        if not isinstance(recovery, dict):
            c.add(rline, "recovery must be a mapping with max_retries, retry_interval, retry_threshold")
        else:
            c.check_keys(recovery, RECOVERY_KEYS, "recovery")
            values = {k: resolver.apply(recovery.get(k), c.at(rline), f"recovery.{k}") for k in RECOVERY_KEYS}
            settings.max_retries = _number(values["max_retries"], c, c.line_of(recovery, "max_retries"),
                                           "recovery.max_retries", integer=True, allow_zero=True)
            settings.retry_interval = _number(values["retry_interval"], c,
                                              c.line_of(recovery, "retry_interval"),
                                              "recovery.retry_interval", allow_zero=True)
            settings.retry_threshold = _number(values["retry_threshold"], c,
                                               c.line_of(recovery, "retry_threshold"),
                                               "recovery.retry_threshold", allow_zero=True)
    return settings


def _parse_delivery(spec: dict[str, Any], proc_name: str, c: _Ctx) -> DeliveryTraits:
    """An operator's ``delivery`` declaration; each problem at the line of its key."""
    value = spec["delivery"]
    traits, problems = parse_declaration(value, f"delivery of operator '{proc_name}'")
    for problem in problems:
        line = c.line_of(value, problem.key) if problem.key is not None else c.line_of(spec, "delivery")
        c.add(line, problem.message)
    return traits


def load_yaml_graph(path: Path, ctx: LoadContext) -> Graph | None:
    """Parse a snapgraph YAML graph; None if the file is not usable YAML at all.

    Problems (with ``file:line``) go to ``ctx.problems``; parameters are
    substituted here, connections/vtypes/validation are the loader's job.
    """
    problems = ctx.problems
    c = _Ctx(path, problems)
    text = read_graph_text(path, problems)
    if text is None:
        return None
    try:
        data = load_marked_yaml(text)
    except yaml.YAMLError as exc:
        problems.append(Problem(yaml_error_location(path, exc), f"invalid YAML: {yaml_error_reason(exc)}"))
        return None
    if not isinstance(data, dict):
        c.add(None, "a YAML graph must be a mapping with 'operators' and 'connections'")
        return None
    c.check_keys(data, TOP_KEYS, "the graph")

    declared = _parse_parameters(data.get("parameters"), c)
    name = data.get("name")
    description = data.get("description") or ""
    builder = GraphBuilder(path, ctx, declared, name=str(name) if name else None, description=str(description))
    resolver = builder.resolver
    builder.graph.settings = _parse_settings(data, c, resolver)

    operators = data.get("operators")
    if operators is None:
        c.add(None, "the graph has no 'operators'")
        operators = {}
    elif not isinstance(operators, dict):
        c.add(c.line_of(data, "operators"), "operators must be a mapping of name: operator")
        operators = {}
    group_members: dict[str, list[str]] = {}
    for proc_name, spec in operators.items():
        proc_name = str(proc_name)
        line = c.line_of(operators, proc_name)
        location = Location(c.at(line), f"process '{proc_name}'")
        where = str(location)
        if spec is None:
            spec = MarkedDict()
        if not isinstance(spec, dict):
            problems.append(Problem(where, "an operator must be a mapping (script/code/component, "
                                    "inputs, outputs, config)"))
            ctx.broken.add(proc_name)
            continue
        c.check_keys(spec, OPERATOR_KEYS, f"operator '{proc_name}'")
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            c.add(c.line_of(spec, "config"), f"operator '{proc_name}': config must be a mapping")
            config = {}
        config = plain(config)
        component = spec.get("component")
        has_script = "script" in spec
        has_code = "code" in spec
        # What inline code is called in tracebacks: the graph file itself, at the block's lines, when
        # it is a literal block (``code: |``); else a descriptive name.
        inline = (f"{c.file}::operators.{proc_name}.code", 1)
        if has_script and has_code:
            c.add(c.line_of(spec, "code"), f"operator '{proc_name}' has both script and code; use one")
        if has_script:
            script = spec["script"]
            if not isinstance(script, str) or not script.strip():
                c.add(c.line_of(spec, "script"), f"operator '{proc_name}': script must be a file path")
            else:
                relative = script[len(FILE_PREFIX):] if script.startswith(FILE_PREFIX) else script
                config["script"] = FILE_PREFIX + str((path.parent / relative).resolve())
        elif has_code:
            code = spec["code"]
            if not isinstance(code, str):
                c.add(c.line_of(spec, "code"), f"operator '{proc_name}': code must be a string")
            else:
                config["script"] = code
                if isinstance(spec, MarkedDict) and "code" in spec.block_lines:
                    inline = (c.file, spec.block_lines["code"])
        if component is None:
            if not (has_script or has_code):
                problems.append(Problem(where, "an operator needs 'script' or 'code' (a Python3 "
                                        "operator) or 'component' (a built-in or custom operator)"))
                ctx.broken.add(proc_name)
                continue
            component = PYTHON3_V2
        elif not isinstance(component, str) or not component:
            c.add(c.line_of(spec, "component"), f"operator '{proc_name}': component must be an id")
            ctx.broken.add(proc_name)
            continue
        component = COMPONENT_ALIASES.get(component, component)
        inputs = _parse_ports(spec.get("inputs"), c, f"operator '{proc_name}' inputs",
                              c.line_of(spec, "inputs"))
        outputs = _parse_ports(spec.get("outputs"), c, f"operator '{proc_name}' outputs",
                               c.line_of(spec, "outputs"))
        custom = component not in BUILTIN_COMPONENTS and component != PYTHON3_V2
        process = builder.add_process(
            proc_name,
            component,
            location,
            config=config,
            inports=None if custom else inputs,
            outports=None if custom else outputs,
            extra_inports=inputs if custom else None,
            extra_outports=outputs if custom else None,
            script_name=inline[0],
            script_first_line=inline[1],
            not_kept_if_broken=("script",),
        )
        if "delivery" in spec:
            process.delivery = _parse_delivery(spec, proc_name, c)
        group = spec.get("group")
        if group is not None:
            if not isinstance(group, str) or not group:
                c.add(c.line_of(spec, "group"), f"operator '{proc_name}': group must be a group name")
            else:
                group_members.setdefault(group, []).append(proc_name)

    groups = data.get("groups") or {}
    if not isinstance(groups, dict):
        c.add(c.line_of(data, "groups"), "groups must be a mapping of name: {multiplicity, restartPolicy}")
        groups = {}
    for group_name in group_members:
        if group_name not in groups:
            groups[group_name] = {}
    for group_name, spec in groups.items():
        group_name = str(group_name)
        line = c.line_of(groups, group_name)
        gwhere = c.at(line)
        spec = spec or {}
        if not isinstance(spec, dict):
            c.add(line, f"group '{group_name}' must be a mapping")
            continue
        c.check_keys(spec, GROUP_KEYS, f"group '{group_name}'")
        nodes = spec.get("nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            c.add(c.line_of(spec, "nodes"), f"group '{group_name}': nodes must be a list of operator names")
            nodes = []
        members = list(nodes) + [m for m in group_members.get(group_name, []) if m not in nodes]
        multiplicity = resolver.apply(spec.get("multiplicity", 1), f"{gwhere}: group '{group_name}'",
                                      "multiplicity")
        if isinstance(multiplicity, str):
            try:
                multiplicity = int(multiplicity)
            except ValueError:
                pass
        if not isinstance(multiplicity, int) or isinstance(multiplicity, bool):
            c.add(c.line_of(spec, "multiplicity"),
                  f"group '{group_name}': multiplicity must be an integer, got {multiplicity!r}")
            multiplicity = 1
        policy = resolver.apply(spec.get("restartPolicy", "never"), f"{gwhere}: group '{group_name}'",
                                "restartPolicy")
        tags = spec.get("tags") or {}
        if not isinstance(tags, dict):
            c.add(c.line_of(spec, "tags"), f"group '{group_name}': tags must be a mapping")
            tags = {}
        builder.add_group(group_name, members, multiplicity=multiplicity, restart_policy=str(policy), tags=tags)

    connections = data.get("connections") or []
    if not isinstance(connections, list):
        c.add(c.line_of(data, "connections"), "connections must be a list of 'a.out -> b.in'")
        connections = []
    for index, item in enumerate(connections):
        line = c.line_of(connections, index)
        try:
            parsed = _parse_connection(item)
        except ValueError as exc:
            shown = item if isinstance(item, str) else plain(item)
            c.add(line, f"connection {shown!r}: {exc}")
            continue
        for src, tgt, _text in parsed:
            builder.add_connection(src, tgt, location=c.at(line))

    return builder.finish()
