from __future__ import annotations

from pathlib import Path

from snapgraph.model.graph import (
    GRAPH_TERMINATOR_V2,
    PYTHON3_V2,
    Connection,
    Endpoint,
    Graph,
    Group,
    Location,
    Port,
    Process,
    ScriptSource,
)
from snapgraph.model.types import ANY_PORT, PortType
from snapgraph.model.validate import LocatedConnection, find_cycle, validate, validate_graph
from snapgraph.model.vtypes import VTypeRegistry, vtype_from_schema

STRING = PortType("scalar", "com.sap.core.string")
TABLE = PortType("table", "*")


def py(name: str, *, ins: dict[str, PortType] | None = None, outs: dict[str, PortType] | None = None,
       script: str = "pass\n", **config: object) -> Process:
    return Process(
        name=name,
        component=PYTHON3_V2,
        config=dict(config),
        inports={k: Port(k, t) for k, t in (ins or {}).items()},
        outports={k: Port(k, t) for k, t in (outs or {}).items()},
        script=ScriptSource(script, f"{name}.py"),
        location=Location("g.json", f"process '{name}'"),
    )


def terminator(name: str = "stop", ports: tuple[str, ...] = ("in",)) -> Process:
    return Process(name=name, component=GRAPH_TERMINATOR_V2,
                   inports={p: Port(p, ANY_PORT) for p in ports},
                   location=Location("g.json", f"process '{name}'"))


def link(src: str, tgt: str) -> Connection:
    sp, so = src.split(".")
    tp, to = tgt.split(".")
    return Connection(Endpoint(sp, so), Endpoint(tp, to))


def graph_of(*processes: Process, connections: list[Connection] | None = None,
             groups: list[Group] | None = None) -> Graph:
    graph = Graph(name="g", path=Path("g.json"))
    graph.processes = {p.name: p for p in processes}
    graph.connections = list(connections or [])
    graph.groups = {g.name: g for g in groups or []}
    graph.vtypes = VTypeRegistry()
    return graph


def messages(graph: Graph, **kwargs: object) -> list[str]:
    return [str(p) for p in validate(graph, **kwargs)]


def test_valid_graph_has_no_problems() -> None:
    graph = graph_of(py("gen", outs={"out": STRING}), terminator(), connections=[link("gen.out", "stop.in")])
    assert validate(graph) == []
    assert validate(graph, snapshots=True) == []


def test_empty_graph() -> None:
    assert messages(graph_of()) == ["g.json: the graph has no processes"]


def test_unknown_process_and_ports_list_what_exists() -> None:
    graph = graph_of(
        py("gen", ins={"in": STRING}, outs={"out": STRING, "log": STRING}), terminator(),
        connections=[link("gen.outt", "stop.in"), link("gen.out", "stop.nope"), link("ghost.out", "stop.in"),
                     link("gen.in", "stop.in"), link("gen.out", "gen.out")])
    assert messages(graph) == [
        "g.json: connection 'gen.outt -> stop.in': process 'gen' has no output port 'outt' "
        "(output ports: log, out)",
        "g.json: connection 'gen.out -> stop.nope': process 'stop' has no input port 'nope' (input ports: in)",
        "g.json: connection 'ghost.out -> stop.in': unknown source process 'ghost' (processes: gen, stop)",
        "g.json: connection 'gen.in -> stop.in': process 'gen' has no output port 'in' (it is an input "
        "port) (output ports: log, out)",
        "g.json: connection 'gen.out -> gen.out': process 'gen' has no input port 'out' (it is an output "
        "port) (input ports: in)",
    ]


def test_duplicate_connection() -> None:
    graph = graph_of(py("gen", outs={"out": STRING}), terminator(),
                     connections=[link("gen.out", "stop.in"), link("gen.out", "stop.in")])
    assert messages(graph) == ["g.json: connection 'gen.out -> stop.in': the same connection is declared twice"]


def test_incompatible_ports() -> None:
    graph = graph_of(py("gen", outs={"output": TABLE}), py("w", ins={"input": STRING}),
                     connections=[link("gen.output", "w.input")])
    assert messages(graph) == [
        "g.json: connection 'gen.output -> w.input': incompatible ports: gen.output (table:*) -> "
        "w.input (scalar:com.sap.core.string): table cannot feed scalar"
    ]


def test_located_connection_is_reported_at_its_line() -> None:
    conn = LocatedConnection(Endpoint("gen", "x"), Endpoint("stop", "in"), location="g.yaml:14")
    graph = graph_of(py("gen"), terminator(), connections=[conn])
    assert messages(graph)[0].startswith("g.yaml:14: connection 'gen.x -> stop.in': ")


def test_located_connection_equals_plain_connection() -> None:
    plain = link("a.o", "b.i")
    located = LocatedConnection(plain.src, plain.tgt, location="g.yaml:3")
    assert located == plain and plain == located
    assert hash(located) == hash(plain)
    assert plain in [located] and located in {plain}


def test_unknown_vtypes_and_category_mismatch() -> None:
    graph = graph_of(
        py("p", ins={"a": PortType("table", "my.orders"), "b": PortType("table", "com.sap.core.string")},
           outs={"c": PortType("structure", "com.sap.error")}))
    assert messages(graph) == [
        "g.json: process 'p', input port 'a': unknown vtype 'my.orders' (define it in a .vtype file in the "
        "vtypes/ folder beside the graph or in an --operators folder)",
        "g.json: process 'p', input port 'b': port type is table but vtype 'com.sap.core.string' is a scalar",
    ]


def test_dangling_reference_inside_vtype() -> None:
    graph = graph_of(py("p", ins={"a": PortType("table", "t")}))
    graph.vtypes.register(vtype_from_schema({"name": "t", "vflow.type": "table", "rows": {"components": [
        {"x": {"vflow.type": "scalar", "vtype-ID": "$GRAPH.str_10"}}]}}, "global"), source="t.vtype")
    assert messages(graph) == ["t.vtype: vtype 't': 'x' refers to unknown vtype '$GRAPH.str_10'"]


def test_error_handling_values() -> None:
    graph = graph_of(py("a", errorHandling="explode"), py("b", errorHandling='{"type": "retry"}'),
                     py("c", errorHandling={"type": "log and ignore"}), py("d", errorHandling="{bad json"))
    problems = messages(graph)
    assert len(problems) == 2
    assert problems[0].startswith("g.json: process 'a': unknown errorHandling 'explode' (expected one of:")
    assert problems[1].startswith("g.json: process 'd': errorHandling is not valid JSON")


def test_propagate_to_error_port_needs_connected_error_port() -> None:
    mode = {"errorHandling": "propagate to error port"}
    no_port = py("a", outs={"out": STRING}, **mode)
    unconnected = py("b", outs={"error": PortType("structure", "com.sap.error")}, **mode)
    connected = py("c", outs={"error": PortType("structure", "com.sap.error")}, **mode)
    sink = py("sink", ins={"in": PortType("structure", "*")})
    graph = graph_of(no_port, unconnected, connected, sink, connections=[link("c.error", "sink.in")])
    assert messages(graph) == [
        "g.json: process 'a': errorHandling is 'propagate to error port' but the process has no output "
        "port named 'error' (output ports: out)",
        "g.json: process 'b': errorHandling is 'propagate to error port' but the output port 'error' is "
        "not connected",
    ]


def test_unconnected_terminator_port() -> None:
    graph = graph_of(py("gen", outs={"out": STRING}), terminator(ports=("in", "in2")),
                     connections=[link("gen.out", "stop.in")])
    assert messages(graph) == [
        "g.json: process 'stop', input port 'in2': Graph Terminator input port is not connected, so the "
        "graph could never terminate (it stops only after every input port received a message)"
    ]


def test_script_syntax_error_names_file_line_and_text() -> None:
    graph = graph_of(py("gen", script="x = 1\nif x\n    pass\n"))
    problems = messages(graph)
    assert len(problems) == 1
    assert problems[0].startswith("g.json: process 'gen': syntax error in script gen.py:2: ")
    assert problems[0].endswith("\n    if x")


def test_gen1_api_use_is_reported_at_its_line_with_the_gen2_replacement() -> None:
    script = (
        "api.add_generator(lambda: None)\n"
        "api.add_shutdown_handler(print)\n"
        "def later():\n"
        "    api.remove_timer(t)\n"
        "    api.update_timer(t, '2s')\n"
        "    api.remove_port_callback('a')\n"
        "api.set_port_callback(('a', port), print)\n"
    )
    problems = messages(graph_of(py("old", script=script)))
    prefix = "g.json: process 'old': Gen1 API in script old.py:"
    assert problems == [
        prefix + "1: api.add_generator is Gen1; in Gen2 use api.set_prestart(fn)",
        prefix + "2: api.add_shutdown_handler is Gen1; in Gen2 use api.set_shutdown(fn)",
        prefix + "4: api.remove_timer is Gen1; in Gen2 a timer stops when its callback returns a negative number",
        prefix + "5: api.update_timer is Gen1; in Gen2 the timer callback returns the seconds until its next call",
        prefix + "6: api.remove_port_callback is Gen1 only",
        prefix + "7: api.set_port_callback takes one port name in Gen2 (got the Gen1 list form ['a', '...']); "
                 "register one callback per port",
    ]


def test_gen2_calls_and_other_objects_are_not_taken_for_gen1() -> None:
    script = (
        "import socket\n"
        "period = '1s'\n"
        "api.add_timer(lambda: 1)\n"
        "api.set_port_callback('in', print)\n"
        "api.add_timer(period, print)\n"        # not a literal: only the run can tell
        "socket.socket().send(b'x')\n"
        "api.outputs.out.publish(None, {'send': [1]})\n"
    )
    assert messages(graph_of(py("new", ins={"in": STRING}, script=script))) == []


def test_a_script_with_a_syntax_error_gets_no_gen1_report() -> None:
    problems = messages(graph_of(py("old", script="api.send(1\n")))
    assert len(problems) == 1 and "syntax error in script old.py:1" in problems[0]


def test_groups() -> None:
    graph = graph_of(py("a"), py("b"), groups=[
        Group("g1", nodes=["a", "ghost"], multiplicity=0),
        Group("g2", nodes=["a", "b"], restart_policy="sometimes"),
    ])
    assert messages(graph) == [
        "g.json: group 'g1': group node 'ghost' is not a process of the graph",
        "g.json: group 'g1': multiplicity must be at least 1, got 0",
        "g.json: group 'g2': process 'a' is in two groups: 'g1' and 'g2'",
        "g.json: group 'g2': unknown restartPolicy 'sometimes' (expected never or restart)",
    ]


def test_snapshot_limitations_only_with_snapshots() -> None:
    graph = graph_of(
        py("a", ins={"i": STRING}, outs={"o": STRING}), py("b", ins={"i": STRING}, outs={"o": STRING}),
        py("c", ins={"i": STRING}),
        connections=[link("a.o", "b.i"), link("b.o", "a.i"), link("b.o", "c.i")],
        groups=[Group("g", nodes=["a"], multiplicity=2), Group("h", nodes=["c"], restart_policy="restart")])
    assert validate(graph) == []
    assert messages(graph, snapshots=True) == [
        "g.json: group 'g': snapshots do not support groups with multiplicity > 1 (multiplicity is 2)",
        "g.json: group 'h': group restart policy is 'restart' while snapshots are enabled; a restarting "
        "group can lose messages, so use 'never'",
        "g.json: snapshots do not support cycles, but the graph has the cycle a -> b -> a",
    ]


def test_find_cycle() -> None:
    procs = [py(n, ins={"i": STRING}, outs={"o": STRING}) for n in "abcd"]
    acyclic = graph_of(*procs, connections=[link("a.o", "b.i"), link("b.o", "c.i"), link("a.o", "c.i")])
    assert find_cycle(acyclic) is None
    cyclic = graph_of(*procs, connections=[link("a.o", "b.i"), link("b.o", "c.i"), link("c.o", "d.i"),
                                           link("d.o", "b.i")])
    assert find_cycle(cyclic) == ["b", "c", "d", "b"]
    self_loop = graph_of(*procs, connections=[link("a.o", "a.i")])
    assert find_cycle(self_loop) == ["a", "a"]


def test_skip_hides_connections_of_broken_processes() -> None:
    graph = graph_of(py("gen", outs={"out": STRING}), terminator(),
                     connections=[link("ghost.out", "stop.in")])
    assert validate_graph(graph, skip={"ghost"}) == []
    assert "unknown source process 'ghost'" in messages(graph)[0]


def test_all_problems_are_reported_together() -> None:
    graph = graph_of(
        py("a", outs={"o": TABLE}, script="def (:\n", errorHandling="nope"),
        py("b", ins={"i": STRING}),
        terminator(),
        connections=[link("a.o", "b.i"), link("a.x", "b.i")],
        groups=[Group("g", nodes=["zz"])])
    problems = messages(graph)
    assert len(problems) == 6, problems


def test_a_built_in_s_config_is_checked_by_its_descriptor_naming_the_key() -> None:
    reader = Process(name="read", component="snapgraph.sql.reader", config={"table": "t"},
                     outports={"output": Port("output", TABLE)}, location=Location("g.json", "process 'read'"))
    writer = Process(name="write", component="snapgraph.sql.writer",
                     config={"connection": {"connectionID": "DB", "connectionType": "SQLITE",
                                            "connectionProperties": {"path": "x.db"}},
                             "table": "t", "mode": "sideways"},
                     inports={"input": Port("input", TABLE)}, location=Location("g.json", "process 'write'"))
    found = messages(graph_of(reader, writer, connections=[link("read.output", "write.input")]))
    assert any(m.startswith("g.json: process 'read': SQL Reader: config 'connection' is missing") for m in found)
    assert any(m.startswith("g.json: process 'read': SQL Reader: config 'key' is missing") for m in found)
    assert any(m.startswith("g.json: process 'write': SQL Writer: config 'mode'") for m in found), found
