"""Each kind of step carried out on a real run of a small graph, and what the judge calls an anomaly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from snapgraph.chaos.engine import EngineResult, EngineRun
from snapgraph.chaos.schedules import Step
from snapgraph.chaos.steps import StepOutcome, judge_engine, perform
from snapgraph.snapshot.store import open_store
from tests.chaos.graphs import SqlCopy, write_sql_copy


class Context:
    """A StepContext over one run of ``copy`` (its store in the copy's folder); ``store`` is where
    :meth:`status` looks."""

    def __init__(self, copy: SqlCopy, *, in_process: bool = False) -> None:
        self.copy = copy
        self.in_process = in_process
        self.store = copy.folder / "store.db"
        self.status_store = self.store
        self.runs = 0
        subprocess.run(copy.setup, shell=True, cwd=copy.folder, check=True)

    def start(self, label: str, *, faults: str | None = None, retries: bool | None = None) -> EngineRun:
        self.runs += 1
        self.events = self.copy.folder / f"events{self.runs}.jsonl"
        args = [sys.executable, "-m", "snapgraph", "run", str(self.copy.graph), "-c", str(self.copy.connections),
                "--store", str(self.store), "--events", str(self.events)]
        if self.in_process:
            args.append("--in-process")
        if self.store.exists():
            args.append("--resume")
        if retries is not None:
            args += ["--max-retries", "5" if retries else "0", "--retry-interval", "0"]
        return EngineRun(label, args, cwd=self.copy.folder, folder=self.copy.folder,
                         stderr_path=self.copy.folder / f"run{self.runs}.err",
                         stdout_path=self.copy.folder / "out.log", faults=faults).start()

    def wait_to_strike(self, run: EngineRun, params: dict[str, Any]) -> bool:
        if params["timing"] == "early":
            return run.sleep_while_running(params["delay"])
        return run.wait_until_loaded(self.events, 3) and run.sleep_while_running(params["delay"])

    def status(self) -> str | None:
        if not self.status_store.exists():
            return None
        store = open_store(self.status_store, create=False, read_only=True)
        try:
            runs = store.runs()
            return str(runs[-1].status) if runs else None
        finally:
            store.close()


def _strike(kind: str, **params: Any) -> Step:
    return Step(kind, {"timing": "work", **params})


def test_every_kind_of_step_on_one_run(tmp_path: Path) -> None:
    context = Context(write_sql_copy(tmp_path, rows=2500))
    killed = perform(context, Step("fault", {"faults": "port_callback:writer:30:kill"}))
    assert (killed.fired, killed.result, killed.status, killed.returncode) == (True, "engine-died", "running", 137)
    stopped = perform(context, _strike("signal", signal="SIGTERM", target="group", delay=0.3))
    assert (stopped.fired, stopped.result, stopped.status) == (True, "stopped", "stopped")
    forced = perform(context, _strike("double-signal", signal="SIGINT", target="engine", delay=0.3))
    assert forced.fired and (forced.result, forced.status) in {("forced", "running"), ("stopped", "stopped")}
    sigkilled = perform(context, _strike("sigkill-engine", target="engine", delay=0.3))
    assert (sigkilled.fired, sigkilled.result, sigkilled.status, sigkilled.returncode) == (
        True, "killed", "running", -9)
    group_killed = perform(context, _strike("kill-group", which=1, delay=0.2))
    assert (group_killed.fired, group_killed.result, group_killed.status) == (True, "recovered", "completed")
    for outcome in (killed, stopped, forced, sigkilled, group_killed):
        assert outcome.anomalies == [], outcome
    assert group_killed.label in ("kill-group(source,work@0.20)", "kill-group(sink,work@0.20)"), \
        "the label names the group killed"
    assert group_killed.as_info() == {"kind": "kill-group", "spec": group_killed.label, "rc": 0,
                                      "fired": True, "result": "recovered"}


def test_raised_faults_and_group_deaths_are_recovered_within_the_run(tmp_path: Path) -> None:
    context = Context(write_sql_copy(tmp_path, rows=600, delay=0.0))
    outcome = perform(context, Step("fault", {"faults": "port_callback:writer:20:raise,after_persist:pace:1:exit"}))
    assert outcome.anomalies == [], outcome.anomalies
    assert (outcome.fired, outcome.result, outcome.status) == (True, "recovered", "completed")
    assert outcome.recovered == 2  # the exception, then the death of the source group's process
    assert outcome.returncode == 0


def test_a_signal_after_the_graph_finished_did_not_fire(tmp_path: Path) -> None:
    context = Context(write_sql_copy(tmp_path, rows=100, delay=0.0))
    outcome = perform(context, Step("signal", {"signal": "SIGTERM", "target": "engine", "timing": "early",
                                               "delay": 30.0}))
    assert (outcome.fired, outcome.finished_before, outcome.result, outcome.anomalies) == (
        False, True, "completed", [])


def test_a_failing_run_and_a_wrong_status_are_anomalies(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path, rows=100, delay=0.0)
    (copy.folder / "pace.py").write_text("def on_input(msg_id, header, body):\n    raise ValueError('no')\n"
                                         "api.set_port_callback('input', on_input)\n")
    context = Context(copy, in_process=True)
    failed = perform(context, Step("fault", {"faults": "before_complete:*:1:raise"}))
    assert failed.returncode == 1 and failed.status == "failed"
    assert len(failed.anomalies) == 1 and "exit 1 (expected 0 or 137)" in failed.anomalies[0]
    good = write_sql_copy(tmp_path / "good", rows=100, delay=0.0)
    liar = Context(good, in_process=True)
    liar.status_store = tmp_path / "another-store.db"  # where no run is
    outcome = perform(liar, Step("fault", {"faults": "port_callback:writer:3:raise"}))
    assert outcome.result == "recovered"
    assert outcome.anomalies == ["fault: exit 0 but the store says the run is None (expected 'completed'): "
                                 + outcome.anomalies[0].split("(expected 'completed'): ")[1]]


def test_the_rules_of_every_engine_run() -> None:
    def judged(**fields: Any) -> list[str]:
        result = EngineResult(**{"label": "run", "args": [], "faults": None, "returncode": 0,
                                 "stderr": "x\nlast line", "seconds": 12.0, **fields})
        outcome = StepOutcome("fault", "fault(...)")
        judge_engine(result, outcome)
        return outcome.anomalies

    assert judged() == []
    assert judged(returncode=None) == ["run: the engine did not end within 150s (hung); killed"]
    assert judged(sent=[1.0]) == ["run: the stop took 11.0s after the signal (more than 8s): x | last line"]
    assert judged(sent=[5.0]) == []
    assert judged(left=[(42, "python -m snapgraph")]) == [
        "run: processes left behind after the engine ended: [(42, 'python -m snapgraph')]"]
