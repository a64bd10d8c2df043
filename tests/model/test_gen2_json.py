from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapgraph.model.builtins import BUILTIN_COMPONENTS
from snapgraph.model.graph import GRAPH_TERMINATOR_V2, PYTHON3_V2, TERMINAL_V2, WIRETAP_V2
from snapgraph.model.graph_builder import graph_name_from_path
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.problems import GraphError
from snapgraph.model.types import ANY_PORT, PortType, VTypeScalar, VTypeTable

from .helpers import FIXTURES, conn, graph_json, port, py_process

SUPPORTED = ", ".join((PYTHON3_V2, *BUILTIN_COMPONENTS))  # as the messages list them

DI_GRAPH = FIXTURES / "di_graph"


def load(path: Path, **options) -> object:
    return load_graph(path, LoadOptions(**options))


def problems_of(path: Path, **options) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_graph(path, LoadOptions(**options))
    return [str(p) for p in info.value.problems]


# --- the realistic fixture ------------------------------------------------------


def test_di_fixture_loads() -> None:
    graph = load(DI_GRAPH / "graph.json", operator_dirs=[DI_GRAPH / "operators"])
    assert graph.name == "di_graph"
    assert graph.description == "Count demo users"
    assert set(graph.processes) == {"users1", "counter1", "graphterminator1"}

    users = graph.processes["users1"]
    assert users.component == "demo.users"
    # operator.json + configSchema defaults overlaid with the process config, params substituted
    assert users.config == {"errorHandling": {"type": "terminate on error"}, "count": 3,
                            "domain": "example.com"}
    assert users.outports["output"].type == PortType("table", "demo.users")
    assert users.inports == {}
    assert users.script.filename == str((DI_GRAPH / "operators/demo/users/script.py").resolve())
    assert users.operator_dir == (DI_GRAPH / "operators/demo/users").resolve()
    assert users.group == "usersgroup"
    assert str(users.location) == f"{DI_GRAPH / 'graph.json'}: process 'users1'"

    counter = graph.processes["counter1"]
    assert counter.component == PYTHON3_V2
    assert "script" not in counter.config and "codelanguage" not in counter.config
    assert counter.config["prefix"] == "users at example.com"
    assert counter.script.filename == f"{DI_GRAPH / 'graph.json'}::processes.counter1.config.script"
    assert 'api.set_port_callback("input", on_input)' in counter.script.text
    assert counter.inports["input"].type == PortType("table", "demo.users")
    assert counter.outports["output"].type == PortType("scalar", "com.sap.core.string")
    assert counter.group == "default"
    assert counter.operator_dir is None

    stop = graph.processes["graphterminator1"]
    assert stop.script is None and not stop.is_python
    assert list(stop.inports) == ["in"]  # declared inports replace the default any port
    assert stop.inports["in"].type == PortType("scalar", "com.sap.core.string")

    group = graph.groups["usersgroup"]
    assert (group.nodes, group.multiplicity, group.restart_policy, group.tags) == (
        ["users1"], 1, "never", {"python": "3.9"})
    assert [str(c) for c in graph.connections] == [
        "users1.output -> counter1.input", "counter1.output -> graphterminator1.in"]
    users_type = graph.vtypes.get("demo.users")
    assert isinstance(users_type, VTypeTable)
    assert list(users_type.columns) == ["id", "name", "email"]
    assert isinstance(graph.vtypes.get("$GRAPH.str_100"), VTypeScalar)


def test_di_fixture_params_can_be_overridden() -> None:
    graph = load(DI_GRAPH / "graph.json", operator_dirs=[DI_GRAPH / "operators"],
                 params={"user_count": "7", "domain": "corp.test"})
    assert graph.processes["users1"].config["count"] == 7
    assert graph.processes["counter1"].config["prefix"] == "users at corp.test"


def test_di_fixture_without_operators_dir() -> None:
    problems = problems_of(DI_GRAPH / "graph.json")
    assert len(problems) == 1
    assert "process 'users1': unknown component 'demo.users'" in problems[0]
    assert "no --operators directory was given" in problems[0]


# --- processes and ports ---------------------------------------------------------


def test_builtin_processes(files) -> None:
    path = files("g/graph.json", graph_json({
        "gen": py_process(outports=[port("out", "table", None)]),
        "tap": {"component": WIRETAP_V2, "metadata": {"config": {"x": 1}}},
        "term": {"component": TERMINAL_V2},
        "stop": {"component": GRAPH_TERMINATOR_V2,
                 "metadata": {"additionalinports": [port("second", "*", None)]}},
    }, [conn("gen.out", "tap.in"), conn("tap.out", "term.in"), conn("term.out", "stop.in"),
        conn("gen.out", "stop.second")]))
    graph = load(path)
    assert graph.processes["tap"].inports["in"].type == ANY_PORT
    assert graph.processes["tap"].outports["out"].type == ANY_PORT
    assert graph.processes["tap"].config == {"x": 1}
    assert graph.processes["term"].script is None
    assert list(graph.processes["stop"].inports) == ["in", "second"]
    assert graph.processes["stop"].inports["second"].type == ANY_PORT
    assert graph.name == "g"


def test_dynamic_and_any_ports(files) -> None:
    path = files("graph.json", graph_json({
        "p": py_process(outports=[port("a", "table", None), port("b", "structure", "*"),
                                  port("c", "*", None), port("d", "none", None)]),
    }))
    outs = load(path).processes["p"].outports
    assert outs["a"].type == PortType("table", "*")
    assert outs["b"].type == PortType("structure", "*")
    assert outs["c"].type == ANY_PORT
    assert outs["d"].type == PortType("none")


def test_inports_on_process_level_and_metadata_level(files) -> None:
    proc = py_process(inports=[port("extra")])
    proc["inports"] = [port("base")]
    path = files("graph.json", graph_json({"p": proc}))
    assert list(load(path).processes["p"].inports) == ["base", "extra"]


def test_file_script_is_relative_to_graph_folder(files) -> None:
    script = files("sub/scripts/gen.py", "api.set_prestart(lambda: None)\n")
    path = files("sub/graph.json", graph_json({"gen": py_process("file://scripts/gen.py",
                                                                 codelanguage="python")}))
    gen = load(path).processes["gen"]
    assert gen.script.filename == str(script.resolve())
    assert gen.config == {}


def test_missing_script_file(files) -> None:
    path = files("graph.json", graph_json({"gen": py_process("file://nope.py")}))
    problems = problems_of(path)
    assert problems == [f"{path}: process 'gen': script file not found: {path.parent.resolve() / 'nope.py'} "
                        "(from 'file://nope.py')"]


def test_unknown_component_names_file_process_component_and_dirs(files, tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    path = files("graph.json", graph_json(
        {"u": {"component": "extract.users", "metadata": {"additionaloutports": [port("output")]}},
         "t": {"component": TERMINAL_V2}},
        [conn("u.output", "t.in"), conn("u.nope", "t.in")]))
    problems = problems_of(path, operator_dirs=[tmp_path / "ops"])
    # connections of the broken process are not reported again
    assert problems == [
        f"{path}: process 'u': unknown component 'extract.users': not a built-in ({SUPPORTED}) "
        "and not found in the operators directories (searched "
        f"{tmp_path / 'ops/extract/users/operator.json'})"
    ]


def test_generation_1_is_rejected(files) -> None:
    path = files("graph.json", {"processes": {}, "metadata": {"generation": 1}})
    assert problems_of(path) == [f"{path}: metadata.generation is 1: snapgraph runs Gen2 graphs only "
                                 "(metadata.generation 2)"]


def test_json_syntax_error_has_line_and_column(files) -> None:
    path = files("graph.json", '{\n  "processes": {\n    "a": }\n}\n')
    assert problems_of(path) == [f"{path}:3:10: invalid JSON: Expecting value"]


def test_not_an_object(files) -> None:
    path = files("graph.json", [1, 2])
    assert "must be a JSON object" in problems_of(path)[0]


def test_structural_problems_are_all_reported(files) -> None:
    path = files("graph.json", {
        "processes": {"a": "nope", "b": {"metadata": {}},
                      "c": py_process(outports=[{"name": "o", "type": "blob"}])},
        "connections": [{"src": {"process": "c"}, "tgt": {"process": "x", "port": "y"}}, 5],
        "groups": [{"name": "g", "nodes": "c", "multiplicity": "many"}],
        "metadata": {"generation": 2},
    })
    problems = problems_of(path)
    text = "\n".join(problems)
    assert f"{path}: process 'a': a process must be a JSON object" in text
    assert f"{path}: process 'b': process has no component" in text
    assert f"{path}: process 'c', port 'o': unknown port type 'blob'" in text
    assert f"{path}: connections[0]: 'src' must be" in text
    assert f"{path}: connections[1]: a connection must be an object" in text
    assert f"{path}: group 'g': nodes must be a list of process names" in text
    assert f"{path}: group 'g': multiplicity must be an integer, got 'many'" in text


# --- parameters ---------------------------------------------------------------------


def test_parameters_and_missing_values(files) -> None:
    path = files("graph.json", graph_json(
        {"p": py_process(rows="${rows}", target="${target}", text="n=${rows}")},
        parameters={"rows": {"type": "string", "default": "10"}, "target": {"type": "string"}}))
    problems = problems_of(path, params={"rowz": "1"})
    assert len(problems) == 2
    assert problems[0] == (f"{path}: process 'p': parameter 'target' has no value (it is declared without "
                           "a default and no --param target=... was given); used in process 'p' config "
                           "'target'")
    assert "--param rowz" in problems[1] and "did you mean 'rows'" in problems[1]

    graph = load(path, params={"target": "T"})
    assert graph.processes["p"].config == {"rows": "10", "target": "T", "text": "n=10"}


def test_parameter_in_group_multiplicity(files) -> None:
    data = graph_json({"p": py_process()}, parameters={"n": {"default": 2}})
    data["groups"] = [{"name": "g", "nodes": ["p"], "multiplicity": "${n}"}]
    graph = load(files("graph.json", data))
    assert graph.groups["g"].multiplicity == 2
    assert graph.processes["p"].group == "g"


def test_parameter_mapping(files) -> None:
    data = graph_json({"p": py_process()}, parameters={"n": {"default": 3}, "c": {"default": "x"}})
    data["groups"] = [{"name": "g", "nodes": ["p"]}]
    data["parameterMapping"] = {"processes.p.configuration.cfg": "${c}",
                                "processes.p.configuration.deep.k": "v-${c}",
                                "groups.0.multiplicity": "${n}"}
    graph = load(files("graph.json", data))
    assert graph.processes["p"].config == {"cfg": "x", "deep": {"k": "v-x"}}
    assert graph.groups["g"].multiplicity == 3
    data["parameterMapping"] = {"inports.x": "${c}"}
    assert "parameterMapping target 'inports.x' is not supported" in problems_of(files("graph.json", data))[0]


def test_graph_name_from_path() -> None:
    assert graph_name_from_path(Path("repo/vflow/graphs/extract/usage/graph.json")) == "extract.usage"
    assert graph_name_from_path(Path("demo/graph.json")) == "demo"
    assert graph_name_from_path(Path("x/orders.json")) == "orders"


def test_explicit_name(files) -> None:
    data = graph_json({"p": py_process()})
    data["name"] = "my.graph"
    assert load(files("graph.json", data)).name == "my.graph"


def test_fixture_is_valid_json_with_gen2_markers() -> None:
    data = json.loads((DI_GRAPH / "graph.json").read_text())
    assert data["metadata"]["generation"] == 2
    assert all(p["metadata"]["generation"] == 2 for p in data["processes"].values())


# --- the structure of SAP-samples' DI-Extract graphs (issue 10) --------------------
# Own fixtures that reproduce the structure of DI-Extract-Usage pipelineusage/graph.json and
# DI-Extract-Pipelines graph.json: same process keys, components, port names, config keys and
# connections; the values, scripts and vtype columns are the fixtures' own.

DI_EXTRACT = {
    "di_extract_usage": {"tableproducer11": "com.sap.database.table.producer.v3",
                         "tableproducer21": "com.sap.database.table.producer.v3"},
    "di_extract_pipelines": {"binaryfileproducer11": "com.sap.file.write.v2"},
}
STAND_IN_PORTS = {  # the ports the graphs connect on those built-ins, for Python stand-ins in their place
    "com.sap.database.table.producer.v3": ([], [port("out", "scalar", "com.sap.core.string")]),
    "com.sap.file.write.v2": ([port("file", "scalar", "com.sap.core.binary")],
                              [port("file", "scalar", "com.sap.core.binary")]),
}


def di_extract_options(name: str) -> dict:
    folder = FIXTURES / name
    return {"operator_dirs": [folder / "operators"], "connections_file": folder / "connections.yaml"}


def test_di_extract_usage_loads_as_it_is_with_sap_s_table_producers() -> None:
    path = FIXTURES / "di_extract_usage" / "graph.json"
    graph = load(path, **di_extract_options("di_extract_usage"))
    assert set(graph.processes) == set(json.loads(path.read_text())["processes"])
    assert {graph.processes[p].component for p in DI_EXTRACT["di_extract_usage"]} == {
        "com.sap.database.table.producer.v3"}


def test_di_extract_pipelines_fails_only_on_its_s3_connection() -> None:
    """Its Binary File Producer exists (connectors/sap_files.py); S3 is out of snapgraph's reach."""
    path = FIXTURES / "di_extract_pipelines" / "graph.json"
    assert problems_of(path, **di_extract_options("di_extract_pipelines")) == [
        f"{path}: process 'binaryfileproducer11': Binary File Producer: config 'connection': "
        "connection 'DEMO_FILES' has connectionType 'S3', which snapgraph cannot reach "
        "(snapgraph's file operators use local files only: {configurationType: 'Local File "
        "System'} or a connection id of connectionType LOCAL_FILE_SYSTEM)"]


@pytest.mark.parametrize("name", list(DI_EXTRACT))
def test_di_extract_graphs_load_completely_with_stand_ins_for_those_built_ins(name: str, tmp_path: Path) -> None:
    """Every other part (custom operators, inline script, graph-local and global vtypes, `$GRAPH.` port
    types, Graph Terminator with declared or default ports, connections, managed connections) loads."""
    data = json.loads((FIXTURES / name / "graph.json").read_text())
    for process, component in DI_EXTRACT[name].items():
        ins, outs = STAND_IN_PORTS[component]
        metadata = data["processes"][process]["metadata"]
        data["processes"][process]["component"] = PYTHON3_V2
        metadata["config"]["script"] = "pass\n"
        metadata["additionalinports"], metadata["additionaloutports"] = ins, outs
    path = tmp_path / name / "graph.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    (path.parent / "vtypes").symlink_to(FIXTURES / name / "vtypes") if (FIXTURES / name / "vtypes").exists() else None
    graph = load(path, **di_extract_options(name))
    assert set(graph.processes) == set(data["processes"])
    assert len(graph.connections) == len(data["connections"])
    if name == "di_extract_usage":
        sources = graph.processes["getgraphdatasources11"]
        assert sources.outports["output1"].type == PortType("table", "$GRAPH.graph_datasources")
        assert list(graph.vtypes.get("$GRAPH.graph_datasources").columns)[:2] == ["user", "handle"]
        assert graph.processes["getusers11"].config["connection_id"]["connectionProperties"]["user"] == "demo"
        assert 'api.set_port_callback("input2"' in graph.processes["python3operator1111"].script.text
        assert list(graph.processes["graphterminator1111"].inports) == ["in"]
    else:
        pipelines = graph.processes["extractpipelines1"]
        assert pipelines.config["status"] == "completed, dead" and pipelines.config["stopped_after"] == 1000
        assert pipelines.outports["output"].type == PortType("scalar", "com.sap.core.binary")
        assert list(graph.processes["graphterminator11"].inports) == ["in"]  # the default any port
