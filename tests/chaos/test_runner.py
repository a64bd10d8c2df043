"""The reference run and single schedules on a small SQL graph: shapes, verdicts, refusals, folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapgraph.chaos.compare import CheckCommand, Comparison, SinkComparison
from snapgraph.chaos.recorder import taps_for
from snapgraph.chaos.report import reference_warnings, schedule_line
from snapgraph.chaos.runner import ChaosConfig, ChaosInputError, ChaosRunner
from snapgraph.chaos.schedules import Schedule, Step, crash_points_of_graph
from snapgraph.model.loader import LoadOptions, load_graph
from tests.chaos.graphs import SqlCopy, write_sql_copy, write_sql_copy_json


def _config(copy: SqlCopy, comparison: Comparison, **changes: object) -> ChaosConfig:
    fields: dict[str, object] = {
        "graph_file": copy.graph, "run_args": ("--connections", str(copy.connections), *copy.run_args),
        "operators": ("reader", "pace", "writer"), "groups_as_processes": True, "schedules": 1, "seed": 1,
        "comparison": comparison, "setup": copy.setup, "cwd": copy.folder, **changes}
    return ChaosConfig(**fields)  # type: ignore[arg-type]


def _sinks(copy: SqlCopy) -> SinkComparison:
    graph = load_graph(copy.graph, LoadOptions(connections_file=copy.connections))
    return SinkComparison(copy.graph, taps_for(graph))


KILL_AFTER_AN_EPOCH = Schedule(5, (Step("sigkill-engine", {"target": "engine", "timing": "work", "delay": 0.6}),))


def test_the_reference_gives_the_shape_and_a_plain_writer_fails_a_kill(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=1500)
    runner = ChaosRunner(_config(copy, CheckCommand(copy.check, copy.folder)))
    try:
        reference = runner.reference()
        assert reference.observed.stdout == "(1500, 1500, 74250)\n"  # type: ignore[attr-defined]
        assert dict(reference.shape.messages_in) == {"reader": 0, "pace": 150, "writer": 150}
        assert "reader" in reference.shape.stateful and reference.shape.receivers == ("pace", "writer")
        assert 1.0 < reference.work_seconds < 10
        result = runner.run_schedule(KILL_AFTER_AN_EPOCH, reference)
        assert result.anomalies == [] and [o.result for o in result.steps] == ["killed"]
        assert result.difference is not None and result.difference.startswith("--check: output differs at line 1")
        assert not result.passed and result.engine_runs == 2
        runner.discard(result)
        assert result.folder.is_dir(), "a failed schedule's folder stays for inspection"
    finally:
        runner.close(keep=False)
    assert not runner.root.exists()


def test_an_idempotent_writer_passes_and_the_copy_goes(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, mode="upsert", rows=1500)
    runner = ChaosRunner(_config(copy, _sinks(copy)))
    try:
        reference = runner.reference()
        schedule = Schedule(6, (Step("fault", {"faults": "port_callback:writer:100:raise"}),
                                Step("sigkill-engine", {"target": "engine", "timing": "work", "delay": 0.1})))
        result = runner.run_schedule(schedule, reference)
        assert result.passed, (result.difference, result.anomalies)
        assert result.skipped == 1, "the fault's recovery completed the run: the kill had nothing to strike"
        assert result.faults() == (1, 1) and result.strikes() == (0, 0)
        runner.discard(result)
        assert not result.folder.exists()
        assert sorted(p.name for p in copy.folder.iterdir() if p.name.startswith(".")) == []
    finally:
        runner.close(keep=False)


def test_the_writers_of_a_graph_json_are_taped_too(tmp_path: Path) -> None:
    """--compare-sinks on a DI graph.json: the taps are processes of the copy, and the plain writer's
    replayed messages show (a fault in the writer after its first snapshot)."""
    copy = write_sql_copy_json(tmp_path, rows=600)
    runner = ChaosRunner(_config(copy, _sinks(copy)))
    try:
        reference = runner.reference()
        assert dict(reference.shape.messages_in) == {"reader": 0, "pace": 60, "writer": 60}
        result = runner.run_schedule(Schedule(7, (Step("fault", {"faults": "port_callback:writer:45:raise"}),)),
                                     reference)
        assert result.faults() == (1, 1)
        assert result.difference is not None and "delivered again after a replay" in result.difference, result
        assert sorted(p.name for p in copy.folder.iterdir() if p.name.startswith(".")) == []
    finally:
        runner.close(keep=False)


def test_nothing_to_compare_is_bad_input(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=100, delay=0.0)
    check = CheckCommand(copy.check, copy.folder)
    with pytest.raises(ChaosInputError, match=r"--setup 'exit 4' failed \(exit 4\) before the failure-free run"):
        ChaosRunner(_config(copy, check, setup="exit 4")).reference()
    with pytest.raises(ChaosInputError, match=r"--check 'no-such-check' could not run"):
        ChaosRunner(_config(copy, CheckCommand("no-such-check", copy.folder))).reference()
    (copy.folder / "pace.py").write_text("raise RuntimeError('broken script')\n")
    with pytest.raises(ChaosInputError, match=r"the failure-free run did not complete \(exit 1\).*broken script"):
        ChaosRunner(_config(copy, check)).reference()


def test_a_kill_before_the_run_is_recorded_starts_it_afresh(tmp_path: Path) -> None:
    """SIGKILL at once (the engine still loading, no run in its store) is a valid outcome: the next run starts
    the graph afresh, not with --resume; a fault that does not fire is counted, and the pass says so."""
    copy = write_sql_copy(tmp_path, mode="transactional", rows=100, delay=0.0)
    graph = load_graph(copy.graph, LoadOptions(connections_file=copy.connections))
    runner = ChaosRunner(_config(copy, CheckCommand(copy.check, copy.folder), groups=2,
                                 crash_points=crash_points_of_graph(graph)))
    try:
        reference = runner.reference()
        assert reference.shape.epochs == 1 and reference_warnings(reference), "a single epoch: a warning"
        schedule = Schedule(8, (Step("sigkill-engine", {"target": "engine", "timing": "early", "delay": 0.0}),
                                Step("fault", {"faults": "sql_writer_moved:writer:40:raise"})))
        result = runner.run_schedule(schedule, reference)
        assert result.passed, (result.difference, result.anomalies)
        assert [(o.result, o.status, o.fired) for o in result.steps] == [
            ("killed-before-run", None, False), ("completed", "completed", False)]
        assert "--resume" not in result.steps[1].engine.args  # type: ignore[union-attr]
        assert result.faults() == (1, 0) and result.faults_all_fired is False
        assert "| passed (its fault did not fire) |" in schedule_line(1, 1, result)
    finally:
        runner.close(keep=False)
