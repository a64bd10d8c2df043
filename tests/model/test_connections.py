from __future__ import annotations

from pathlib import Path

from snapgraph.model.connections import ConnectionStore, load_connections, resolve_connections
from snapgraph.model.problems import Problem

from .helpers import write

YAML_FILE = """\
PG:
  connectionType: POSTGRES
  connectionProperties:
    host: localhost
    port: 5432
    user: demo
    password: secret
S3_Catalog:
  connectionType: S3
  connectionProperties: {path: /data}
"""

WHERE = "graph.json: process 'gen'"


def store_from(tmp_path: Path, name: str = "conns.yaml", text: str = YAML_FILE) -> ConnectionStore:
    problems: list[Problem] = []
    store = load_connections(write(tmp_path, name, text), problems)
    assert problems == []
    return store


def test_load_yaml(tmp_path: Path) -> None:
    store = store_from(tmp_path)
    assert "PG" in store
    assert store.get("PG") == {
        "connectionType": "POSTGRES",
        "connectionProperties": {"host": "localhost", "port": 5432, "user": "demo", "password": "secret"},
    }
    assert type(store.get("PG")["connectionProperties"]) is dict
    assert store.get("nope") is None


def test_load_json(tmp_path: Path) -> None:
    data = {"PG": {"connectionType": "POSTGRES", "connectionProperties": {"host": "h"}}}
    store = store_from(tmp_path, "conns.json", data)  # type: ignore[arg-type]
    assert store.get("PG")["connectionProperties"] == {"host": "h"}


def test_json_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    problems: list[Problem] = []
    path = write(tmp_path, "conns.json", '{\n  "PG": {"connectionType": }\n}')
    load_connections(path, problems)
    assert len(problems) == 1
    assert problems[0].where == f"{path}:2:28"
    assert "invalid JSON in connections file" in problems[0].message


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    problems: list[Problem] = []
    path = write(tmp_path, "conns.yaml", "PG:\n  connectionType: POSTGRES\n  connectionProperties: [a\n")
    load_connections(path, problems)
    assert len(problems) == 1
    assert problems[0].where.startswith(f"{path}:")
    assert "invalid connections file" in problems[0].message


def test_malformed_entries_are_reported_with_lines(tmp_path: Path) -> None:
    problems: list[Problem] = []
    path = write(tmp_path, "conns.yaml", """\
        GOOD:
          connectionType: HTTP
          connectionProperties: {host: h}
        FLAT: just a string
        PROPS:
          connectionType: HTTP
          connectionProperties: [1, 2]
        TYPO:
          connectionTyp: HTTP
        """)
    store = load_connections(path, problems)
    assert list(store.connections) == ["GOOD"]
    messages = {p.where: p.message for p in problems}
    assert "connection 'FLAT' must be a mapping" in messages[f"{path}:4"]
    assert "connectionProperties must be a mapping" in messages[f"{path}:7"]
    assert "unknown key(s) connectionTyp" in messages[f"{path}:8"]


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    problems: list[Problem] = []
    path = write(tmp_path, "conns.yaml", "PG: {connectionType: A}\nPG: {connectionType: B}\n")
    load_connections(path, problems)
    assert problems[0].where == f"{path}:2"
    assert "duplicate key 'PG' (first on line 1)" in problems[0].message


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    problems: list[Problem] = []
    load_connections(write(tmp_path, "conns.yaml", "- a\n- b\n"), problems)
    assert "must map connection ids" in problems[0].message


def test_missing_file(tmp_path: Path) -> None:
    problems: list[Problem] = []
    load_connections(tmp_path / "nope.yaml", problems)
    assert problems[0].where == str(tmp_path / "nope.yaml")
    assert "cannot read connections file" in problems[0].message


def test_resolve_replaces_connection_ids_anywhere(tmp_path: Path) -> None:
    store = store_from(tmp_path)
    config = {
        "connection": {"configurationType": "Configuration Manager", "connectionID": "PG", "extra": 1},
        "nested": {"targets": [{"connectionID": "S3_Catalog"}]},
        "rows": 5,
    }
    problems: list[Problem] = []
    resolved = resolve_connections(config, store, WHERE, problems)
    assert problems == []
    assert resolved["connection"] == {
        "connectionID": "PG",
        "connectionType": "POSTGRES",
        "connectionProperties": {"host": "localhost", "port": 5432, "user": "demo", "password": "secret"},
        "extra": 1,
    }
    assert resolved["nested"]["targets"][0]["connectionProperties"] == {"path": "/data"}
    assert resolved["rows"] == 5
    assert "connectionType" not in config["connection"]  # input untouched
    resolved["connection"]["connectionProperties"]["host"] = "changed"
    assert store.get("PG")["connectionProperties"]["host"] == "localhost"  # store untouched


def test_inline_connection_properties_pass_through(tmp_path: Path) -> None:
    inline = {"connectionProperties": {"host": "h", "connectionID": "not-a-ref"}}
    problems: list[Problem] = []
    assert resolve_connections({"c": inline}, None, WHERE, problems) == {"c": inline}
    assert resolve_connections({"c": {"configurationType": " ", "connectionID": ""}}, None, WHERE,
                               problems) == {"c": {"configurationType": " ", "connectionID": ""}}
    assert problems == []


def test_unknown_id_names_process_key_and_file(tmp_path: Path) -> None:
    store = store_from(tmp_path)
    problems: list[Problem] = []
    resolve_connections({"db": {"inner": {"connectionID": "PGX"}}}, store, WHERE, problems)
    assert len(problems) == 1
    assert problems[0].where == WHERE
    assert "config 'db.inner' uses connection 'PGX'" in problems[0].message
    assert str(store.path) in problems[0].message
    assert "known: PG, S3_Catalog" in problems[0].message


def test_unknown_id_without_connections_file() -> None:
    problems: list[Problem] = []
    resolve_connections({"db": {"connectionID": "PG"}}, None, WHERE, problems)
    assert "config 'db' uses connection 'PG', but no --connections file was given" in problems[0].message
