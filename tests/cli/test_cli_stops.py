"""Stopping and starting a graph the ordinary ways: signals, a second signal, two engines, kill -9.

Every case drives the real ``snapgraph`` command line on a streaming graph whose
sink publishes its state (everything it has seen) in ``epoch_complete``; after
the last resume that output must be every item exactly once. Signal paths are
timing-dependent, so each runs several times with seeded random delays.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import no_process_left, snapgraph_cli, write_files

COUNT = 300  # items the generator emits in all, one every TICK seconds
TICK = 0.004

GRAPH = f"""
name: stream
parameters: {{count: {COUNT}}}
operators:
  gen:
    group: source
    script: gen.py
    outputs: {{output: int64}}
    config: {{count: "${{count}}"}}
  sink:
    group: sink
    script: sink.py
    inputs: {{input: int64}}
connections:
  - gen.output -> sink.input
snapshots: {{period: 1}}
"""

GEN = f"""
import pickle

offset = 0

api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={{'output': api.OutportInfo(is_generator=True)}}))

def tick():
    global offset
    if offset >= api.config.count:
        return -1
    api.outputs.output.publish(offset)
    offset += 1
    return {TICK}

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))

def restore(epoch, state_bytes):
    global offset
    offset = pickle.loads(state_bytes)

api.set_restore_callback(restore)
"""

SINK = """
import json
import os
import pickle

seen = []

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def on_input(msg_id, header, body):
    seen.append(body.get())
    if len(seen) == 1:
        open("running", "w").close()

api.set_port_callback("input", on_input)
api.set_serialize_callback(lambda epoch: pickle.dumps(seen))

def restore(epoch, state_bytes):
    global seen
    seen = pickle.loads(state_bytes)

def complete(epoch):
    with open("out.json.tmp", "w") as f:
        json.dump(seen, f)
    os.replace("out.json.tmp", "out.json")

api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": SINK})
    return tmp_path


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    """The engine in a session of its own (so the whole process group can be signalled)."""
    (folder / "running").unlink(missing_ok=True)
    return subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml", *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def wait_running(folder: Path, engine: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (folder / "running").exists():
        assert engine.poll() is None, engine.communicate()[1]
        assert time.monotonic() < deadline, "the graph never started"
        time.sleep(0.01)


def finish(engine: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = engine.communicate(timeout=60)
    return engine.returncode, err


def out(folder: Path) -> list[int]:
    path = folder / "out.json"
    return json.loads(path.read_text()) if path.exists() else []


def resume_to_the_end(folder: Path, *args: str, count: int = COUNT) -> None:
    proc = snapgraph_cli("run", "graph.yaml", "--resume", *args, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "graph 'stream' completed" in proc.stderr, proc.stderr
    assert out(folder) == list(range(count)), "not every item exactly once"


MODES = [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("to_group", [False, True], ids=["engine", "process-group"])
def test_a_signal_stops_gracefully_and_resume_continues_exactly_once(
        folder: Path, mode: list[str], signum: int, to_group: bool) -> None:
    rng = random.Random(f"{mode}{signum}{to_group}")
    for round_ in range(3):
        (folder / "out.json").unlink(missing_ok=True)
        engine = start(folder, "--fresh", *mode)
        wait_running(folder, engine)
        time.sleep(rng.uniform(0.0, 0.6))
        if to_group:
            os.killpg(engine.pid, signum)
        else:
            engine.send_signal(signum)
        code, err = finish(engine)
        assert code == 0, err
        name = signal.Signals(signum).name
        assert "graph 'stream' stopped after" in err and f"{name} received" in err, err
        assert "final epoch" in err and "resume with --resume" in err
        stopped_at = out(folder)
        assert stopped_at == list(range(len(stopped_at))), "the final epoch's output is a prefix"
        assert len(stopped_at) < COUNT, f"round {round_}: the graph finished before the signal"
        no_process_left(folder)
        refused = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder)
        assert refused.returncode == 2 and "a stopped run" in refused.stderr, refused.stderr
        assert "--resume" in refused.stderr and "--fresh" in refused.stderr
        assert out(folder) == stopped_at  # the refusal ran nothing
        resume_to_the_end(folder, *mode)
        no_process_left(folder)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_forces_the_stop_and_the_run_stays_resumable(
        folder: Path, mode: list[str], signum: int) -> None:
    rng = random.Random(f"second{mode}{signum}")
    for _ in range(2):
        (folder / "out.json").unlink(missing_ok=True)
        engine = start(folder, "--fresh", *mode)
        wait_running(folder, engine)
        time.sleep(rng.uniform(0.0, 0.4))
        engine.send_signal(signum)
        time.sleep(0.01)
        engine.send_signal(signum)
        code, err = finish(engine)
        if code == 0:  # the drain ended before the second signal was read: still a clean stop
            assert "stopped after" in err, err
        else:
            assert code == 128 + signum, err
            assert f"second signal ({signal.Signals(signum).name}): stopping at once" in err
        no_process_left(folder)
        resume_to_the_end(folder, *mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_second_engine_on_the_same_graph_is_refused(folder: Path, mode: list[str]) -> None:
    engine = start(folder, "--param", "count=100000", *mode)
    wait_running(folder, engine)
    for flags in ([], ["--resume"], ["--fresh"]):
        second = snapgraph_cli("run", "graph.yaml", *flags, *mode, cwd=folder)
        assert second.returncode == 2, second.stderr
        assert f"is being run by another engine (pid {engine.pid} on host" in second.stderr, second.stderr
    listing = snapgraph_cli("snapshots", "list", cwd=folder)
    assert [line.split()[2] for line in listing.stdout.splitlines()[1:]] == ["running"]
    engine.send_signal(signal.SIGINT)
    code, err = finish(engine)
    assert code == 0, err
    listing = snapgraph_cli("snapshots", "list", cwd=folder)
    assert [line.split()[2] for line in listing.stdout.splitlines()[1:]] == ["stopped"]  # one run only


@pytest.mark.parametrize("mode", MODES)
def test_the_lease_of_a_killed_engine_is_taken_over_by_resume(folder: Path, mode: list[str]) -> None:
    engine = start(folder, "--param", "count=1000", *mode)
    wait_running(folder, engine)
    time.sleep(1.3)  # at least one complete epoch
    os.killpg(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=30)
    no_process_left(folder)
    listing = snapgraph_cli("snapshots", "list", cwd=folder)
    assert [line.split()[2] for line in listing.stdout.splitlines()[1:]] == ["unfinished"]
    assert 0 < len(out(folder)) < 1000
    resume_to_the_end(folder, "--param", "count=1000", *mode, count=1000)


def test_resume_after_a_completed_run_only_processes_new_source_items(folder: Path) -> None:
    first = snapgraph_cli("run", "graph.yaml", "--param", "count=50", cwd=folder)
    assert first.returncode == 0, first.stderr
    assert out(folder) == list(range(50))
    # the source grew: the generator continues from its saved offset
    more = snapgraph_cli("run", "graph.yaml", "--param", "count=80", "--resume", cwd=folder)
    assert more.returncode == 0, more.stderr
    assert "resuming run" in more.stderr and "(completed)" in more.stderr
    assert out(folder) == list(range(80))
    listing = snapgraph_cli("snapshots", "list", cwd=folder)
    assert len(listing.stdout.splitlines()) == 2  # still one run


def test_a_damaged_newest_epoch_is_refused_until_the_older_one_is_accepted(folder: Path) -> None:
    first = snapgraph_cli("run", "graph.yaml", "--param", "count=400", "--in-process", cwd=folder)
    assert first.returncode == 0, first.stderr
    store = folder / ".snapgraph" / "snapshots.db"
    db = sqlite3.connect(store)
    with db:
        epochs = [e for (e,) in db.execute("SELECT epoch FROM epochs ORDER BY epoch")]
        assert len(epochs) >= 2, "needs an older epoch to fall back to"
        for table in ("states", "states_mirror"):  # both copies of the sink's newest state
            db.execute(f"UPDATE {table} SET data = CAST('garbage' AS BLOB) WHERE epoch = ? AND process = 'sink'",
                       (epochs[-1],))
    db.close()  # the last connection checkpoints: the damage is in the main file now
    damaged = store.read_bytes()
    before = out(folder)

    refused = snapgraph_cli("run", "graph.yaml", "--param", "count=400", "--resume", cwd=folder)
    assert refused.returncode == 2, refused.stderr
    assert f"the newest complete epoch {epochs[-1]}" in refused.stderr
    assert "the state of operator 'sink' fails its checksum in both copies" in refused.stderr
    assert "--accept-older-epoch" in refused.stderr and "at-least-once" in refused.stderr
    assert store.read_bytes() == damaged and out(folder) == before  # nothing written, nothing ran

    accepted = snapgraph_cli("run", "graph.yaml", "--param", "count=400", "--resume", "--accept-older-epoch",
                             cwd=folder)
    assert accepted.returncode == 0, accepted.stderr
    assert f"restoring the older epoch {epochs[-2]}" in accepted.stderr
    assert out(folder) == list(range(400))


def test_a_refused_resume_leaves_the_store_and_its_wal_file_byte_for_byte(folder: Path) -> None:
    """The damage sits in the -wal file (its writer died before a checkpoint): refusing must not fold it in."""
    first = snapgraph_cli("run", "graph.yaml", "--param", "count=400", "--in-process", cwd=folder)
    assert first.returncode == 0, first.stderr
    store = folder / ".snapgraph" / "snapshots.db"
    damage = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "newest = db.execute('SELECT max(epoch) FROM epochs').fetchone()[0]\n"
        "for table in ('states', 'states_mirror'):\n"
        "    db.execute(f\"UPDATE {table} SET data = CAST('garbage' AS BLOB) WHERE epoch = ? AND process = 'sink'\","
        " (newest,))\n"
        "os._exit(0)  # no close, no checkpoint: the damage stays in the -wal file\n")
    subprocess.run([sys.executable, "-c", damage, str(store)], check=True)
    wal = Path(f"{store}-wal")
    assert wal.stat().st_size > 0, "the damage should be in the -wal file"
    before = (store.read_bytes(), wal.read_bytes())
    for _ in range(2):
        refused = snapgraph_cli("run", "graph.yaml", "--param", "count=400", "--resume", cwd=folder)
        assert refused.returncode == 2, refused.stderr
        assert "fails its checksum in both copies" in refused.stderr
        assert (store.read_bytes(), wal.read_bytes()) == before
    listing = snapgraph_cli("snapshots", "list", cwd=folder)
    assert listing.returncode == 0, listing.stderr
    assert (store.read_bytes(), wal.read_bytes()) == before


BIG_SINK = SINK.replace("api.set_serialize_callback(lambda epoch: pickle.dumps(seen))",
                        "api.set_serialize_callback(lambda epoch: pickle.dumps(seen) + b' ' * (3000 * len(seen)))")
BIG_SINK = BIG_SINK.replace("    seen = pickle.loads(state_bytes)", "    seen = pickle.loads(state_bytes.rstrip(b' '))")


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs for the store (the tests run as root, in CI too)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_run_and_resume_continues_once_space_is_freed(folder: Path, small_disk: Path) -> None:
    write_files(folder, {"sink.py": BIG_SINK})
    store = str(small_disk / "snapshots.db")
    full = snapgraph_cli("run", "graph.yaml", "--store", store, "--max-retries", "1", "--retry-interval", "0",
                         cwd=folder)
    assert full.returncode == 1, full.stderr
    assert "database or disk is full" in full.stderr, full.stderr
    runs = snapgraph_cli("snapshots", "list", "--store", store, cwd=folder).stdout.splitlines()[1:]
    statuses = [r.split()[2] for r in runs]
    # The run's end is recorded as failed, unless the full disk refused that write too: then the run
    # stays unfinished (resumable all the same), and the engine said why.
    assert statuses == ["failed"] or (statuses == ["unfinished"] and "could not record the end of run"
                                      in full.stderr), (statuses, full.stderr)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resume_to_the_end(folder, "--store", store)


SABOTEUR_SINK = SINK.replace('''def on_input(msg_id, header, body):
    seen.append(body.get())''', '''import sqlite3

def on_input(msg_id, header, body):
    if body.get() == 700 and not os.path.exists("sabotaged"):
        # damage both copies of the generator's state in the newest complete epoch, then fail
        open("sabotaged", "w").close()
        db = sqlite3.connect(".snapgraph/snapshots.db", timeout=10)
        (newest,) = db.execute("SELECT max(epoch) FROM epochs").fetchone()
        for table in ("states", "states_mirror"):
            db.execute(f"UPDATE {table} SET data = CAST('x' AS BLOB) WHERE epoch = ? AND process = 'gen'",
                       (newest,))
        db.commit()
        db.close()
        raise RuntimeError("sabotage done")
    seen.append(body.get())''')


@pytest.mark.parametrize("mode", MODES)
def test_damage_met_while_recovering_refuses_instead_of_falling_back(folder: Path, mode: list[str]) -> None:
    write_files(folder, {"sink.py": SABOTEUR_SINK})
    run = ["run", "graph.yaml", "--param", "count=1000", *mode]
    refused = snapgraph_cli(*run, "--max-retries", "3", "--retry-interval", "0", cwd=folder)
    assert (folder / "sabotaged").exists()
    assert refused.returncode == 2, refused.stderr
    assert "sabotage done" in refused.stderr
    assert "the state of operator 'gen' fails its checksum in both copies" in refused.stderr
    assert "recovery refused" in refused.stderr
    again = snapgraph_cli(*run, "--resume", cwd=folder)
    assert again.returncode == 2 and "--accept-older-epoch" in again.stderr, again.stderr
    resume_to_the_end(folder, "--param", "count=1000", "--accept-older-epoch", *mode, count=1000)


FAILING_DRAIN_SINK = SINK.replace('''def complete(epoch):''', '''def complete(epoch):
    if os.path.exists("stop-requested") and not os.path.exists("drain-failed"):
        open("drain-failed", "w").close()  # once, after the test asked for the stop
        raise RuntimeError("the writer's commit failed while draining")''')


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("retries", ["0", "2"])
def test_a_failure_while_stopping_counts_as_a_failure_and_the_run_stays_resumable(
        folder: Path, mode: list[str], retries: str) -> None:
    write_files(folder, {"sink.py": FAILING_DRAIN_SINK})
    engine = start(folder, "--param", "count=1000", "--max-retries", retries, "--retry-interval", "0", *mode)
    wait_running(folder, engine)
    (folder / "stop-requested").touch()
    engine.send_signal(signal.SIGINT)
    code, err = finish(engine)
    assert (folder / "drain-failed").exists(), err
    runs = snapgraph_cli("snapshots", "list", cwd=folder).stdout.splitlines()[1:]
    if retries == "0":  # no retry left: the run failed
        assert code == 1, err
        assert [r.split()[2] for r in runs] == ["failed"]
    else:  # retries left: the stop wins, the run is stopped
        assert code == 0, err
        assert "the attempt failed while stopping" in err
        assert [r.split()[2] for r in runs] == ["stopped"]
    resume_to_the_end(folder, "--param", "count=1000", *mode, count=1000)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("retries", ["0", "2"], ids=["no-retries", "retries-left"])
def test_a_fault_injected_at_the_drain_step_is_a_failure_of_the_attempt(
        folder: Path, mode: list[str], retries: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol step "drain" (the graph begins to drain after a stop) as a crash-injection point."""
    monkeypatch.setenv("SNAPGRAPH_FAULTS", "drain:sink:1:raise")
    engine = start(folder, "--param", "count=1000", "--max-retries", retries, "--retry-interval", "0", *mode)
    wait_running(folder, engine)
    time.sleep(0.3)
    engine.send_signal(signal.SIGTERM)
    code, err = finish(engine)
    assert "injected fault at drain of 'sink'" in err, err  # the fault fired
    runs = snapgraph_cli("snapshots", "list", cwd=folder).stdout.splitlines()[1:]
    if retries == "0":
        assert code == 1, err
        assert [r.split()[2] for r in runs] == ["failed"]
    else:
        assert code == 0, err
        assert "the attempt failed while stopping" in err
        assert [r.split()[2] for r in runs] == ["stopped"]
    monkeypatch.delenv("SNAPGRAPH_FAULTS")
    resume_to_the_end(folder, "--param", "count=1000", *mode, count=1000)
