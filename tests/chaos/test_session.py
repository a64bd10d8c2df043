"""One snapgraph chaos invocation: the lines on standard output, the progress bar, the exit code."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest

from snapgraph.chaos.compare import CheckCommand
from snapgraph.chaos.runner import ChaosConfig
from snapgraph.chaos.session import EXIT_FAILED, EXIT_PASSED, run_chaos
from tests.chaos.graphs import write_sql_copy


@pytest.mark.parametrize(("mode", "expected"), [("upsert", EXIT_PASSED), ("append", EXIT_FAILED)])
def test_a_session_prints_its_schedules_and_exits_by_the_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 mode: str, expected: int) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the work folders: kept for a failure, in tmp_path
    copy = write_sql_copy(tmp_path / "user", mode=mode, rows=1500)
    config = ChaosConfig(copy.graph, ("--connections", str(copy.connections)), ("reader", "pace", "writer"), True,
                         schedules=1, seed=5, comparison=CheckCommand(copy.check, copy.folder), setup=copy.setup,
                         cwd=copy.folder, reproduce=lambda seed: f"again {seed}")
    out, err = io.StringIO(), io.StringIO()
    assert run_chaos(config, out, err, progress=True) == expected
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("failure-free run: completed in ")
    assert lines[1].startswith("[1/1] seed 5: sigkill-engine(engine,work@0.42)")
    assert "schedule 5 (1/1)" in err.getvalue() or "done" in err.getvalue(), "the progress bar"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("snapgraph-chaos-")]
    if expected == EXIT_PASSED:
        assert lines[2:] == ["schedules: 1, passed 1, failed 0", lines[3], lines[4]] and kept == []
        assert lines[4].startswith("schedules with faults: ")
    else:
        assert "  reproduce: again 5" in lines and len(kept) == 1
        assert (kept[0] / "schedule-5").is_dir() and (kept[0] / "reference").is_dir()
