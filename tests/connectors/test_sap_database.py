"""SAP's built-in database operators (src/snapgraph/connectors/sap_database.py) end to end.

Table Consumer V3 / SQL Consumer V3 / Read HANA Table V2 -> Table Producer V3/V4 / Write HANA Table V2
on SQLite, PostgreSQL and MariaDB (HANA connections served by them through ``snapgraphDatabase``), the
guarantee ``snapgraph validate`` prints for each configuration, the configs that are refused (by process
and config key), crashes at the protocol steps compared with the failure-free table (each asserting its
fault fired), and SAP-samples' DI-Extract-Usage graph run as far as it needs no SAP service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapgraph.connectors.databases import DIALECTS
from snapgraph.connectors.sap_database import partition_conditions
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.operators_repo import builtin_ports
from snapgraph.model.sap_database_builtins import (
    INIT_HANA_TABLE_V2,
    READ_HANA_TABLE_V2,
    SQL_CONSUMER_V3,
    TABLE_CONSUMER_V3,
    TABLE_PRODUCER_V3,
    TABLE_PRODUCER_V4,
    WRITE_HANA_TABLE_V2,
    HanaTableName,
    duration_seconds,
    hana_table_name,
    logical_partitions,
    mapped_column,
)
from snapgraph.model.types import DYNAMIC, TABLE, PortType
from snapgraph.runtime.engine import COMPLETED

from .sql_helpers import KINDS, SqlDatabase, expect_resumed, partition_of_each_row, run_supervised, source_rows

ROWS = 300
FIXTURES = Path(__file__).parent.parent / "model" / "fixtures"
SOURCE = {"remoteObjectReference": {"name": "src", "owner": "DEMO"},
          "schema": {"genericType": "TABLE", "tableBasedRepresentation": {
              "attributes": [{"name": "id", "datatype": "INTEGER"},
                             {"name": "name", "datatype": "STRING", "length": 40},
                             {"name": "amount", "datatype": "INTEGER"}],
              "uniqueKeys": [{"attributeReferences": ["id"]}]}}}
TARGET = {"remoteObjectReference": {"name": "dst"}, "schema": SOURCE["schema"]}
MAPPINGS = [{"expression": '"id"', "target": "id"}, {"expression": '"name"', "target": "name"},
            {"expression": "amount", "target": "amount"}]
HANA = {"connectionID": "HANA"}
PACE = """
import time

def on_input(msg_id, header, body):
    time.sleep(api.config.delay)
    api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    database = SqlDatabase(request.param, tmp_path)
    serve_hana(database)
    yield database
    database.drop()


@pytest.fixture
def sqlite(tmp_path: Path) -> SqlDatabase:
    database = SqlDatabase("sqlite", tmp_path)
    serve_hana(database)
    return database


def serve_hana(db: SqlDatabase) -> None:
    """Add a HANA_DB connection ``HANA`` served by the test's database beside its own ``DB``."""
    connections = {"DB": db.connection, "HANA": {"connectionType": "HANA_DB", "connectionProperties": {
        "host": "hana.example", "port": 30015, "user": "DEMO", "password": "pw", "snapgraphDatabase": db.connection}}}
    db.connections_file.write_text(yaml.safe_dump(connections))


def consumer(**config: Any) -> dict[str, Any]:
    return {"component": "table-consumer-v3", "group": "source", "config": {
        "service": "HANA_DB", "serviceConnection": HANA, "source": SOURCE, "fetchSize": 10, **config}}


def producer(component: str = "table-producer-v4", **config: Any) -> dict[str, Any]:
    return {"component": component, "group": "sink", "config": {
        "service": "HANA_DB", "serviceConnection": HANA, "source": TARGET, "mode": "append", "upsert": True,
        "attributeMappings": MAPPINGS, **config}}


def read_hana(**config: Any) -> dict[str, Any]:
    return {"component": "read-hana-table-v2", "group": "source", "config": {
        "connection": HANA, "configMode": "Static (from configuration)", "tableName": "src", "readMode": "Once",
        "batching": "Fixed size", "batchSize": 10, **config}}


def write_hana(**config: Any) -> dict[str, Any]:
    return {"component": "write-hana-table-v2", "group": "sink", "config": {
        "connection": HANA, "configMode": "Static (from configuration)", "tableName": "dst",
        "statementType": "UPSERT", **config}}


def write_graph(folder: Path, reader: dict[str, Any], writer: dict[str, Any], *, delay: float = 0.0,
                extra: dict[str, Any] | None = None, connections: list[str] | None = None) -> Path:
    """graph.yaml: ``reader`` -> (a pace operator when ``delay``) -> ``writer``, on their SAP ports."""
    out = "outTable" if "consumer" in reader["component"] else "success"
    into = "inTable" if "producer" in writer["component"] else "input"
    operators: dict[str, Any] = {"reader": reader, "writer": writer, **(extra or {})}
    wiring = [f"reader.{out} -> writer.{into}"]
    if delay:
        operators["pace"] = {"script": "pace.py", "group": "source", "inputs": {"input": "any"},
                             "outputs": {"output": "any"}, "config": {"delay": delay}}
        wiring = [f"reader.{out} -> pace.input", f"pace.output -> writer.{into}"]
        (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "sapgraph", "operators": operators,
                                    "connections": wiring + (connections or [])}, sort_keys=False))
    return path


def cli(folder: Path, command: str = "run", *args: str, faults: str = "",
        timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SNAPGRAPH_FAULTS": faults}
    extra = ["--no-progress"] if command == "run" else []
    return subprocess.run([sys.executable, "-m", "snapgraph", command, "graph.yaml", "--connections",
                           "connections.yaml", *extra, *args], cwd=folder, capture_output=True, text=True,
                          timeout=timeout, env=env)


def duplicates(rows: list[tuple[Any, ...]]) -> int:
    return sum(count - 1 for count in Counter(rows).values())


# -- the descriptors: ids, ports, what each config promises ----------------------------------------------

def test_sap_component_ids_and_ports() -> None:
    for descriptor in (TABLE_CONSUMER_V3, SQL_CONSUMER_V3, TABLE_PRODUCER_V3, TABLE_PRODUCER_V4,
                       READ_HANA_TABLE_V2, WRITE_HANA_TABLE_V2):
        assert BUILTINS[descriptor.component] is descriptor
    assert TABLE_PRODUCER_V3.component == "com.sap.database.table.producer.v3"
    assert TABLE_PRODUCER_V4.component == "com.sap.database.table.producer.v4"
    assert READ_HANA_TABLE_V2.component == "com.sap.hana.readTable.v2"
    assert WRITE_HANA_TABLE_V2.component == "com.sap.hana.writeTable.v2"
    inports, outports = builtin_ports(TABLE_CONSUMER_V3.component)
    assert list(inports) == ["inTrigger"] and outports["outTable"].type == PortType(TABLE, DYNAMIC)
    inports, outports = builtin_ports(TABLE_PRODUCER_V4.component)
    assert inports["inTable"].type == PortType(TABLE, DYNAMIC) and list(outports) == ["out"]
    assert list(builtin_ports(READ_HANA_TABLE_V2.component)[1]) == ["success", "error"]


@pytest.mark.parametrize(("config", "kind"), [
    ({"mode": "append", "upsert": True}, WriterKind.IDEMPOTENT),
    ({"mode": "append", "upsert": False}, WriterKind.PLAIN),
    ({"mode": "truncate", "upsert": True}, WriterKind.PLAIN),  # SAP offers upsert with append only
    ({"mode": "overwrite"}, WriterKind.PLAIN),
    ({}, WriterKind.PLAIN),  # SAP's default mode, overwrite
])
def test_table_producer_promises_what_its_mode_does(config: dict[str, Any], kind: WriterKind) -> None:
    full = {"serviceConnection": HANA, "source": TARGET, **config}
    assert TABLE_PRODUCER_V4.delivery_of(full).writer is kind
    assert TABLE_PRODUCER_V3.delivery_of(full).writer is kind


def test_hana_operators_promise_what_sap_states() -> None:
    base = {"connection": HANA, "configMode": "Static (from configuration)", "tableName": "t"}
    fixed = READ_HANA_TABLE_V2.delivery_of({**base, "batching": "Fixed size"})
    assert fixed.replayable and fixed.batches  # SAP: state between batches, at-least-once
    assert not READ_HANA_TABLE_V2.delivery_of({**base, "batching": "None"}).replayable
    assert WRITE_HANA_TABLE_V2.delivery_of({**base, "statementType": "UPSERT"}).writer is WriterKind.IDEMPOTENT
    assert WRITE_HANA_TABLE_V2.delivery_of({**base, "statementType": "INSERT"}).writer is WriterKind.PLAIN
    consumer_traits = TABLE_CONSUMER_V3.delivery_of({"serviceConnection": HANA, "source": SOURCE})
    assert consumer_traits.replayable and not consumer_traits.batches


def test_config_value_readers() -> None:
    assert mapped_column('"user"') == "user" and mapped_column('"a""b"') == 'a"b' and mapped_column("x_1") == "x_1"
    assert mapped_column('UPPER("user")') is None and mapped_column(3) is None
    assert duration_seconds("1s") == 1 and duration_seconds("500ms") == 0.5 and duration_seconds("x") is None


@pytest.mark.parametrize(("text", "name"), [
    ("SRC", HanaTableName("SRC", None)), ("src", HanaTableName("src", None)), ('"SRC"', HanaTableName("SRC", None)),
    ('"QA"."SRC"', HanaTableName("SRC", "QA")), ("QA.SRC", HanaTableName("SRC", "QA")),
    (' "qa" . My_Table$1 ', HanaTableName("My_Table$1", "qa")), ('"a ""b"".c"', HanaTableName('a "b".c', None)),
    ('"QA"."SRC', None), ("QA.SRC.X", None), ('""', None), ("QA.", None), (".SRC", None), ("my table", None),
    ("1SRC", None), ('"QA""SRC', None), ("", None), (7, None),
])
def test_hana_table_names_parse_as_hana_reads_them(text: Any, name: HanaTableName | None) -> None:
    """Quoted parts keep their case and turn "" into ", plain parts are kept as written (as the hdbcli
    stand-in keeps them), a schema part is read apart; anything else is no table name."""
    assert hana_table_name(text) == name


PROBLEMS = [
    (TABLE_CONSUMER_V3, {"partitionType": "Physical (Source Based)"},
     "config 'partitionType': 'Physical (Source Based)' partitions are the source database's own"),
    (SQL_CONSUMER_V3, {"partitionType": "Logical"}, "config 'partitionSpecification' is missing"),
    (TABLE_CONSUMER_V3, {"additionalSessionParameters": "SET x=1"}, "config 'additionalSessionParameters'"),
    (TABLE_CONSUMER_V3, {"source": None}, "config 'source' is missing"),
    (TABLE_CONSUMER_V3, {"source": {"remoteObjectReference": {}}}, "its remoteObjectReference has no name"),
    (TABLE_CONSUMER_V3, {"service": "ORACLE"}, "config 'service': 'ORACLE' is not served by snapgraph"),
    (TABLE_CONSUMER_V3, {"fetchSize": 0}, "config 'fetchSize' must be a whole number >= 1"),
    (TABLE_CONSUMER_V3, {"serviceConnection": None}, "config 'serviceConnection' is missing"),
    (SQL_CONSUMER_V3, {"native_sql_statement": ""}, "config 'native_sql_statement' is missing"),
    (TABLE_PRODUCER_V4, {"mode": "merge"}, "config 'mode' must be one of append, overwrite, truncate"),
    (TABLE_PRODUCER_V4, {"attributeMappings": [{"expression": 'UPPER("x")', "target": "X"}]},
     "config 'attributeMappings[0]': expression 'UPPER(\"x\")' is not reproduced"),
    (TABLE_PRODUCER_V4, {"attributeMappings": [{"expression": "x"}]}, "config 'attributeMappings[0]' has no target"),
    (TABLE_PRODUCER_V4, {"sapiqBulkLoadErrors": {"uniqueErrors": 1}}, "config 'sapiqBulkLoadErrors' applies to SAP IQ"),
    (TABLE_PRODUCER_V4, {"mode": "overwrite", "source": {"remoteObjectReference": {"name": "t"}}},
     "mode overwrite creates the table from the dataset's schema"),
    (TABLE_PRODUCER_V3, {"upsert": "maybe"}, "config 'upsert' must be true or false"),
    (READ_HANA_TABLE_V2, {"configMode": "Dynamic (from input)"}, "config 'configMode': 'Dynamic (from input)'"),
    (READ_HANA_TABLE_V2, {"tableName": ""}, "config 'tableName' is missing"),
    (READ_HANA_TABLE_V2, {"tableName": '"QA"."SRC'}, """config 'tableName': '"QA"."SRC' is not a HANA table name"""),
    (WRITE_HANA_TABLE_V2, {"tableName": "DB.QA.DST"}, "config 'tableName': 'DB.QA.DST' is not a HANA table name"),
    (READ_HANA_TABLE_V2, {"readMode": "Poll"}, "config 'readMode': Poll"),
    (READ_HANA_TABLE_V2, {"batching": "Dynamic"}, "config 'batching' must be 'None' or 'Fixed size'"),
    (READ_HANA_TABLE_V2, {"decimalOutputFormat": "Floating-point"}, "config 'decimalOutputFormat'"),
    (READ_HANA_TABLE_V2, {"cesu8Handling": "Replace"}, "config 'cesu8Handling'"),
    (READ_HANA_TABLE_V2, {"columns": "id"}, "config 'columns' must be a list of column names"),
    (WRITE_HANA_TABLE_V2, {"statementType": "MERGE"}, "config 'statementType' must be INSERT or UPSERT"),
    (WRITE_HANA_TABLE_V2, {"configMode": None}, "config 'configMode'"),
]


@pytest.mark.parametrize(("descriptor", "change", "problem"), PROBLEMS,
                         ids=[f"{d.title}-{next(iter(c))}" for d, c, _ in PROBLEMS])
def test_config_problems_name_the_key(descriptor: Any, change: dict[str, Any], problem: str) -> None:
    good = {
        TABLE_CONSUMER_V3: consumer()["config"], SQL_CONSUMER_V3: {"serviceConnection": HANA,
                                                                   "native_sql_statement": "SELECT 1"},
        TABLE_PRODUCER_V3: producer()["config"], TABLE_PRODUCER_V4: producer()["config"],
        READ_HANA_TABLE_V2: read_hana()["config"], WRITE_HANA_TABLE_V2: write_hana()["config"],
    }[descriptor]
    assert descriptor.config_problems(good) == []
    config = {key: value for key, value in {**good, **change}.items() if value is not None}
    found = descriptor.config_problems(config)
    assert any(problem in message for message in found), found
    assert descriptor.delivery_of(config) == descriptor.delivery, "a config with problems promises the weakest"


# -- snapgraph validate: the guarantee each configuration yields, and refusals naming process and key --------

@pytest.mark.parametrize(("reader", "writer", "expected"), [
    (consumer(), producer(), "writer 'writer': exactly-once: source 'reader' replays from its snapshot, "
                             "'writer' is idempotent"),
    (consumer(), producer(upsert=False), "writer 'writer': at-least-once: 'writer' is a plain writer"),
    (consumer(), producer(mode="truncate"), "writer 'writer': at-least-once: 'writer' is a plain writer"),
    (read_hana(), write_hana(), "writer 'writer': at-least-once: source 'reader' sends batches and nothing right "
                                "after it discards duplicates"),
    (read_hana(batching="None"), write_hana(), "writer 'writer': at-most-once: source 'reader' is not declared "
                                               "replayable"),
])
def test_validate_prints_the_guarantee_by_sap_table(sqlite: SqlDatabase, reader: dict[str, Any],
                                                    writer: dict[str, Any], expected: str) -> None:
    write_graph(sqlite.folder, reader, writer)
    done = cli(sqlite.folder, "validate", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout + done.stderr


def test_validate_refuses_what_is_not_reproduced_naming_process_and_key(sqlite: SqlDatabase) -> None:
    write_graph(sqlite.folder, consumer(partitionType="Row ID"), write_hana(configMode="Dynamic (from input)"))
    done = cli(sqlite.folder, "validate")
    assert done.returncode == 2, done.stderr
    assert "process 'reader': Table Consumer V3: config 'partitionType'" in done.stderr
    assert "process 'writer': Write HANA Table V2: config 'configMode'" in done.stderr


# -- failure-free runs on every database --------------------------------------------------------------------

@pytest.mark.parametrize("component", ["table-producer-v3", "table-producer-v4"])
def test_table_consumer_to_table_producer_upsert(db: SqlDatabase, component: str) -> None:
    db.create_source(ROWS)
    db.create_target()
    write_graph(db.folder, consumer(), producer(component), extra={"tap": {"component": "wiretap"}},
                connections=["writer.out -> tap.in"])
    done = cli(db.folder, "run", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert db.rows("dst") == source_rows(ROWS)
    # `out` names the table written, with the batch header of each message (30 pages of 10 rows).
    assert done.stdout.count("[tap]") == ROWS // 10
    assert "{'com.sap.headers.batch': [29, True, 0, 10, 'rows']} dst" in done.stdout


def test_sql_consumer_to_producer_truncate_replaces_earlier_rows(db: SqlDatabase) -> None:
    db.create_source(40)
    db.create_target()
    db.execute("INSERT INTO dst (id, name, amount) VALUES (?, ?, ?)", rows=[(1000, "old", 1)])
    sql = {"component": "sql-consumer-v3", "config": {
        "service": "HANA_DB", "serviceConnection": HANA, "fetchSize": 7,
        "native_sql_statement": "SELECT id, name, amount FROM src WHERE id < 30;"}}
    write_graph(db.folder, sql, producer(mode="truncate", upsert=False, attributeMappings=None))
    done = cli(db.folder)
    assert done.returncode == 0, done.stderr
    assert db.rows("dst") == source_rows(30)


def test_read_hana_table_to_write_hana_table_upsert(db: SqlDatabase) -> None:
    db.create_source(ROWS)
    db.create_target()
    write_graph(db.folder, read_hana(), write_hana(), extra={"tap": {"component": "wiretap"}},
                connections=["writer.success -> tap.in"])
    done = cli(db.folder, "run", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert db.rows("dst") == source_rows(ROWS)
    assert done.stdout.count("[tap]") == ROWS // 10
    assert "'com.sap.headers.hana.table': ['dst', ['id', 'name', 'amount'], ['id']]" in done.stdout


def test_a_graph_terminator_after_write_hana_table_waits_for_the_last_batch(sqlite: SqlDatabase) -> None:
    """Write HANA Table V2 passes the input's batch header on with its `success` message: a terminator
    behind it ends the graph after the reader's last batch, not after the first write (a paced reader is
    far behind the writer)."""
    sqlite.create_source(ROWS)
    sqlite.create_target()
    write_graph(sqlite.folder, read_hana(), write_hana(), delay=0.01, extra={"stop": {"component": "graphTerminator"}},
                connections=["writer.success -> stop.in"])
    done = cli(sqlite.folder, "run", "--snapshot-period", "1")
    assert done.returncode == 0 and "graph terminator 'stop' fired" in done.stderr, done.stderr
    assert sqlite.rows("dst") == source_rows(ROWS)
    assert done.stderr.count("all inputs terminated") == 1


def test_what_a_script_downstream_of_read_hana_table_sees(sqlite: SqlDatabase) -> None:
    """A dynamic table with named columns (read through a stream reader, as SAP's examples do), the
    com.sap.headers.hana.table header, and one message without batching."""
    sqlite.create_source(12)
    script = """
        def on_input(msg_id, header, body):
            table = body.get_reader().read(-1)
            columns = list(api.type_context.get_vtype(table.get_type_reference()).columns)
            api.logger.info(f"seen {len(table)} rows of {columns} with {header['com.sap.headers.hana.table']}")

        api.set_port_callback("input", on_input)
    """
    (sqlite.folder / "show.py").write_text(textwrap.dedent(script))
    graph = {"name": "show", "operators": {
        "reader": read_hana(batching="None", columns=["name", "id"]),
        "show": {"script": "show.py", "inputs": {"input": "table:*"}}}, "connections": ["reader.success -> show.input"]}
    (sqlite.folder / "graph.yaml").write_text(yaml.safe_dump(graph))
    done = cli(sqlite.folder)
    assert done.returncode == 0, done.stderr
    assert "seen 12 rows of ['name', 'id'] with ['src', ['name', 'id'], ['id']]" in done.stderr


def test_overwrite_creates_the_table_from_the_schema_once_per_fresh_run(db: SqlDatabase) -> None:
    db.create_source(25)
    write_graph(db.folder, consumer(), producer(mode="overwrite"))
    for _ in range(2):  # a second fresh run drops and creates the table again: no duplicates
        done = cli(db.folder, "run", "--snapshot-period", "1", "--fresh")
        assert done.returncode == 0, done.stderr
        assert db.rows("dst") == source_rows(25)


def test_consumer_waits_for_its_trigger(sqlite: SqlDatabase) -> None:
    """With inTrigger connected, the consumer reads only after the first message there: it sees the rows
    the trigger's operator inserted just before sending it."""
    sqlite.create_source(0)
    sqlite.create_target()
    trigger = """
        import sqlite3

        def go():
            with sqlite3.connect(api.config.path) as con:
                con.executemany("INSERT INTO src VALUES (?, ?, ?)", [(i, f"name{i}", i * 7) for i in range(15)])
            api.outputs.output.publish("go")

        api.set_prestart(go)
    """
    (sqlite.folder / "trigger.py").write_text(textwrap.dedent(trigger))
    extra = {"trigger": {"script": "trigger.py", "outputs": {"output": "string"},
                         "config": {"path": str(sqlite.folder / "data.db")}}}
    write_graph(sqlite.folder, consumer(), producer(), extra=extra, connections=["trigger.output -> reader.inTrigger"])
    done = cli(sqlite.folder)
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("dst") == source_rows(15)


# -- refused at run time: exit 2 naming the operator and the config key -------------------------------------

def test_a_hana_connection_without_snapgraph_database_is_refused(sqlite: SqlDatabase) -> None:
    sqlite.create_source(3)
    sqlite.create_target()
    sqlite.connections_file.write_text(yaml.safe_dump({"HANA": {"connectionType": "HANA_DB", "connectionProperties": {
        "host": "h", "port": 1, "user": "u"}}}))
    write_graph(sqlite.folder, consumer(), producer())
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert "operator 'reader': config 'serviceConnection': hdbcli stand-in: HANA_DB connection HANA has no usable " \
           "snapgraphDatabase property" in done.stderr


@pytest.mark.parametrize(("reader", "writer", "message"), [
    (consumer(source={"remoteObjectReference": {"name": "nope"}}), producer(),
     "operator 'reader': config 'source': cannot read table 'nope'"),
    (read_hana(columns=["id", "colour"]), write_hana(), "operator 'reader': config 'columns': no column 'colour'"),
    (consumer(), producer(source={"remoteObjectReference": {"name": "nodup"}}),
     "operator 'writer': config 'upsert': updating records by primary key needs the key of 'nodup'"),
    (consumer(), producer(attributeMappings=[{"expression": '"id"', "target": "ID2"}]),
     "operator 'writer': config 'attributeMappings': no column 'ID2' in the target table 'dst'"),
    (read_hana(), write_hana(tableName="nodup"), "operator 'writer': config 'statementType': UPSERT writes by the "
                                                 "primary key of 'nodup'"),
    (consumer(), producer(mode="overwrite", source={"remoteObjectReference": {"name": "t2"}, "schema": {
        "tableBasedRepresentation": {"attributes": [{"name": "x", "datatype": "GEOMETRY"}]}}}),
     "operator 'writer': config 'source': schema attribute 0 ('x') has datatype 'GEOMETRY'"),
])
def test_bad_targets_and_sources_are_refused(sqlite: SqlDatabase, reader: dict[str, Any], writer: dict[str, Any],
                                             message: str) -> None:
    sqlite.create_source(3)
    sqlite.create_target()
    sqlite.execute("CREATE TABLE nodup (id INTEGER, name VARCHAR(40), amount INTEGER)")
    write_graph(sqlite.folder, reader, writer)
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_a_mapping_to_a_missing_input_column_fails_the_writer_naming_it(sqlite: SqlDatabase) -> None:
    sqlite.create_source(3)
    sqlite.create_target()
    mappings = [*MAPPINGS[:2], {"expression": '"size"', "target": "amount"}]
    write_graph(sqlite.folder, consumer(), producer(attributeMappings=mappings))
    done = cli(sqlite.folder)
    assert done.returncode == 1, done.stderr
    assert "operator 'writer': config 'attributeMappings[2]': the tables on port 'inTable' have no column 'size'" \
           in done.stderr


# -- crashes at the protocol steps, compared with the failure-free table -------------------------------------

def _supervised(db: SqlDatabase, reader: dict[str, Any], writer: dict[str, Any], faults: str) -> Any:
    graph = write_graph(db.folder, reader, writer, delay=0.004)
    outcome, plan = run_supervised(db, graph, faults)
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    return outcome


CRASH_ROWS = 600  # 60 pages of 10, paced: several 20 ms epochs complete before the later crashes
CRASHES = ["sql_reader_published:reader:9", "sql_reader_published:reader:45,restore:reader:1",
           "after_serialize:reader:2", "port_callback:writer:23", "sql_writer_committed:writer:23",
           "before_complete:*:2", "after_persist:writer:2", "sql_writer_committed:writer:40,restore:writer:1"]


@pytest.mark.parametrize("faults", CRASHES)
def test_consumer_to_producer_upsert_is_exactly_once_under_crashes(sqlite: SqlDatabase, faults: str) -> None:
    sqlite.create_source(CRASH_ROWS)
    sqlite.create_target()
    _supervised(sqlite, consumer(), producer(), faults)
    assert sqlite.rows("dst") == source_rows(CRASH_ROWS), f"{faults}: not the failure-free table"


# Write HANA Table keeps no state, so no restore runs on it: the reader's restore marks the recovery.
HANA_CRASHES = [faults.replace("restore:writer:1", "restore:reader:1") for faults in CRASHES]


@pytest.mark.parametrize("faults", HANA_CRASHES)
def test_read_hana_to_write_hana_upsert_replays_to_the_same_table(sqlite: SqlDatabase, faults: str) -> None:
    """Declared at-least-once, as SAP states it; snapgraph's replay of whole pages gives the same table."""
    sqlite.create_source(CRASH_ROWS)
    sqlite.create_target()
    _supervised(sqlite, read_hana(), write_hana(), faults)
    assert sqlite.rows("dst") == source_rows(CRASH_ROWS), f"{faults}: not the failure-free table"


@pytest.mark.parametrize("mode", ["append", "truncate"])
def test_plain_producer_modes_lose_nothing_and_show_the_replayed_duplicates(sqlite: SqlDatabase, mode: str) -> None:
    """The negative control: at-least-once, as SAP's table says. A restore must not truncate again."""
    sqlite.create_source(CRASH_ROWS)
    sqlite.execute("CREATE TABLE dst (id INTEGER, name VARCHAR(40), amount INTEGER)")  # no key: duplicates show
    _supervised(sqlite, consumer(), producer(mode=mode, upsert=False),
                "sql_writer_committed:writer:40,restore:writer:1")
    rows = sqlite.rows("dst")
    assert set(rows) == set(source_rows(CRASH_ROWS)), "nothing lost"
    assert duplicates(rows) > 0, "the replay wrote the rows after the restored epoch again"


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_server_databases_recover_exactly_once(tmp_path: Path, kind: str) -> None:
    db = SqlDatabase(kind, tmp_path)
    serve_hana(db)
    try:
        db.create_source(CRASH_ROWS)
        db.create_target()
        _supervised(db, consumer(), producer(), "sql_writer_committed:writer:40,restore:writer:1")
        assert db.rows("dst") == source_rows(CRASH_ROWS)
    finally:
        db.drop()


# -- SAP-samples' DI-Extract-Usage graph (tests/model/fixtures/di_extract_usage), end to end -----------------

# The fixture's custom operators ask SAP DI's Pipeline API; these stand-ins publish what they would.
USAGE_SCRIPTS = {
    "runtimegraphs/get_runtime_graphs.py": """
        import datetime

        def on_input(msg_id, header, body):
            users = body.get()
            graphs = [[user[1], f"h{n}", "completed", datetime.datetime(2024, 3, n + 1), 7 * (n + 1),
                       f"db/{user[1]}, files/{user[1]}, files/shared"] for n, user in enumerate(users)]
            api.outputs.output.publish(api.Table(graphs, "extract.runtime_graphs"), header=header.copy())

        api.set_port_callback("input", on_input)
    """,
    "datasources/get_datasources.py": """
        def on_input(msg_id, header, body):
            out = [[user, handle, status, submitted, runtime, source]
                   for user, handle, status, submitted, runtime, sources in body.get()
                   for source in sources.split(", ")]
            batch = {"com.sap.headers.batch": [0, True, 1, 0, ""]}
            api.outputs.output1.publish(api.Table(out, "$GRAPH.graph_datasources"), header=batch)
            api.outputs.output2.publish(api.Table(out, "$GRAPH.graph_datasources"), header=batch)

        api.set_port_callback("input", on_input)
    """,
    "datasourcepairs/get_pairs.py": """
        import itertools
        from collections import Counter

        def on_input(msg_id, header, body):
            by_graph = {}
            for row in body.get():
                by_graph.setdefault(row[1], []).append(row[5])
            pairs = Counter(pair for sources in by_graph.values() for pair in itertools.combinations(sources, 2))
            rows = [[a, b, count] for (a, b), count in sorted(pairs.items())]
            api.outputs.output.publish(api.Table(rows, "$GRAPH.datasource_pairs"),
                                       header={"com.sap.headers.batch": [0, True, 1, 0, ""]})

        api.set_port_callback("input", on_input)
    """,
}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_di_extract_usage_runs_end_to_end(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "usage"
    shutil.copytree(FIXTURES / "di_extract_usage", folder)
    for path, script in USAGE_SCRIPTS.items():
        (folder / "operators" / "extract" / path).write_text(textwrap.dedent(script).lstrip())
    db = SqlDatabase(kind, tmp_path)
    try:
        # The sample's HANA tables: DEMO_SOURCES exists (append + upsert by HANDLE, DATA_SOURCE);
        # DEMO_PAIRS is created by the overwrite mode from the dataset's schema.
        db.execute('CREATE TABLE "DEMO_SOURCES" ("USER" VARCHAR(40), "HANDLE" VARCHAR(40), "SUBMITTED" DATE, '
                   '"RUNTIME" INTEGER, "DATA_SOURCE" VARCHAR(40), PRIMARY KEY ("HANDLE", "DATA_SOURCE"))')
        connections = yaml.safe_load((folder / "connections.yaml").read_text())
        connections["DEMO_HANA"]["connectionProperties"]["snapgraphDatabase"] = db.connection
        (folder / "connections.yaml").write_text(yaml.safe_dump(connections))
        done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.json", "--operators", "operators",
                               "--connections", "connections.yaml", "--no-progress", "--snapshot-period", "1"],
                              cwd=folder, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        # The custom operator that starts it declares nothing, so SAP's table gives at-most-once.
        assert "writer 'tableproducer11': at-most-once: source 'getusers11' is not declared replayable" in done.stderr
        assert "writer 'tableproducer21': at-most-once" in done.stderr
        sources = db.rows('"DEMO_SOURCES"', '"HANDLE", "DATA_SOURCE"')
        assert [(user, handle, source) for user, handle, _, _, source in sources] == [
            ("alice", "h0", "db/alice"), ("alice", "h0", "files/alice"), ("alice", "h0", "files/shared")]
        assert [runtime for *_, runtime, _ in sources] == [7, 7, 7]
        assert db.rows('"DEMO_PAIRS"', '"DATA_SOURCE1", "DATA_SOURCE2"') == [
            ("db/alice", "files/alice", 1), ("db/alice", "files/shared", 1), ("files/alice", "files/shared", 1)]
        graph = json.loads((folder / "graph.json").read_text())
        assert graph["processes"]["tableproducer11"]["component"] == "com.sap.database.table.producer.v3"
    finally:
        db.drop()


# -- Logical partitions: SAP's specification, its conditions, resumed in the current partition ---------------

RANGES = {"defaultPartition": True, "conditions": [
    {"columnExpression": "id", "type": "RANGE", "dataType": "NUMBER", "elements": ["100", "200"]}]}


def _spec(**condition: Any) -> dict[str, Any]:
    return {"conditions": [{"columnExpression": "id", "type": "RANGE", "dataType": "NUMBER", "elements": ["1"],
                            **condition}]}


@pytest.mark.parametrize(("config", "problem"), [
    ({"partitionType": "Physical (Source Based)"}, "config 'partitionType': 'Physical (Source Based)' partitions"),
    ({"partitionType": "Row ID", "numberOfPartitions": 4}, "config 'partitionType': 'Row ID' partitions"),
    ({"partitionType": "Logical"}, "config 'partitionSpecification' is missing"),
    ({"partitionType": "Logical", "partitionSpecification": "{"}, "config 'partitionSpecification' is not JSON"),
    ({"partitionType": "Logical", "partitionSpecification": {"conditions": []}}, "conditions must be a non-empty"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(type="HASH")},
     "conditions[0]: type must be one of LIST, RANGE, got 'HASH'"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(dataType="DATE")}, "conditions[0]: dataType"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(elements=[])}, "conditions[0]: elements"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(columnExpression="")}, "columnExpression"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(elements=["ten"])}, "'ten' is not a number"),
    ({"partitionType": "Logical", "partitionSpecification": _spec(elements=["20", "10"])}, "in ascending order"),
    ({"partitionType": "Logical", "partitionSpecification": {**RANGES, "defaultPartition": "sometimes"}},
     "defaultPartition must be true or false"),
])
def test_sap_partition_problems_name_the_key_and_value(config: dict[str, Any], problem: str) -> None:
    for descriptor, good in ((TABLE_CONSUMER_V3, consumer()["config"]),
                             (SQL_CONSUMER_V3, {"serviceConnection": HANA, "native_sql_statement": "SELECT 1"})):
        assert descriptor.config_problems({**good, "partitionType": "Logical", "partitionSpecification": RANGES}) == []
        found = descriptor.config_problems({**good, **config})
        assert any(problem in text for text in found), found


def test_a_specification_as_json_text_is_read_as_the_object() -> None:
    assert logical_partitions({"partitionType": "logical", "partitionSpecification": json.dumps(RANGES)}) \
        == logical_partitions({"partitionType": "Logical", "partitionSpecification": RANGES})
    assert logical_partitions({"partitionType": "None", "partitionSpecification": RANGES}) == (None, [])


def test_sap_partitions_follow_sap_examples_and_cover_every_row_once(db: SqlDatabase) -> None:
    dialect = DIALECTS[db.connection["connectionType"]]
    ranges, _ = logical_partitions({"partitionType": "Logical", "partitionSpecification": {
        "conditions": [{"columnExpression": "v", "type": "RANGE", "dataType": "NUMBER", "elements": ["0", "5"]},
                       {"columnExpression": "v", "type": "LIST", "dataType": "EXPRESSION", "elements": ["1 + 1"]}]}})
    conditions = partition_conditions(dialect, ranges)
    assert conditions is not None and len(conditions) == 3  # 2 ranges x 1 value + the default partition
    quoted = dialect.quote("v")
    assert conditions[0] == f"({quoted} < 0) AND ({quoted} = (1 + 1))"
    assert conditions[2] == (f"({quoted} >= 5 OR {quoted} IS NULL) OR "
                             f"(({quoted} <> (1 + 1)) OR {quoted} IS NULL)")
    found = partition_of_each_row(db, conditions)
    assert found == [[], [2], [-7, -4, -1, 0, 1, 5, 9, None]], found


def test_sap_string_elements_are_literals_whatever_they_hold(sqlite: SqlDatabase) -> None:
    dialect = DIALECTS["SQLITE"]
    names, _ = logical_partitions({"partitionType": "Logical", "partitionSpecification": {
        "defaultPartition": False, "conditions": [
            {"columnExpression": '"name"', "type": "LIST", "dataType": "STRING", "elements": ["O'Neil", "100%"]}]}})
    assert partition_conditions(dialect, names) == ['("name" = \'O\'\'Neil\')', "(\"name\" = '100%')"]
    assert partition_conditions(DIALECTS["MARIADB"], names)[0] == "(`name` = 'O''Neil')"


def test_validate_gives_exactly_once_for_logical_partitions(sqlite: SqlDatabase) -> None:
    write_graph(sqlite.folder, consumer(partitionType="Logical", partitionSpecification=RANGES), producer())
    done = cli(sqlite.folder, "validate", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert "writer 'writer': exactly-once: source 'reader' replays from its snapshot" in done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["sqlite", "mariadb"])
def test_table_consumer_logical_partitions_resume_exactly_once(tmp_path: Path, kind: str) -> None:
    db = SqlDatabase(kind, tmp_path)
    serve_hana(db)
    try:
        db.create_source(300)
        db.create_target()
        reader = consumer(partitionType="Logical", partitionSpecification=RANGES, fetchSize=5)
        graph = write_graph(tmp_path, reader, producer(), delay=0.005)
        faults = "sql_reader_published:reader:30"  # the middle of the second partition
        outcome, plan = run_supervised(db, graph, faults)
        expect_resumed(db, faults, outcome, plan, 300)
    finally:
        db.drop()


def test_sql_consumer_places_the_condition_at_its_placeholder(sqlite: SqlDatabase) -> None:
    sqlite.create_source(300)
    sqlite.create_target()
    reader = {"component": "sql-consumer-v3", "group": "source", "config": {
        "service": "HANA_DB", "serviceConnection": HANA, "fetchSize": 5, "partitionType": "Logical",
        "native_sql_statement": "SELECT id, name, amount FROM src $partition_specification",
        "partitionSpecification": {**RANGES, "defaultPartition": False}}}
    graph = write_graph(sqlite.folder, reader, producer(), delay=0.005)
    faults = "sql_reader_published:reader:30"  # in the second partition
    outcome, plan = run_supervised(sqlite, graph, faults)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert sqlite.rows("dst") == source_rows(200), "ids from 200 on are in the default partition, not read"


# -- Initialize HANA Table V2: prepared once per fresh run, never after a restore ------------------------------

COLUMNS = [{"name": "id", "type": "INTEGER"}, {"name": "name", "type": "NVARCHAR(40)"},
           {"name": "amount", "type": "INTEGER"}]


def init_hana(**config: Any) -> dict[str, Any]:
    return {"component": "init-hana-table-v2", "group": "source", "config": {
        "connection": HANA, "configMode": "Static (from configuration)", "tableName": "dst", "initMode": "Truncate",
        "tableColumns": COLUMNS, "primaryKey": ["id"], **config}}


def write_init_graph(folder: Path, init: dict[str, Any], *, delay: float = 0.0) -> Path:
    """graph.yaml: Read HANA Table -> Initialize HANA Table (forwarding) -> (pace) -> Write HANA Table."""
    operators: dict[str, Any] = {"reader": read_hana(), "init": init, "writer": write_hana()}
    wiring = ["reader.success -> init.input", "init.success -> writer.input"]
    if delay:
        operators["pace"] = {"script": "pace.py", "group": "source", "inputs": {"input": "any"},
                             "outputs": {"output": "any"}, "config": {"delay": delay}}
        wiring = ["reader.success -> init.input", "init.success -> pace.input", "pace.output -> writer.input"]
        (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "initgraph", "operators": operators, "connections": wiring}))
    return path


def test_init_hana_table_descriptor_and_checks() -> None:
    assert BUILTINS["com.sap.hana.initTable.v2"] is INIT_HANA_TABLE_V2
    good = init_hana()["config"]
    assert INIT_HANA_TABLE_V2.config_problems(good) == []
    assert INIT_HANA_TABLE_V2.delivery_of(good).writer is None  # it writes no rows: SAP's "Yes"
    for change, problem in [({"configMode": "Dynamic (from input)"}, "config 'configMode'"),
                            ({"initMode": "Replace"}, "config 'initMode' must be one of Create, Truncate"),
                            ({"tableName": "QA."}, "config 'tableName': 'QA.' is not a HANA table name"),
                            ({"tableColumns": [{"name": "g", "type": "ST_POINT"}]}, "config 'tableColumns[0]' ('g')"),
                            ({"tableColumns": [], "initMode": "Drop (Cascade)"}, "config 'tableColumns' is empty"),
                            ({"primaryKey": ["nope"]}, "config 'primaryKey': 'nope' is not in config 'tableColumns'"),
                            ({"tableType": "Virtual"}, "config 'tableType' must be Row or Column"),
                            ({"outputInitializedTable": "sometimes"}, "config 'outputInitializedTable'")]:
        found = INIT_HANA_TABLE_V2.config_problems({**good, **change})
        assert any(problem in text for text in found), (change, found)


def test_init_hana_table_prepares_the_target_and_forwards_its_input(db: SqlDatabase) -> None:
    db.create_source(30)
    db.create_target()
    db.execute("INSERT INTO dst (id, name, amount) VALUES (?, ?, ?)", rows=[(1000, "stale", 1)])
    write_init_graph(db.folder, init_hana())
    done = cli(db.folder, "run", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert db.rows("dst") == source_rows(30), "emptied once, then every forwarded page written"


def test_init_hana_table_creates_a_missing_table_and_refuses_another_one(sqlite: SqlDatabase) -> None:
    sqlite.create_source(5)
    graph = {"name": "init", "operators": {"init": init_hana(initMode="Drop (Restrict)", outputInitializedTable=True),
                                           "tap": {"component": "wiretap"}}, "connections": ["init.success -> tap.in"]}
    (sqlite.folder / "graph.yaml").write_text(yaml.safe_dump(graph))
    done = cli(sqlite.folder)
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("dst") == []
    announced = "[tap] {'com.sap.headers.hana.table': ['dst', ['id', 'name', 'amount'], ['id']]} Table (0 rows)"
    assert announced in done.stdout
    write_init_graph(sqlite.folder, init_hana(tableColumns=COLUMNS[:2], primaryKey=["id"]))
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert "operator 'init': config 'tableColumns': table 'dst' exists with other columns" in done.stderr


@pytest.mark.parametrize("faults", ["sql_writer_committed:writer:40,restore:reader:1", "after_persist:init:2"])
def test_init_hana_table_is_not_run_again_after_a_restore(sqlite: SqlDatabase, faults: str) -> None:
    sqlite.create_source(CRASH_ROWS)
    sqlite.create_target()
    sqlite.execute("INSERT INTO dst (id, name, amount) VALUES (?, ?, ?)", rows=[(-1, "stale", 1)])
    graph = write_init_graph(sqlite.folder, init_hana(initMode="Drop (Cascade)"), delay=0.004)
    outcome, plan = run_supervised(sqlite, graph, faults)
    expect_resumed(sqlite, faults, outcome, plan, CRASH_ROWS)


# -- writers below an Initialize HANA Table V2 of their table: checked at the first message, not at load -------

@pytest.mark.parametrize(("kind", "mode"), [("sqlite", "Create"), ("sqlite", "Drop (Cascade)"),
                                            ("postgres", "Drop (Cascade)")])
def test_initialize_prepares_the_table_the_writer_below_it_writes_across_a_crash(tmp_path: Path, kind: str,
                                                                                mode: str) -> None:
    """Create makes the missing ``dst``; Drop (Cascade) replaces one of other columns that a view depends on.
    The writer checks ``dst`` when the first message comes (after Initialize ran); after the crash the run
    resumes from an epoch, Initialize does not run again, and the table is the failure-free one."""
    db = SqlDatabase(kind, tmp_path)
    serve_hana(db)
    try:
        db.create_source(CRASH_ROWS)
        if mode != "Create":
            db.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, legacy VARCHAR(10))",
                       "INSERT INTO dst (id, legacy) VALUES (-1, 'old')", "CREATE VIEW dst_view AS SELECT * FROM dst")
        faults = "sql_writer_committed:writer:40,restore:reader:1"
        graph = write_init_graph(db.folder, init_hana(initMode=mode), delay=0.004)
        outcome, plan = run_supervised(db, graph, faults)
        expect_resumed(db, faults, outcome, plan, CRASH_ROWS)
        if kind == "postgres":
            assert "dst_view" not in db.tables() and "dst" in db.tables(), "CASCADE dropped the dependent view"
    finally:
        db.drop()


def test_a_missing_table_is_refused_at_load_unless_an_initializer_upstream_prepares_it(sqlite: SqlDatabase) -> None:
    sqlite.create_source(5)
    write_graph(sqlite.folder, read_hana(), write_hana())
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert "operator 'writer': config 'tableName': cannot read the target table 'dst'" in done.stderr
    # Initialize creates dst without a primary key: the writer's UPSERT check fails at the first message.
    write_init_graph(sqlite.folder, init_hana(initMode="Create", primaryKey=[]))
    done = cli(sqlite.folder)
    assert done.returncode == 1, done.stderr
    assert "table 'dst' is prepared by Initialize HANA Table V2 upstream (init): it is checked when the first " \
           "message arrives" in done.stderr
    assert "operator 'writer': config 'statementType': UPSERT writes by the primary key of 'dst', but it has none" \
           in done.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_qualified_quoted_table_names_find_the_tables_by_their_table_part(tmp_path: Path, kind: str) -> None:
    """Read ``"QA"."src"`` -> Initialize ``QA."dst"`` (Create: dst is missing) -> Write ``"QA".dst``: the
    schema of each name is logged as not used, the three name the same ``dst`` (so the writer waits for
    Initialize instead of refusing the missing table at load), and the rows arrive."""
    db = SqlDatabase(kind, tmp_path)
    serve_hana(db)
    try:
        db.create_source(30)
        graph = {"name": "qualified", "operators": {
            "reader": read_hana(tableName='"QA"."src"'), "init": init_hana(tableName='QA."dst"', initMode="Create"),
            "writer": write_hana(tableName='"QA".dst'), "tap": {"component": "wiretap"}},
            "connections": ["reader.success -> init.input", "init.success -> writer.input", "writer.success -> tap.in"]}
        (db.folder / "graph.yaml").write_text(yaml.safe_dump(graph))
        done = cli(db.folder)
        assert done.returncode == 0, done.stderr
        assert db.rows("dst") == source_rows(30)
        for operator, name, table in [("reader", '"QA"."src"', "src"), ("init", 'QA."dst"', "dst"),
                                      ("writer", '"QA".dst', "dst")]:
            assert f"config 'tableName' {name!r}: schema 'QA' is not used: table {table!r} is found in the database " \
                   "that serves the connection" in done.stderr, (operator, done.stderr)
        assert "table 'dst' is prepared by Initialize HANA Table V2 upstream (init)" in done.stderr
        assert "'com.sap.headers.hana.table': ['dst', ['id', 'name', 'amount'], ['id']]" in done.stdout
    finally:
        db.drop()


def test_table_producer_truncates_the_table_initialize_created(sqlite: SqlDatabase) -> None:
    """Table Consumer -> Initialize (Create, dst missing) -> Table Producer truncate: the producer's
    truncation and checks wait for the first message, which comes after Initialize created dst."""
    sqlite.create_source(30)
    graph = {"name": "initproducer", "operators": {
        "reader": consumer(), "init": init_hana(initMode="Create"), "writer": producer(mode="truncate", upsert=False)},
        "connections": ["reader.outTable -> init.input", "init.success -> writer.inTable"]}
    path = sqlite.folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    outcome, plan = run_supervised(sqlite, path)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert sqlite.rows("dst") == source_rows(30)
