"""``snapgraph chaos`` end to end: it finds the duplicates of a plain INSERT writer and replays the failing
schedule, passes the seed's WAL and UPSERT graphs, leaves the user's files as they were, and refuses bad
input with exit 2."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import no_process_left
from tests.chaos.graphs import write_sql_copy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextlib.contextmanager
def temporary_folder_in(folder: Path) -> Iterator[str]:
    """A TMPDIR that is ``folder`` under a short name (a symlink beside the machine's /tmp): the fork server
    keeps its socket under TMPDIR, and an AF_UNIX path may not exceed 107 bytes (pytest-xdist's folders are
    deep)."""
    link = Path(tempfile.gettempdir()) / f"sg-{uuid.uuid4().hex[:8]}"
    link.symlink_to(folder)
    try:
        yield str(link)
    finally:
        link.unlink()


def chaos(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real command line; its work folders under ``cwd`` (TMPDIR), not in the machine's /tmp."""
    with temporary_folder_in(cwd) as tmpdir:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=tmpdir)
        return subprocess.run([sys.executable, "-m", "snapgraph", "chaos", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, env=env)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_the_duplicates_of_a_plain_insert_writer_are_found_and_replayed(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path / "user", rows=1500)
    found = chaos("graph.yaml", "-c", "connections.yaml", "--setup", copy.setup, "--check", copy.check,
                  "--schedules", "2", "--seed", "4", cwd=copy.folder)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "schedules: 2, passed 0, failed 2" in found.stdout, found.stdout
    assert "result differs from the failure-free run: --check: output differs at line 1" in found.stdout
    reproduce = [line.split("reproduce: ", 1)[1] for line in found.stdout.splitlines() if "reproduce: " in line]
    assert reproduce[1].startswith("snapgraph chaos graph.yaml --seed 5 --schedules 1 --setup ")
    assert f"--connections {copy.connections}" in reproduce[1]
    again = chaos(*shlex.split(reproduce[1])[2:], cwd=copy.folder)
    assert again.returncode == 1 and "schedules: 1, passed 0, failed 1" in again.stdout, again.stdout
    assert "[1/1] seed 5: sigkill-engine(engine,work@0.42) -> double-signal(SIGTERM->engine,work@0.48)" in again.stdout


def test_compare_sinks_finds_them_too(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path / "user", rows=1500)
    found = chaos("graph.yaml", "-c", "connections.yaml", "--setup", copy.setup, "--compare-sinks",
                  "--schedules", "1", "--seed", "5", cwd=copy.folder)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "comparing what reached the writers (writer.input plain)" in found.stdout
    assert "writer writer.input (plain): " in found.stdout and "delivered again after a replay" in found.stdout


@pytest.fixture
def seed_examples(tmp_path: Path) -> Path:
    """The seed's examples in a folder of their own (their SQLite file under it: demo-data/demo.db)."""
    folder = tmp_path / "work"
    shutil.copytree(EXAMPLES, folder / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _seed_commands(rows: int, table: str) -> list[str]:
    connections = "examples/connections-sqlite.yaml"
    return ["-c", connections,
            "--setup", f"{sys.executable} examples/seed_setup.py --connections {connections} --rows {rows}",
            "--check", f"{sys.executable} examples/seed_check.py {table} --connections {connections}"]


def test_the_seeds_wal_graph_passes(seed_examples: Path) -> None:
    before = _digest(seed_examples / "examples")
    done = chaos("examples/seed_wal.yaml", *_seed_commands(15000, "test2"), "--point", "between_write_and_wal",
                 "--schedules", "3", "--progress", cwd=seed_examples)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "schedules: 3, passed 3, failed 0" in done.stdout
    assert "EXACTLY ONCE" not in done.stdout  # the check's output is compared, not shown
    assert "schedule" in done.stderr, "the progress bar"
    assert _digest(seed_examples / "examples") == before
    assert [p.name for p in seed_examples.iterdir() if p.name.startswith("snapgraph-chaos-")] == [], \
        "the work folders of passed runs go"


def test_the_seeds_upsert_graph_passes_by_its_sinks(seed_examples: Path) -> None:
    before = _digest(seed_examples / "examples")
    setup = _seed_commands(5000, "target")[:4]
    done = chaos("examples/seed_upsert.yaml", *setup, "--compare-sinks", "--schedules", "3", "--seed", "20",
                 cwd=seed_examples)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "comparing what reached the writers (writer.input idempotent)" in done.stdout
    assert "schedules: 3, passed 3, failed 0" in done.stdout
    assert _digest(seed_examples / "examples") == before, "the hidden taped copy went"


def test_bad_input_is_refused_with_exit_2(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path / "user", rows=100, delay=0.0)
    base = ("graph.yaml", "-c", "connections.yaml", "--setup", copy.setup)
    both = chaos(*base, "--check", "true", "--compare-sinks", cwd=copy.folder)
    assert both.returncode == 2 and "--check and --compare-sinks exclude each other" in both.stderr
    (copy.folder / "plain.yaml").write_text(copy.graph.read_text().replace("snapshots:\n  period: 1\n", ""))
    no_snapshots = chaos("plain.yaml", *base[1:], cwd=copy.folder)
    assert no_snapshots.returncode == 2
    assert "plain.yaml takes no snapshots; give --snapshot-period" in no_snapshots.stderr
    failing_setup = chaos(*base[:3], "--setup", "exit 3", cwd=copy.folder)
    assert failing_setup.returncode == 2
    assert "chaos: --setup 'exit 3' failed (exit 3) before the failure-free run" in failing_setup.stderr
    di_graph = Path(__file__).resolve().parents[1] / "model" / "fixtures" / "di_graph"
    json_sinks = chaos(str(di_graph / "graph.json"), "--operators", str(di_graph / "operators"),
                       "--snapshot-period", "1", "--compare-sinks", cwd=copy.folder)
    assert json_sinks.returncode == 2, json_sinks.stderr
    assert "graph.json: --compare-sinks: the graph has no writer with a connected input" in json_sinks.stderr
    (copy.folder / "bad.yaml").write_text("name: bad\noperators: {a: {}}\n")
    invalid = chaos("bad.yaml", cwd=copy.folder)
    assert invalid.returncode == 2 and "bad.yaml: 1 problem(s)" in invalid.stderr
    (copy.folder / "broken.py").write_text("raise RuntimeError('broken at load')\n")
    (copy.folder / "broken.yaml").write_text(copy.graph.read_text().replace("pace.py", "broken.py"))
    broken = chaos("broken.yaml", *base[1:], cwd=copy.folder)
    assert broken.returncode == 2 and "the failure-free run did not complete (exit 1)" in broken.stderr
    assert "broken at load" in broken.stderr
    assert sorted(p.name for p in copy.folder.iterdir() if p.name.startswith((".", "snapgraph-chaos"))) == []


def test_an_interrupted_chaos_kills_its_engine_and_reports(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) to chaos: the engine running then is in a session of its own and gets nothing, so
    chaos kills it; the schedules done are reported and the work folder is kept (exit 130)."""
    copy = write_sql_copy(tmp_path / "user", rows=3000, delay=0.02)
    with temporary_folder_in(tmp_path) as tmpdir:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=tmpdir)
        proc = subprocess.Popen([sys.executable, "-m", "snapgraph", "chaos", "graph.yaml", "-c", "connections.yaml",
                                 "--setup", copy.setup, "--check", copy.check, "--schedules", "2"],
                                cwd=copy.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("snapgraph-chaos-*/reference/run.err")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the failure-free run is under way
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "interrupted after 0 of 2 schedules; work folder kept: " in out
        assert "schedules: 0, passed 0, failed 0" in out
    no_process_left(copy.folder)
    assert [p.name for p in copy.folder.iterdir() if p.name.startswith(".")] == []
