"""The JSON-lines event log (``snapgraph run --events FILE``) checked against known runs.

The graph: a replayable generator publishes BATCHES tables of ROWS_PER_BATCH rows; after HOLD
batches it waits until an epoch completed (so that epoch has a known state), then publishes the
rest; a stateful sink counts what it received. With a 1 s period the run takes one periodic epoch
(at 1 s, with the generator at HOLD) and, when nothing is left to do, a final epoch.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import ROW_COUNTING_SINK, snapgraph_cli, write_files
from snapgraph.instruments import EventLog, Instrument, installed
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, Engine, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import ENV_VAR, FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig
from snapgraph.snapshot.store import SQLiteStore

BATCHES, ROWS_PER_BATCH, HOLD = 8, 3, 4

GRAPH = """
name: tables
parameters: {batches: 8, hold: 4}
operators:
  gen:
    script: gen.py
    outputs: {out: table}
    config: {batches: "${batches}", hold: "${hold}"}
  sink:
    script: sink.py
    inputs: {in: table}
connections:
  - gen.out -> sink.in
"""

GEN = """
import pickle

offset = 0
released = False

api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'out': api.OutportInfo(is_generator=True)}))

def tick():
    global offset
    if offset >= api.config.batches:
        return -1
    if offset >= api.config.hold and not released:
        return 0.02
    api.outputs.out.publish(api.Table([[offset, i] for i in range(3)]))
    offset += 1
    return 0

def restore(epoch, data):
    global offset, released
    offset, released = pickle.loads(data), True

def complete(epoch):
    global released
    released = True

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""

SINK = ROW_COUNTING_SINK  # a stateful sink that counts the rows it received

FILES = {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": SINK}


@pytest.fixture(autouse=True)
def no_faults_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def names(events: list[dict[str, Any]], *, attempt: int | None = None) -> list[str]:
    return [e["event"] for e in events if attempt is None or e["attempt"] == attempt]


def stats_of(events: list[dict[str, Any]], attempt: int) -> dict[str, dict[str, Any]]:
    return {e["operator"]: e["fields"] for e in events if e["event"] == "operator_stats" and e["attempt"] == attempt}


def check_epochs(events: list[dict[str, Any]], attempt: int) -> list[str]:
    """Epochs start one at a time, each completes before the next starts, ids strictly increasing."""
    ours = [e for e in events if e["attempt"] == attempt and e["event"] in ("epoch_started", "epoch_completed")]
    started = [e["epoch"] for e in ours if e["event"] == "epoch_started"]
    assert [e["event"] for e in ours] == ["epoch_started", "epoch_completed"] * len(started)
    assert [e["epoch"] for e in ours] == [epoch for epoch in started for _ in range(2)]
    assert started == sorted(started) and len(set(started)) == len(started)
    finals = [e["fields"]["final"] for e in ours if e["event"] == "epoch_started"]
    assert finals[-1] is True
    for done in (e for e in ours if e["event"] == "epoch_completed"):
        assert done["fields"]["seconds"] >= 0 and done["fields"]["acks"] == 2 and done["fields"]["stateful"] == 2
    return started


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    write_files(tmp_path, FILES)
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return snapgraph_cli("run", "graph.yaml", "--snapshot-period", "1", "--events", "events.jsonl", *args,
                             cwd=tmp_path)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_the_event_log_of_a_known_run(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--in-process")
    assert done.returncode == 0, done.stderr
    events = read(tmp_path / "events.jsonl")
    assert {e["attempt"] for e in events} == {1}
    run_id = events[0]["run"]
    assert run_id and all(e["run"] == run_id for e in events)
    assert events[0]["event"] == "attempt_started" and events[0]["fields"]["restored_from"] is None
    assert events[-1]["event"] == "attempt_ended" and events[-1]["fields"]["status"] == "completed"
    assert events[-1]["fields"]["epochs"] == 2
    times = [e["time"] for e in events]
    assert times == sorted(times)
    assert names(events)[1:3] == ["operator_loaded", "operator_loaded"]

    first, final = check_epochs(events, 1)
    # Every step of each epoch, per operator, between its start and its completion.
    for epoch in (first, final):
        steps = [(e["event"], e.get("operator")) for e in events if e.get("epoch") == epoch]
        assert steps[0] == ("epoch_started", None) and steps[-1] == ("epoch_completed", None)
        snapshot = ["barrier_aligned", "state_serialized", "state_persisted", "epoch_acked"]
        assert [s for s, who in steps if who == "gen"] == ["barrier_injected", *snapshot], steps  # the source
        assert [s for s, who in steps if who == "sink"] == snapshot, steps
    assert [e["fields"]["number"] for e in events if e["event"] == "final_epoch"] == [1]

    stats = stats_of(events, 1)
    assert stats["gen"]["outputs"]["out"]["messages"] == BATCHES
    assert stats["gen"]["outputs"]["out"]["rows"] == BATCHES * ROWS_PER_BATCH
    assert stats["sink"]["inputs"]["in"]["messages"] == BATCHES
    assert stats["sink"]["inputs"]["in"]["rows"] == BATCHES * ROWS_PER_BATCH
    assert stats["sink"]["inputs"]["in"]["callback_seconds"] > 0
    assert stats["gen"]["callbacks"] >= BATCHES and stats["sink"]["callbacks"] >= BATCHES
    for op in ("gen", "sink"):
        assert stats[op]["snapshots"] == 2 and stats[op]["last_epoch"] == final
        assert stats[op]["state_bytes"] > 0 and stats[op]["state_bytes_total"] > stats[op]["state_bytes"]
    persisted = sum(e["fields"]["bytes"] for e in events if e["event"] == "state_persisted")
    completed = sum(e["fields"]["state_bytes"] for e in events if e["event"] == "epoch_completed")
    assert persisted == completed == stats["gen"]["state_bytes_total"] + stats["sink"]["state_bytes_total"]


def test_a_fault_injected_run_shows_the_failure_and_the_recovery(tmp_path: Path) -> None:
    # The sink fails right after its second serialize (the final epoch): attempt 2 restores epoch 1.
    done = run_cli(tmp_path, "--in-process", "--max-retries", "1", "--retry-interval", "0",
                   env={ENV_VAR: "after_serialize:sink:2"})
    assert done.returncode == 0, done.stderr
    events = read(tmp_path / "events.jsonl")
    assert {e["attempt"] for e in events} == {1, 2}
    assert len({e["run"] for e in events}) == 1

    first = [e for e in events if e["attempt"] == 1]
    failed = [e for e in first if e["event"] == "operator_failed"]
    assert failed and failed[0]["operator"] == "sink"
    assert "InjectedFault" in failed[0]["fields"]["message"] and failed[0]["fields"]["phase"].startswith("snapshot")
    ending = [n for n in names(events, attempt=1) if n != "operator_stats"]
    assert ending[-2:] == ["attempt_failed", "attempt_ended"]
    assert names(events, attempt=1)[-3:] == ["operator_stats", "operator_stats", "attempt_ended"]
    assert first[-1]["fields"]["status"] == "failed"
    restorable = [e["epoch"] for e in first if e["event"] == "epoch_completed"]
    assert len(restorable) == 1  # the final epoch of attempt 1 never completed

    second = [e for e in events if e["attempt"] == 2]
    assert [e["event"] for e in second][:2] == ["recovery", "attempt_started"]
    assert second[0]["fields"]["restored_from"] == restorable[0]
    assert second[0]["fields"]["failed_operator"] == "sink"
    assert second[1]["fields"]["restored_from"] == restorable[0]
    assert {e["operator"] for e in second if e["event"] == "state_restored"} == {"gen", "sink"}
    assert second[-1]["event"] == "attempt_ended" and second[-1]["fields"]["status"] == "completed"
    epochs = check_epochs(events, 2)
    assert epochs[0] > restorable[0]
    # Attempt 2 replays what came after epoch 1: the generator's last BATCHES - HOLD tables.
    stats = stats_of(events, 2)
    assert stats["gen"]["outputs"]["out"]["rows"] == (BATCHES - HOLD) * ROWS_PER_BATCH
    assert stats["sink"]["inputs"]["in"]["rows"] == (BATCHES - HOLD) * ROWS_PER_BATCH


GROUPED = (GRAPH.replace('    config: {batches: "${batches}", hold: "${hold}"}\n',
                         '    config: {batches: "${batches}", hold: "${hold}"}\n    group: source\n')
           .replace("    inputs: {in: table}\n", "    inputs: {in: table}\n    group: target\n"))


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_the_event_log_with_groups_elsewhere(tmp_path: Path, backend: str) -> None:
    """Driver events come from the driver, and the operators' counters cross from the groups."""
    write_files(tmp_path, {**FILES, "graph.yaml": GROUPED})
    done = snapgraph_cli("run", "graph.yaml", "--snapshot-period", "1", "--events", "events.jsonl",
                         "--backend", backend, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = read(tmp_path / "events.jsonl")
    assert events[0]["event"] == "attempt_started" and events[-1]["event"] == "attempt_ended"
    check_epochs(events, 1)
    assert {e["operator"] for e in events if e["event"] == "state_persisted"} == {"gen", "sink"}
    stats = stats_of(events, 1)
    assert stats["gen"]["group"] == "source" and stats["sink"]["group"] == "target"
    assert stats["gen"]["outputs"]["out"]["messages"] == BATCHES
    assert stats["gen"]["outputs"]["out"]["rows"] == BATCHES * ROWS_PER_BATCH
    assert stats["sink"]["inputs"]["in"]["rows"] == BATCHES * ROWS_PER_BATCH
    assert stats["sink"]["callbacks"] >= BATCHES and stats["sink"]["snapshots"] == 2
    sent, received = stats["gen"]["outputs"]["out"]["bytes"], stats["sink"]["inputs"]["in"]["bytes"]
    if backend == "process":  # encoded on the pipe: both ends count the same frames
        assert sent == received > BATCHES * ROWS_PER_BATCH
    else:  # by reference
        assert sent == received == 0


class Explodes(Instrument):
    def epoch_started(self, epoch: str, final: bool) -> None:
        raise RuntimeError("this instrument is broken")


def test_a_failing_instrument_is_dropped_and_the_run_completes(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    write_files(tmp_path, FILES)
    graph = load_graph(tmp_path / "graph.yaml", LoadOptions())
    store = SQLiteStore(tmp_path / "store.db")
    broken = Explodes()
    with open(tmp_path / "events.jsonl", "w") as out, caplog.at_level(logging.WARNING, "snapgraph.instruments"):
        log = EventLog(out)
        with installed(broken, log) as registry:
            outcome = Supervisor(graph, RunOptions(in_process=True), RecoveryPolicy(), store=store, period=1.0,
                                 faults=FaultPlan()).run()
            assert broken not in list(registry) and log in list(registry)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert len([r for r in caplog.records if "removed" in r.getMessage()]) == 1
    events = read(tmp_path / "events.jsonl")
    check_epochs(events, 1)  # the log saw every epoch although the first hook call raised
    assert events[-1]["event"] == "attempt_ended"


def test_an_explicit_registry_and_injected_clocks(tmp_path: Path) -> None:
    """A driver given its own registry and clocks uses them (epoch durations from the injected clock)."""
    from snapgraph.instruments import Instruments

    write_files(tmp_path, FILES)
    graph = load_graph(tmp_path / "graph.yaml", LoadOptions(params={"batches": "2", "hold": "2"}))
    ticks = iter(range(10**6))
    seen: list[Any] = []

    class Collect(Instrument):
        def epoch_completed(self, epoch):  # type: ignore[no-untyped-def]
            seen.append(epoch)

        def attempt_ended(self, attempt, outcome):  # type: ignore[no-untyped-def]
            seen.append((attempt.attempt, outcome.status, outcome.stats["sink"].rows_in))

    store = SQLiteStore(tmp_path / "store.db")
    run = store.begin_run(str(graph.path), graph.name)
    engine = Engine(graph, RunOptions(), SnapshotConfig(store, run.run_id, None), FaultPlan(),
                    instruments=Instruments([Collect()]), attempt=7, clock=lambda: float(next(ticks)))
    result = engine.run()
    assert result.status == COMPLETED, result.reason
    assert seen[-1] == (7, COMPLETED, 2 * ROWS_PER_BATCH)
    assert len(seen) == 2 and seen[0].final and seen[0].seconds == float(int(seen[0].seconds)) > 0


OBSERVING = Path(__file__).resolve().parents[2] / "docs" / "observing.md"


def test_the_python_example_in_docs_observing_md_runs() -> None:
    [block] = re.findall(r"```python\n(.*?)```", OBSERVING.read_text(), re.S)
    namespace: dict[str, Any] = {"__name__": "docs_observing"}
    exec(compile(block, "docs/observing.md", "exec"), namespace)  # noqa: S102
    assert namespace["epochs"].completed, "the example's instrument heard completed epochs"
