"""The comparisons with the failure-free run: a check command's exit code and output, or the writers' taps."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapgraph.chaos.compare import CheckCommand, CommandFailed, CommandOutput, SinkComparison, run_command
from snapgraph.chaos.recorder import RecorderError, Tap
from snapgraph.model.delivery import WriterKind


def test_a_check_command_is_its_exit_code_and_output(tmp_path: Path) -> None:
    (tmp_path / "count.txt").write_text("3\n")
    check = CheckCommand("cat count.txt; exit 0", tmp_path)
    reference = check.observe(tmp_path)
    assert reference == CommandOutput(0, "3\n")
    assert check.difference(reference, check.observe(tmp_path)) is None
    (tmp_path / "count.txt").write_text("3\n4\n")
    assert check.difference(reference, check.observe(tmp_path)) == \
        "--check: output differs at line 2: '4' (failure-free: '<no line>')"
    assert check.difference(reference, CommandOutput(1, "3\n")) == "--check: exit 1 (failure-free: 0)"
    assert check.prepare(tmp_path / "g.yaml", tmp_path) == tmp_path / "g.yaml"


def test_a_command_that_cannot_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match=r"--check 'no-such-command-here' could not run \(exit 127\)"):
        run_command("no-such-command-here", tmp_path, "--check")
    assert run_command("exit 3", tmp_path, "--setup") == CommandOutput(3, "")


def test_sinks_are_compared_by_each_writers_kind(tmp_path: Path) -> None:
    taps = [Tap("chaos_tap_w_in", "w", "in", WriterKind.PLAIN, ("a.out",)),
            Tap("chaos_tap_v_in", "v", "in", WriterKind.TRANSACTIONAL, ("a.out",))]
    sinks = SinkComparison(tmp_path / "graph.yaml", taps)
    assert sinks.description == "what reached the writers (w.in plain, v.in transactional)"
    reference = {"w.in": ("x 1", "y 1"), "v.in": ("x 1", "y 1")}
    assert sinks.difference(reference, dict(reference)) is None
    assert sinks.difference(reference, {"w.in": ("x 1", "x 1", "y 1"), "v.in": ("x 1",)}) == (
        "writer w.in (plain): 1 messages (1 rows) more than the failure-free run, 1 of them delivered again "
        "after a replay; writer v.in (transactional): 1 messages (1 rows) missing")


def test_sinks_need_a_graph_with_writers(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match="the graph has no writer with a connected input"):
        SinkComparison(tmp_path / "graph.yml", [])
