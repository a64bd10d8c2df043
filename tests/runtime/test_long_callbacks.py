"""Snapshots and long callbacks: ``snapshotWhileBusy`` lets a source's snapshot be taken beside a callback.

The pattern (a crash-test generator from the public Gen2 operators): a timer callback sets a flag in
its state, sleeps "so that a snapshot is taken", then raises to force a recovery. Taken only between
callbacks, no snapshot ever holds the flag, every restore crashes again and the run fails once its
retries are spent. Opted in, the snapshot is taken during the sleep and the recovery finishes the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

MODES = [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")]

GRAPH = """
name: crash-test
operators:
  gen:
    group: source
    script: gen.py
    outputs: {{output: int64}}
    config: {{{config}}}
  sink:
    group: sink
    script: sink.py
    inputs: {{input: int64}}
connections:
  - gen.output -> sink.input
snapshots: {{period: 1}}
recovery: {{max_retries: 2, retry_interval: 0}}
"""

GEN = """
import pickle
import time

state = {"batch": 0, "crashed": False}
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def tick():
    if state["batch"] >= 6:
        return -1
    state["batch"] += 1
    if state["batch"] == 3 and not state["crashed"]:
        state["crashed"] = True
        time.sleep(3)  # long enough for a snapshot to be taken meanwhile
        raise ValueError("forced crash after the snapshot")
    api.outputs.output.publish(state["batch"])
    return 0.2

def restore(epoch, data):
    global state
    state = pickle.loads(data)

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(state))
api.set_restore_callback(restore)
"""

SINK = """
def on_input(msg_id, header, body):
    with open("received.log", "a") as f:
        f.write(f"{body.get()}\\n")

api.set_port_callback("input", on_input)
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"gen.py": GEN, "sink.py": SINK})
    return tmp_path


def received(folder: Path) -> list[int]:
    path = folder / "received.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("mode", MODES)
def test_opted_in_the_snapshot_is_taken_during_the_sleep_and_the_recovery_finishes(folder: Path,
                                                                                  mode: list[str]) -> None:
    write_files(folder, {"graph.yaml": GRAPH.format(config="snapshotWhileBusy: 1")})
    proc = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "snapshot of epoch" in proc.stderr and "taken while a callback has been running" in proc.stderr
    assert "attempt 1 failed" in proc.stderr and "forced crash after the snapshot" in proc.stderr
    assert "graph 'crash-test' completed" in proc.stderr and "(2 attempts)" in proc.stderr
    # The restored state holds the flag (and the batch the crash consumed, as the pattern intends).
    assert received(folder) == [1, 2, 4, 5, 6]


@pytest.mark.parametrize("mode", MODES)
def test_not_opted_in_the_snapshot_waits_for_the_callback_and_every_recovery_crashes(folder: Path,
                                                                                   mode: list[str]) -> None:
    """The default keeps the consistent cut: no snapshot inside a callback, so the pattern cannot recover."""
    write_files(folder, {"graph.yaml": GRAPH.format(config="")})
    proc = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder, timeout=90)
    assert proc.returncode == 1, proc.stderr
    assert "taken while a callback" not in proc.stderr
    assert "maximum retries reached (2)" in proc.stderr


@pytest.mark.parametrize("config, problem", [
    ("snapshotWhileBusy: 0", "snapshotWhileBusy must be a number of seconds above 0, got 0"),
    ("snapshotWhileBusy: soon", "snapshotWhileBusy must be a number of seconds, got 'soon'"),
])
def test_a_bad_value_is_refused_by_validate_and_run(folder: Path, config: str, problem: str) -> None:
    write_files(folder, {"graph.yaml": GRAPH.format(config=config)})
    for command in ("validate", "run"):
        proc = snapgraph_cli(command, "graph.yaml", cwd=folder)
        assert proc.returncode == 2, proc.stderr
        assert problem in proc.stderr
    assert received(folder) == []


def test_an_operator_with_inputs_cannot_opt_in(folder: Path) -> None:
    graph = GRAPH.format(config="").replace("    inputs: {input: int64}\n",
                                            "    inputs: {input: int64}\n    config: {snapshotWhileBusy: 2}\n")
    write_files(folder, {"graph.yaml": graph})
    proc = snapgraph_cli("validate", "graph.yaml", cwd=folder)
    assert proc.returncode == 2, proc.stderr
    assert "process 'sink'" in proc.stderr
    assert "snapshotWhileBusy applies to operators without connected inputs" in proc.stderr
