"""Run HANA SQL V2 (src/snapgraph/connectors/sap_hana_sql.py) on SQLite, PostgreSQL and MariaDB.

The descriptor's checks and delivery traits, HANA SQL through the hdbcli stand-in (and what it refuses, by
statement), the results on ``success``, and crashes at both crash points compared with the failure-free
run (each fault asserted to have fired): a restore never runs a statement of the restored snapshot again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from snapgraph.connectors.databases import DIALECTS
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.sap_database_builtins import RUN_HANA_SQL_V2, sql_statements, statement_kind
from snapgraph.runtime.engine import COMPLETED

from .sql_helpers import SqlDatabase, run_supervised, source_rows
from .test_sap_database import HANA, cli, serve_hana, write_hana

STATIC = "Static (from configuration)"
# Per statement: the first INSERT, the whole source, the second INSERT, the upper half again.
CRASH_SQL = ("INSERT INTO hs_log (step) VALUES (1); SELECT id, name, amount FROM src ORDER BY id; "
             "INSERT INTO hs_log (step) VALUES (2); SELECT id, name, amount FROM src WHERE id >= 300 ORDER BY id")


@pytest.fixture
def sqlite(tmp_path: Path) -> SqlDatabase:
    database = SqlDatabase("sqlite", tmp_path)
    serve_hana(database)
    return database


def tapped(db: SqlDatabase, sql: dict[str, Any]) -> None:
    """graph.yaml: ``sql`` -> a wiretap."""
    graph = {"name": "hs", "operators": {"sql": sql, "tap": {"component": "wiretap"}},
             "connections": ["sql.success -> tap.in"]}
    (db.folder / "graph.yaml").write_text(yaml.safe_dump(graph))


def run_sql(sql: str, **config: Any) -> dict[str, Any]:
    return {"component": "run-hana-sql-v2", "group": "source", "config": {
        "connection": HANA, "mode": STATIC, "transactionLevel": "Per statement", "batching": "Fixed size",
        "batchSize": 10, "sql": sql, **config}}


def test_statements_are_split_outside_literals_and_comments() -> None:
    text = "INSERT INTO t VALUES ('a;b'); -- done;\nSELECT \"x;\" FROM t /* ; */;;  -- nothing\n"
    assert sql_statements(text) == ["INSERT INTO t VALUES ('a;b')", '-- done;\nSELECT "x;" FROM t /* ; */']
    assert [statement_kind(s) for s in ("(SELECT 1)", "/* c */ upsert t VALUES (1)", "")] == ["SELECT", "UPSERT", ""]


def test_descriptor_checks_and_delivery() -> None:
    assert BUILTINS["com.sap.hana.runSQL.v2"] is RUN_HANA_SQL_V2
    good = run_sql("INSERT INTO t VALUES (1); SELECT * FROM t")["config"]
    assert RUN_HANA_SQL_V2.config_problems(good) == []
    traits = RUN_HANA_SQL_V2.delivery_of(good)
    assert traits.replayable and traits.batches and traits.writer is WriterKind.PLAIN  # SAP: at-least-once
    assert RUN_HANA_SQL_V2.delivery_of({**good, "sql": "SELECT 1; WITH a AS (SELECT 1) SELECT * FROM a"}).writer is None
    # without SAP's state a restore runs everything again from the first statement: still a plain writer
    # that replays its output in batches, so at-least-once, never the at-most-once of a source that loses
    per_input = RUN_HANA_SQL_V2.delivery_of({**good, "transactionLevel": "Per input"})
    assert per_input.replayable and per_input.batches and per_input.writer is WriterKind.PLAIN
    assert not RUN_HANA_SQL_V2.delivery_of({**good, "mode": "Dynamic (from input)"}).replayable
    for change, problem in [({"mode": "Sometimes"}, "config 'mode' must be"),
                            ({"sql": " -- nothing "}, "config 'sql' holds no statement"),
                            ({"transactionLevel": "Per epoch"}, "config 'transactionLevel' must be"),
                            ({"batching": "Dynamic"}, "config 'batching' must be"),
                            ({"batchSize": 0}, "config 'batchSize' must be a whole number"),
                            ({"decimalOutputFormat": "Floating-point"}, "config 'decimalOutputFormat'"),
                            ({"connection": None}, "config 'connection'")]:
        found = RUN_HANA_SQL_V2.config_problems({**good, **change})
        assert any(problem in text for text in found), (change, found)


def test_static_sql_runs_translated_and_publishes_its_results(sqlite: SqlDatabase) -> None:
    sql = ("CREATE COLUMN TABLE hs_x (a INTEGER PRIMARY KEY, s NVARCHAR(5)); INSERT INTO hs_x VALUES (1, 'a;'); "
           "INSERT INTO hs_x SELECT a + 1, 'b' FROM hs_x; UPSERT hs_x VALUES (2, 'c') WITH PRIMARY KEY; "
           "SELECT a, s FROM hs_x ORDER BY a")
    tapped(sqlite, run_sql(sql, batchSize=1))
    done = cli(sqlite.folder, "run", "--snapshot-period", "1")
    assert done.returncode == 0, done.stderr
    assert sqlite.rows("hs_x", "a") == [(1, "a;"), (2, "c")]
    out = done.stdout
    assert "'com.sap.headers.batch': [0, False, 0, 1, 'rows'], 'com.sap.headers.hana.table': [None, ['affected'], " \
           "[]]} Table (1 row)\n[-1]" in out  # DDL: affected -1, as SAP sends it
    assert "[None, ['a', 's'], []]} Table (1 row)\n[1, 'a;']" in out
    assert "'com.sap.headers.batch': [5, True, 0, 1, 'rows']" in out and "\n[2, 'c']" in out
    assert "writer 'sql': at-least-once: 'sql' is a plain writer" in done.stderr


def test_sql_the_stand_in_refuses_is_refused_at_load_by_statement(sqlite: SqlDatabase) -> None:
    tapped(sqlite, run_sql("SELECT 1 FROM DUMMY; MERGE INTO t USING u ON 1 = 1"))
    done = cli(sqlite.folder)
    assert done.returncode == 2, done.stderr
    assert "operator 'sql': config 'sql': statement 2 is not run: MERGE statements are not translated" in done.stderr


# Paced, deterministic: forwards the query results, drops the affected counts.
ROWS_ONLY = """
import time

def on_input(msg_id, header, body):
    time.sleep(0.004)
    if header["com.sap.headers.hana.table"][1] != ["affected"]:
        api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


def _crash_run(db: SqlDatabase, faults: str) -> tuple[list[tuple[Any, ...]], Any, Any]:
    db.execute("CREATE TABLE hs_log (step INTEGER)")
    (db.folder / "rows_only.py").write_text(ROWS_ONLY)
    operators = {"reader": run_sql(CRASH_SQL), "writer": write_hana(),
                 "rows": {"script": "rows_only.py", "group": "source", "inputs": {"input": "any"},
                          "outputs": {"output": "any"}, "delivery": {"deterministic": True}}}
    graph = db.folder / "graph.yaml"
    graph.write_text(yaml.safe_dump({"name": "hs", "operators": operators,
                                     "connections": ["reader.success -> rows.input", "rows.output -> writer.input"]}))
    outcome, plan = run_supervised(db, graph, faults)
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    return db.rows("hs_log", "step"), outcome, plan


@pytest.mark.parametrize("faults", ["", "hana_sql_committed:reader:3", "hana_sql_published:reader:45",
                                    "hana_sql_published:reader:80,restore:reader:1"])
def test_crashes_resume_after_the_last_statement_of_the_snapshot(tmp_path: Path, faults: str) -> None:
    db = SqlDatabase("sqlite", tmp_path)
    serve_hana(db)
    db.create_source(600)
    db.create_target()
    log, outcome, plan = _crash_run(db, faults)
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert db.rows("dst") == source_rows(600), f"{faults}: not the failure-free table"
    if not faults:
        assert log == [(1,), (2,)] and outcome.attempts == 1
        return
    assert outcome.attempts >= 2 and outcome.restored_from[-1] is not None, f"{faults}: not resumed"
    # At-least-once, as SAP states: only a statement committed after the restored snapshot runs again.
    assert {step for (step,) in log} == {1, 2} and log.count((1,)) == 1, f"{faults}: {log}"


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_static_sql_on_server_databases(tmp_path: Path, kind: str) -> None:
    db = SqlDatabase(kind, tmp_path)
    serve_hana(db)
    try:
        sql = ('CREATE COLUMN TABLE "HS_T" ("ID" INTEGER PRIMARY KEY, "N" INTEGER); '
               'INSERT INTO "HS_T" VALUES (1, 1); UPSERT "HS_T" VALUES (1, 5) WITH PRIMARY KEY; '
               'UPSERT "HS_T" VALUES (2, 7) WITH PRIMARY KEY; SELECT COUNT(*) AS "C" FROM DUMMY')
        tapped(db, run_sql(sql, transactionLevel="Per input"))
        done = cli(db.folder)
        assert done.returncode == 0, done.stderr
        quote = DIALECTS[db.connection["connectionType"]].quote
        assert db.rows(quote("HS_T"), quote("ID")) == [(1, 5), (2, 7)]
        assert "[None, ['C'], []]} Table (1 row)\n[1]" in done.stdout
    finally:
        db.drop()
