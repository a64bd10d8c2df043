"""One engine run as a subprocess: exit codes, signals, faults in its environment, a hang, what it leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapgraph.chaos.engine import EngineRun, collect_left_behind, loaded_operators, tail
from tests.chaos.graphs import SqlCopy, write_sql_copy


def _run(copy: SqlCopy, label: str = "run", *extra: str, faults: str | None = None) -> EngineRun:
    subprocess.run(copy.setup, shell=True, cwd=copy.folder, check=True)
    events = copy.folder / f"{label}.jsonl"
    args = [sys.executable, "-m", "snapgraph", "run", str(copy.graph), "--connections", str(copy.connections),
            "--store", str(copy.folder / "store.db"), "--events", str(events), *extra]
    return EngineRun(label, args, cwd=copy.folder, folder=copy.folder, stderr_path=copy.folder / f"{label}.err",
                     stdout_path=copy.folder / "stdout.log", faults=faults).start()


def test_a_run_completes_and_its_event_log_says_when_operators_loaded(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=200, delay=0.0)
    run = _run(copy)
    assert run.wait_until_loaded(tmp_path / "run.jsonl", 3) or not run.running()
    result = run.wait()
    assert result.completed and not result.stopped and result.returncode == 0, result.stderr
    assert loaded_operators(tmp_path / "run.jsonl") == 3
    assert result.left == [] and result.sent == [] and result.slow_stop is None
    assert loaded_operators(tmp_path / "missing.jsonl") == 0


def test_a_signal_stops_the_run_and_is_recorded(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=1500)
    run = _run(copy)
    assert run.wait_until_loaded(tmp_path / "run.jsonl", 3)
    assert run.sleep_while_running(0.3)
    assert run.send(signal.SIGTERM, whole_group=True)
    result = run.wait()
    assert result.stopped and "SIGTERM received" in result.stderr, result.stderr
    assert len(result.sent) == 1 and 0 < result.sent[0] < result.seconds
    assert not run.send(signal.SIGTERM, whole_group=False), "an ended engine is not signalled"


def test_the_faults_go_to_the_engine_and_no_other_plan_leaks_in(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPGRAPH_FAULTS", "port_callback:writer:1:raise")  # ours must not reach the run
    copy = write_sql_copy(tmp_path, rows=100, delay=0.0)
    quiet = _run(copy, "quiet").wait()
    assert quiet.completed and not quiet.fault_fired, quiet.stderr
    killed = _run(copy, "killed", faults="port_callback:writer:3:kill").wait()
    assert killed.killed_by_fault and killed.fault_fired and "engine killed at port_callback" in killed.stderr


def test_a_run_past_its_time_is_killed_with_its_process_group(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=3000, delay=0.02)
    run = _run(copy)
    result = run.wait(timeout=1.5)
    assert result.returncode is None and 1.0 < result.seconds < 10
    assert result.left == [], "the whole process group went"


def test_processes_left_behind_are_found_and_killed(tmp_path: Path) -> None:
    stray = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        began = time.monotonic()
        left = collect_left_behind({stray.pid}, tmp_path, grace=0.3)
        assert [pid for pid, _ in left] == [stray.pid] and "sleep 30" in left[0][1]
        assert time.monotonic() - began >= 0.3
        assert stray.wait(timeout=5) == -signal.SIGKILL
        assert collect_left_behind({stray.pid}, tmp_path, grace=0.1) == []
    finally:
        if stray.poll() is None:
            os.kill(stray.pid, signal.SIGKILL)


def test_tail_keeps_the_last_lines_on_one_line() -> None:
    assert tail("a\n\nb\nc\nd\ne\n", 3) == "c | d | e"
    assert tail("") == ""
