from __future__ import annotations

import pytest

from snapgraph.model.params import GraphParameter, ParamResolver, convert, parse_param_assignments

WHERE = "graph.json: process 'gen'"


def declared(**defaults: object) -> dict[str, GraphParameter]:
    return {
        name: GraphParameter(name, default=value, has_default=value is not None)
        for name, value in defaults.items()
    }


def test_whole_reference_keeps_typed_default() -> None:
    resolver = ParamResolver(declared(rows=1000, ratio=0.5, on=True, names=["a"]), {})
    config = {"rows": "${rows}", "ratio": "${ratio}", "on": "${on}", "names": "${names}"}
    assert resolver.apply(config, WHERE, "") == {"rows": 1000, "ratio": 0.5, "on": True, "names": ["a"]}
    assert resolver.problems() == []


def test_given_value_is_converted_to_the_default_type() -> None:
    resolver = ParamResolver(declared(rows=1000, ratio=0.5, on=True, label="x"),
                             {"rows": "50", "ratio": "2.5", "on": "false", "label": "42"})
    config = {"rows": "${rows}", "ratio": "${ratio}", "on": "${on}", "label": "${label}"}
    assert resolver.apply(config, WHERE, "") == {"rows": 50, "ratio": 2.5, "on": False, "label": "42"}
    assert resolver.problems() == []


def test_declared_type_wins_over_default() -> None:
    params = {"n": GraphParameter("n", default="3", has_default=True, type="integer"),
              "s": GraphParameter("s", default="3", has_default=True, type="string")}
    resolver = ParamResolver(params, {"n": "7"})
    assert resolver.apply({"n": "${n}", "s": "${s}"}, WHERE, "") == {"n": 7, "s": "3"}


def test_partial_references_substitute_text() -> None:
    resolver = ParamResolver(declared(host="db", port=5432, on=True), {})
    assert resolver.apply("postgres://${host}:${port}/x?ssl=${on}", WHERE, "url") == \
        "postgres://db:5432/x?ssl=true"


def test_nested_values_and_lists() -> None:
    resolver = ParamResolver(declared(a="A"), {"b": "B"})
    config = {"outer": {"inner": ["${a}", {"deep": "x-${b}"}], "n": 3}, "none": None}
    assert resolver.apply(config, WHERE, "") == {
        "outer": {"inner": ["A", {"deep": "x-B"}], "n": 3}, "none": None}


def test_escape_keeps_literal_reference() -> None:
    resolver = ParamResolver(declared(x="X"), {})
    assert resolver.apply("$${x} and ${x}", WHERE, "k") == "${x} and X"
    assert resolver.apply("$${x}", WHERE, "k") == "${x}"
    assert resolver.problems() == []


def test_spaces_inside_braces_are_allowed() -> None:
    resolver = ParamResolver(declared(x=1), {})
    assert resolver.apply("${ x }", WHERE, "k") == 1


def test_undeclared_parameter_given_on_command_line_is_a_string() -> None:
    resolver = ParamResolver({}, {"periodicity": "5"})
    assert resolver.apply({"p": "${periodicity}"}, WHERE, "") == {"p": "5"}
    assert resolver.problems() == []


def test_missing_parameter_names_parameter_process_and_key() -> None:
    params = {"target": GraphParameter("target"), **declared(rows=1)}
    resolver = ParamResolver(params, {})
    resolver.apply({"conn": {"table": "${target}"}, "rows": "${rows}"}, WHERE, "")
    resolver.apply({"t": "prefix ${target}"}, "graph.json: process 'w'", "")
    resolver.apply({"x": "${undeclared}"}, "graph.json: process 'w'", "")
    problems = resolver.problems()
    assert len(problems) == 2
    target = problems[0]
    assert target.where == WHERE
    assert "parameter 'target' has no value" in target.message
    assert "declared without a default" in target.message
    assert "--param target=..." in target.message
    assert "process 'gen' config 'conn.table'" in target.message
    assert "process 'w' config 't'" in target.message
    assert "parameter 'undeclared' has no value (it is not declared" in problems[1].message


def test_missing_parameter_leaves_reference_in_place() -> None:
    resolver = ParamResolver({}, {})
    assert resolver.apply("${nope}", WHERE, "k") == "${nope}"


def test_unknown_given_parameter_is_a_problem_with_hint() -> None:
    resolver = ParamResolver(declared(rows=1), {"rowz": "5", "other": "x"}, source="graph.json")
    resolver.apply({"r": "${rows}"}, WHERE, "")
    problems = resolver.problems()
    assert [p.where for p in problems] == ["graph.json", "graph.json"]
    assert "--param rowz: the graph neither declares nor uses a parameter 'rowz' (did you mean 'rows'?)" \
        in problems[0].message
    assert "known parameters: rows" in problems[1].message


def test_declared_but_unused_given_parameter_is_fine() -> None:
    resolver = ParamResolver(declared(rows=1), {"rows": "3"})
    assert resolver.problems() == []


def test_bad_conversion_is_reported() -> None:
    resolver = ParamResolver(declared(rows=1000, on=False), {"rows": "many", "on": "maybe"},
                             source="g.yaml")
    assert resolver.apply("${rows}", WHERE, "rows") == "many"
    resolver.apply("${on}", WHERE, "on")
    messages = [str(p) for p in resolver.problems()]
    assert "g.yaml: --param rows: parameter 'rows' expects an integer, got 'many'" in messages
    assert "g.yaml: --param on: parameter 'on' expects true or false, got 'maybe'" in messages


@pytest.mark.parametrize(("default", "text", "expected"), [
    (1, " 12 ", 12), (1.5, "2", 2), (1.5, "2.0", 2.0), (True, "yes", True), (True, "0", False),
    ({"a": 1}, '{"b": 2}', {"b": 2}), ("s", "t", "t"), (None, "t", "t"),
])
def test_convert(default: object, text: str, expected: object) -> None:
    param = GraphParameter("p", default=default, has_default=default is not None)
    assert convert(param, text) == expected


def test_parse_param_assignments() -> None:
    assert parse_param_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_param_assignments(["novalue"])
