"""Delivery declarations (model/delivery.py): what a declaration may say, and how both graph formats
carry one (YAML ``delivery``, graph.json ``metadata.snapgraph.delivery``) with their problems located."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from snapgraph.model.delivery import DeclarationProblem, DeliveryTraits, WriterKind, parse_declaration
from snapgraph.model.loader import load_graph
from snapgraph.model.problems import GraphError

from .helpers import conn, graph_json, port, py_process

SOURCE = "api.add_timer(lambda: -1)\n"
SINK = "api.set_port_callback('in', lambda msg_id, header, body: None)\n"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_graph(path)
    return [str(p) for p in info.value.problems]


# -- parse_declaration --------------------------------------------------------------------------------

def test_a_full_declaration() -> None:
    traits, problems = parse_declaration({"replayable": True, "deterministic": True, "batches": True,
                                          "discards_duplicates": True, "writer": "transactional",
                                          "commits_at_end": True}, "x")
    assert problems == []
    assert traits == DeliveryTraits(True, True, True, True, WriterKind.TRANSACTIONAL, True)


def test_what_is_left_out_is_the_weakest() -> None:
    assert parse_declaration({}, "x") == (DeliveryTraits(), [])
    assert parse_declaration({"writer": "none"}, "x") == (DeliveryTraits(writer=WriterKind.NONE), [])


def test_every_problem_of_a_declaration_by_its_key_and_bad_values_stay_weakest() -> None:
    declaration = {"replayable": "yes", "determinstic": True, "writer": "upsert", "colour": 1, "batches": True}
    traits, problems = parse_declaration(declaration, "delivery of 'p'")
    assert traits == DeliveryTraits(batches=True)
    assert problems == [
        DeclarationProblem("replayable", "delivery of 'p': replayable must be true or false, got 'yes'"),
        DeclarationProblem("determinstic", "unknown key 'determinstic' in delivery of 'p' (did you mean "
                                           "'deterministic'?)"),
        DeclarationProblem("writer", "delivery of 'p': writer must be one of plain, idempotent, transactional, "
                                     "none, got 'upsert'"),
        DeclarationProblem("colour", "unknown key 'colour' in delivery of 'p' (allowed: replayable, "
                                     "deterministic, batches, discards_duplicates, writer, commits_at_end)"),
    ]


def test_a_declaration_that_is_not_a_mapping() -> None:
    traits, problems = parse_declaration(True, "delivery of 'p'")
    assert traits == DeliveryTraits()
    assert problems == [DeclarationProblem(None, "delivery of 'p' must be a mapping of replayable, deterministic, "
                                                 "batches, discards_duplicates, writer, commits_at_end, got True")]


# -- YAML -------------------------------------------------------------------------------------------------

YAML_GRAPH = """\
operators:
  gen:
    outputs: {out: int64}
    code: "api.add_timer(lambda: -1)"
    delivery: {replayable: true}
  sink:
    inputs: {in: int64}
    code: "api.set_port_callback('in', lambda msg_id, header, body: None)"
    delivery:
      writer: idempotent
connections:
  - gen.out -> sink.in
"""


def test_yaml_declarations_reach_the_model(files: Callable[[str, Any], Path]) -> None:
    graph = load_graph(files("g.yaml", YAML_GRAPH))
    assert graph.processes["gen"].delivery == DeliveryTraits(replayable=True)
    assert graph.processes["sink"].delivery == DeliveryTraits(writer=WriterKind.IDEMPOTENT)


def test_yaml_undeclared_is_none(files: Callable[[str, Any], Path]) -> None:
    graph = load_graph(files("g.yaml", YAML_GRAPH.replace("    delivery: {replayable: true}\n", "")))
    assert graph.processes["gen"].delivery is None


def test_yaml_problems_name_the_line_of_their_key(files: Callable[[str, Any], Path]) -> None:
    text = YAML_GRAPH.replace("{replayable: true}", "{replayable: 1}").replace(
        "      writer: idempotent\n", "      writer: upsert\n      deterministc: true\n")
    path = files("g.yaml", text)
    assert problems_of(path) == [
        f"{path}:5: delivery of operator 'gen': replayable must be true or false, got 1",
        f"{path}:10: delivery of operator 'sink': writer must be one of plain, idempotent, transactional, none, "
        "got 'upsert'",
        f"{path}:11: unknown key 'deterministc' in delivery of operator 'sink' (did you mean 'deterministic'?)",
    ]


def test_yaml_a_declaration_that_is_not_a_mapping_names_its_line(files: Callable[[str, Any], Path]) -> None:
    path = files("g.yaml", YAML_GRAPH.replace("{replayable: true}", "replayable"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:5: delivery of operator 'gen' must be a mapping of ")


def test_yaml_a_built_in_takes_no_declaration(files: Callable[[str, Any], Path]) -> None:
    text = YAML_GRAPH.replace("connections:\n", "  show: {component: terminal, delivery: {writer: idempotent}}\n"
                              "connections:\n") + "  - gen.out -> show.in\n"
    path = files("g.yaml", text)
    assert problems_of(path) == [f"{path}:11: process 'show': Terminal is a built-in operator: snapgraph knows its "
                                 "delivery traits (docs/guarantees.md), so it takes no delivery declaration"]


# -- graph.json ---------------------------------------------------------------------------------------------

def json_graph(sink_metadata: object) -> dict[str, Any]:
    gen = py_process(SOURCE, outports=[port("out")])
    gen["metadata"]["snapgraph"] = {"delivery": {"replayable": True}}
    sink = py_process(SINK, inports=[port("in")])
    sink["metadata"]["snapgraph"] = sink_metadata
    return graph_json({"gen": gen, "sink": sink}, [conn("gen.out", "sink.in")])


def test_json_declarations_reach_the_model(files: Callable[[str, Any], Path]) -> None:
    graph = load_graph(files("graph.json", json_graph({"delivery": {"writer": "transactional"}})))
    assert graph.processes["gen"].delivery == DeliveryTraits(replayable=True)
    assert graph.processes["sink"].delivery == DeliveryTraits(writer=WriterKind.TRANSACTIONAL)


def test_json_without_delivery_in_the_snapgraph_key_declares_nothing(files: Callable[[str, Any], Path]) -> None:
    graph = load_graph(files("graph.json", json_graph({})))
    assert graph.processes["sink"].delivery is None


@pytest.mark.parametrize(("metadata", "message"), [
    ({"delivery": {"writer": "exactly"}},
     "metadata.snapgraph.delivery: writer must be one of plain, idempotent, transactional, none, got 'exactly'"),
    ({"delivery": {"replayble": True}},
     "unknown key 'replayble' in metadata.snapgraph.delivery (did you mean 'replayable'?)"),
    ({"delivery": {}, "retries": 3}, "unknown key 'retries' in metadata.snapgraph (allowed: delivery)"),
    ("idempotent", "metadata.snapgraph must be an object with 'delivery', got 'idempotent'"),
])
def test_json_problems_name_the_file_and_process(files: Callable[[str, Any], Path], metadata: object,
                                                 message: str) -> None:
    path = files("graph.json", json_graph(metadata))
    assert problems_of(path) == [f"{path}: process 'sink': {message}"]
