"""Exactly-once under crashes: the seed's graphs, a crash at every protocol step, both databases.

Each case runs one of the seed's example graphs (examples/seed_upsert.yaml,
examples/seed_wal.yaml) with a fault injected at one step of the snapshot
protocol, lets automatic recovery restore it, and compares the target table
with the failure-free run's. The negative control shows the harness sees
duplicates when the writer is not idempotent.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, SupervisedResult, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import SnapshotStore, SQLiteStore, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from seed_check import check  # noqa: E402
from seed_setup import setup_tables  # noqa: E402

sys.path.remove(str(EXAMPLES))

UPSERT_ROWS = 1200  # batches of 2: 600 messages, long enough for several 20 ms epochs
WAL_ROWS = 1200  # batches of 10: 120 messages
PERIOD = 0.02


class Database:
    """One isolated database for a test: a SQLite file, or a PostgreSQL schema of its own.

    The snapshot store lives beside it: an SQLite store file, or a PostgreSQL store in a schema of its
    own (``store_location``), so every exactly-once test runs on both stores.
    """

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.store_location = str(tmp_path / f"store-{uuid.uuid4().hex[:6]}.db")
        if kind == "sqlite":
            self.connection = {"connectionType": "SQLITE",
                               "connectionProperties": {"path": str(tmp_path / "data" / "demo.db")}}
        else:
            self.schema = f"sg_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test",
                                 autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            self.store_location = f"postgresql://postgres@127.0.0.1:5432/test?schema={self.schema}_store"
            self.connection = {"connectionType": "POSTGRES", "connectionProperties": {
                "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "",
                "database": "test", "schema": self.schema}}
        self.connections_file = tmp_path / "connections.yaml"
        self.connections_file.write_text(yaml.safe_dump({"DEMO_DB": self.connection}))

    def rows(self, table: str, columns: str = "x, y, z") -> list[tuple]:  # type: ignore[type-arg]
        sys.path.insert(0, str(EXAMPLES))
        try:
            from db import connect
        finally:
            sys.path.remove(str(EXAMPLES))
        conn = connect(self.connection)
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}")
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def drop(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test",
                                 autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema}_store CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(request.param, tmp_path)
    yield db
    db.drop()


@pytest.fixture(params=["processes", "in-process"])
def in_process(request: pytest.FixtureRequest) -> bool:
    """Each group in an OS process of its own (the default), or everything in one process."""
    return request.param == "in-process"


def run_example(graph: str, db: Database, tmp_path: Path, faults: str | FaultPlan = "", *,
                max_retries: int | None = 5, rows: int | None = None, store: SnapshotStore | None = None,
                in_process: bool = True) -> SupervisedResult:
    """Set up fresh tables and run an example graph with snapshots every PERIOD seconds."""
    setup_tables(db.connection, rows or (UPSERT_ROWS if "upsert" in graph else WAL_ROWS))
    loaded = load_graph(EXAMPLES / graph, LoadOptions(connections_file=db.connections_file, snapshots=True))
    supervisor = Supervisor(
        loaded, RunOptions(stdout=io.StringIO(), in_process=in_process),
        RecoveryPolicy(max_retries=max_retries, retry_interval=0, retry_threshold=30),
        store=store or open_store(db.store_location),
        period=PERIOD, faults=faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults),
        say=lambda text: None,
    )
    return supervisor.run()


def expected_upsert(rows: int = UPSERT_ROWS) -> list[tuple]:  # type: ignore[type-arg]
    return [(i, (i * 7 % 1000) * 2, f"ROW{i}") for i in range(rows)]


def expected_wal(rows: int = WAL_ROWS) -> list[tuple]:  # type: ignore[type-arg]
    return [(i, i * 7 % 1000, f"row{i}") for i in range(rows)]


def assert_exactly_once(db: Database, graph: str, rows: int | None = None) -> None:
    if "upsert" in graph:
        assert db.rows("target") == expected_upsert(rows or UPSERT_ROWS)
    else:
        assert db.rows("test2") == expected_wal(rows or WAL_ROWS)
        # Every message finished, so epoch_complete cleaned the whole WAL.
        assert db.rows("WAL", "ID, BATCH, MESSAGE") == []


UPSERT_FAULTS = [
    "port_callback:writer:150",
    "port_callback:processing:77",
    "before_serialize:generator:2",
    "after_serialize:generator:2",
    "after_persist:generator:2",
    "after_persist:processing:2",
    "before_serialize:writer:2",
    "before_complete:*:2",
    "epoch_complete:writer:2",
    "epoch_complete:generator:1",
    "port_callback:writer:150,restore:generator:1",
]
WAL_FAULTS = [
    "port_callback:writer:40",
    "between_write_and_wal:*:33",
    "before_serialize:generator:2",
    "after_serialize:writer:2",
    "after_persist:writer:2",
    "before_complete:*:2",
    "epoch_complete:writer:2",
    "port_callback:writer:40,restore:writer:1",
]


def test_failure_free_runs_are_exactly_once(database: Database, tmp_path: Path, in_process: bool) -> None:
    for graph in ("seed_upsert.yaml", "seed_wal.yaml"):
        outcome = run_example(graph, database, tmp_path, in_process=in_process)
        assert outcome.result.status == COMPLETED, outcome.result.reason
        assert outcome.attempts == 1
        assert_exactly_once(database, graph)


@pytest.mark.parametrize("faults", UPSERT_FAULTS)
def test_upsert_example_recovers_exactly_once(database: Database, tmp_path: Path, in_process: bool,
                                             faults: str) -> None:
    outcome = run_example("seed_upsert.yaml", database, tmp_path, faults, in_process=in_process)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts >= 2, "the injected fault never fired"
    assert_exactly_once(database, "seed_upsert.yaml")


@pytest.mark.parametrize("faults", WAL_FAULTS)
def test_wal_example_recovers_exactly_once(database: Database, tmp_path: Path, in_process: bool,
                                          faults: str) -> None:
    outcome = run_example("seed_wal.yaml", database, tmp_path, faults, in_process=in_process)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts >= 2, "the injected fault never fired"
    assert_exactly_once(database, "seed_wal.yaml")
    expected, present, missing, duplicates = check(database.connection, "test2")
    assert (present, missing, duplicates) == (expected, 0, 0)


def test_recovery_restores_from_a_complete_epoch(tmp_path: Path) -> None:
    """A late crash resumes from a snapshot, not from scratch: the generator's offset was restored."""
    db = Database("sqlite", tmp_path)
    outcome = run_example("seed_upsert.yaml", db, tmp_path, "port_callback:writer:500")
    assert outcome.attempts == 2
    assert outcome.restored_from[0] is None
    assert outcome.restored_from[1] is not None, "the second attempt should restore a complete epoch"
    assert_exactly_once(db, "seed_upsert.yaml")


def test_negative_control_a_plain_insert_writer_duplicates(tmp_path: Path) -> None:
    """The same crash with a non-idempotent writer and no WAL does duplicate rows.

    This shows the comparison above can fail: without the seed's WAL, replayed
    batches are inserted twice.
    """
    graph = tmp_path / "plain.yaml"
    writer = tmp_path / "plain_writer.py"
    writer.write_text(
        "from db import connect, sql\n"
        "conn = None\n"
        "def prestart():\n"
        "    global conn\n"
        "    conn = connect(api.config.connection)\n"
        "def on_input(msg_id, header, body):\n"
        "    c = conn.cursor()\n"
        "    for row in body.get().body:\n"
        "        c.execute(sql(conn, 'INSERT INTO test2 (x, y, z) VALUES (?, ?, ?)'), row)\n"
        "    conn.commit()\n"
        "api.set_prestart(prestart)\n"
        "api.set_port_callback('input', on_input)\n"
    )
    (tmp_path / "db.py").write_text((EXAMPLES / "db.py").read_text())
    (tmp_path / "gen.py").write_text((EXAMPLES / "seed_wal" / "generator.py").read_text())
    graph.write_text(yaml.safe_dump({
        "name": "plain",
        "operators": {
            "generator": {"script": "gen.py", "outputs": {"output": "table"},
                          "config": {"connection": {"connectionID": "DEMO_DB"}}},
            "writer": {"script": "plain_writer.py", "inputs": {"input": "table"},
                       "config": {"connection": {"connectionID": "DEMO_DB"}}},
        },
        "connections": ["generator.output -> writer.input"],
    }))
    db = Database("sqlite", tmp_path)
    setup_tables(db.connection, WAL_ROWS)
    loaded = load_graph(graph, LoadOptions(connections_file=db.connections_file, snapshots=True))
    outcome = Supervisor(
        loaded, RunOptions(stdout=io.StringIO()), RecoveryPolicy(max_retries=3, retry_interval=0),
        store=SQLiteStore(tmp_path / "store.db"), period=PERIOD,
        faults=FaultPlan.parse("port_callback:writer:100"), say=lambda text: None,
    ).run()
    assert outcome.result.status == COMPLETED
    _, _, missing, duplicates = check(db.connection, "test2")
    assert missing == 0
    assert duplicates > 0


ALL_POINTS = ["port_callback", "before_serialize", "after_serialize", "after_persist", "before_complete",
              "epoch_complete"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    graph=st.sampled_from(["seed_upsert.yaml", "seed_wal.yaml"]),
    in_process=st.booleans(),
    schedule=st.lists(
        st.tuples(st.sampled_from(ALL_POINTS), st.sampled_from(["generator", "writer", "*"]),
                  st.integers(min_value=1, max_value=40)),
        min_size=1, max_size=3),
)
def test_random_fault_schedules_stay_exactly_once(tmp_path_factory: pytest.TempPathFactory, graph: str,
                                                  in_process: bool, schedule: list[tuple[str, str, int]]) -> None:
    """Seeded random fault schedules (many short runs): whatever fires, the result is exactly once."""
    tmp_path = tmp_path_factory.mktemp("random")
    db = Database("sqlite", tmp_path)
    def target(point: str, process: str) -> str:
        if point == "before_complete":
            return "*"  # the coordinator's step: it is counted for '*' only
        if point == "port_callback" and process == "generator":
            return "writer"  # a generator has no input port: its port_callback fault would never fire
        if point == "after_serialize" and process == "writer" and "upsert" in graph:
            return "generator"  # the UPSERT writer is stateless: it never serializes
        return process

    faults = ",".join(f"{p}:{target(p, proc)}:{n if p == 'port_callback' else min(n, 2)}" for p, proc, n in schedule)
    plan = FaultPlan.parse(faults)
    rows = 3 * WAL_ROWS if "wal" in graph else UPSERT_ROWS  # long enough for every planned fault to fire
    outcome = run_example(graph, db, tmp_path, plan, max_retries=10, in_process=in_process, rows=rows)
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert_exactly_once(db, graph, rows)


def test_retries_exhausted_fails_with_the_operator_and_reason(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path)
    faults = ",".join(f"port_callback:writer:{n}" for n in range(1, 8))  # fails on every attempt
    outcome = run_example("seed_upsert.yaml", db, tmp_path, faults, max_retries=2)
    assert outcome.result.status == FAILED
    assert outcome.attempts == 3  # the first run plus two retries
    assert "writer" in outcome.result.reason and "InjectedFault" in outcome.result.reason


def test_without_snapshots_recovery_restarts_from_scratch(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path)
    setup_tables(db.connection, UPSERT_ROWS)
    loaded = load_graph(EXAMPLES / "seed_upsert.yaml", LoadOptions(connections_file=db.connections_file))
    outcome = Supervisor(
        loaded, RunOptions(stdout=io.StringIO()), RecoveryPolicy(max_retries=2, retry_interval=0),
        faults=FaultPlan.parse("port_callback:writer:200"), say=lambda text: None,
    ).run()
    assert outcome.result.status == COMPLETED
    assert outcome.attempts == 2
    assert outcome.restored_from == [None, None]
    assert_exactly_once(db, "seed_upsert.yaml")  # UPSERT makes the full replay harmless


ENGINE_DEATHS = ["after_persist:writer:1:exit", "epoch_complete:writer:1:exit", "port_callback:writer:700:exit"]


def _cli_args(database: Database, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snapgraph", "run", str(EXAMPLES / "seed_upsert.yaml"),
            "--connections", str(database.connections_file), "--store", database.store_location,
            "--param", "batch=1", *extra]


@pytest.mark.parametrize("fault", ENGINE_DEATHS)
def test_engine_death_then_resume_through_the_cli(database: Database, tmp_path: Path, fault: str) -> None:
    """The whole engine dies (an `exit` fault in --in-process mode: exit 137, like kill -9) mid-protocol;
    `run --resume` finishes exactly once."""
    setup_tables(database.connection, 2000)
    args = _cli_args(database, "--in-process")
    died = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SNAPGRAPH_FAULTS": fault})
    assert died.returncode == 137, died.stderr
    assert "engine killed" in died.stderr
    written = len(database.rows("target"))
    resumed = subprocess.run([*args, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert database.rows("target") == expected_upsert(2000)
    assert 0 < written


@pytest.mark.parametrize("fault", ENGINE_DEATHS)
def test_group_process_death_is_recovered(database: Database, tmp_path: Path, fault: str) -> None:
    """With groups as processes the same `exit` kills only the writer's group process: the engine
    notices, recovers from the last complete epoch, and the result is exactly once in one invocation."""
    setup_tables(database.connection, 2000)
    done = subprocess.run(_cli_args(database), cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SNAPGRAPH_FAULTS": fault})
    assert done.returncode == 0, done.stderr
    assert "the group process died (exit code 137)" in done.stderr
    assert "(2 attempts)" in done.stderr
    assert database.rows("target") == expected_upsert(2000)
