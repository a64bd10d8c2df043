from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.problems import GraphError

from .helpers import FIXTURES, conn, graph_json, port, py_process


def problems_of(path: Path, options: LoadOptions | None = None) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_graph(path, options or LoadOptions())
    return [str(p) for p in info.value.problems]


def test_load_options_defaults() -> None:
    options = LoadOptions()
    assert options.params == {} and options.operator_dirs == [] and options.connections_file is None
    assert options.snapshots is None
    assert LoadOptions().params is not options.params


def test_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.json") == [f"{tmp_path / 'nope.json'}: graph file does not exist"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [f"{tmp_path}: graph file is a directory, not a graph file"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(files) -> None:
    path = files("graph.json", graph_json({"p": py_process()}))
    path.chmod(0)
    try:
        problems = problems_of(path)
    finally:
        path.chmod(0o644)
    assert problems == [f"{path}: cannot read graph file: Permission denied"]


def test_unknown_extension(files) -> None:
    path = files("graph.txt", "x")
    assert "unknown graph file type '.txt'" in problems_of(path)[0]


def test_format_by_extension(files) -> None:
    yml = files("a/g.yml", "operators: {p: {code: pass}}\n")
    assert load_graph(yml, LoadOptions()).processes["p"].script.text == "pass"
    js = files("b/g.JSON", graph_json({"p": py_process("pass")}))
    assert load_graph(js).processes["p"].script.text == "pass"


def test_managed_connections_are_resolved(files) -> None:
    path = files("graph.json", graph_json({"p": py_process(db={"connectionID": "PG",
                                                             "configurationType": "Connection Management"})}))
    conns = files("conns.yaml", "PG: {connectionType: POSTGRES, connectionProperties: {host: h}}\n")
    graph = load_graph(path, LoadOptions(connections_file=conns))
    assert graph.processes["p"].config["db"] == {
        "connectionID": "PG", "connectionType": "POSTGRES", "connectionProperties": {"host": "h"}}


def test_connection_ids_from_params_are_resolved(files) -> None:
    path = files("graph.json", graph_json({"p": py_process(db={"connectionID": "${conn}"})},
                                          parameters={"conn": {"default": "PG"}}))
    conns = files("conns.json", {"PG": {"connectionType": "X", "connectionProperties": {}}})
    graph = load_graph(path, LoadOptions(connections_file=conns))
    assert graph.processes["p"].config["db"]["connectionType"] == "X"


def test_unknown_connection_without_file(files) -> None:
    path = files("graph.json", graph_json({"p": py_process(db={"connectionID": "PG"})}))
    assert problems_of(path) == [f"{path}: process 'p': config 'db' uses connection 'PG', but no "
                                 "--connections file was given"]


def test_every_problem_from_every_stage_is_reported(files, tmp_path: Path) -> None:
    files("vtypes/broken.vtype", "{")
    conns = files("conns.yaml", "PG: [1]\n")
    path = files("graph.json", graph_json(
        {"a": py_process("def (:", outports=[port("o")], rows="${rows}", db={"connectionID": "X"}),
         "b": py_process(inports=[port("i", "table", None)])},
        [conn("a.o", "b.i")]))
    problems = problems_of(path, LoadOptions(params={"rowz": "1"}, operator_dirs=[tmp_path / "ops"],
                                             connections_file=conns))
    text = "\n".join(problems)
    assert "broken.vtype:1:2: invalid JSON in vtype file" in text
    assert f"{tmp_path / 'ops'}: operators directory does not exist" in text
    assert "connection 'PG' must be a mapping" in text
    assert "parameter 'rows' has no value" in text
    assert "--param rowz" in text
    assert "config 'db' uses connection 'X'" in text
    assert "incompatible ports: a.o (scalar:com.sap.core.string) -> b.i (table:*)" in text
    assert "syntax error in script" in text
    assert len(problems) == 8, text


def test_snapshot_checks_follow_graph_settings_or_option(files) -> None:
    graph = """\
    operators:
      a: {code: pass, group: g}
    groups: {g: {multiplicity: 2}}
    """
    path = files("graph.yaml", graph)
    assert load_graph(path, LoadOptions()).groups["g"].multiplicity == 2
    assert any("multiplicity > 1" in p for p in problems_of(path, LoadOptions(snapshots=True)))
    path = files("graph.yaml", graph + "snapshots: {period: 1}\n")
    assert any("multiplicity > 1" in p for p in problems_of(path))
    load_graph(path, LoadOptions(snapshots=False))


def test_fixture_loads_from_another_working_directory(tmp_path: Path) -> None:
    di = FIXTURES / "di_graph"
    graph = load_graph(di / "graph.json", LoadOptions(operator_dirs=[di / "operators"]))
    assert graph.vtypes is not None and "demo.users" in graph.vtypes


def test_model_does_not_import_runtime_api_or_cli() -> None:
    code = (
        "import sys, snapgraph.model.loader, snapgraph.model.validate, snapgraph.model.yaml_format, "
        "snapgraph.model.yaml_lines, snapgraph.model.type_shorthand, snapgraph.model.graph_builder, "
        "snapgraph.model.connections, snapgraph.model.params\n"
        "bad = [m for m in sys.modules if m.startswith(('snapgraph.api', 'snapgraph.runtime', "
        "'snapgraph.cli'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
