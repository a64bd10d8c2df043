"""The real CLI on a PostgreSQL snapshot store: run, kill, resume, refusals and `snapshots` with ``--store URL``."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import test_cli_stops as stops
from test_cli_snapshots import FILES, KILL_IN_SINK, cli, received

from conftest import no_process_left, write_files

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def url() -> Iterator[str]:
    schema = f"cli_{uuid.uuid4().hex[:10]}"
    yield f"{SERVER}?schema={schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, FILES)
    return tmp_path


def schema_exists(url: str) -> bool:
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(SERVER, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (schema,)).fetchone() is not None


def listed(folder: Path, url: str) -> list[list[str]]:
    proc = cli(folder, "snapshots", "list", "--store", url)
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines()[1:]]


def test_kill_then_resume_on_a_postgresql_store(folder: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPGRAPH_FAULTS", KILL_IN_SINK)
    killed = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--param", "hold=3", "--store", url)
    monkeypatch.delenv("SNAPGRAPH_FAULTS")
    assert killed.returncode == 137, killed.stderr
    assert received(folder) == [0, 1, 2, 3]
    assert not (folder / ".snapgraph").exists()  # nothing went to the default SQLite store
    [[run_id, graph, status, attempts, epochs, _]] = listed(folder, url)
    assert (graph, status, attempts, epochs) == ("counter", "unfinished", "1", "1")

    refused = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", url)
    assert refused.returncode == 2 and "--resume" in refused.stderr and run_id in refused.stderr

    resumed = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--resume", "--store", url)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stderr
    assert json.loads((folder / "out.json").read_text()) == list(range(10))
    [[same, _, status, attempts, _, _]] = listed(folder, url)
    assert (same, status, attempts) == (run_id, "completed", "2")

    shown = cli(folder, "snapshots", "show", run_id, "--store", url)
    assert shown.returncode == 0 and f"run {run_id}: graph counter" in shown.stdout and "epoch " in shown.stdout
    deleted = cli(folder, "snapshots", "delete", run_id, "--store", url)
    assert deleted.returncode == 0, deleted.stderr
    assert cli(folder, "snapshots", "list", "--store", url).stdout.strip() == "no runs"


def test_resume_without_a_store_refuses_and_creates_nothing(folder: Path, url: str) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--resume", "--store", url)
    assert proc.returncode == 2
    assert "has no run to resume: there is no store at" in proc.stderr
    assert not schema_exists(url)
    listing = cli(folder, "snapshots", "list", "--store", url)
    assert listing.returncode == 2 and "no snapshot store at" in listing.stderr
    assert not schema_exists(url)


def test_a_schema_that_is_not_ours_is_refused(folder: Path, url: str) -> None:
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (id integer)")
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store", url)
    assert proc.returncode == 2
    assert "is not a snapgraph store" in proc.stderr and "nothing was written" in proc.stderr
    assert not (folder / "out.json").exists()


def test_an_unreachable_server_is_a_clear_error(folder: Path) -> None:
    proc = cli(folder, "run", "graph.yaml", "--snapshot-period", "1", "--store",
               "postgresql://postgres:hunter2@127.0.0.1:1/test")
    assert proc.returncode == 2
    assert "cannot be reached" in proc.stderr and "hunter2" not in proc.stderr


# --------------------------------------------------------------------------------------
# the ordinary ways of stopping, on the PostgreSQL store (the stream graph of test_cli_stops)
# --------------------------------------------------------------------------------------

@pytest.fixture
def stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"graph.yaml": stops.GRAPH, "gen.py": stops.GEN, "sink.py": stops.SINK})
    return tmp_path


@pytest.mark.parametrize("mode", stops.MODES)
@pytest.mark.parametrize("to_group", [False, True], ids=["engine", "process-group"])
def test_a_signal_stops_and_resume_continues_exactly_once_on_postgresql(stream: Path, url: str, mode: list[str],
                                                                       to_group: bool) -> None:
    rng = random.Random(f"pg{mode}{to_group}")
    for round_ in range(3):
        (stream / "out.json").unlink(missing_ok=True)
        engine = stops.start(stream, "--fresh", "--store", url, *mode)
        stops.wait_running(stream, engine)
        time.sleep(rng.uniform(0.0, 0.6))
        if to_group:
            os.killpg(engine.pid, signal.SIGTERM)
        else:
            engine.send_signal(signal.SIGTERM)
        code, err = stops.finish(engine)
        assert code == 0 and "graph 'stream' stopped after" in err and "final epoch" in err, err
        stopped_at = stops.out(stream)
        assert stopped_at == list(range(len(stopped_at))) and len(stopped_at) < stops.COUNT, round_
        no_process_left(stream)
        refused = cli(stream, "run", "graph.yaml", "--store", url, *mode)
        assert refused.returncode == 2 and "a stopped run" in refused.stderr, refused.stderr
        stops.resume_to_the_end(stream, "--store", url, *mode)
        no_process_left(stream)
    assert not (stream / ".snapgraph").exists()


@pytest.mark.parametrize("mode", stops.MODES)
def test_a_second_signal_and_a_second_engine_on_postgresql(stream: Path, url: str, mode: list[str]) -> None:
    engine = stops.start(stream, "--param", "count=1500", "--store", url, *mode)
    stops.wait_running(stream, engine)
    second = cli(stream, "run", "graph.yaml", "--store", url, *mode)
    assert second.returncode == 2 and f"is being run by another engine (pid {engine.pid} on host" in second.stderr
    engine.send_signal(signal.SIGINT)
    time.sleep(0.01)
    engine.send_signal(signal.SIGINT)
    code, err = stops.finish(engine)
    assert code in (0, 130), err
    no_process_left(stream)
    [[_, _, status, _, _, _]] = listed(stream, url)
    # a clean stop if the drain ended before the second signal was read; forced: the run stays unfinished
    assert status == ("stopped" if code == 0 else "unfinished"), (code, status)
    stops.resume_to_the_end(stream, "--param", "count=1500", "--store", url, *mode, count=1500)


@pytest.mark.parametrize("mode", stops.MODES)
def test_the_lease_of_a_killed_engine_is_taken_over_on_postgresql(stream: Path, url: str, mode: list[str]) -> None:
    engine = stops.start(stream, "--param", "count=1000", "--store", url, *mode)
    stops.wait_running(stream, engine)
    time.sleep(1.3)  # at least one complete epoch
    os.killpg(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=30)
    no_process_left(stream)
    [[_, _, status, _, _, _]] = listed(stream, url)
    assert status == "unfinished"
    assert 0 < len(stops.out(stream)) < 1000
    stops.resume_to_the_end(stream, "--param", "count=1000", "--store", url, *mode, count=1000)
