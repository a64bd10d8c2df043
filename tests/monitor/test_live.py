"""The live view (RunWatcher): rates and states from sampled counters, epochs, failures, real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROW_COUNTING_SINK, write_files
from snapgraph.instruments import installed
from snapgraph.instruments.base import Attempt, Outcome
from snapgraph.instruments.stats import EpochStats, OperatorStats, PortStats
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.monitor.live import RunWatcher
from snapgraph.runtime.engine import COMPLETED, RunOptions
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import ENV_VAR, FaultPlan
from snapgraph.snapshot.store import SQLiteStore

GRAPH = """
name: watched
parameters: {batches: 30}
operators:
  gen:
    script: gen.py
    outputs: {out: table}
    config: {batches: "${batches}"}
    group: left
  sink:
    script: sink.py
    inputs: {in: table}
    group: right
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
    if offset >= api.config.batches:
        return -1
    api.outputs.out.publish(api.Table([[offset, i] for i in range(4)]))
    offset += 1
    return 0.01

def restore(epoch, data):
    global offset
    offset = pickle.loads(data)

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))
api.set_restore_callback(restore)
"""

SINK = ROW_COUNTING_SINK  # a stateful sink that counts the rows it received


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def graph(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": SINK})
    return load_graph(tmp_path / "graph.yaml", LoadOptions())


def counters(sent: int, rows: int, callback: float = 0.0, send: float = 0.0, state: str = "running") -> dict:
    gen = OperatorStats("gen", "left", outputs={"out": PortStats(sent, rows, 0, 0.0, send)}, state=state)
    sink = OperatorStats("sink", "right", inputs={"in": PortStats(sent, rows, 0, callback)}, callbacks=sent,
                         callback_seconds=callback, state=state)
    return {"gen": gen, "sink": sink}


def test_rates_shares_and_back_pressure_come_from_samples_of_the_counters(tmp_path: Path) -> None:
    mono, wall = Clock(100.0), Clock(1_800_000_000.0)
    live: dict = counters(0, 0)
    watcher = RunWatcher(graph(tmp_path), monotonic=mono, wall=wall)
    watcher.attempt_started(Attempt("run-1", 1, "watched", "h", backend="Engine", stats_reader=lambda: live))
    first = watcher.view()
    assert first.status == "running" and first.attempt == 1 and first.run == "run-1"
    assert [op.messages_out_per_s for op in first.operators] == [0.0, 0.0]  # one sample: no rate yet
    mono.now += 1.0
    live = counters(50, 200, callback=0.25, send=0.75)
    view = watcher.view()
    gen, sink = view.operators
    assert gen.messages_out == 50 and gen.messages_out_per_s == pytest.approx(50.0)
    assert sink.rows_in_per_s == pytest.approx(200.0) and sink.callback_share == pytest.approx(0.25)
    assert gen.blocked_share == pytest.approx(0.75) and gen.state == "blocked"  # waited for room most of the time
    assert sink.state == "running"
    assert view.elapsed == pytest.approx(1.0)
    mono.now += 0.1  # too soon for a new sample: the same window, the same rates
    assert watcher.view().operators[0].messages_out_per_s == pytest.approx(50.0)


def test_epochs_failures_and_attempts_are_kept_in_order(tmp_path: Path) -> None:
    mono, wall = Clock(0.0), Clock(1_800_000_000.0)
    epochs: list[EpochStats] = []
    live = counters(0, 0)
    attempt = Attempt("run-1", 1, "watched", "h", stats_reader=lambda: live, epochs_reader=lambda: epochs)
    watcher = RunWatcher(graph(tmp_path), monotonic=mono, wall=wall)
    watcher.attempt_started(attempt)
    epochs.append(EpochStats("E1", wall.now))
    watcher.epoch_started("E1", False)
    live["sink"].last_epoch, live["sink"].last_persist_seconds, live["sink"].state_bytes = "E1", 0.5, 40
    watcher.epoch_completed(EpochStats("E1", wall.now, seconds=0.7, acks=2, stateful=2, state_bytes=52))
    epochs.append(EpochStats("E2", wall.now))
    watcher.epoch_started("E2", False)
    watcher.operator_failed(OperatorFailure("sink", "port callback", "ValueError: bad row", "Traceback ..."))
    watcher.attempt_ended(attempt, Outcome("failed", "operator 'sink' failed", None, live, epochs, 1.0))
    view = watcher.view()
    assert [(e.epoch, e.status) for e in view.epochs] == [("E1", "completed"), ("E2", "abandoned")]
    assert view.epochs[0].operators["sink"].persist_seconds == 0.5 and view.epochs[0].state_bytes == 52
    assert view.last_completed_epoch == "E1" and view.last_epoch_seconds == 0.7
    assert [(f.operator, f.message, f.traceback) for f in view.failures] == [
        ("sink", "ValueError: bad row", "Traceback ...")]
    assert {op.name: op.state for op in view.operators}["sink"] == "failed"
    second = Attempt("run-1", 2, "watched", "h2", restored_from="E1", stats_reader=lambda: counters(0, 0))
    watcher.attempt_started(second)
    view = watcher.view()
    assert view.recoveries == 1 and [a.status for a in view.attempts] == ["failed", None]
    assert view.completed_epochs == 1
    assert {op.name: op.state for op in view.operators}["sink"] == "running"  # failed in the attempt before
    assert view.last_completed_epoch == "E1"


@pytest.mark.parametrize("backend", ["inprocess", "process"])
def test_a_real_run_ends_with_the_known_counts_and_its_recovery(tmp_path: Path, backend: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    watched = graph(tmp_path)
    watcher = RunWatcher(watched)
    store = SQLiteStore(tmp_path / "store.db")
    with installed(watcher):
        outcome = Supervisor(watched, RunOptions(in_process=backend == "inprocess"),
                             RecoveryPolicy(max_retries=1, retry_interval=0), store=store, period=0.1,
                             faults=FaultPlan.parse("port_callback:sink:12"), backend=backend).run()
    assert outcome.result.status == COMPLETED, outcome.result.reason
    view = watcher.view()
    assert view.status == COMPLETED and view.attempt == 2 and view.recoveries == 1
    assert [f.operator for f in view.failures] == ["sink"] and "InjectedFault" in view.failures[0].message
    gen, sink = view.operators
    # The second attempt restored an epoch and replayed the rest: its counters cover what it did, the
    # run totals both attempts (replays included), and everything sent was received.
    assert gen.messages_out == sink.messages_in and sink.rows_in == 4 * sink.messages_in
    out, into = gen.outputs["out"], sink.inputs["in"]
    assert (out.messages, into.messages, into.rows) == (gen.messages_out, sink.messages_in, sink.rows_in)
    assert out.run_messages == into.run_messages >= 30 > out.messages and into.run_rows == 4 * into.run_messages
    assert into.queued == 0 and view.completed_epochs >= 1
    if backend == "process":
        assert out.bytes > 0 and out.bytes == into.bytes  # encoded bytes between the two group processes
    assert view.epochs and view.epochs[-1].status == "completed" and view.epochs[-1].final
    restored = view.attempts[1].restored_from
    assert restored is None or restored in {e.epoch for e in view.epochs if e.status == "completed"}
    assert all(op.state == "done" for op in view.operators)
    store.close()
