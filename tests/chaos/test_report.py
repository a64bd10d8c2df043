"""What snapgraph chaos prints for each schedule and at the end."""

from __future__ import annotations

from pathlib import Path

from snapgraph.chaos.engine import EngineResult
from snapgraph.chaos.report import reference_line, reference_warnings, schedule_line, summary
from snapgraph.chaos.runner import Reference, ScheduleResult
from snapgraph.chaos.schedules import GraphShape, Schedule, Step
from snapgraph.chaos.steps import StepOutcome

FAULTS = "port_callback:writer:5:raise,restore:*:1:kill"
STDERR = ("snapgraph: attempt 1 failed after 0.2s: operator 'writer' failed in port callback of 'input': "
          "InjectedFault: injected fault at port_callback of 'writer' (hit 5)\n"
          "InjectedFault: injected fault at port_callback of 'writer' (hit 5)\n")


def _result(seed: int, *, difference: str | None = None, anomalies: tuple[str, ...] = ()) -> ScheduleResult:
    fault = Step("fault", {"faults": FAULTS})
    kill = Step("sigkill-engine", {"target": "engine", "timing": "work", "delay": 0.5})
    result = ScheduleResult(Schedule(seed, (fault, kill)), Path(f"/tmp/chaos/schedule-{seed}"), engine_runs=2,
                            difference=difference, anomalies=list(anomalies), seconds=3.25)
    engine = EngineResult("fault", [], FAULTS, 0, STDERR, 1.0)
    result.steps = [StepOutcome("fault", fault.label(), fired=True, engine=engine),
                    StepOutcome("sigkill-engine", kill.label(), fired=False, finished_before=True)]
    return result


def test_a_schedule_line_counts_what_fired_and_landed() -> None:
    assert schedule_line(2, 5, _result(8)) == (
        f"[2/5] seed 8: fault({FAULTS}) -> sigkill-engine(engine,work@0.50) | passed (1 of its 2 faults did not "
        "fire) | faults fired 1/2, strikes landed 0/1; 2 engine runs, 3.2s")
    one = _result(10)
    one.steps[0].label = "fault(port_callback:writer:5:raise)"
    one.steps[0].engine = EngineResult("fault", [], "", 0, "no fault here", 1.0)
    assert "| passed (its fault did not fire) | faults fired 0/1" in schedule_line(1, 1, one)
    fired = _result(11)
    fired.steps[0].label = "fault(port_callback:writer:5:raise)"
    assert "| passed | faults fired 1/1" in schedule_line(1, 1, fired)
    assert (one.faults_all_fired, fired.faults_all_fired) == (False, True)
    failed = _result(9, difference="--check: exit 1 (failure-free: 0)")
    failed.skipped = 1
    line = schedule_line(1, 1, failed)
    assert "| FAILED |" in line and "strikes landed 0/1, 1 skipped;" in line


def test_the_summary_names_each_failure_with_its_reproduction() -> None:
    results = [_result(1), _result(2, difference="writer w.in (plain): 3 messages (30 rows) more"),
               _result(3, anomalies=("step 2: sigkill-engine(...): exit 3: boom\ntraceback line",))]
    lines = summary(results, lambda seed: f"snapgraph chaos g.yaml --seed {seed} --schedules 1")
    assert lines[:3] == [
        "schedules: 3, passed 1, failed 2",
        "steps: 6 carried out, 0 left out (the run had completed before them); faults injected 6, fired 3; "
        "signals and kills 3, landed while the graph ran 0",
        "schedules with faults: 3, all their faults fired in 0"]
    assert lines[3:] == [
        f"FAILED seed 2: fault({FAULTS}) -> sigkill-engine(engine,work@0.50)",
        "  result differs from the failure-free run: writer w.in (plain): 3 messages (30 rows) more",
        "  kept: /tmp/chaos/schedule-2",
        "  reproduce: snapgraph chaos g.yaml --seed 2 --schedules 1",
        f"FAILED seed 3: fault({FAULTS}) -> sigkill-engine(engine,work@0.50)",
        "  step 2: sigkill-engine(...): exit 3: boom",
        "  kept: /tmp/chaos/schedule-3",
        "  reproduce: snapgraph chaos g.yaml --seed 3 --schedules 1"]


def test_the_reference_line() -> None:
    shape = GraphShape(("gen", "writer"), {"gen": 0, "writer": 40}, epochs=3)
    reference = Reference(Path("/tmp/ref"), None, shape, 2.0, 2.5)
    assert reference_line(reference, "the output of --check 'q'") == (
        "failure-free run: completed in 2.5s, 3 epoch(s); messages received: writer 40; comparing the output "
        "of --check 'q'")
    assert reference_warnings(reference) == []
    single = Reference(Path("/tmp/ref"), None, GraphShape(("gen",), epochs=1), 0.5, 0.8)
    assert reference_warnings(single) == [
        "warning: the failure-free run completed a single epoch, so no schedule can restore from the middle of "
        "the run (every recovery starts it again): give a shorter --snapshot-period or a bigger input"]


def test_a_group_kill_names_the_group_it_killed() -> None:
    kill = Step("kill-group", {"which": 1, "timing": "work", "delay": 0.3})
    signal = Step("signal", {"signal": "SIGTERM", "target": "engine", "timing": "work", "delay": 0.5})
    result = ScheduleResult(Schedule(3, (kill, signal)), Path("/tmp/chaos/schedule-3"), skipped=1)
    result.steps = [StepOutcome("kill-group", "kill-group(sink,work@0.30)", fired=True)]
    assert result.schedule.label().startswith("kill-group(#1,work@0.30)")
    assert result.label() == "kill-group(sink,work@0.30) -> signal(SIGTERM->engine,work@0.50)"
