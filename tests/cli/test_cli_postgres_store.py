"""The real CLI on a PostgreSQL snapshot store: run, kill, resume, refusals and `snapshots` with ``--store URL``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_cli_snapshots import FILES, KILL_IN_SINK, cli, received

from conftest import write_files

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
