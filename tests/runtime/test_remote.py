"""RemoteEngine: where the states of groups elsewhere go, and what crosses the control channel for them.

With a store every process reaches (PostgreSQL), each group process writes its operators' states into
it itself, under the engine's lease, and the driver receives only a handle (``StateSaved``); with the
SQLite store the bytes travel to the driver (``State``), which writes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import write_files
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, RunOptions
from snapgraph.runtime.remote import RemoteEngine
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import SnapshotStore, SQLiteStore, open_store

SERVER = "postgresql://postgres@127.0.0.1:5432/test"

GRAPH = """
name: shared
operators:
  gen:
    script: gen.py
    outputs: {out: int64}
    group: source
  sink:
    script: sink.py
    inputs: {in: int64}
    group: target
connections:
  - gen.out -> sink.in
"""

GEN = """
import pickle
offset = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'out': api.OutportInfo(is_generator=True)}))

def tick():
    global offset
    if offset >= 400:
        return -1
    api.outputs.out.publish(offset)
    offset += 1
    return 0.002

def restore(epoch, data):
    global offset
    offset = pickle.loads(data)

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset) + b"x" * 50000)
api.set_restore_callback(lambda epoch, data: restore(epoch, data[:-50000]))
"""

SINK = """
import pickle
seen = []
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def on_input(msg_id, header, body):
    seen.append(body.get())

def restore(epoch, data):
    global seen
    seen = pickle.loads(data)

api.set_port_callback("in", on_input)
api.set_serialize_callback(lambda epoch: pickle.dumps(seen))
api.set_restore_callback(restore)
"""


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"remote_{uuid.uuid4().hex[:10]}"
    yield f"{SERVER}?schema={schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def run_counting(tmp_path: Path, store: SnapshotStore, monkeypatch: pytest.MonkeyPatch,
                 faults: str = "") -> tuple[Any, list[str]]:
    """Run the graph with groups as processes, counting the control messages the driver handles."""
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": SINK})
    seen: list[str] = []
    handle = RemoteEngine._handle

    def counting(self: RemoteEngine, child: Any, report: Any) -> None:
        seen.append(type(report).__name__)
        handle(self, child, report)

    monkeypatch.setattr(RemoteEngine, "_handle", counting)
    graph = load_graph(tmp_path / "graph.yaml", LoadOptions(snapshots=True))
    try:
        outcome = Supervisor(graph, RunOptions(), RecoveryPolicy(max_retries=2, retry_interval=0),
                             store=store, period=0.05, faults=FaultPlan.parse(faults),
                             say=lambda text: None).run()
    finally:
        store.close()
    return outcome, seen


def test_group_processes_write_their_states_into_a_shared_store(tmp_path: Path, pg_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, seen = run_counting(tmp_path, open_store(pg_url), monkeypatch)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert seen.count("StateSaved") >= 4 and "State" not in seen
    reader = open_store(pg_url, read_only=True)
    try:
        epochs = reader.epochs(outcome.run_id)
        assert epochs and epochs[-1].operator_bytes["gen"] > 50000
        point = reader.restore_point(outcome.run_id, heal=False)
        assert point is not None and sorted(point.states) == ["gen", "sink"]
    finally:
        reader.close()


def test_a_recovery_restores_what_the_group_processes_wrote(tmp_path: Path, pg_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, seen = run_counting(tmp_path, open_store(pg_url), monkeypatch, "port_callback:sink:300")
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts == 2 and outcome.restored_from[1] is not None
    assert "State" not in seen


def test_with_a_store_of_this_process_only_the_bytes_go_to_the_driver(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, seen = run_counting(tmp_path, SQLiteStore(tmp_path / "store.db"), monkeypatch)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert seen.count("State") >= 4 and "StateSaved" not in seen
