"""The reference run and the schedules of ``snapgraph chaos``.

:class:`ChaosRunner` runs the graph once without faults (the *reference*: it must complete; its event log
gives the graph's :class:`~snapgraph.chaos.schedules.GraphShape` — messages each operator received and
sent, stateful operators, epochs, working time), then each schedule in a folder of its own with a snapshot store of its
own (the user's graph files are never written; ``--compare-sinks`` puts a hidden copy beside the graph
for the run and removes it). Before every run — the reference and each schedule — the ``--setup``
command resets the user's targets. A schedule carries out its steps (:mod:`~snapgraph.chaos.steps`)
until one leaves the run completed, resumes the run until it completes (at most
:data:`FINAL_RESUMES` times), and compares the result with the reference. It *passes* when the result
is the same and the engine behaved as documented at every step (no anomaly); a passed schedule whose
faults did not all fire tested less than it planned, and says so (:meth:`ScheduleResult.faults_all_fired`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapgraph.chaos.compare import CommandFailed, Comparison, run_command
from snapgraph.chaos.engine import EngineRun, tail
from snapgraph.chaos.schedules import GraphShape, Schedule, make_schedule
from snapgraph.chaos.steps import StepOutcome, judge_engine, perform
from snapgraph.model.builtin_operator import CrashPoint
from snapgraph.snapshot.store import StoreError, open_store

FINAL_RESUMES = 4
FAULT_FIRED = re.compile(r"injected fault(?:: (?:engine|group process) killed)? at (\S+) of '([^']*)'")


class ChaosInputError(Exception):
    """Nothing can be compared: the reference run or the setup failed (exit 2)."""


@dataclass(frozen=True)
class ChaosConfig:
    """One ``snapgraph chaos`` invocation.

    ``run_args``: the options every ``snapgraph run`` gets (parameters, connections, operators folders,
    snapshot period, backend); ``operators``: the graph's operators; ``groups_as_processes``: whether
    groups run as OS processes; ``groups``: how many groups the graph has; ``crash_points``: the crash
    points of its built-ins (:func:`~snapgraph.chaos.schedules.crash_points_of_graph`); ``extra_points``:
    ``--point`` names; ``reproduce``: the command line that replays one schedule seed.
    """

    graph_file: Path
    run_args: tuple[str, ...]
    operators: tuple[str, ...]
    groups_as_processes: bool
    schedules: int
    seed: int
    comparison: Comparison
    setup: str | None = None
    extra_points: tuple[str, ...] = ()
    groups: int = 1
    crash_points: Mapping[str, tuple[CrashPoint, ...]] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    reproduce: Callable[[int], str] = str


@dataclass
class ScheduleResult:
    schedule: Schedule
    folder: Path
    steps: list[StepOutcome] = field(default_factory=list)
    skipped: int = 0  # steps left out: the run had completed before them
    engine_runs: int = 0
    difference: str | None = None
    anomalies: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.difference is None and not self.anomalies

    @property
    def faults_all_fired(self) -> bool | None:
        """Whether every fault planned in the steps carried out fired (None: no fault was planned)."""
        planned, fired = self.faults()
        return None if planned == 0 else fired == planned

    def label(self) -> str:
        """The plan as carried out: each step's label (a group kill names its group), then those left out."""
        labels = [outcome.label for outcome in self.steps]
        labels += [step.label() for step in self.schedule.steps[len(labels):]]
        return " -> ".join(labels)

    def faults(self) -> tuple[int, int]:
        """Faults planned and fired in the fault steps."""
        planned = fired = 0
        for outcome in self.steps:
            if outcome.kind == "fault":
                count = outcome.label.count(",") + 1
                planned += count
                seen = set(FAULT_FIRED.findall(outcome.engine.stderr)) if outcome.engine else set()
                fired += min(count, len(seen))
        return planned, fired

    def strikes(self) -> tuple[int, int]:
        """Signals and kills planned and landed while the graph ran."""
        planned = [o for o in self.steps if o.kind != "fault"]
        return len(planned), sum(1 for o in planned if o.fired)


@dataclass
class Reference:
    folder: Path
    observed: object
    shape: GraphShape
    work_seconds: float
    seconds: float


def shape_from_events(events: Path, config: ChaosConfig) -> tuple[GraphShape, float]:
    """The graph's shape and working time (first operator loaded to the attempt's end) from the event log of
    the reference run."""
    operators = config.operators
    messages: dict[str, int] = {}
    sent: dict[str, int] = {}
    stateful: list[str] = []
    epochs = 0
    loaded: float | None = None
    ended: float | None = None
    for line in events.read_text().splitlines():
        record = json.loads(line)
        event, fields = record["event"], record.get("fields", {})
        if event == "operator_stats" and record.get("operator") in operators:
            messages[record["operator"]] = sum(port["messages"] for port in fields.get("inputs", {}).values())
            sent[record["operator"]] = sum(port["messages"] for port in fields.get("outputs", {}).values())
            if fields.get("state_bytes_total", 0) > 0:
                stateful.append(record["operator"])
        elif event == "epoch_completed":
            epochs += 1
        elif event == "operator_loaded" and loaded is None:
            loaded = record["time"]
        elif event == "attempt_ended":
            ended = record["time"]
    work = (ended - loaded) if loaded is not None and ended is not None else 1.0
    shape = GraphShape(operators, messages, tuple(o for o in operators if o in stateful), max(1, epochs),
                       config.groups_as_processes, config.extra_points, messages_out=sent,
                       crash_points=config.crash_points, groups=config.groups)
    return shape, max(0.05, work)


class _ScheduleContext:
    """The :class:`~snapgraph.chaos.steps.StepContext` of one schedule's run."""

    def __init__(self, runner: ChaosRunner, graph: Path, folder: Path, work_seconds: float) -> None:
        self.runner = runner
        self.graph = graph
        self.folder = folder
        self.work_seconds = work_seconds
        self.in_process = not runner.config.groups_as_processes
        self.runs = 0
        self.store = folder / "store.db"
        self._events: dict[int, Path] = {}

    def start(self, label: str, *, faults: str | None = None, retries: bool | None = None) -> EngineRun:
        self.runs += 1
        events = self.folder / f"events-{self.runs:02d}.jsonl"
        args = [sys.executable, "-m", "snapgraph", "run", str(self.graph), *self.runner.config.run_args,
                "--store", str(self.store), "--events", str(events)]
        if self.status() is not None:
            args.append("--resume")
        if retries is not None:
            args += ["--max-retries", "5" if retries else "0", "--retry-interval", "0"]
        run = EngineRun(label, args, cwd=self.runner.config.cwd, folder=self.folder,
                        stderr_path=self.folder / f"run{self.runs:02d}.err", stdout_path=self.folder / "stdout.log",
                        faults=faults).start()
        self._events[run.pid] = events
        return run

    def wait_to_strike(self, run: EngineRun, params: dict[str, Any]) -> bool:
        if params["timing"] == "early":
            return run.sleep_while_running(float(params["delay"]))
        if not run.wait_until_loaded(self._events[run.pid], self.runner.loaded_operators):
            return False
        return run.sleep_while_running(float(params["delay"]) * self.work_seconds)

    def status(self) -> str | None:
        if not self.store.exists():
            return None
        try:
            store = open_store(self.store, create=False, read_only=True)
        except StoreError as err:
            return f"unreadable ({err})"
        try:
            runs = store.runs()
        except StoreError as err:
            return f"unreadable ({err})"
        finally:
            store.close()
        return str(runs[-1].status) if runs else None


class ChaosRunner:
    def __init__(self, config: ChaosConfig, *, on_progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.root = Path(tempfile.mkdtemp(prefix="snapgraph-chaos-"))
        self.loaded_operators = len(config.operators)
        self._say = on_progress or (lambda text: None)

    def _setup(self, where: str) -> None:
        if self.config.setup is None:
            return
        done = run_command(self.config.setup, self.config.cwd, "--setup")
        if done.returncode != 0:
            raise CommandFailed(f"--setup {self.config.setup!r} failed (exit {done.returncode}) before {where}")

    def reference(self) -> Reference:
        """The failure-free run; raises :class:`ChaosInputError` when it does not complete."""
        folder = self.root / "reference"
        folder.mkdir()
        began = time.monotonic()
        try:
            self._setup("the failure-free run")
        except CommandFailed as err:
            raise ChaosInputError(str(err)) from None
        comparison = self.config.comparison
        graph = comparison.prepare(self.config.graph_file, folder)
        events = folder / "events.jsonl"
        try:
            args = [sys.executable, "-m", "snapgraph", "run", str(graph), *self.config.run_args,
                    "--store", str(folder / "store.db"), "--events", str(events)]
            result = EngineRun("failure-free run", args, cwd=self.config.cwd, folder=folder,
                               stderr_path=folder / "run.err", stdout_path=folder / "stdout.log").start().wait()
        finally:
            comparison.release(graph)
        if not result.completed:
            raise ChaosInputError(f"the failure-free run did not complete (exit {result.returncode}), so there is "
                                  f"nothing to compare with: {tail(result.stderr, 6)}")
        try:
            observed = comparison.observe(folder)
        except CommandFailed as err:
            raise ChaosInputError(str(err)) from None
        shape, work = shape_from_events(events, self.config)
        self.loaded_operators = sum(1 for line in events.read_text().splitlines()
                                    if json.loads(line)["event"] == "operator_loaded")
        return Reference(folder, observed, shape, work, time.monotonic() - began)

    def plans(self, shape: GraphShape) -> list[Schedule]:
        return [make_schedule(self.config.seed + index, shape) for index in range(self.config.schedules)]

    def run_schedule(self, schedule: Schedule, reference: Reference) -> ScheduleResult:
        folder = self.root / f"schedule-{schedule.seed}"
        folder.mkdir()
        result = ScheduleResult(schedule, folder)
        began = time.monotonic()
        comparison = self.config.comparison
        try:
            self._setup(f"schedule {schedule.seed}")
        except CommandFailed as err:
            result.anomalies.append(str(err))
            result.seconds = time.monotonic() - began
            return result
        graph = comparison.prepare(self.config.graph_file, folder)
        context = _ScheduleContext(self, graph, folder, reference.work_seconds)
        try:
            for index, step in enumerate(schedule.steps):
                if context.status() == "completed":
                    result.skipped = len(schedule.steps) - index
                    break
                self._say(f"schedule {schedule.seed}: step {index + 1}/{len(schedule.steps)} {step.label()}")
                outcome = perform(context, step)
                result.steps.append(outcome)
                result.anomalies += [f"step {index + 1}: {text}" for text in outcome.anomalies]
            self._say(f"schedule {schedule.seed}: resuming to the end")
            self._finish(context, result)
        finally:
            comparison.release(graph)
            result.engine_runs = context.runs
        if context.status() == "completed":
            try:
                result.difference = comparison.difference(reference.observed, comparison.observe(folder))
            except CommandFailed as err:
                result.anomalies.append(str(err))
        result.seconds = time.monotonic() - began
        return result

    def _finish(self, context: _ScheduleContext, result: ScheduleResult) -> None:
        """Resume the run until it completes (or start it, if no step left one)."""
        for attempt in range(FINAL_RESUMES):
            if context.status() == "completed":
                return
            outcome = StepOutcome("final", "final --resume")
            run = context.start(f"final --resume #{attempt + 1}")
            engine = run.wait()
            outcome.engine = engine
            judge_engine(engine, outcome)
            result.anomalies += [f"final: {text}" for text in outcome.anomalies]
            if engine.completed:
                return
            result.anomalies.append(f"final: --resume #{attempt + 1} exit {engine.returncode}: {tail(engine.stderr)}")
        if context.status() != "completed":
            result.anomalies.append(f"final: the run never completed after {FINAL_RESUMES} --resume")

    def discard(self, result: ScheduleResult) -> None:
        """A passed schedule's folder goes; a failed one's stays for inspection."""
        if result.passed:
            shutil.rmtree(result.folder, ignore_errors=True)

    def close(self, *, keep: bool) -> None:
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
