"""The real CLI with snapshots: runs, `snapshots list|show|delete`, resume/fresh, bad input, retries.

Every command runs in a subprocess with cwd = tmp_path, so the default store
``.snapgraph/snapshots.db`` lands there.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

RUN_ID = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{6}\b")
EPOCH = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
DEFAULT_STORE = Path(".snapgraph") / "snapshots.db"

GRAPH = """
name: counter
parameters: {count: 10, hold: 0}
operators:
  gen:
    script: gen.py
    outputs: {output: int64}
    config: {count: "${count}", hold: "${hold}"}
  sink:
    script: sink.py
    inputs: {input: int64}
    config: {out: out.json}
connections:
  - gen.output -> sink.input
"""

# A replayable generator: its offset is its state. With hold=N it emits N items, then waits
# until an epoch completed (so a later crash has a restore point) before emitting the rest.
GEN = """
import pickle

offset = 0
released = False

api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'output': api.OutportInfo(is_generator=True)}))

def tick():
    global offset
    if offset >= api.config.count:
        return -1
    if api.config.hold and offset >= api.config.hold and not released:
        return 0.05
    api.outputs.output.publish(offset)
    offset += 1
    return 0

api.add_timer(tick)

def serialize(epoch):
    return pickle.dumps(offset)

def restore(epoch, state_bytes):
    global offset, released
    offset = pickle.loads(state_bytes)
    released = True

def complete(epoch):
    global released
    released = True

api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""

# A stateful sink: what it has seen is its state; every complete epoch publishes that state
# to out.json (atomically). received.log records every delivery, replays included.
SINK = """
import json
import os
import pickle

seen = []

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def on_input(msg_id, header, body):
    seen.append(body.get())
    with open("received.log", "a") as f:
        f.write(f"{body.get()}\\n")

api.set_port_callback("input", on_input)

def serialize(epoch):
    return pickle.dumps(seen)

def restore(epoch, state_bytes):
    global seen
    seen = pickle.loads(state_bytes)

def complete(epoch):
    tmp = api.config.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(seen, f)
    os.replace(tmp, api.config.out)

api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""

BAD_GRAPH = """
name: bad
operators:
  gen:
    script: gen.py
    outputs: {output: int64}
    config: {count: 3, hold: 0}
  sink:
    script: badsink.py
    inputs: {input: int64}
connections:
  - gen.output -> sink.input
"""

BAD_SINK = """
def on_input(msg_id, header, body):
    raise RuntimeError(f"sink cannot take {body.get()}")

api.set_port_callback("input", on_input)
"""

FILES = {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": SINK, "bad.yaml": BAD_GRAPH, "badsink.py": BAD_SINK}


@pytest.fixture(autouse=True)
def no_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_files(tmp_path, FILES)
    return tmp_path


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return snapgraph_cli(*args, cwd=folder)


def listed_runs(folder: Path, *store: str) -> list[dict[str, str]]:
    """`snapshots list` parsed into one dict per run."""
    proc = cli(folder, "snapshots", "list", *store)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if lines == ["no runs"]:
        return []
    assert lines[0].split() == ["RUN", "GRAPH", "STATUS", "ATTEMPTS", "EPOCHS", "NEWEST", "EPOCH"]
    runs = []
    for line in lines[1:]:
        run_id, graph, status, attempts, epochs, newest = line.split()
        runs.append({"run": run_id, "graph": graph, "status": status, "attempts": attempts,
                     "epochs": epochs, "newest": newest})
    return runs


def out_json(folder: Path) -> list[int]:
    return json.loads((folder / "out.json").read_text())


def received(folder: Path) -> list[int]:
    return [int(x) for x in (folder / "received.log").read_text().split()]


# Two ways to kill the engine (like kill -9) and leave an unfinished run with one complete epoch E1,
# cut at generator offset 3: in the sink's 5th port callback (item 4), or in the coordinator just before
# it writes the completion record of the second epoch.
KILL_IN_SINK = "port_callback:sink:5:kill"
KILL_BEFORE_COMPLETE = "before_complete:*:2:exit"


def leave_unfinished_run(folder: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> dict[str, str]:
    monkeypatch.setenv("SNAPGRAPH_FAULTS", spec)
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--param", "hold=3")
    monkeypatch.delenv("SNAPGRAPH_FAULTS")
    assert proc.returncode == 137, proc.stderr
    assert "snapgraph: injected fault: engine killed at " in proc.stderr
    assert "completed after" not in proc.stderr and "failed after" not in proc.stderr
    [run] = listed_runs(folder)
    assert run["status"] == "unfinished"
    assert run["epochs"] == "1"
    before = received(folder)
    assert before == list(range(len(before))) and len(before) >= 3
    if spec == KILL_IN_SINK:
        # items 0..3 reached the sink; the 5th delivery (item 4) killed the engine before its callback
        assert before == [0, 1, 2, 3]
        assert "engine killed at port_callback of 'sink'" in proc.stderr
    return run


sink_kill = pytest.param(KILL_IN_SINK, id="kill-in-sink")
coordinator_kill = pytest.param(KILL_BEFORE_COMPLETE, id="kill-before-complete")


# --------------------------------------------------------------------------------------
# run, list, show, delete
# --------------------------------------------------------------------------------------

def test_run_list_show_delete(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1")
    assert proc.returncode == 0, proc.stderr
    assert "graph 'counter' completed" in proc.stderr
    assert re.search(r"final epoch " + EPOCH.pattern + " complete", proc.stderr)
    assert (folder / DEFAULT_STORE).is_file()
    assert out_json(folder) == list(range(10))

    [run] = listed_runs(folder)
    run_id = run["run"]
    assert RUN_ID.fullmatch(run_id)
    assert run["graph"] == "counter"
    assert run["status"] == "completed"
    assert run["attempts"] == "1"
    assert int(run["epochs"]) >= 1
    assert EPOCH.fullmatch(run["newest"])

    show = cli(folder, "snapshots", "show", run_id)
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[0] == f"run {run_id}: graph counter ({(folder / 'graph.yaml').resolve()})"
    assert lines[1].startswith("status completed, 1 attempt(s), started ")
    epoch_lines = lines[2:]
    assert len(epoch_lines) == int(run["epochs"])
    assert all(line.startswith("  epoch ") for line in epoch_lines)
    # the final epoch holds the final states: offset 10 and the 10 items seen
    gen_bytes = len(pickle.dumps(10))
    sink_bytes = len(pickle.dumps(list(range(10))))
    last = epoch_lines[-1]
    assert last.split()[1] == run["newest"]
    assert f"{gen_bytes + sink_bytes} bytes" in last
    assert last.endswith(f"(gen={gen_bytes}B, sink={sink_bytes}B)")

    deleted = cli(folder, "snapshots", "delete", run_id)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted run {run_id}"
    assert listed_runs(folder) == []

    again = cli(folder, "snapshots", "show", run_id)
    assert again.returncode == 2
    assert f"no run '{run_id}'" in again.stderr


def test_unknown_run_id_is_exit_2(folder: Path) -> None:
    assert cli(folder, "run", "graph.yaml", "--snapshot-period", "1").returncode == 0
    show = cli(folder, "snapshots", "show", "20000101-000000-abcdef")
    assert show.returncode == 2
    assert "no run '20000101-000000-abcdef' in .snapgraph/snapshots.db" in show.stderr
    delete = cli(folder, "snapshots", "delete", "nope")
    assert delete.returncode == 2
    assert "no run 'nope'" in delete.stderr
    assert len(listed_runs(folder)) == 1  # nothing was deleted


@pytest.mark.parametrize("command", [["list"], ["show", "20000101-000000-abcdef"], ["delete", "x"]])
def test_snapshot_commands_without_a_store_are_exit_2(folder: Path, command: list[str]) -> None:
    proc = cli(folder, "snapshots", *command)
    assert proc.returncode == 2
    assert "no snapshot store at .snapgraph/snapshots.db" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / ".snapgraph").exists()  # looking does not create a store


def test_an_explicit_store_path(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", "elsewhere/my.db")
    assert proc.returncode == 0, proc.stderr
    assert (folder / "elsewhere" / "my.db").is_file()
    assert not (folder / ".snapgraph").exists()
    [run] = listed_runs(folder, "--store", "elsewhere/my.db")
    assert run["status"] == "completed"
    missing = cli(folder, "snapshots", "list", "--store", "nowhere.db")
    assert missing.returncode == 2
    assert "no snapshot store at nowhere.db" in missing.stderr


# --------------------------------------------------------------------------------------
# unfinished runs: refusal, --resume, --fresh
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [sink_kill, coordinator_kill])
def test_unfinished_run_is_refused_then_resumed(folder: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    run = leave_unfinished_run(folder, monkeypatch, spec)
    run_id, newest = run["run"], run["newest"]
    before = received(folder)

    refused = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--param", "hold=3")
    assert refused.returncode == 2
    assert run_id in refused.stderr
    assert f"its last complete epoch is {newest}" in refused.stderr
    assert "--resume" in refused.stderr and "--fresh" in refused.stderr
    assert received(folder) == before  # nothing ran
    assert listed_runs(folder) == [run]  # nothing changed in the store

    resumed = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--param", "hold=3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "graph 'counter' completed" in resumed.stderr
    # every item exactly once in the final state
    assert out_json(folder) == list(range(10))
    # restored from the epoch cut at offset 3: items 3.. were replayed, 0..2 were not
    assert received(folder) == before + list(range(3, 10))
    [after] = listed_runs(folder)
    assert after["run"] == run_id
    assert after["status"] == "completed"
    assert after["newest"] > newest


def test_fresh_abandons_the_unfinished_run(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_id = leave_unfinished_run(folder, monkeypatch, KILL_BEFORE_COMPLETE)["run"]
    (folder / "received.log").unlink()

    fresh = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert out_json(folder) == list(range(10))
    assert received(folder) == list(range(10))  # from scratch, not restored
    runs = listed_runs(folder)
    assert [r["run"] for r in runs][0] == old_id
    assert [r["status"] for r in runs] == ["abandoned", "completed"]
    assert runs[1]["run"] != old_id

    # nothing is unfinished any more: a plain run is accepted
    plain = cli(folder, "run", "graph.yaml", "--snapshot-period", "1")
    assert plain.returncode == 0, plain.stderr
    assert [r["status"] for r in listed_runs(folder)] == ["abandoned", "completed", "completed"]


def test_resume_with_no_store_is_exit_2_and_creates_none(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "graph graph.yaml has no run to resume: there is no store at .snapgraph/snapshots.db" in proc.stderr
    assert "without --resume" in proc.stderr
    assert not (folder / "received.log").exists()
    assert not (folder / ".snapgraph").exists()


def test_resume_with_no_run_of_this_graph_is_exit_2_and_writes_nothing(folder: Path) -> None:
    (folder / "other.yaml").write_text((folder / "graph.yaml").read_text())
    assert cli(folder, "run", "other.yaml", "--snapshot-period", "1").returncode == 0
    store = folder / ".snapgraph" / "snapshots.db"
    before = store.read_bytes()
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "graph graph.yaml has no run in the store .snapgraph/snapshots.db to resume" in proc.stderr
    assert "without --resume" in proc.stderr
    assert store.read_bytes() == before
    assert len(listed_runs(folder)) == 1


# --------------------------------------------------------------------------------------
# bad input: exit 2
# --------------------------------------------------------------------------------------

def test_resume_without_snapshots_is_exit_2(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--resume")
    assert proc.returncode == 2
    assert "--resume needs snapshots" in proc.stderr
    assert not (folder / "received.log").exists()


def test_resume_and_fresh_together_is_exit_2(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--resume", "--fresh")
    assert proc.returncode == 2
    assert "--resume and --fresh exclude each other" in proc.stderr
    assert not (folder / "received.log").exists()
    assert not (folder / ".snapgraph").exists()


@pytest.mark.parametrize("period", ["0.5", "0", "-1", "86401"])
def test_snapshot_period_out_of_range_is_exit_2(folder: Path, period: str) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", period)
    assert proc.returncode == 2
    assert "--snapshot-period" in proc.stderr
    assert f"snapshot period {float(period):g}s is outside 1 s .. 86400 s (1 s to 24 h)" in proc.stderr
    assert not (folder / "received.log").exists()


@pytest.mark.parametrize("period", ["1", "86400"])
def test_snapshot_period_bounds_are_accepted(folder: Path, period: str) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", period, "--param", "count=2")
    assert proc.returncode == 0, proc.stderr
    assert out_json(folder) == [0, 1]


def test_graph_file_period_out_of_range_is_exit_2(folder: Path) -> None:
    write_files(folder, {"half.yaml": GRAPH + "snapshots: {period: 0.5}\n"})
    proc = cli(folder, "run", "half.yaml")
    assert proc.returncode == 2
    assert "half.yaml:" in proc.stderr
    assert "snapshot period 0.5s is outside 1 s .. 86400 s (1 s to 24 h)" in proc.stderr
    assert not (folder / "received.log").exists()
    # validate reports the same problem with the same words
    checked = cli(folder, "validate", "half.yaml")
    assert checked.returncode == 2
    assert "snapshot period 0.5s is outside 1 s .. 86400 s (1 s to 24 h)" in checked.stderr


@pytest.mark.parametrize("spec, message", [
    ("nonsense", "SNAPGRAPH_FAULTS: bad fault 'nonsense': expected point:process:nth[:raise|exit|kill]"),
    ("port_callback:sink:0", "SNAPGRAPH_FAULTS: bad fault 'port_callback:sink:0'"),
    ("port_callback:sink:1:boom", "SNAPGRAPH_FAULTS: bad fault action 'boom'"),
])
def test_bad_faults_variable_is_exit_2(folder: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                                       message: str) -> None:
    monkeypatch.setenv("SNAPGRAPH_FAULTS", spec)
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "received.log").exists()


def test_garbage_store_file_is_exit_2(folder: Path) -> None:
    (folder / "garbage.db").write_text("definitely not sqlite\n" * 100)
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", "garbage.db")
    assert proc.returncode == 2
    assert "garbage.db is not a snapgraph store (not an SQLite database" in proc.stderr
    assert "nothing was written to it" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "received.log").exists()
    listing = cli(folder, "snapshots", "list", "--store", "garbage.db")
    assert listing.returncode == 2
    assert "garbage.db is not a snapgraph store" in listing.stderr
    assert (folder / "garbage.db").read_text() == "definitely not sqlite\n" * 100


def test_truncated_store_file_is_exit_2(folder: Path) -> None:
    first = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", "cut.db")
    assert first.returncode == 0, first.stderr
    store = folder / "cut.db"
    data = store.read_bytes()
    assert len(data) >= 8192
    store.write_bytes(data[: len(data) // 2])
    (folder / "received.log").unlink()

    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", "cut.db")
    assert proc.returncode == 2
    assert "snapshot store cut.db is damaged" in proc.stderr
    assert "malformed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "received.log").exists()
    for command in (["list"], ["show", "x"], ["delete", "x"]):
        listing = cli(folder, "snapshots", *command, "--store", "cut.db")
        assert listing.returncode == 2, command
        assert "snapshot store cut.db is damaged" in listing.stderr


# --------------------------------------------------------------------------------------
# automatic recovery
# --------------------------------------------------------------------------------------

def test_retries_exhausted(folder: Path) -> None:
    proc = cli(folder, "run", "bad.yaml", "--snapshot-period", "1", "--max-retries", "2", "--retry-interval", "0")
    assert proc.returncode == 1
    err = proc.stderr
    failure = ("operator 'sink' failed in port callback of 'input': RuntimeError: sink cannot take 0 "
               f"(at {(folder / 'badsink.py').resolve()}:2)")
    assert f"snapgraph: maximum retries reached (2): {failure}" in err
    assert "attempt 1 failed" in err and "(failure counter 1/2)" in err
    assert "attempt 2 failed" in err and "(failure counter 2/2)" in err
    assert "attempt 3 failed" not in err
    assert "snapgraph: graph 'bad' failed after" in err and f"(3 attempts): {failure}" in err
    assert 'raise RuntimeError(f"sink cannot take {body.get()}")' in err
    assert re.search(r'File ".*badsink\.py", line 2, in on_input', err)
    [run] = listed_runs(folder)
    assert run["status"] == "failed"
    assert run["attempts"] == "3"


def test_without_max_retries_the_first_error_fails_the_run(folder: Path) -> None:
    proc = cli(folder, "run", "bad.yaml", "--snapshot-period", "1")
    assert proc.returncode == 1
    err = proc.stderr
    assert "snapgraph: graph 'bad' failed after" in err
    assert "operator 'sink' failed in port callback of 'input': RuntimeError: sink cannot take 0" in err
    assert "attempts)" not in err
    assert "recovering" not in err
    assert "maximum retries" not in err
    assert 'raise RuntimeError(f"sink cannot take {body.get()}")' in err
    [run] = listed_runs(folder)
    assert run["status"] == "failed"
    assert run["attempts"] == "1"


def test_max_retries_zero_fails_at_once(folder: Path) -> None:
    proc = cli(folder, "run", "bad.yaml", "--max-retries", "0", "--retry-interval", "0")
    assert proc.returncode == 1
    assert "maximum retries reached (0)" in proc.stderr
    assert "attempt 1 failed" not in proc.stderr
    assert "attempts)" not in proc.stderr
