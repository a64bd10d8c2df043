"""What snapgraph chaos prints for each schedule and at the end."""

from __future__ import annotations

from pathlib import Path

from snapgraph.chaos.engine import EngineResult
from snapgraph.chaos.report import reference_line, schedule_line, summary
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
        f"[2/5] seed 8: fault({FAULTS}) -> sigkill-engine(engine,work@0.50) | passed | faults fired 1/2, "
        "strikes landed 0/1; 2 engine runs, 3.2s")
    failed = _result(9, difference="--check: exit 1 (failure-free: 0)")
    failed.skipped = 1
    line = schedule_line(1, 1, failed)
    assert "| FAILED |" in line and "strikes landed 0/1, 1 skipped;" in line


def test_the_summary_names_each_failure_with_its_reproduction() -> None:
    results = [_result(1), _result(2, difference="writer w.in (plain): 3 messages (30 rows) more"),
               _result(3, anomalies=("step 2: sigkill-engine(...): exit 3: boom\ntraceback line",))]
    lines = summary(results, lambda seed: f"snapgraph chaos g.yaml --seed {seed} --schedules 1")
    assert lines[:2] == [
        "schedules: 3, passed 1, failed 2",
        "steps: 6 carried out, 0 left out (the run had completed before them); faults injected 6, fired 3; "
        "signals and kills 3, landed while the graph ran 0"]
    assert lines[2:] == [
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
