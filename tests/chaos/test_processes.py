"""The processes of an engine run, from /proc: its group processes, and those left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from snapgraph.chaos.engine import EngineRun
from snapgraph.chaos.processes import children, group_processes, left_behind
from tests.chaos.graphs import write_sql_copy


def test_the_group_processes_of_a_running_engine(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=1500)
    subprocess.run(copy.setup, shell=True, cwd=tmp_path, check=True)
    args = [sys.executable, "-m", "snapgraph", "run", str(copy.graph), "-c", str(copy.connections),
            "--store", str(tmp_path / "store.db"), "--events", str(tmp_path / "events.jsonl")]
    run = EngineRun("run", args, cwd=tmp_path, folder=tmp_path, stderr_path=tmp_path / "err",
                    stdout_path=tmp_path / "out").start()
    try:
        assert run.wait_until_loaded(tmp_path / "events.jsonl", 3)
        groups = group_processes(run.pid)
        assert len(groups) == 2, groups  # the source and the sink group
        assert set(groups) <= {pid for pid, _ in left_behind({run.pid}, tmp_path)}, "of the engine's session"
    finally:
        run.send(signal.SIGTERM, whole_group=False)
        result = run.wait()
    assert result.stopped and result.left == [], "the group processes went with the engine"


def test_a_process_naming_the_folder_counts_as_left_behind(tmp_path: Path) -> None:
    stray = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        assert stray.pid in children(os.getpid())
        assert [pid for pid, _ in left_behind(set(), tmp_path)] == [stray.pid]  # by its working directory
        assert left_behind(set(), tmp_path / "elsewhere") == []
    finally:
        stray.kill()
        stray.wait()
    assert left_behind(set(), tmp_path) == []
