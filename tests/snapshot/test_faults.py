"""FaultPlan: parsing SNAPGRAPH_FAULTS, firing exactly once at the nth hit, fault_point()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_files
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, FAILED, Engine, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot import faults as faults_module
from snapgraph.snapshot.faults import (
    ENV_VAR,
    FAULT_POINTS,
    KILL_EXIT_CODE,
    Fault,
    FaultPlan,
    InjectedFault,
    fault_point,
    set_active_plan,
)


@pytest.fixture
def restore_active_plan():
    saved = faults_module._active
    yield
    set_active_plan(saved)


def fires(plan: FaultPlan, point: str, process: str) -> bool:
    try:
        plan.hit(point, process)
    except InjectedFault:
        return True
    return False


# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------

def test_parse_a_full_plan() -> None:
    plan = FaultPlan.parse(" port_callback:sink:5:exit , restore:*:1,before_complete:*:2:raise ")
    assert plan.faults == [
        Fault("port_callback", "sink", 5, "exit"),
        Fault("restore", "*", 1, "raise"),
        Fault("before_complete", "*", 2, "raise"),
    ]


@pytest.mark.parametrize("spec", ["", "   ", ",", " , ,"])
def test_empty_specs_are_an_empty_plan(spec: str) -> None:
    assert FaultPlan.parse(spec).faults == []


@pytest.mark.parametrize("spec, message", [
    ("port_callback:sink", "bad fault 'port_callback:sink': expected point:process:nth[:raise|exit|kill]"),
    ("port_callback", "bad fault 'port_callback': expected point:process:nth[:raise|exit|kill]"),
    ("port_callback:sink:5:exit:now", "bad fault 'port_callback:sink:5:exit:now': expected"),
    ("port_callback:sink:0", "bad fault 'port_callback:sink:0': expected"),
    ("port_callback:sink:-1", "bad fault 'port_callback:sink:-1': expected"),
    ("port_callback:sink:five", "bad fault 'port_callback:sink:five': expected"),
    ("port_callback:sink:", "bad fault 'port_callback:sink:': expected"),
    ("port_callback:sink:2.5", "bad fault 'port_callback:sink:2.5': expected"),
    ("port_callback:sink:5:explode",
     "bad fault action 'explode' in 'port_callback:sink:5:explode': expected raise, exit or kill"),
    ("port_callback:sink:5:", "bad fault action '' in 'port_callback:sink:5:': expected raise, exit or kill"),
    ("restore:*:1,port_callback:sink:x", "bad fault 'port_callback:sink:x': expected"),
])
def test_bad_specs_are_rejected(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        FaultPlan.parse(spec)
    assert str(info.value).startswith(message)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ENV_VAR == "SNAPGRAPH_FAULTS"
    monkeypatch.setenv(ENV_VAR, "after_persist:gen:3:exit")
    assert FaultPlan.from_env().faults == [Fault("after_persist", "gen", 3, "exit")]
    monkeypatch.delenv(ENV_VAR)
    assert FaultPlan.from_env().faults == []
    monkeypatch.setenv(ENV_VAR, "after_persist:gen")
    with pytest.raises(ValueError, match="expected point:process:nth"):
        FaultPlan.from_env()


def test_the_documented_fault_points() -> None:
    assert FAULT_POINTS == ("port_callback", "before_serialize", "after_serialize", "after_persist",
                            "before_complete", "epoch_complete", "restore", "drain")
    assert KILL_EXIT_CODE == 137


# --------------------------------------------------------------------------------------
# firing
# --------------------------------------------------------------------------------------

def test_a_fault_fires_exactly_once_at_the_nth_hit() -> None:
    plan = FaultPlan.parse("port_callback:sink:3")
    outcomes = [fires(plan, "port_callback", "sink") for _ in range(10)]
    assert outcomes == [False, False, True] + [False] * 7


def test_the_injected_fault_says_where() -> None:
    plan = FaultPlan.parse("after_serialize:gen:2")
    plan.hit("after_serialize", "gen")
    with pytest.raises(InjectedFault) as info:
        plan.hit("after_serialize", "gen")
    assert str(info.value) == "injected fault at after_serialize of 'gen' (hit 2)"


def test_other_points_and_processes_do_not_count() -> None:
    plan = FaultPlan.parse("port_callback:sink:2")
    for _ in range(5):
        assert not fires(plan, "port_callback", "gen")
        assert not fires(plan, "restore", "sink")
    assert not fires(plan, "port_callback", "sink")
    assert fires(plan, "port_callback", "sink")


def test_several_faults_on_one_point() -> None:
    plan = FaultPlan.parse("port_callback:sink:2,port_callback:sink:4")
    outcomes = [fires(plan, "port_callback", "sink") for _ in range(6)]
    assert outcomes == [False, True, False, True, False, False]


def test_wildcard_matches_any_process() -> None:
    plan = FaultPlan.parse("before_serialize:*:2")
    assert not fires(plan, "before_serialize", "writer")
    assert fires(plan, "before_serialize", "writer")
    plan = FaultPlan.parse("before_serialize:*:1")
    assert fires(plan, "before_serialize", "gen")


def test_wildcard_on_a_point_hit_with_process_star() -> None:
    """The coordinator's before_complete and fault_point() without a process hit with '*'."""
    plan = FaultPlan.parse("before_complete:*:2")
    assert [fires(plan, "before_complete", "*") for _ in range(4)] == [False, True, False, False]


def test_a_wildcard_fault_fires_exactly_once() -> None:
    plan = FaultPlan.parse("port_callback:*:2")
    outcomes = []
    for _ in range(3):
        for process in ("proc", "sink", "writer"):
            outcomes.append(fires(plan, "port_callback", process))
    assert outcomes.count(True) == 1


def test_a_plan_without_faults_never_fires() -> None:
    plan = FaultPlan()
    for point in FAULT_POINTS:
        for _ in range(3):
            plan.hit(point, "x")


def test_exit_action_kills_the_process_with_137() -> None:
    code = ("from snapgraph.snapshot.faults import FaultPlan\n"
            "plan = FaultPlan.parse('after_persist:gen:2:exit')\n"
            "plan.hit('after_persist', 'gen')\n"
            "print('survived first hit', flush=True)\n"
            "plan.hit('after_persist', 'gen')\n"
            "print('survived second hit', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == KILL_EXIT_CODE
    assert proc.stdout == "survived first hit\n"
    assert proc.stderr == "snapgraph: injected fault: engine killed at after_persist of 'gen'\n"


# --------------------------------------------------------------------------------------
# fault_point() and the active plan
# --------------------------------------------------------------------------------------

def test_fault_point_uses_the_active_plan(restore_active_plan: None) -> None:
    set_active_plan(FaultPlan.parse("between_write_and_wal:*:2"))
    fault_point("between_write_and_wal")
    with pytest.raises(InjectedFault, match=r"injected fault at between_write_and_wal of '\*' \(hit 2\)"):
        fault_point("between_write_and_wal")
    fault_point("between_write_and_wal")

    set_active_plan(FaultPlan.parse("mine:writer:1"))
    fault_point("mine", "other")
    with pytest.raises(InjectedFault):
        fault_point("mine", "writer")

    set_active_plan(FaultPlan())
    for _ in range(3):
        fault_point("mine", "writer")


FAULT_POINT_GRAPH = """
name: fault-point
operators:
  gen:
    code: |
      def start():
          for i in range(5):
              api.outputs.out.publish(i)
      api.set_prestart(start)
    outputs: {out: int64}
  sink:
    code: |
      from snapgraph.snapshot.faults import fault_point
      seen = []
      def on_input(msg_id, header, body):
          fault_point("inside_sink")
          seen.append(body.get())
      api.set_port_callback("in", on_input)
    inputs: {in: int64}
connections:
  - gen.out -> sink.in
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    write_files(tmp_path, {"graph.yaml": text})
    return load_graph(tmp_path / "graph.yaml", LoadOptions())


def test_the_engine_makes_its_plan_the_active_one(tmp_path: Path, restore_active_plan: None) -> None:
    graph = load(tmp_path, FAULT_POINT_GRAPH)
    result = Engine(graph, RunOptions(), faults=FaultPlan.parse("inside_sink:*:3")).run()
    assert result.status == FAILED
    assert result.failure is not None
    assert result.failure.process == "sink"
    assert "InjectedFault: injected fault at inside_sink of '*' (hit 3)" in result.failure.message

    ok = Engine(load(tmp_path, FAULT_POINT_GRAPH), RunOptions(), faults=FaultPlan()).run()
    assert ok.status == COMPLETED


def test_counts_continue_across_attempts(tmp_path: Path) -> None:
    """The fault fires in attempt 1 only (once per run): attempt 2 does not fail again, so it completes."""
    graph = load(tmp_path, FAULT_POINT_GRAPH)
    said: list[str] = []
    supervisor = Supervisor(graph, RunOptions(), RecoveryPolicy(max_retries=3, retry_interval=0),
                            faults=FaultPlan.parse("port_callback:sink:3"), say=said.append)
    outcome = supervisor.run()
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts == 2
    assert len([s for s in said if s.startswith("attempt 1 failed")]) == 1
    assert "injected fault at port_callback of 'sink' (hit 3)" in said[0]
    assert not any(s.startswith("attempt 2 failed") for s in said)


def test_a_fault_without_recovery_fails_the_run_once(tmp_path: Path) -> None:
    graph = load(tmp_path, FAULT_POINT_GRAPH)
    said: list[str] = []
    outcome = Supervisor(graph, RunOptions(), RecoveryPolicy(), faults=FaultPlan.parse("port_callback:sink:4"),
                         say=said.append).run()
    assert outcome.result.status == FAILED
    assert outcome.attempts == 1
    assert outcome.result.failure is not None and outcome.result.failure.process == "sink"
    assert "(hit 4)" in outcome.result.reason
    assert said == []
