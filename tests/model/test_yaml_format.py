from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from snapgraph.model.graph import GRAPH_TERMINATOR_V2, PYTHON3_V2, TERMINAL_V2, WIRETAP_V2
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.problems import GraphError
from snapgraph.model.type_shorthand import parse_type_shorthand
from snapgraph.model.types import ANY_PORT, PortType
from snapgraph.model.yaml_lines import MarkedDict, MarkedList, load_marked_yaml

from .helpers import FIXTURES

GEN = """\
def gen():
    api.outputs.output.publish(api.Table([[1]]))
api.set_prestart(gen)
"""

ORDERS_VTYPE = {"name": "my.orders", "vflow.type": "table", "rows": {"components": [
    {"id": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}}]}}

FULL = """\
name: orders-demo
description: A demo
parameters:
  rows: 1000
  label: {default: orders, description: what to call them}
operators:
  gen:
    script: gen.py
    outputs: {output: "table:my.orders"}
    config: {rows: "${rows}", errorHandling: log and ignore}
    stateful: true
  writer:
    code: |
      def on_input(msg_id, header, body):
          api.outputs.done.publish("${label}")
      api.set_port_callback("input", on_input)
    inputs: {input: "table:my.orders"}
    outputs: {done: string}
    config: {label: "${label} (${rows})"}
    group: writers
  stop:
    component: com.sap.util.graphTerminator.v2
connections:
  - gen.output -> writer.input
  - writer.done -> stop.in
groups:
  writers: {multiplicity: 1, restartPolicy: never, tags: {python: "3.11"}}
snapshots: {period: 5}
recovery: {max_retries: 3, retry_interval: 1, retry_threshold: 30}
"""


def project(files, graph: str = FULL) -> Path:
    import json

    files("proj/gen.py", GEN)
    files("proj/vtypes/my.orders.vtype", json.dumps(ORDERS_VTYPE))
    return files("proj/graph.yaml", graph)


def problems_of(path: Path, **options) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_graph(path, LoadOptions(**options))
    return [str(p) for p in info.value.problems]


def test_full_example_loads(files) -> None:
    path = project(files)
    graph = load_graph(path, LoadOptions())
    assert graph.name == "orders-demo"
    assert graph.description == "A demo"
    gen = graph.processes["gen"]
    assert gen.component == PYTHON3_V2
    assert gen.script.filename == str((path.parent / "gen.py").resolve())
    assert gen.config == {"rows": 1000, "errorHandling": "log and ignore"}
    assert gen.outports["output"].type == PortType("table", "my.orders")
    assert str(gen.location) == f"{path}:7: process 'gen'"
    writer = graph.processes["writer"]
    # Inline code in a literal block is named after the graph file, at the file's own lines.
    assert writer.script.filename == str(path) and writer.script.first_line == 14
    assert path.read_text().splitlines()[writer.script.first_line - 1].strip() == writer.script.text.splitlines()[0]
    assert '"${label}"' in writer.script.text  # scripts are not substituted
    assert writer.config == {"label": "orders (1000)"}
    assert writer.outports["done"].type == PortType("scalar", "com.sap.core.string")
    assert writer.group == "writers"
    assert graph.processes["stop"].component == GRAPH_TERMINATOR_V2
    assert graph.processes["stop"].inports["in"].type == ANY_PORT
    assert [str(c) for c in graph.connections] == ["gen.output -> writer.input", "writer.done -> stop.in"]
    assert graph.groups["writers"].nodes == ["writer"]
    assert graph.groups["writers"].tags == {"python": "3.11"}
    s = graph.settings
    assert (s.period, s.max_retries, s.retry_interval, s.retry_threshold) == (5, 3, 1, 30)


def test_param_override_and_types(files) -> None:
    graph = load_graph(project(files), LoadOptions(params={"rows": "7", "label": "x"}))
    assert graph.processes["gen"].config["rows"] == 7
    assert graph.processes["writer"].config["label"] == "x (7)"


def test_connection_typo_names_file_and_line(files) -> None:
    path = project(files, FULL.replace("gen.output -> writer.input", "gen.outptu -> writer.input"))
    problems = problems_of(path)
    assert problems == [
        f"{path}:24: connection 'gen.outptu -> writer.input': process 'gen' has no output port 'outptu' "
        "(output ports: output)"
    ]


def test_incompatible_ports_message(files) -> None:
    path = project(files, FULL.replace('outputs: {output: "table:my.orders"}', "outputs: {output: table}"))
    problems = problems_of(path)
    assert problems == [
        f"{path}:24: connection 'gen.output -> writer.input': incompatible ports: gen.output (table:*) -> "
        "writer.input (table:my.orders): a dynamic table port cannot feed the fixed type my.orders"
    ]


def test_every_problem_is_reported_together(files) -> None:
    graph = """\
    operators:
      gen:
        script: gen.py
        outputs: {output: tabel}
        confg: {}
      w:
        code: "def broken(:\\n  pass\\n"
        inputs: {input: string}
      nothing: {}
      stop: {component: terminator}
      x: {component: extract.users}
    connections:
      - gen.output -> w.input
      - w.input
      - nowhere.out -> stop.in
    """
    files("p/gen.py", GEN)
    path = files("p/graph.yaml", graph)
    problems = problems_of(path, params={"zzz": "1"})
    text = "\n".join(problems)
    assert f"{path}:4: operator 'gen' outputs, port 'output': unknown port type 'tabel' (did you mean " \
        "'table'?" in text
    assert f"{path}:5: unknown key 'confg' in operator 'gen' (did you mean 'config'?)" in text
    assert f"{path}:9: process 'nothing': an operator needs 'script' or 'code'" in text
    assert f"{path}:11: process 'x': unknown component 'extract.users'" in text
    assert f"{path}:14: connection 'w.input': expected 'process.port -> process.port'" in text
    assert f"{path}:15: connection 'nowhere.out -> stop.in': unknown source process 'nowhere'" in text
    assert f"{path}:6: process 'w': syntax error in script {path}::operators.w.code:1:" in text
    assert "--param zzz" in text
    assert len(problems) == 8, text


def test_duplicate_operator_is_an_error(files) -> None:
    path = files("graph.yaml", """\
    operators:
      gen: {code: "pass"}
      gen: {code: "pass"}
    """)
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:3: invalid YAML: duplicate key 'gen' (first on line 2)")


def test_yaml_syntax_error_has_line(files) -> None:
    path = files("graph.yaml", "operators:\n  gen: {code: pass\n")
    problems = problems_of(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:3: invalid YAML:")


def test_unknown_top_level_key_and_missing_operators(files) -> None:
    path = files("graph.yaml", "name: x\nprocesses: {}\n")
    problems = problems_of(path)
    assert f"{path}:2: unknown key 'processes' in the graph (did you mean 'operators'?)" in problems
    assert f"{path}: the graph has no 'operators'" in problems


def test_fan_out_and_mapping_connections(files) -> None:
    path = files("graph.yaml", """\
    operators:
      gen: {code: "pass", outputs: [out]}
      a: {component: terminal}
      b: {component: wiretap}
      c: {component: python, code: "pass", inputs: [in]}
    connections:
      - gen.out -> a.in, b.in
      - {from: gen.out, to: [c.in]}
      - {from: b.out, to: a.in}
    """)
    graph = load_graph(path, LoadOptions())
    assert [str(c) for c in graph.connections] == [
        "gen.out -> a.in", "gen.out -> b.in", "gen.out -> c.in", "b.out -> a.in"]
    assert graph.processes["a"].component == TERMINAL_V2
    assert graph.processes["b"].component == WIRETAP_V2
    assert graph.processes["gen"].outports["out"].type == ANY_PORT
    assert graph.name == path.parent.name  # a graph.yaml is named after its folder


def test_terminator_inputs_replace_default(files) -> None:
    path = files("graph.yaml", """\
    operators:
      gen: {code: "pass", outputs: {a: string, b: string}}
      stop: {component: graphTerminator, inputs: {first: string, second: string}}
    connections:
      - gen.a -> stop.first
      - gen.b -> stop.second
    """)
    assert list(load_graph(path, LoadOptions()).processes["stop"].inports) == ["first", "second"]


def test_custom_operator_from_yaml(files) -> None:
    ops = FIXTURES / "di_graph" / "operators"
    files("vtypes/tables/demo/users/table.vtype",
          (FIXTURES / "di_graph/vtypes/tables/demo/users/table.vtype").read_text())
    files("vtypes/scalars/str_100/scalar.vtype",
          (FIXTURES / "di_graph/vtypes/scalars/str_100/scalar.vtype").read_text())
    path = files("graph.yaml", """\
    operators:
      users:
        component: demo.users
        config: {count: 2}
        outputs: {audit: string}
      sink: {component: terminal}
    connections:
      - users.output -> sink.in
    """)
    graph = load_graph(path, LoadOptions(operator_dirs=[ops]))
    users = graph.processes["users"]
    assert users.config["count"] == 2 and users.config["domain"] == "example.org"
    assert list(users.outports) == ["output", "audit"]
    assert users.operator_dir == (ops / "demo/users").resolve()


def test_settings_validation(files) -> None:
    path = files("graph.yaml", """\
    operators: {gen: {code: "pass"}}
    snapshots: {period: -1}
    recovery: {max_retries: 1.5, retry_interval: x, retry_treshold: 3}
    """)
    problems = problems_of(path)
    assert f"{path}:2: snapshots.period must be a number > 0, got -1" in problems
    assert f"{path}:3: recovery.max_retries must be an integer >= 0, got 1.5" in problems
    assert f"{path}:3: recovery.retry_interval must be a number >= 0, got 'x'" in problems
    assert any("unknown key 'retry_treshold' in recovery (did you mean 'retry_threshold'?)" in p
               for p in problems)


def test_snapshot_shorthand_and_snapshot_checks(files) -> None:
    path = files("graph.yaml", """\
    operators:
      a: {code: "pass", outputs: [o], inputs: [i], group: g}
      b: {code: "pass", outputs: [o], inputs: [i]}
    connections: [a.o -> b.i, b.o -> a.i]
    groups: {g: {multiplicity: 2}}
    snapshots: 2.5
    """)
    problems = problems_of(path)
    assert f"{path}: snapshots do not support cycles, but the graph has the cycle a -> b -> a" in problems
    assert any("multiplicity > 1" in p for p in problems)
    graph = load_graph(path, LoadOptions(snapshots=False))
    assert graph.settings.period == 2.5
    assert graph.groups["g"].multiplicity == 2


def test_script_and_code_together(files) -> None:
    files("gen.py", GEN)
    path = files("graph.yaml", "operators:\n  gen:\n    script: gen.py\n    code: pass\n")
    assert f"{path}:4: operator 'gen' has both script and code; use one" in problems_of(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("table", PortType("table", "*")),
    ("structure", PortType("structure", "*")),
    ("scalar", PortType("scalar", "*")),
    ("none", PortType("none")),
    ("any", ANY_PORT),
    ("*", ANY_PORT),
    (None, ANY_PORT),
    ("table:my.orders", PortType("table", "my.orders")),
    ("structure: com.sap.error", PortType("structure", "com.sap.error")),
    ("scalar:$GRAPH.str_10", PortType("scalar", "$GRAPH.str_10")),
    ("scalar:string", PortType("scalar", "com.sap.core.string")),
    ("string", PortType("scalar", "com.sap.core.string")),
    ("int64", PortType("scalar", "com.sap.core.int64")),
    ("bool", PortType("scalar", "com.sap.core.bool")),
    ("float64", PortType("scalar", "com.sap.core.float64")),
    ("binary", PortType("scalar", "com.sap.core.binary")),
    ("com.sap.core.date", PortType("scalar", "com.sap.core.date")),
    ({"type": "table", "vtype": "my.orders"}, PortType("table", "my.orders")),
    ({"type": "table"}, PortType("table", "*")),
    ({"type": "scalar", "vtype-ID": "com.sap.core.int32"}, PortType("scalar", "com.sap.core.int32")),
])
def test_type_shorthands(text: object, expected: PortType) -> None:
    assert parse_type_shorthand(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("tabel", "did you mean 'table'?"),
    ("my.orders", "table:<vtype id>"),
    ("list:x", "unknown port type 'list'"),
    ("table:", "missing vtype id"),
    ({"type": "table", "vtyp": "x"}, "unknown key(s) vtyp"),
    (5, "must be a string"),
])
def test_bad_type_shorthands(text: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_type_shorthand(text)
    assert message in str(info.value)


def test_marked_loader_records_lines() -> None:
    data = load_marked_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n")
    assert isinstance(data, MarkedDict) and data.line == 1
    assert data["a"].key_lines == {"b": 2, "c": 3}
    assert isinstance(data["a"]["c"], MarkedList)
    assert data["a"]["c"].item_lines == [4, 5]


def test_marked_loader_allows_merge_keys_and_rejects_duplicates() -> None:
    data = load_marked_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert data["other"] == {"x": 1, "y": 3}
    with pytest.raises(yaml.YAMLError):
        load_marked_yaml("a: 1\na: 2\n")
