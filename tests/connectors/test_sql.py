"""The SQL reader and writer (src/snapgraph/connectors/sql.py) end to end, on SQLite, PostgreSQL and MariaDB.

Graphs of ``sql-reader`` -> ``sql-writer`` (with a pacing operator between them where a run must last
several epochs) run through the real command line, and under the supervisor with 20 ms epochs for the
wide fault matrix. Every crash case is compared with the failure-free result (the source table itself,
which a failure-free run copies: asserted first) and asserts that its fault fired. Transactional and
upsert writers must give exactly that table; the append writer must show duplicates after a replay
(which proves the comparison can fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapgraph.connectors.databases import DIALECTS
from snapgraph.connectors.sql import modulo_conditions
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.operators_repo import builtin_ports
from snapgraph.model.sql_builtins import SQL_READER, SQL_WRITER
from snapgraph.model.types import DYNAMIC, TABLE, PortType
from snapgraph.runtime.engine import COMPLETED

from .sql_helpers import (
    KINDS,
    SqlDatabase,
    expect_resumed,
    partition_of_each_row,
    run_supervised,
    source_rows,
    write_graph,
)

ROWS = 600  # batches of 10: 60 messages


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    database = SqlDatabase(request.param, tmp_path)
    yield database
    database.drop()


@pytest.fixture
def sqlite(tmp_path: Path) -> SqlDatabase:
    return SqlDatabase("sqlite", tmp_path)


def cli(folder: Path, *args: str, faults: str = "", timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``snapgraph run graph.yaml --connections ... ARGS`` in ``folder`` (its store: ./.snapgraph)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SNAPGRAPH_FAULTS": faults}
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections",
                           "connections.yaml", "--no-progress", *args], cwd=folder, capture_output=True, text=True,
                          timeout=timeout, env=env)


def duplicates(rows: list[tuple[Any, ...]]) -> int:
    return sum(count - 1 for count in Counter(rows).values())


# -- the descriptors: config checks and delivery traits ----------------------------------------------------

CONNECTION = {"connectionID": "DB", "connectionType": "SQLITE", "connectionProperties": {"path": "x.db"}}


def test_the_descriptors_are_built_ins_with_table_ports() -> None:
    assert BUILTINS["snapgraph.sql.reader"] is SQL_READER and "sql-reader" in SQL_READER.aliases
    assert BUILTINS["snapgraph.sql.writer"] is SQL_WRITER and "sql-writer" in SQL_WRITER.aliases
    assert SQL_READER.table_ports == ("output",) and SQL_WRITER.table_ports == ("input",)
    reader = SQL_READER.delivery_of({"connection": CONNECTION, "table": "t", "key": "id"})
    assert reader.replayable and reader.deterministic and not reader.batches  # replays message for message
    inports, outports = builtin_ports(SQL_WRITER.component)
    assert inports["input"].type == PortType(TABLE, DYNAMIC) and not outports
    assert builtin_ports(SQL_READER.component)[1]["output"].type == PortType(TABLE, DYNAMIC)


@pytest.mark.parametrize(("mode", "kind"), [("append", WriterKind.PLAIN), ("upsert", WriterKind.IDEMPOTENT),
                                            ("transactional", WriterKind.TRANSACTIONAL)])
def test_the_writer_promises_what_its_mode_does(mode: str, kind: WriterKind) -> None:
    config = {"connection": CONNECTION, "table": "t", "mode": mode, "key": ["id"]}
    assert SQL_WRITER.delivery_of(config).writer is kind


def test_a_writer_config_with_problems_promises_the_weakest() -> None:
    assert SQL_WRITER.delivery_of({"table": "t", "mode": "transactional"}).writer is WriterKind.PLAIN
    assert SQL_WRITER.delivery_of({"connection": CONNECTION, "table": "t"}).writer is WriterKind.PLAIN  # append


@pytest.mark.parametrize(("config", "problem"), [
    ({"table": "t", "key": "id"}, "config 'connection' is missing"),
    ({"connection": "DB", "table": "t", "key": "id"}, "config 'connection' must be {connectionID: ID}"),
    ({"connection": {**CONNECTION, "connectionType": "KAFKA"}, "table": "t", "key": "id"},
     "config 'connection': connection 'DB' has connectionType 'KAFKA', which is not a SQL database"),
    ({"connection": CONNECTION, "key": "id"}, "config 'table' or 'query' (exactly one of them)"),
    ({"connection": CONNECTION, "table": "t", "query": "SELECT 1", "key": "id"}, "not both"),
    ({"connection": CONNECTION, "table": "t"}, "config 'key' is missing"),
    ({"connection": CONNECTION, "table": "t", "key": ["id", 3]}, "config 'key' must be a column name or a list"),
    ({"connection": CONNECTION, "table": "", "key": "id"}, "config 'table' must be a non-empty string"),
    ({"connection": CONNECTION, "query": "SELECT 1", "key": "id", "columns": ["a"]},
     "config 'columns' applies to a 'table'"),
    ({"connection": CONNECTION, "table": "t", "key": "id", "batch": 0}, "config 'batch' must be a whole number"),
    ({"connection": CONNECTION, "table": "t", "key": "id", "batch": 2.5}, "config 'batch' must be a whole number"),
    ({"connection": CONNECTION, "table": "t", "key": "id", "streaming": "maybe"}, "config 'streaming' must be"),
    ({"connection": CONNECTION, "table": "t", "key": "id", "poll": -1}, "config 'poll' must be a number"),
])
def test_reader_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = SQL_READER.config_problems(config)
    assert any(problem in text for text in problems), problems


def test_a_good_reader_config_has_no_problems() -> None:
    assert SQL_READER.config_problems({"connection": CONNECTION, "table": "t", "key": "a, b", "batch": "5",
                                       "streaming": "true", "poll": "0.5"}) == []
    unresolved = {"connection": {"connectionID": "DB"}, "query": "SELECT 1 AS a", "key": ["a"]}
    assert SQL_READER.config_problems(unresolved) == []  # an unknown id is the connection resolution's problem


@pytest.mark.parametrize(("config", "problem"), [
    ({"connection": CONNECTION, "table": "t", "mode": "merge"},
     "config 'mode' must be one of append, upsert, transactional, got 'merge'"),
    ({"connection": CONNECTION, "table": "t", "mode": "upsert"}, "config 'key' is missing: upsert mode"),
    ({"connection": CONNECTION, "mode": "append"}, "config 'table' is missing"),
    ({"connection": CONNECTION, "table": "t", "columns": 7}, "config 'columns' must be a column name or a list"),
])
def test_writer_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = SQL_WRITER.config_problems(config)
    assert any(problem in text for text in problems), problems


# -- bad input through the command line: exit 2, naming the operator and the config key --------------------

@pytest.mark.parametrize(("reader", "writer", "message"), [
    ({"table": "nope"}, {}, "operator 'reader': config 'table': cannot read table 'nope'"),
    ({"columns": ["id", "colour"]}, {}, "operator 'reader': config 'columns': no column 'colour' in table 'src'"),
    ({"key": "serial"}, {}, "operator 'reader': config 'key': no column 'serial'"),
    ({"key": None}, {}, "config 'key' is missing"),
    ({"table": None, "query": "SELECT id, nme FROM src;"}, {},
     "operator 'reader': config 'query': cannot read the query"),
    ({}, {"table": "missing"}, "operator 'writer': config 'table': cannot read the target table 'missing'"),
    ({}, {"columns": ["id", "size"]}, "operator 'writer': config 'columns': no column 'size'"),
    ({}, {"mode": "merge"}, "config 'mode' must be one of append, upsert, transactional"),
    ({}, {"mode": "upsert"}, "config 'key' is missing: upsert mode writes by key"),
    ({}, {"mode": "upsert", "key": "name"}, "operator 'writer': config 'key': (name) is not the primary key or a "
                                            "unique key of 'dst'"),
    ({"bacth": 5}, {}, "config 'bacth' is not a key of the SQL Reader (did you mean 'batch'?)"),
    ({}, {"size": 9}, "config 'size' is not a key of the SQL Writer (its keys: connection, table, mode, key, "
                      "columns)"),
])
def test_bad_configs_are_refused_naming_operator_and_key(sqlite: SqlDatabase, reader: dict[str, Any],
                                                        writer: dict[str, Any], message: str) -> None:
    sqlite.create_source(5)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="append", reader=reader, writer=writer)
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_a_run_refused_while_loading_does_not_block_the_corrected_graph(sqlite: SqlDatabase) -> None:
    """The refused run never started: it is recorded abandoned (not failed), so once the config is fixed a
    plain run starts (no --fresh needed), with snapshots on; the CLI says why the first one stopped."""
    sqlite.create_source(5)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="transactional", period=1, writer={"table": "missing"})
    refused = cli(sqlite.folder)
    assert refused.returncode == 2 and "[writer] ERROR: cannot start: " in refused.stderr, refused.stderr
    assert "script failed to load" not in refused.stderr
    write_graph(sqlite.folder, mode="transactional", period=1)
    done = cli(sqlite.folder)
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("dst") == source_rows(5)


def test_a_connection_of_an_unknown_type_is_refused(sqlite: SqlDatabase) -> None:
    sqlite.connections_file.write_text(yaml.safe_dump({"DB": {"connectionType": "HANA_DB",
                                                              "connectionProperties": {"host": "h"}}}))
    write_graph(sqlite.folder, mode="append")
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    # Seen by validation, before anything runs: the file's line and the process.
    assert "graph.yaml:3: process 'reader': SQL Reader: config 'connection'" in done.stderr
    assert "connectionType 'HANA_DB', which is not a SQL database" in done.stderr


def test_a_row_of_the_wrong_width_fails_the_writer_naming_it(sqlite: SqlDatabase) -> None:
    sqlite.create_source(5)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="append", writer={"columns": ["id", "name"]})
    done = cli(sqlite.folder)
    assert done.returncode == 1, done.stderr
    assert "operator 'writer': row 0 of a message on port 'input' has 3 values, but 2 columns" in done.stderr


# -- failure-free runs: every mode on every database ------------------------------------------------------

@pytest.mark.parametrize("mode", ["append", "upsert", "transactional"])
def test_failure_free_runs_copy_the_source(db: SqlDatabase, mode: str) -> None:
    db.create_source(ROWS)
    db.create_target()
    write_graph(db.folder, mode=mode, period=1, writer={"key": "id"} if mode == "upsert" else {})
    done = cli(db.folder)
    assert done.returncode == 0, done.stderr
    assert "attempt 1 failed" not in done.stderr
    assert db.rows("dst") == source_rows(ROWS)
    ours = {"dst__sg_staged", "dst__sg_epochs"}
    assert (db.tables() & ours == ours) == (mode == "transactional"), "only the transactional writer keeps tables"
    assert db.tables() - ours == {"src", "dst"}, "no table but the target and ours is touched"
    if mode == "transactional":
        assert db.rows("dst__sg_staged", "writer") == [], "every staged epoch was applied"
        assert [writer for writer, _ in db.rows("dst__sg_epochs", "writer")] == ["sqlgraph/writer"]


def test_a_graph_json_names_them_by_component_id(sqlite: SqlDatabase) -> None:
    sqlite.create_source(25)
    sqlite.create_target()
    connection = {"connectionID": "DB"}
    graph = {
        "properties": {}, "metadata": {"generation": 2},
        "processes": {
            "reader": {"component": "snapgraph.sql.reader", "metadata": {"generation": 2, "config": {
                "connection": connection, "table": "src", "key": "id", "batch": 7}}},
            "writer": {"component": "snapgraph.sql.writer", "metadata": {"generation": 2, "config": {
                "connection": connection, "table": "dst", "mode": "upsert", "key": ["id"]}}},
        },
        "connections": [{"src": {"process": "reader", "port": "output"},
                         "tgt": {"process": "writer", "port": "input"}}],
    }
    (sqlite.folder / "graph.json").write_text(json.dumps(graph))
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.json", "--connections", "connections.yaml",
                           "--no-progress"], cwd=sqlite.folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("dst") == source_rows(25)


def test_a_query_with_a_composite_key_and_column_lists(sqlite: SqlDatabase) -> None:
    sqlite.execute("CREATE TABLE ev (day INTEGER, seq INTEGER, what VARCHAR(10), PRIMARY KEY (day, seq))",
                   "CREATE TABLE dst (what VARCHAR(10), day INTEGER, seq INTEGER, note VARCHAR(10))",
                   "INSERT INTO ev VALUES (?, ?, ?)",
                   rows=[(day, seq, f"e{day}.{seq}") for day in (2, 1, 3) for seq in (3, 1, 2)])
    write_graph(sqlite.folder, mode="append", batch=4,
                reader={"table": None, "query": "SELECT what, day, seq FROM ev WHERE seq <> 2", "key": ["day", "seq"]},
                writer={"columns": "what, day, seq"})
    done = cli(sqlite.folder)
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("dst", "day, seq") == [(f"e{d}.{s}", d, s, None) for d in (1, 2, 3) for s in (1, 3)]


def test_an_empty_source_ends_with_one_empty_last_batch(sqlite: SqlDatabase) -> None:
    sqlite.create_source(0)
    sqlite.create_target()
    graph = write_graph(sqlite.folder, mode="append")
    spec = yaml.safe_load(graph.read_text())
    spec["operators"]["tap"] = {"component": "wiretap"}  # prints each message with its headers
    spec["connections"].append("reader.output -> tap.in")
    graph.write_text(yaml.safe_dump(spec))
    done = cli(sqlite.folder, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("[tap]") == 1
    assert "{'com.sap.headers.batch': [0, True, 0, 10, 'rows']}" in done.stdout
    assert sqlite.rows("dst") == []


# -- the wide fault matrix: SQLite, 20 ms epochs, under the supervisor -------------------------------------

READER_FAULTS = [
    "before_serialize:reader:2", "after_serialize:reader:2", "after_persist:reader:2",
    "sql_reader_published:reader:17", "sql_reader_published:reader:45,restore:reader:1",
]
WRITER_FAULTS = [
    "port_callback:writer:23", "before_serialize:writer:2", "after_serialize:writer:2", "after_persist:writer:2",
    "before_complete:*:2", "epoch_complete:writer:2", "sql_writer_staged:writer:2", "sql_writer_moved:writer:2",
    "sql_writer_committed:writer:2", "sql_writer_committed:writer:2,restore:writer:1",
    "sql_writer_moved:writer:3,epoch_complete:writer:4",
]
PACED = {"delay": 0.004, "batch": 10}


def _expect_exactly_once(db: SqlDatabase, faults: str, outcome: Any, plan: Any) -> None:
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert db.rows("dst") == source_rows(ROWS), f"{faults}: not the failure-free table"


@pytest.mark.parametrize("faults", READER_FAULTS + WRITER_FAULTS)
def test_transactional_writer_is_exactly_once_under_every_crash(sqlite: SqlDatabase, faults: str) -> None:
    sqlite.create_source(ROWS)
    sqlite.create_target()
    outcome, plan = run_supervised(sqlite, write_graph(sqlite.folder, mode="transactional", **PACED), faults)
    _expect_exactly_once(sqlite, faults, outcome, plan)
    assert sqlite.rows("dst__sg_staged", "writer") == []


UPSERT_FAULTS = [*READER_FAULTS, "port_callback:writer:23", "sql_writer_committed:writer:23",
                 "before_complete:*:2", "sql_writer_committed:writer:23,restore:reader:1"]


@pytest.mark.parametrize("faults", UPSERT_FAULTS)
def test_upsert_writer_is_exactly_once_under_every_crash(sqlite: SqlDatabase, faults: str) -> None:
    sqlite.create_source(ROWS)
    sqlite.create_target()
    graph = write_graph(sqlite.folder, mode="upsert", writer={"key": "id"}, **PACED)
    outcome, plan = run_supervised(sqlite, graph, faults)
    _expect_exactly_once(sqlite, faults, outcome, plan)


GROUP_DEATHS = ["sql_writer_staged:writer:2:exit", "sql_writer_moved:writer:2:exit", "epoch_complete:writer:2:exit",
                "port_callback:writer:23:exit", "sql_reader_published:reader:17:exit"]


@pytest.mark.parametrize("faults", GROUP_DEATHS)
def test_transactional_writer_survives_group_process_deaths(sqlite: SqlDatabase, faults: str) -> None:
    """Groups as OS processes: an ``exit`` fault kills the group process at that step (a group death)."""
    sqlite.create_source(ROWS)
    sqlite.create_target()
    graph = write_graph(sqlite.folder, mode="transactional", **PACED)
    outcome, plan = run_supervised(sqlite, graph, faults, in_process=False)
    _expect_exactly_once(sqlite, faults, outcome, plan)


def test_append_writer_duplicates_after_a_replay(sqlite: SqlDatabase) -> None:
    """The negative control: the same crash with the append writer writes replayed rows twice."""
    sqlite.create_source(ROWS)
    sqlite.create_target("dst0")
    sqlite.execute("CREATE TABLE dst (id INTEGER, name VARCHAR(40), amount INTEGER)")  # no key: room for duplicates
    faults = "sql_writer_committed:writer:40"
    outcome, plan = run_supervised(sqlite, write_graph(sqlite.folder, mode="append", **PACED), faults)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert outcome.restored_from[1] is not None, "the recovery restored an epoch and replayed after it"
    rows = sqlite.rows("dst")
    assert set(rows) == set(source_rows(ROWS)), "nothing lost"
    assert duplicates(rows) > 0, "a replay after the crash must show up as duplicates"


def test_append_writer_failure_free_has_no_duplicates(sqlite: SqlDatabase) -> None:
    sqlite.create_source(ROWS)
    sqlite.execute("CREATE TABLE dst (id INTEGER, name VARCHAR(40), amount INTEGER)")
    outcome, _ = run_supervised(sqlite, write_graph(sqlite.folder, mode="append", **PACED))
    assert outcome.attempts == 1 and sorted(sqlite.rows("dst")) == source_rows(ROWS)


# -- a representative subset on PostgreSQL and MariaDB -----------------------------------------------------

@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
@pytest.mark.parametrize(("mode", "faults", "in_process"), [
    ("transactional", "sql_writer_moved:writer:2", True),
    ("transactional", "sql_writer_committed:writer:2,restore:writer:1", True),
    ("transactional", "sql_writer_staged:writer:2:exit", False),
    ("upsert", "sql_writer_committed:writer:23", False),
])
def test_server_databases_recover_exactly_once(tmp_path: Path, kind: str, mode: str, faults: str,
                                               in_process: bool) -> None:
    db = SqlDatabase(kind, tmp_path)
    try:
        db.create_source(ROWS)
        db.create_target()
        graph = write_graph(tmp_path, mode=mode, writer={"key": "id"}, **PACED)
        outcome, plan = run_supervised(db, graph, faults, in_process=in_process)
        _expect_exactly_once(db, faults, outcome, plan)
    finally:
        db.drop()


# -- through the command line: engine death and resume, group death, savepoints, streaming ----------------

CLI_ROWS = 300
CLI_PACE = {"delay": 0.02, "batch": 5}  # 60 messages of 20 ms: a run of about 1.5 s, epochs every second


@pytest.mark.parametrize(("fault", "committed_before"), [
    ("sql_writer_committed:writer:1:kill", True),  # epoch 1 is in the target: its second commit must be a no-op
    ("sql_writer_moved:writer:1:kill", False),  # rolled back with the engine: --resume applies epoch 1
    ("sql_writer_staged:writer:2:kill", True),
    ("epoch_complete:writer:1:kill", False),
])
def test_engine_death_then_resume_is_exactly_once(sqlite: SqlDatabase, fault: str, committed_before: bool) -> None:
    sqlite.create_source(CLI_ROWS)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="transactional", period=1, **CLI_PACE)
    died = cli(sqlite.folder, faults=fault)
    assert died.returncode == 137, died.stderr
    assert "engine killed at" in died.stderr
    assert bool(sqlite.rows("dst")) == committed_before
    resumed = cli(sqlite.folder, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sqlite.rows("dst") == source_rows(CLI_ROWS)


@pytest.mark.parametrize("kind", KINDS)
def test_group_process_death_through_the_cli(tmp_path: Path, kind: str) -> None:
    db = SqlDatabase(kind, tmp_path)
    try:
        db.create_source(CLI_ROWS)
        db.create_target()
        write_graph(tmp_path, mode="transactional", period=1, **CLI_PACE)
        done = cli(tmp_path, "--max-retries", "3", "--retry-interval", "0", faults="sql_writer_moved:writer:1:exit")
        assert done.returncode == 0, done.stderr
        assert "the group process died (exit code 137)" in done.stderr and "(2 attempts)" in done.stderr
        assert db.rows("dst") == source_rows(CLI_ROWS)
    finally:
        db.drop()


def test_resume_after_a_completed_run_reads_only_new_rows(sqlite: SqlDatabase) -> None:
    """A savepoint: the reader continues after its last key, so only rows added since are written."""
    sqlite.create_source(50)
    sqlite.execute("CREATE TABLE dst (id INTEGER, name VARCHAR(40), amount INTEGER)")  # append: no key needed
    write_graph(sqlite.folder, mode="append", period=1)
    assert cli(sqlite.folder).returncode == 0
    sqlite.create_source(30, start=50)
    resumed = cli(sqlite.folder, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sqlite.rows("dst") == source_rows(80), "each row once: the resumed reader skipped the first 50"


def test_streaming_reader_polls_for_new_rows_and_resumes(sqlite: SqlDatabase) -> None:
    sqlite.create_source(20)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="transactional", period=1, reader={"streaming": True, "poll": 0.1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    engine = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections",
                               "connections.yaml", "--no-progress", "--stop-after", "3"], cwd=sqlite.folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        start = time.monotonic()
        while len(sqlite.rows("dst")) < 20 and time.monotonic() - start < 30:
            time.sleep(0.1)
        sqlite.create_source(15, start=20)  # rows that arrive while the reader polls
        _, stderr = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, stderr
    assert sqlite.rows("dst") == source_rows(35)
    sqlite.create_source(5, start=35)
    resumed = cli(sqlite.folder, "--resume", "--stop-after", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert sqlite.rows("dst") == source_rows(40)


def test_a_fresh_run_clears_what_an_earlier_run_staged(sqlite: SqlDatabase) -> None:
    """Staged rows and the marker of an earlier run are not this run's: a new run deletes them first."""
    sqlite.create_source(ROWS)
    sqlite.create_target()
    sqlite.execute("CREATE TABLE dst__sg_staged (writer VARCHAR(255) NOT NULL, epoch VARCHAR(64) NOT NULL, "
                   "seq INTEGER NOT NULL, chunk BLOB NOT NULL, PRIMARY KEY (writer, epoch, seq))",
                   "CREATE TABLE dst__sg_epochs (writer VARCHAR(255) NOT NULL PRIMARY KEY, epoch VARCHAR(64) NOT NULL)",
                   "INSERT INTO dst__sg_staged VALUES ('sqlgraph/writer', '2000-01-01T00:00:00.000Z', 0, x'00')",
                   "INSERT INTO dst__sg_epochs VALUES ('sqlgraph/writer', '9999-01-01T00:00:00.000Z')",
                   "INSERT INTO dst__sg_epochs VALUES ('other/writer', '2000-01-01T00:00:00.000Z')")
    outcome, _ = run_supervised(sqlite, write_graph(sqlite.folder, mode="transactional", **PACED))
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert sqlite.rows("dst") == source_rows(ROWS), "a marker far in the future did not hide this run's epochs"
    assert sqlite.rows("dst__sg_staged", "writer") == []
    assert ("other/writer", "2000-01-01T00:00:00.000Z") in sqlite.rows("dst__sg_epochs", "writer"), \
        "another writer's marker is left alone"


# -- transactional mode without snapshots --------------------------------------------------------------

def test_without_snapshots_transactional_commits_at_the_last_batch(sqlite: SqlDatabase) -> None:
    """No epochs: the rows commit together when the reader's last batch arrives; a crash before it commits
    nothing, and the restart from scratch writes every row once."""
    sqlite.create_source(ROWS)
    sqlite.create_target()
    graph = write_graph(sqlite.folder, mode="transactional", **PACED)
    outcome, plan = run_supervised(sqlite, graph, "port_callback:writer:40", period=None)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert outcome.restored_from == [None, None]
    assert sqlite.rows("dst") == source_rows(ROWS)
    assert "dst__sg_staged" in sqlite.tables() and sqlite.rows("dst__sg_staged", "writer") == []


def test_without_snapshots_an_input_that_never_ends_is_reported_not_written(sqlite: SqlDatabase) -> None:
    sqlite.create_source(20)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="transactional", reader={"streaming": True, "poll": 0.1})
    done = cli(sqlite.folder, "--stop-after", "1.5")
    assert done.returncode == 0, done.stderr
    assert "20 rows were not written to 'dst': no message with isLast" in done.stderr
    assert sqlite.rows("dst") == []


# -- partitions: each read in key order, the state naming the current one -----------------------------------

PARTITION_ROWS = 300  # 3 partitions of 100 rows
PARTITIONED = {"partitions": 3, "partition_by": "id"}
PARTITION_PACE = {"delay": 0.005, "batch": 5}  # 60 pages of 5 ms: epochs of 20 ms complete all through the run


@pytest.mark.parametrize(("change", "problem"), [
    ({"partitions": 0, "partition_by": "id"}, "config 'partitions' must be a whole number of partitions >= 1"),
    ({"partitions": ["id < 5", " "]}, "config 'partitions' must be a whole number of partitions >= 1"),
    ({"partitions": 3}, "config 'partition_by' is missing"),
    ({"partitions": ["id < 5"], "partition_by": "id"}, "config 'partition_by' applies to a count of 'partitions'"),
    ({"partition_by": "id"}, "config 'partition_by' applies with a count of 'partitions'"),
    ({"partitions": 2, "partition_by": 7}, "config 'partition_by' must be a column name"),
    ({**PARTITIONED, "streaming": True}, "config 'streaming': a partitioned reader reads each partition once"),
])
def test_reader_partition_problems_name_the_key(change: dict[str, Any], problem: str) -> None:
    good = {"connection": CONNECTION, "table": "t", "key": "id"}
    assert SQL_READER.config_problems({**good, **PARTITIONED}) == []
    assert SQL_READER.config_problems({**good, "partitions": ["a = 1", "a <> 1"]}) == []
    found = SQL_READER.config_problems({**good, **change})
    assert any(problem in text for text in found), found



def test_modulo_partitions_cover_every_row_once(db: SqlDatabase) -> None:
    found = partition_of_each_row(db, modulo_conditions(DIALECTS[db.connection["connectionType"]], "v", 3))
    assert found == [[0, 9, None], [1], [-7, -4, -1, 2, 5]], found  # -4 is 2 modulo 3, as 5 is


TAP = """
import json

def on_input(msg_id, header, body):
    with open(api.config.path, "a") as out:
        out.write(json.dumps(list(header["com.sap.headers.batch"])) + "\\n")

api.set_port_callback("input", on_input)
"""


def _with_tap(graph: Path) -> Path:
    """Add a script operator (a group of its own) that writes the batch header of each message the reader
    sends, one JSON line each, to ``tap.jsonl``."""
    (graph.parent / "tap.py").write_text(TAP.lstrip())
    data = yaml.safe_load(graph.read_text())
    data["operators"]["tap"] = {"script": "tap.py", "group": "tap", "inputs": {"input": "any"},
                                "config": {"path": str(graph.parent / "tap.jsonl")}}
    data["connections"].append("reader.output -> tap.input")
    graph.write_text(yaml.safe_dump(data, sort_keys=False))
    return graph


def _batches(folder: Path) -> list[list[Any]]:
    return [json.loads(line) for line in (folder / "tap.jsonl").read_text().splitlines()]


def test_failure_free_partitioned_copy_ends_with_one_last_batch(sqlite: SqlDatabase) -> None:
    sqlite.create_source(PARTITION_ROWS)
    sqlite.create_target()
    graph = _with_tap(write_graph(sqlite.folder, mode="transactional", reader=PARTITIONED, batch=10))
    outcome, _ = run_supervised(sqlite, graph, period=None)
    assert outcome.result.status == COMPLETED and outcome.attempts == 1, outcome.result.reason
    assert sqlite.rows("dst") == source_rows(PARTITION_ROWS)
    batches = _batches(sqlite.folder)
    assert [batch[0] for batch in batches] == list(range(30)), "one index over the partitions"
    assert [batch[1] for batch in batches] == [False] * 29 + [True], "isLast on the last page of the last partition"


READER_FAULTS = ["sql_reader_published:reader:40", "sql_reader_published:reader:55",
                 "sql_reader_published:reader:45,restore:reader:1", "after_serialize:reader:4",
                 "sql_writer_moved:writer:4"]


@pytest.mark.parametrize("faults", READER_FAULTS)
def test_partitioned_reader_resumes_in_its_partition_after_every_crash(sqlite: SqlDatabase, faults: str) -> None:
    sqlite.create_source(PARTITION_ROWS)
    sqlite.create_target()
    graph = write_graph(sqlite.folder, mode="transactional", reader=PARTITIONED, **PARTITION_PACE)
    outcome, plan = run_supervised(sqlite, graph, faults)
    expect_resumed(sqlite, faults, outcome, plan, PARTITION_ROWS)


def test_engine_killed_in_the_second_partition_then_resumed(sqlite: SqlDatabase) -> None:
    sqlite.create_source(PARTITION_ROWS)
    sqlite.create_target()
    # pages of 5: 20 per partition; the 50th is in the third partition, after the epoch of second 1
    write_graph(sqlite.folder, mode="transactional", period=1, reader=PARTITIONED, delay=0.03, batch=5)
    died = cli(sqlite.folder, faults="sql_reader_published:reader:50:kill")
    assert died.returncode == 137 and "engine killed at" in died.stderr, died.stderr
    assert 0 < len(sqlite.rows("dst")) < PARTITION_ROWS, "an epoch was applied before the kill: the resume restores it"
    resumed = cli(sqlite.folder, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sqlite.rows("dst") == source_rows(PARTITION_ROWS)


def test_a_resume_after_a_completed_run_reads_the_new_rows_of_every_partition(sqlite: SqlDatabase) -> None:
    """``--resume`` of a completed run is a savepoint: a new pass over every partition, each from its own
    last key, so rows added to a partition completed long ago are read too; the new pass is a new batch
    sequence (index 0 again, isLast at its end)."""
    sqlite.create_source(PARTITION_ROWS)
    sqlite.create_target()
    _with_tap(write_graph(sqlite.folder, mode="transactional", period=1, reader=PARTITIONED, batch=10))
    assert cli(sqlite.folder).returncode == 0
    sqlite.create_source(12, start=PARTITION_ROWS)  # new rows in each of the three partitions
    (sqlite.folder / "tap.jsonl").unlink()
    resumed = cli(sqlite.folder, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sqlite.rows("dst") == source_rows(PARTITION_ROWS + 12)
    batches = _batches(sqlite.folder)
    assert [batch[0] for batch in batches] == list(range(len(batches))) and batches[-1][1], batches
    assert sum(batch[1] for batch in batches) == 1
    again = cli(sqlite.folder, "--resume")  # nothing new: nothing read, nothing written twice
    assert again.returncode == 0, again.stderr
    assert sqlite.rows("dst") == source_rows(PARTITION_ROWS + 12)


def test_multiplicity_two_reads_each_row_once(sqlite: SqlDatabase) -> None:
    """Two instances of the reader and the writer: each reads every other partition and ends with its
    own last page (so a Graph Terminator behind both would see two ends: see docs)."""
    sqlite.create_source(PARTITION_ROWS)
    sqlite.create_target()
    graph = _with_tap(write_graph(sqlite.folder, mode="transactional", reader={"partitions": 5, "partition_by": "id"},
                                  batch=10, multiplicity=2))
    outcome, _ = run_supervised(sqlite, graph, period=None, in_process=False)
    assert outcome.result.status == COMPLETED and outcome.attempts == 1, outcome.result.reason
    assert sqlite.rows("dst") == source_rows(PARTITION_ROWS)
    batches = _batches(sqlite.folder)
    assert len(batches) == 30 and sum(batch[1] for batch in batches) == 2, batches
    # instance 0 reads partitions 0, 2, 4 (18 pages), instance 1 partitions 1, 3 (12 pages)
    assert sorted(batch[0] for batch in batches if batch[1]) == [11, 17]


def test_a_condition_the_database_refuses_names_the_key(sqlite: SqlDatabase) -> None:
    sqlite.create_source(5)
    sqlite.create_target()
    write_graph(sqlite.folder, mode="append", reader={"partitions": ["id < 3", "colour = 'red'"]})
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert "operator 'reader': config 'partitions': partition 1 cannot be read" in done.stderr
    write_graph(sqlite.folder, mode="append", reader={"partitions": 2, "partition_by": "serial"})
    done = cli(sqlite.folder)
    assert done.returncode == 2 and "operator 'reader': config 'partition_by': no column 'serial'" in done.stderr


def test_postgres_conditions_with_a_percent_resume_exactly_once(tmp_path: Path) -> None:
    db = SqlDatabase("postgres", tmp_path)
    try:
        db.create_source(PARTITION_ROWS)
        db.create_target()
        reader = {"partitions": ["name LIKE 'name1%'", "name NOT LIKE 'name1%'"]}
        graph = write_graph(tmp_path, mode="transactional", reader=reader, **PARTITION_PACE)
        faults = "sql_reader_published:reader:45,restore:reader:1"  # in the second partition
        outcome, plan = run_supervised(db, graph, faults)
        expect_resumed(db, faults, outcome, plan, PARTITION_ROWS)
    finally:
        db.drop()
