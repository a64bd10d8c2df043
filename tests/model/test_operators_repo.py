from __future__ import annotations

from pathlib import Path

from snapgraph.model.graph import GRAPH_TERMINATOR_V2, PYTHON3_V2, TERMINAL_V2, Location, Port
from snapgraph.model.operators_repo import (
    OperatorsRepo,
    assemble_process,
    builtin_ports,
    parse_ports,
    read_script,
)
from snapgraph.model.problems import Problem
from snapgraph.model.types import ANY_PORT, PortType
from snapgraph.model.vtypes import VTypeRegistry

from .helpers import FIXTURES, write

OPERATOR = {
    "description": "Get Users",
    "component": PYTHON3_V2,
    "inports": [{"name": "input", "type": "scalar", "vtype-ID": "com.sap.core.string"}],
    "outports": [{"name": "output", "type": "table", "vtype-ID": "extract.users"}],
    "config": {
        "$type": "http://sap.com/vflow/extract.users.configSchema.json",
        "errorHandling": {"type": "terminate on error"},
        "script": "file://get_users.py",
        "codelanguage": "python",
        "batch": 10,
    },
    "tags": {"pandas": ""},
    "iconsrc": "users.svg",
}
SCHEMA = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "properties": {
        "script": {"type": "string"},
        "batch": {"type": "integer", "default": 99},
        "tenant": {"type": "string", "default": "default"},
        "connection_id": {"type": "object", "properties": {"connectionID": {"type": "string"}}},
    },
}


def make_operator(root: Path, component: str = "extract.users", operator: dict = OPERATOR,
                  script: str = "api.set_prestart(lambda: None)\n") -> Path:
    folder = root.joinpath(*component.split("."))
    write(folder, "operator.json", operator)
    write(folder, "configSchema.json", SCHEMA)
    write(folder, "get_users.py", script)
    return folder


def test_load_custom_operator(tmp_path: Path) -> None:
    folder = make_operator(tmp_path / "ops")
    problems: list[Problem] = []
    repo = OperatorsRepo([tmp_path / "ops"], VTypeRegistry(), problems)
    op = repo.load("extract.users")
    assert problems == []
    assert op is not None
    assert op.dir == folder.resolve()
    assert op.inports == {"input": Port("input", PortType("scalar", "com.sap.core.string"))}
    assert op.outports == {"output": Port("output", PortType("table", "extract.users"))}
    # operator.json wins over configSchema defaults; script keys are hidden
    assert op.config == {"errorHandling": {"type": "terminate on error"}, "batch": 10, "tenant": "default"}
    assert op.script is not None
    assert op.script.filename == str((folder / "get_users.py").resolve())
    assert op.script.text == "api.set_prestart(lambda: None)\n"
    assert op.description == "Get Users"
    assert op.extra["iconsrc"] == "users.svg"
    assert repo.load("extract.users") is op  # cached


def test_first_directory_wins(tmp_path: Path) -> None:
    make_operator(tmp_path / "a", script="# from a\n")
    make_operator(tmp_path / "b", script="# from b\n")
    repo = OperatorsRepo([tmp_path / "a", tmp_path / "b"])
    assert repo.load("extract.users").script.text == "# from a\n"
    repo = OperatorsRepo([tmp_path / "b", tmp_path / "a"])
    assert repo.load("extract.users").script.text == "# from b\n"


def test_later_directory_is_searched(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make_operator(tmp_path / "b")
    repo = OperatorsRepo([tmp_path / "a", tmp_path / "b"])
    assert repo.find_dir("extract.users") == tmp_path / "b" / "extract" / "users"
    assert repo.find_dir("extract.nobody") is None
    assert repo.find_dir("../etc") is None
    assert repo.searched("x.y") == [str(tmp_path / "a/x/y/operator.json"),
                                    str(tmp_path / "b/x/y/operator.json")]


def test_inline_script_in_operator_json(tmp_path: Path) -> None:
    operator = dict(OPERATOR, config={"script": "print('hi')\n"})
    folder = make_operator(tmp_path, operator=operator)
    op = OperatorsRepo([tmp_path]).load("extract.users")
    assert op.script.text == "print('hi')\n"
    assert op.script.filename == f"{folder / 'operator.json'}::config.script"


def test_missing_directory_is_a_problem(tmp_path: Path) -> None:
    problems: list[Problem] = []
    OperatorsRepo([tmp_path / "nope"], problems=problems)
    assert problems == [Problem(str(tmp_path / "nope"), "operators directory does not exist")]


def test_vtypes_under_operator_dirs_are_loaded(tmp_path: Path) -> None:
    write(tmp_path, "vtypes/tables/extract/users/table.vtype", {
        "vflow.type": "table",
        "rows": {"components": [{"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}]}})
    registry = VTypeRegistry()
    OperatorsRepo([tmp_path], registry)
    assert registry.get("extract.users").category == "table"


def test_broken_operator_files_are_problems(tmp_path: Path) -> None:
    folder = make_operator(tmp_path, "bad.json")
    (folder / "operator.json").write_text('{"component": \n}')
    make_operator(tmp_path, "bad.component", operator=dict(OPERATOR, component="com.sap.system.python3Operator"))
    make_operator(tmp_path, "bad.script", operator=dict(OPERATOR, config={"script": "file://missing.py"}))
    make_operator(tmp_path, "bad.ports", operator=dict(OPERATOR, outports=[{"name": "o", "type": "blob"}]))
    schema_folder = make_operator(tmp_path, "bad.schema")
    (schema_folder / "configSchema.json").write_text("{")
    problems: list[Problem] = []
    repo = OperatorsRepo([tmp_path], problems=problems)
    for component in ("bad.json", "bad.component", "bad.script", "bad.ports", "bad.schema"):
        assert repo.load(component) is None, component
    text = "\n".join(map(str, problems))
    assert f"{folder / 'operator.json'}:2:1: invalid JSON in operator.json" in text
    assert "has component 'com.sap.system.python3Operator'; snapgraph runs custom operators derived " \
        "from com.sap.system.python3Operator.v2 only" in text
    assert "script file not found:" in text and "missing.py" in text
    assert "port 'o'" in text and "unknown port type 'blob'" in text
    assert "invalid JSON in configSchema.json" in text


def test_parse_ports_problems() -> None:
    problems: list[Problem] = []
    ports = parse_ports([{"name": "a", "type": "table"}, {"name": "a", "type": "table"}, {"type": "x"}, 3],
                        "here", "inports", problems)
    assert list(ports) == ["a"]
    messages = [p.message for p in problems]
    assert "port 'a' is declared twice in inports" in messages
    assert "inports[2] has no name" in messages
    assert "inports[3] must be an object, got 3" in messages
    problems.clear()
    parse_ports({"a": 1}, "here", "outports", problems)
    assert "outports must be a list of ports" in problems[0].message


def test_builtin_ports() -> None:
    assert builtin_ports(GRAPH_TERMINATOR_V2) == ({"in": Port("in", ANY_PORT)}, {})
    assert builtin_ports(TERMINAL_V2) == ({"in": Port("in", ANY_PORT)}, {"out": Port("out", ANY_PORT)})


def test_read_script_file_and_inline(tmp_path: Path) -> None:
    write(tmp_path, "s.py", "x = 1\n")
    problems: list[Problem] = []
    src = read_script("file://s.py", tmp_path, "inline", "w", problems)
    assert (src.text, src.filename) == ("x = 1\n", str((tmp_path / "s.py").resolve()))
    src = read_script("y = 2", tmp_path, "g.json::processes.p.config.script", "w", problems)
    assert (src.text, src.filename) == ("y = 2", "g.json::processes.p.config.script")
    assert read_script(5, tmp_path, "x", "w", problems) is None
    assert problems[0].message == "script must be a string, got int"


def _assemble(component: str, repo: OperatorsRepo, problems: list[Problem], **kwargs):
    args = dict(config={}, inports=None, outports=None, extra_inports=None, extra_outports=None,
                script_dir=Path("."), script_name="inline", repo=repo, problems=problems)
    args.update(kwargs)
    return assemble_process("p", component, Location("g.json", "process 'p'"), **args)


def test_assemble_custom_operator_overlays_config_and_ports(tmp_path: Path) -> None:
    make_operator(tmp_path)
    problems: list[Problem] = []
    repo = OperatorsRepo([tmp_path], problems=problems)
    extra = {"more": Port("more", PortType("table", "*"))}
    process = _assemble("extract.users", repo, problems, config={"batch": 1, "codelanguage": "python"},
                        extra_outports=extra)
    assert problems == []
    assert process.config == {"errorHandling": {"type": "terminate on error"}, "batch": 1, "tenant": "default"}
    assert list(process.outports) == ["output", "more"]
    assert process.operator_dir == (tmp_path / "extract/users").resolve()
    assert process.is_python


def test_assemble_custom_operator_script_override_is_relative_to_operator(tmp_path: Path) -> None:
    folder = make_operator(tmp_path)
    write(folder, "other.py", "# other\n")
    problems: list[Problem] = []
    process = _assemble("extract.users", OperatorsRepo([tmp_path]), problems,
                        config={"script": "file://other.py"})
    assert process.script.filename == str((folder / "other.py").resolve())


def test_assemble_unknown_component_lists_searched_dirs(tmp_path: Path) -> None:
    problems: list[Problem] = []
    assert _assemble("extract.nobody", OperatorsRepo([tmp_path]), problems) is None
    assert problems[0].where == "g.json: process 'p'"
    assert "unknown component 'extract.nobody'" in problems[0].message
    assert str(tmp_path / "extract/nobody/operator.json") in problems[0].message
    problems.clear()
    assert _assemble("extract.nobody", OperatorsRepo([]), problems) is None
    assert "no --operators directory was given" in problems[0].message
    problems.clear()
    _assemble("com.sap.system.python3Operator", OperatorsRepo([]), problems)
    assert "Gen1 Python operator; snapgraph runs Gen2 graphs only" in problems[0].message
    problems.clear()
    _assemble("com.sap.kafka.consumer2.v2", OperatorsRepo([]), problems)
    assert "snapgraph supports the built-in components" in problems[0].message


def test_fixture_operator() -> None:
    ops = FIXTURES / "di_graph" / "operators"
    problems: list[Problem] = []
    op = OperatorsRepo([ops], problems=problems).load("demo.users")
    assert problems == []
    assert op.config == {"errorHandling": {"type": "terminate on error"}, "count": 5, "domain": "example.org"}
    assert "from operators.demo.users.helper import make_users" in op.script.text
