"""Fan-in, fan-out, the failure counter and engine death (kill -9 + --resume)."""

from __future__ import annotations

import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import snapgraph_cli
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import SQLiteStore

ROWS = 600

GENERATOR = """
import pickle
offset = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'output': api.OutportInfo(is_generator=True)}))

def tick():
    global offset
    first, step, total = int(api.config.first), int(api.config.step), int(api.config.total)
    x = first + offset * step
    if x >= total:
        return -1
    api.outputs.output.publish(api.Table([[x, x * 7 % 1000, f"row{x}"]]))
    offset += 1
    return 0

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))

def restore(epoch, state):
    global offset
    offset = pickle.loads(state)

api.set_restore_callback(restore)
"""

UPSERT_WRITER = """
import sqlite3
conn = None

def prestart():
    global conn
    conn = sqlite3.connect(api.config.path, timeout=30)

def on_input(msg_id, header, body):
    for row in body.get().body:
        conn.execute(f"INSERT INTO {api.config.table} (x, y, z) VALUES (?, ?, ?) "
                     "ON CONFLICT (x) DO UPDATE SET y = excluded.y, z = excluded.z", row)
    conn.commit()

api.set_prestart(prestart)
api.set_port_callback("input", on_input)
"""


def make_db(path: Path, *tables: str) -> None:
    conn = sqlite3.connect(path)
    for table in tables:
        conn.execute(f"CREATE TABLE {table} (x INTEGER PRIMARY KEY, y INTEGER, z TEXT)")
    conn.commit()
    conn.close()


def table_rows(path: Path, table: str) -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT x, y, z FROM {table} ORDER BY x").fetchall()
    finally:
        conn.close()


EXPECTED = [(x, x * 7 % 1000, f"row{x}") for x in range(ROWS)]


def write_graph(tmp_path: Path, graph: dict) -> Path:  # type: ignore[type-arg]
    (tmp_path / "gen.py").write_text(textwrap.dedent(GENERATOR))
    (tmp_path / "writer.py").write_text(textwrap.dedent(UPSERT_WRITER))
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


def supervise(path: Path, tmp_path: Path, faults: str, *, max_retries: int = 5, period: float = 0.02):  # type: ignore[no-untyped-def]
    graph = load_graph(path, LoadOptions(snapshots=True))
    return Supervisor(
        graph, RunOptions(stdout=io.StringIO()), RecoveryPolicy(max_retries=max_retries, retry_interval=0),
        store=SQLiteStore(tmp_path / "store.db"), period=period, faults=FaultPlan.parse(faults),
        say=lambda text: None,
    ).run()


FAN_IN_FAULTS = ["", "port_callback:writer:200", "before_serialize:evens:2", "after_persist:odds:2",
                 "before_complete:*:2", "before_serialize:writer:2"]


@pytest.mark.parametrize("faults", FAN_IN_FAULTS)
def test_fan_in_two_generators_into_one_writer(tmp_path: Path, faults: str) -> None:
    db = tmp_path / "out.db"
    make_db(db, "target")
    gen = {"script": "gen.py", "outputs": {"output": "table"}}
    path = write_graph(tmp_path, {
        "name": "fan-in",
        "operators": {
            "evens": {**gen, "config": {"first": 0, "step": 2, "total": ROWS}},
            "odds": {**gen, "config": {"first": 1, "step": 2, "total": ROWS}},
            "writer": {"script": "writer.py", "inputs": {"input": "table"},
                       "config": {"path": str(db), "table": "target"}},
        },
        "connections": ["evens.output -> writer.input", "odds.output -> writer.input"],
    })
    outcome = supervise(path, tmp_path, faults)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts == (1 if not faults else 2)
    assert table_rows(db, "target") == EXPECTED


FAN_OUT_FAULTS = ["", "port_callback:left:100", "port_callback:right:250", "after_persist:gen:2",
                  "before_serialize:left:2", "epoch_complete:right:1"]


@pytest.mark.parametrize("faults", FAN_OUT_FAULTS)
def test_fan_out_one_generator_into_two_writers(tmp_path: Path, faults: str) -> None:
    db = tmp_path / "out.db"
    make_db(db, "target_left", "target_right")
    path = write_graph(tmp_path, {
        "name": "fan-out",
        "operators": {
            "gen": {"script": "gen.py", "outputs": {"output": "table"},
                    "config": {"first": 0, "step": 1, "total": ROWS}},
            "left": {"script": "writer.py", "inputs": {"input": "table"},
                     "config": {"path": str(db), "table": "target_left"}},
            "right": {"script": "writer.py", "inputs": {"input": "table"},
                      "config": {"path": str(db), "table": "target_right"}},
        },
        "connections": ["gen.output -> left.input", "gen.output -> right.input"],
    })
    outcome = supervise(path, tmp_path, faults)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts == (1 if not faults else 2)
    assert table_rows(db, "target_left") == EXPECTED
    assert table_rows(db, "target_right") == EXPECTED


FLAKY = """
import os, time
marker = api.config.marker
attempt = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
open(marker, "w").write(str(attempt))

def prestart():
    time.sleep(float(api.config.lived))
    if attempt <= int(api.config.failures):
        raise RuntimeError(f"attempt {attempt} fails")

api.set_prestart(prestart)
"""


def flaky_graph(tmp_path: Path, failures: int, lived: float) -> Path:
    (tmp_path / "flaky.py").write_text(textwrap.dedent(FLAKY))
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "flaky", "operators": {"flaky": {
        "script": "flaky.py",
        "config": {"marker": str(tmp_path / "attempts"), "failures": failures, "lived": lived}}}}))
    return path


def run_flaky(path: Path, *, max_retries: int, threshold: float):  # type: ignore[no-untyped-def]
    return Supervisor(load_graph(path), RunOptions(stdout=io.StringIO()),
                      RecoveryPolicy(max_retries=max_retries, retry_interval=0, retry_threshold=threshold),
                      say=lambda text: None).run()


def test_quick_failures_count_up_to_max_retries(tmp_path: Path) -> None:
    """Failures shorter than the threshold count; more than max_retries of them is final."""
    outcome = run_flaky(flaky_graph(tmp_path, failures=10, lived=0), max_retries=2, threshold=30)
    assert outcome.result.status == FAILED
    assert outcome.attempts == 3
    assert "attempt 3 fails" in outcome.result.reason


def test_long_runs_reset_the_failure_counter(tmp_path: Path) -> None:
    """Attempts that lived longer than the threshold reset the counter, as in SAP's worked example."""
    outcome = run_flaky(flaky_graph(tmp_path, failures=3, lived=0.3), max_retries=0, threshold=0.1)
    assert outcome.result.status == COMPLETED
    assert outcome.attempts == 4


def test_retries_succeed_within_the_limit(tmp_path: Path) -> None:
    outcome = run_flaky(flaky_graph(tmp_path, failures=2, lived=0), max_retries=2, threshold=30)
    assert outcome.result.status == COMPLETED
    assert outcome.attempts == 3


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "snapgraph", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, **(env or {})))


def test_kill_9_of_the_engine_then_resume(tmp_path: Path) -> None:
    """The engine process is killed with SIGKILL after an epoch completed; --resume finishes the job."""
    rows = 2500
    db = tmp_path / "out.db"
    make_db(db, "target")
    path = write_graph(tmp_path, {
        "name": "killed",
        "operators": {
            "gen": {"script": "gen.py", "outputs": {"output": "table"},
                    "config": {"first": 0, "step": 1, "total": rows}},
            "writer": {"script": "writer.py", "inputs": {"input": "table"},
                       "config": {"path": str(db), "table": "target"}},
        },
        "connections": ["gen.output -> writer.input"],
        "snapshots": {"period": 1},
    })
    # Slow the writer down so the run outlives its first epochs.
    writer = tmp_path / "writer.py"
    slow_commit = "    conn.commit()\n    import time; time.sleep(0.002)"
    writer.write_text(writer.read_text().replace("    conn.commit()", slow_commit))
    proc = _cli("run", str(path), cwd=tmp_path)
    store = tmp_path / ".snapgraph" / "snapshots.db"
    deadline = time.monotonic() + 60
    epochs = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            try:
                epochs = sqlite3.connect(store).execute("SELECT count(*) FROM epochs").fetchone()[0]
            except sqlite3.Error:
                epochs = 0
            if epochs >= 1:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    assert epochs >= 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    written_at_kill = len(table_rows(db, "target"))
    assert 0 < written_at_kill < rows

    refused = _cli("run", str(path), cwd=tmp_path)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "unfinished run" in err and "--resume" in err and "--fresh" in err

    resumed = _cli("run", str(path), "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert table_rows(db, "target") == [(x, x * 7 % 1000, f"row{x}") for x in range(rows)]


def test_injected_engine_death_then_resume_from_its_epoch(tmp_path: Path) -> None:
    """An `exit` fault kills the engine mid-protocol (exit 137); --resume restores and completes."""
    db = tmp_path / "out.db"
    make_db(db, "target")
    path = write_graph(tmp_path, {
        "name": "died",
        "operators": {
            "gen": {"script": "gen.py", "outputs": {"output": "table"},
                    "config": {"first": 0, "step": 1, "total": ROWS}},
            "writer": {"script": "writer.py", "inputs": {"input": "table"},
                       "config": {"path": str(db), "table": "target"}},
        },
        "connections": ["gen.output -> writer.input"],
        "snapshots": {"period": 1},
    })
    died = _cli("run", str(path), cwd=tmp_path, env={"SNAPGRAPH_FAULTS": "before_complete:*:1:exit"})
    _, err = died.communicate(timeout=60)
    assert died.returncode == 137, err
    resumed = _cli("run", str(path), "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert table_rows(db, "target") == EXPECTED


# -- the Graph Terminator: one end per upstream instance, remembered across a recovery ----------------

ENDER = """
import pickle
import time

state = {"sent": False}
started = time.monotonic()
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def tick():
    wait = api.config.after + 0.15 * api.multiplicity_index
    if not state["sent"] and time.monotonic() - started >= wait:
        api.outputs.out.publish(api.multiplicity_index, {"com.sap.headers.batch": [0, True, 1, 1, "rows"]})
        state["sent"] = True
    return 0.005    # keeps ticking: only the terminator can end this graph

def restore(epoch, data):
    state.update(pickle.loads(data))

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(state))
api.set_restore_callback(restore)
"""

COUNTER = """
def on_input(msg_id, header, body):
    api.logger.info("end of instance %d", body.get())

api.set_port_callback("in", on_input)
"""


def _ender_graph(tmp_path: Path, *, multiplicity: int, late_after: float) -> Path:
    (tmp_path / "ender.py").write_text(textwrap.dedent(ENDER))
    (tmp_path / "counter.py").write_text(textwrap.dedent(COUNTER))
    ender = {"script": "ender.py", "outputs": {"out": "int64"}}
    graph = {
        "name": "ends",
        "operators": {
            "early": {**ender, "config": {"after": 0.0}},
            "late": {**ender, "config": {"after": late_after}, "group": "late"},
            "seen": {"script": "counter.py", "inputs": {"in": "int64"}},
            "stop": {"component": "graphTerminator", "inputs": ["in", "in2"]},
        },
        "groups": {"late": {"multiplicity": multiplicity}},
        "connections": ["early.out -> stop.in", "late.out -> stop.in2", "late.out -> stop.in", "late.out -> seen.in"],
    }
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["processes", "in-process"])
def test_the_terminator_waits_for_every_instance_feeding_a_port(tmp_path: Path, mode: list[str]) -> None:
    """Port ``in`` is fed by ``early`` and by the three instances of ``late``, ``in2`` by the three
    instances: the graph ends after the last instance's end, not at the first ``isLast`` (in-process
    each group runs once, and the terminator counts that one)."""
    done = snapgraph_cli("run", str(_ender_graph(tmp_path, multiplicity=3, late_after=0.1)), "--stop-after", "30",
                         *mode, cwd=tmp_path)
    assert done.returncode == 0 and "graph terminator 'stop' fired" in done.stderr, done.stderr
    ends = sorted(re.findall(r"end of instance (\d)", done.stderr))
    assert ends == (["0"] if mode else ["0", "1", "2"])


def test_an_end_before_the_snapshot_is_remembered_after_a_recovery(tmp_path: Path) -> None:
    """``early`` ends at once and ``late`` after 1 s; a crash of ``late`` in between restores an epoch in
    which ``early`` had ended (it does not end again): the terminator must still fire."""
    path = _ender_graph(tmp_path, multiplicity=1, late_after=1.0)
    plan = "after_serialize:late:3:raise"
    outcome = supervise(path, tmp_path, plan)
    assert outcome.attempts == 2, "the fault fired and the graph recovered"
    assert outcome.result.status == COMPLETED and "graph terminator 'stop' fired" in outcome.result.reason
