"""Graph validation: everything that can be checked before a graph runs.

:func:`validate` returns every problem it finds (it never stops at the first)
so ``snapgraph validate`` can show them all. The checks follow DI's
validation rules where they are documented (incompatible ports, error port
for ``propagate to error port``, snapshot limitations) and add the ones a
local runner can do cheaply (script syntax, Gen1 API calls in a script, unconnected
Graph Terminator, a delivery declaration on a built-in).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from snapgraph.model.builtins import BUILTINS
from snapgraph.model.graph import (
    PROPAGATE_TO_ERROR_PORT,
    SNAPSHOT_WHILE_BUSY,
    Connection,
    Graph,
    Process,
    error_handling_mode,
    snapshot_while_busy,
)
from snapgraph.model.problems import Problem
from snapgraph.model.types import ANY, NONE, incompatibility
from snapgraph.model.vtypes import VTypeRegistry, referenced_vtype_ids

RESTART_POLICIES = ("never", "restart")
ERROR_PORT = "error"


@dataclass(frozen=True, eq=False)
class LocatedConnection(Connection):
    """A Connection that remembers where it was written (``graph.yaml:14``).

    It compares and hashes exactly like a plain Connection with the same ends;
    the location only improves error messages.
    """

    location: str = field(default="")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Connection):
            return self.src == other.src and self.tgt == other.tgt
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.src, self.tgt))


def _connection_where(graph: Graph, conn: Connection) -> str:
    location = getattr(conn, "location", "") or str(graph.path)
    return f"{location}: connection '{conn}'"


def _port_list(ports: Mapping[str, object]) -> str:
    return ", ".join(sorted(ports)) if ports else "none"


def validate(graph: Graph, *, snapshots: bool = False) -> list[Problem]:
    """Every problem with ``graph``; with ``snapshots=True`` also the snapshot limitations."""
    return validate_graph(graph, snapshots=snapshots)


def validate_graph(graph: Graph, *, snapshots: bool = False,
                   skip: frozenset[str] | set[str] = frozenset()) -> list[Problem]:
    """:func:`validate`, ignoring connections that touch the processes in ``skip``.

    The loader passes processes that already failed to load, so a missing
    custom operator is reported once instead of once per connection.
    """
    problems: list[Problem] = []
    registry = graph.vtypes if graph.vtypes is not None else VTypeRegistry()
    if not graph.processes and not skip:
        problems.append(Problem(str(graph.path), "the graph has no processes"))
    problems += _check_connections(graph, skip)
    problems += _check_vtypes(graph, registry)
    for process in graph.processes.values():
        if process.name in skip:
            continue
        problems += _check_error_handling(graph, process)
        problems += _check_snapshot_while_busy(graph, process)
        problems += _check_delivery_declaration(process)
        problems += _check_script(process)
        problems += _check_builtin_config(process)
    problems += _check_builtin_inputs(graph, skip)
    problems += _check_groups(graph, snapshots)
    if snapshots:
        cycle = find_cycle(graph)
        if cycle:
            problems.append(
                Problem(str(graph.path), "snapshots do not support cycles, but the graph has the "
                        f"cycle {' -> '.join(cycle)}")
            )
    return problems


def _check_connections(graph: Graph, skip: frozenset[str] | set[str]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    for conn in graph.connections:
        where = _connection_where(graph, conn)
        if conn.src.process in skip or conn.tgt.process in skip:
            continue
        key = (conn.src.process, conn.src.port, conn.tgt.process, conn.tgt.port)
        if key in seen:
            problems.append(Problem(where, "the same connection is declared twice"))
            continue
        seen.add(key)
        ok = True
        src_proc = graph.processes.get(conn.src.process)
        tgt_proc = graph.processes.get(conn.tgt.process)
        for end, proc, role in ((conn.src, src_proc, "source"), (conn.tgt, tgt_proc, "target")):
            if proc is None:
                problems.append(
                    Problem(where, f"unknown {role} process '{end.process}' "
                            f"(processes: {_port_list(graph.processes)})")
                )
                ok = False
        if src_proc is not None and conn.src.port not in src_proc.outports:
            hint = " (it is an input port)" if conn.src.port in src_proc.inports else ""
            problems.append(
                Problem(where, f"process '{src_proc.name}' has no output port '{conn.src.port}'{hint} "
                        f"(output ports: {_port_list(src_proc.outports)})")
            )
            ok = False
        if tgt_proc is not None and conn.tgt.port not in tgt_proc.inports:
            hint = " (it is an output port)" if conn.tgt.port in tgt_proc.outports else ""
            problems.append(
                Problem(where, f"process '{tgt_proc.name}' has no input port '{conn.tgt.port}'{hint} "
                        f"(input ports: {_port_list(tgt_proc.inports)})")
            )
            ok = False
        if not ok or src_proc is None or tgt_proc is None:
            continue
        src_type = src_proc.outports[conn.src.port].type
        tgt_type = tgt_proc.inports[conn.tgt.port].type
        reason = incompatibility(src_type, tgt_type)
        if reason:
            problems.append(
                Problem(where, f"incompatible ports: {conn.src} ({src_type}) -> {conn.tgt} "
                        f"({tgt_type}): {reason}")
            )
    return problems


def _check_vtypes(graph: Graph, registry: VTypeRegistry) -> list[Problem]:
    problems: list[Problem] = []
    reported: set[tuple[str, str, str]] = set()
    for process in graph.processes.values():
        for direction, ports in (("input", process.inports), ("output", process.outports)):
            for port in ports.values():
                ptype = port.type
                if ptype.category in (ANY, NONE) or ptype.is_dynamic:
                    continue
                where = f"{process.location}, {direction} port '{port.name}'"
                vtype = registry.get(ptype.vtype_id)
                if vtype is None:
                    problems.append(
                        Problem(where, f"unknown vtype '{ptype.vtype_id}' (define it in a .vtype file "
                                "in the vtypes/ folder beside the graph or in an --operators folder)")
                    )
                    continue
                if vtype.category != ptype.category:
                    problems.append(
                        Problem(where, f"port type is {ptype.category} but vtype '{ptype.vtype_id}' "
                                f"is a {vtype.category}")
                    )
                _, missing = referenced_vtype_ids(registry, ptype.vtype_id)
                for owner, member, missing_id in missing:
                    if (owner, member, missing_id) in reported:
                        continue
                    reported.add((owner, member, missing_id))
                    source = registry.source_of(owner) or owner
                    problems.append(
                        Problem(source, f"vtype '{owner}': '{member}' refers to unknown vtype "
                                f"'{missing_id}'")
                    )
    return problems


def _check_error_handling(graph: Graph, process: Process) -> list[Problem]:
    if not process.is_python:
        return []
    where = str(process.location)
    try:
        mode = error_handling_mode(process.config)
    except ValueError as exc:
        return [Problem(where, str(exc))]
    if mode != PROPAGATE_TO_ERROR_PORT:
        return []
    if ERROR_PORT not in process.outports:
        return [Problem(where, f"errorHandling is '{PROPAGATE_TO_ERROR_PORT}' but the process has "
                        f"no output port named '{ERROR_PORT}' (output ports: "
                        f"{_port_list(process.outports)})")]
    if not graph.connections_from(process.name, ERROR_PORT):
        return [Problem(where, f"errorHandling is '{PROPAGATE_TO_ERROR_PORT}' but the output port "
                        f"'{ERROR_PORT}' is not connected")]
    return []


def _check_snapshot_while_busy(graph: Graph, process: Process) -> list[Problem]:
    where = str(process.location)
    try:
        seconds = snapshot_while_busy(process.config)
    except ValueError as exc:
        return [Problem(where, str(exc))]
    if seconds is not None and graph.connections_to(process.name):
        return [Problem(where, f"{SNAPSHOT_WHILE_BUSY} applies to operators without connected inputs (where "
                        "epochs start); an operator with inputs takes its snapshot when the barrier has "
                        "arrived on all of them, between two of its callbacks")]
    return []


def _check_delivery_declaration(process: Process) -> list[Problem]:
    """A built-in's delivery traits are on its descriptor; a graph cannot declare others for it."""
    builtin = BUILTINS.get(process.component)
    if builtin is None or process.delivery is None:
        return []
    return [Problem(str(process.location), f"{builtin.title} is a built-in operator: snapgraph knows its delivery "
                    "traits (docs/guarantees.md), so it takes no delivery declaration")]


def _check_script(process: Process) -> list[Problem]:
    script = process.script
    if script is None:
        return []
    try:
        compile(script.compilable(), script.filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 0
        text = (exc.text or "").rstrip("\n")
        if not text and line:
            lines = script.compilable().splitlines()
            if 0 < line <= len(lines):
                text = lines[line - 1]
        detail = f"\n    {text.strip()}" if text.strip() else ""
        return [Problem(str(process.location),
                        f"syntax error in script {script.filename}:{line}: {exc.msg}{detail}")]
    except ValueError as exc:  # e.g. null bytes
        return [Problem(str(process.location), f"script {script.filename} cannot be compiled: {exc}")]
    return [Problem(str(process.location), f"Gen1 API in script {script.filename}:{call.line}: {call.message}")
            for call in find_gen1_calls(ast.parse(script.compilable(), script.filename))]


# -- Gen1 API in scripts ------------------------------------------------------------------------
# One table of messages for both places that meet Gen1 code: validation finds the calls in the script
# text (find_gen1_calls), and the api object raises the same messages for what only the run can see.

# Gen1 attributes of ``api`` that Gen2 does not have -> what to use instead.
GEN1_ATTRIBUTES: dict[str, str] = {
    "send": "api.send is Gen1; in Gen2 use api.outputs.<port>.publish(data, header)",
    "Message": "api.Message is Gen1; in Gen2 publish the value and pass headers as a dict",
    "add_generator": "api.add_generator is Gen1; in Gen2 use api.set_prestart(fn)",
    "add_shutdown_handler": "api.add_shutdown_handler is Gen1; in Gen2 use api.set_shutdown(fn)",
    "remove_timer": "api.remove_timer is Gen1; in Gen2 a timer stops when its callback returns a negative number",
    "update_timer": "api.update_timer is Gen1; in Gen2 the timer callback returns the seconds until its next call",
    "remove_port_callback": "api.remove_port_callback is Gen1 only",
}

TIMER_WITH_PERIOD = (
    "api.add_timer(period, callback) is the Gen1 form; in Gen2 call api.add_timer(callback) "
    "and return the seconds until the next call from the callback"
)


def multi_port_callback(ports: Sequence[object]) -> str:
    """The message for ``api.set_port_callback([...], cb)``, the Gen1 form that waits for every port."""
    return (f"api.set_port_callback takes one port name in Gen2 (got the Gen1 list form {ports!r}); "
            "register one callback per port")


@dataclass(frozen=True)
class Gen1Call:
    """One use of the Gen1 API in a script: its line and what to write instead."""

    line: int
    message: str


def find_gen1_calls(tree: ast.AST) -> list[Gen1Call]:
    """Every use of the Gen1 API on the name ``api`` in a parsed script, in line order.

    Finds the Gen1 attributes (``api.send``, ``api.Message``, ...),
    ``api.add_timer`` with a literal period string first and
    ``api.set_port_callback`` with a literal list or tuple of ports.
    """
    found: list[Gen1Call] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_api(node.value) and node.attr in GEN1_ATTRIBUTES:
            found.append(Gen1Call(node.lineno, GEN1_ATTRIBUTES[node.attr]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_api(node.func.value):
            first = node.args[0] if node.args else None
            if node.func.attr == "add_timer" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(Gen1Call(node.lineno, TIMER_WITH_PERIOD))
            elif node.func.attr == "set_port_callback" and isinstance(first, (ast.List, ast.Tuple)):
                ports = [element.value if isinstance(element, ast.Constant) else "..." for element in first.elts]
                found.append(Gen1Call(node.lineno, multi_port_callback(ports)))
    return sorted(found, key=lambda call: call.line)


def _is_api(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "api"


def _check_builtin_config(process: Process) -> list[Problem]:
    """What a built-in's descriptor finds wrong with its config (each message names the config key)."""
    builtin = BUILTINS.get(process.component)
    if builtin is None:
        return []
    return [Problem(str(process.location), f"{builtin.title}: {message}")
            for message in builtin.config_problems(process.config)]


def _check_builtin_inputs(graph: Graph, skip: frozenset[str] | set[str]) -> list[Problem]:
    """Unconnected inputs of built-ins that need every input (the Graph Terminator)."""
    problems: list[Problem] = []
    for process in graph.processes.values():
        builtin = BUILTINS.get(process.component)
        if builtin is None or builtin.unconnected_input_problem is None or process.name in skip:
            continue
        for port in process.inports:
            if not graph.connections_to(process.name, port):
                problems.append(Problem(f"{process.location}, input port '{port}'", builtin.unconnected_input_problem))
    return problems


def _check_groups(graph: Graph, snapshots: bool) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for group in graph.groups.values():
        where = f"{graph.path}: group '{group.name}'"
        for node in group.nodes:
            if node not in graph.processes:
                problems.append(Problem(where, f"group node '{node}' is not a process of the graph"))
            elif node in owner and owner[node] != group.name:
                problems.append(
                    Problem(where, f"process '{node}' is in two groups: '{owner[node]}' and "
                            f"'{group.name}'")
                )
            else:
                owner[node] = group.name
        if not isinstance(group.multiplicity, int) or isinstance(group.multiplicity, bool):
            problems.append(Problem(where, f"multiplicity must be an integer, got {group.multiplicity!r}"))
        elif group.multiplicity < 1:
            problems.append(Problem(where, f"multiplicity must be at least 1, got {group.multiplicity}"))
        elif snapshots and group.multiplicity > 1:
            problems.append(
                Problem(where, f"snapshots do not support groups with multiplicity > 1 "
                        f"(multiplicity is {group.multiplicity})")
            )
        if group.restart_policy not in RESTART_POLICIES:
            problems.append(
                Problem(where, f"unknown restartPolicy '{group.restart_policy}' "
                        f"(expected {' or '.join(RESTART_POLICIES)})")
            )
        elif snapshots and group.restart_policy == "restart":
            problems.append(
                Problem(where, "group restart policy is 'restart' while snapshots are enabled; "
                        "a restarting group can lose messages, so use 'never'")
            )
    return problems


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of processes as ``[a, b, a]``, or None if the graph is acyclic."""
    successors: dict[str, list[str]] = {name: [] for name in graph.processes}
    for conn in graph.connections:
        if conn.src.process in successors and conn.tgt.process in successors:
            if conn.tgt.process not in successors[conn.src.process]:
                successors[conn.src.process].append(conn.tgt.process)
    white, grey, black = 0, 1, 2
    color = {name: white for name in successors}
    for start in successors:
        if color[start] != white:
            continue
        path: list[str] = [start]
        iters = [iter(successors[start])]
        color[start] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = black
                iters.pop()
                continue
            if color[nxt] == grey:
                return path[path.index(nxt):] + [nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                iters.append(iter(successors[nxt]))
    return None
