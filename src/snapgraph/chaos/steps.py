"""Carrying out one step of a schedule on a run, and judging what the engine did.

:func:`perform` starts the engine through a :class:`StepContext` (who builds the command line, when to
strike, how to read the run's status in its store), strikes as the step says, waits, and returns a
:class:`StepOutcome`: whether what was injected really happened (``fired``: the fault fired, the signal
or kill landed while the graph ran), or the graph finished first, and every *anomaly* — an exit code, a
message or a run status that the documented behaviour rules out:

=================  ==========================================================================================
step               expected
=================  ==========================================================================================
``fault``          run with retries: exit 0, ``completed`` (an attempt failed and was recovered when it
                   fired), or exit 137 ``running`` when a ``kill`` (or an ``exit`` in one process) ended
                   the engine — never 137 without an injected fault
``signal``         exit 0 ``stopped`` by that signal (``completed`` when the graph finished first)
``double-signal``  exit 0 ``stopped``, or 128 + signal with "second signal" and the run left ``running``
                   (or no run in the store: forced before the run was recorded)
``sigkill-engine`` killed by SIGKILL, the run ``running`` (or ``completed`` when it had finished; or no run
                   in the store: killed while loading, before the run was recorded)
``kill-group``     run with retries: exit 0 ``completed``, the group's death recovered within the run
=================  ==========================================================================================

An engine struck before it recorded its run leaves nothing to resume: the schedule's next run starts the
graph afresh (:meth:`StepContext.start` adds ``--resume`` only once the store holds a run).

Every engine run is also held to: it ended within its time (not hung), a stop took at most
:data:`~snapgraph.chaos.engine.SLOW_STOP` seconds after the signal, and it left no process behind.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from snapgraph.chaos.engine import RUN_TIMEOUT, SLOW_STOP, EngineResult, EngineRun, tail
from snapgraph.chaos.processes import group_processes
from snapgraph.chaos.schedules import Step

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
GROUP_DIED = re.compile(r"in group '([^']*)': the group process died \(killed by SIGKILL\)")


class StepContext(Protocol):
    """What a step needs of the schedule running it."""

    in_process: bool  # groups run in the engine's process: an ``exit`` fault ends the engine

    def start(self, label: str, *, faults: str | None = None, retries: bool | None = None) -> EngineRun:
        """A started engine run of the schedule's graph (``--resume`` once a run exists); ``retries``:
        True recover within the run (``--max-retries 5 --retry-interval 0``), False never, None the
        graph's own settings."""

    def wait_to_strike(self, run: EngineRun, params: dict[str, Any]) -> bool:
        """Wait until the step's timing (``params``) says strike; False if the engine ended first."""

    def status(self) -> str | None:
        """The status of the run in its store (None: no run yet)."""


@dataclass
class StepOutcome:
    kind: str
    label: str  # the step's label (a kill-group's names the group it killed)
    fired: bool = False
    finished_before: bool = False  # the graph finished before the signal or kill struck
    # stopped, forced, recovered, engine-died, killed, killed-before-run, killed-before-handlers, completed
    result: str = ""
    status: str | None = None  # the run's status after the step
    recovered: int = 0  # failed attempts the run recovered from
    engine: EngineResult | None = None
    anomalies: list[str] = field(default_factory=list)

    @property
    def returncode(self) -> int | None:
        return self.engine.returncode if self.engine else None

    def as_info(self) -> dict[str, Any]:
        """The outcome as a plain dict (for JSON reports)."""
        info: dict[str, Any] = {"kind": self.kind, "spec": self.label, "rc": self.returncode,
                                "fired": self.fired}
        if self.finished_before:
            info["finished_before"] = True
        if self.result:
            info["result"] = self.result
        if self.recovered:
            info["recovered"] = self.recovered
        return info


def judge_engine(result: EngineResult, outcome: StepOutcome) -> None:
    """The rules every engine run is held to: it ended in time, stopped promptly, left nothing behind."""
    if result.returncode is None:
        outcome.anomalies.append(f"{result.label}: the engine did not end within {RUN_TIMEOUT:.0f}s (hung); "
                                 "killed")
    slow = result.slow_stop
    if slow is not None:
        outcome.anomalies.append(f"{result.label}: the stop took {slow:.1f}s after the signal (more than "
                                 f"{SLOW_STOP:.0f}s): {tail(result.stderr)}")
    if result.left:
        outcome.anomalies.append(f"{result.label}: processes left behind after the engine ended: {result.left}")


def _expect_status(context: StepContext, outcome: StepOutcome, *expected: str | None) -> None:
    """The run's status in the store must be one of ``expected`` (None: no run recorded)."""
    outcome.status = context.status()
    if outcome.status not in expected:
        assert outcome.engine is not None
        wanted = " or ".join(map(repr, expected))
        outcome.anomalies.append(f"{outcome.kind}: exit {outcome.returncode} but the store says the run is "
                                 f"{outcome.status!r} (expected {wanted}): {tail(outcome.engine.stderr)}")


def _finish(context: StepContext, run: EngineRun, outcome: StepOutcome) -> EngineResult:
    result = run.wait()
    outcome.engine = result
    judge_engine(result, outcome)
    return result


def perform_fault(context: StepContext, step: Step) -> StepOutcome:
    faults = str(step.params["faults"])
    outcome = StepOutcome(step.kind, step.label())
    result = _finish(context, context.start(step.label(), faults=faults, retries=True), outcome)
    outcome.fired = result.fault_fired
    if result.returncode == 0:
        if not result.completed:
            outcome.anomalies.append(f"fault {faults}: exit 0 but not completed: {tail(result.stderr)}")
        _expect_status(context, outcome, "completed")
        outcome.recovered = len(re.findall(r"attempt \d+ failed", result.stderr))
        outcome.result = "recovered" if outcome.recovered else "completed"
        if outcome.fired and not outcome.recovered:
            outcome.anomalies.append(f"fault {faults}: fired but no attempt failed: {tail(result.stderr)}")
    elif result.killed_by_fault:
        outcome.result = "engine-died"
        if not outcome.fired:
            outcome.anomalies.append(f"fault {faults}: exit 137 without an injected fault: {tail(result.stderr)}")
        _expect_status(context, outcome, "running")
    elif result.returncode is not None:
        outcome.anomalies.append(f"fault {faults}: exit {result.returncode} (expected 0 or 137): "
                                 f"{tail(result.stderr)}")
        outcome.status = context.status()
    return outcome


def perform_signal(context: StepContext, step: Step) -> StepOutcome:
    """``signal`` and ``double-signal``: SIGINT / SIGTERM to the engine or its process group."""
    p = dict(step.params)
    signum = SIGNALS[p["signal"]]
    double = step.kind == "double-signal"
    outcome = StepOutcome(step.kind, step.label())
    run = context.start(step.label())
    if context.wait_to_strike(run, p):
        for i in range(2 if double else 1):
            if i:
                run.sleep_while_running(0.05)
            if not run.send(signum, whole_group=p["target"] == "group"):
                break
    result = _finish(context, run, outcome)
    code = result.returncode
    if not result.sent or result.completed:
        outcome.finished_before = True
        if not result.completed:
            outcome.anomalies.append(f"{step.label()}: no signal landed, yet exit {code}: {tail(result.stderr)}")
            outcome.status = context.status()
        else:
            outcome.result = "completed"
            _expect_status(context, outcome, "completed")
        return outcome
    outcome.fired = True
    if result.stopped:
        outcome.result = "stopped"
        if f"{p['signal']} received" not in result.stderr:
            outcome.anomalies.append(f"{step.label()}: stopped, but not by {p['signal']}: {tail(result.stderr)}")
        _expect_status(context, outcome, "stopped")
    elif double and code == 128 + signum:
        outcome.result = "forced"
        if "second signal" not in result.stderr:
            outcome.anomalies.append(f"{step.label()}: exit {code} without the second-signal message")
        # A forced exit leaves the run unfinished (or unrecorded, if it came that early): one recorded
        # stopped/completed would contradict 130/143.
        _expect_status(context, outcome, "running", None)
    elif code in (-signal.SIGINT, -signal.SIGTERM) or (code == 1 and "KeyboardInterrupt" in result.stderr):
        outcome.result = "killed-before-handlers"
        if p["timing"] != "early":
            outcome.anomalies.append(f"{step.label()}: the engine died of the signal (exit {code}) after the "
                                     f"graph was running: {tail(result.stderr)}")
        outcome.status = context.status()
    else:
        outcome.anomalies.append(f"{step.label()}: exit {code} (expected 0 stopped"
                                 f"{f' or {128 + signum}' if double else ''}): {tail(result.stderr)}")
        outcome.status = context.status()
    return outcome


def perform_sigkill(context: StepContext, step: Step) -> StepOutcome:
    p = dict(step.params)
    outcome = StepOutcome(step.kind, step.label())
    run = context.start(step.label())
    if context.wait_to_strike(run, p):
        run.send(signal.SIGKILL, whole_group=p["target"] == "group")
    result = _finish(context, run, outcome)
    if result.returncode == -signal.SIGKILL:
        status = context.status()
        if "completed after" in result.stderr or status == "completed":
            # The kill landed after the run's completion was recorded, while the engine exited: the run is
            # over, as the store says.
            outcome.finished_before = True
            outcome.result = "completed"
            _expect_status(context, outcome, "completed")
        elif status is None:
            # The kill landed while the engine loaded, before it recorded the run: nothing ran to recover
            # (the next run starts the graph afresh), so it did not land while the graph ran.
            outcome.result = "killed-before-run"
        else:
            outcome.fired = True
            outcome.result = "killed"
            _expect_status(context, outcome, "running")
    elif result.completed:
        outcome.finished_before = True
        outcome.result = "completed"
        _expect_status(context, outcome, "completed")
    else:
        outcome.anomalies.append(f"{step.label()}: exit {result.returncode}: {tail(result.stderr)}")
        outcome.status = context.status()
    return outcome


def perform_kill_group(context: StepContext, step: Step) -> StepOutcome:
    p = dict(step.params)
    outcome = StepOutcome(step.kind, step.label())
    run = context.start(step.label(), retries=True)
    victim = None
    if context.wait_to_strike(run, p):
        groups = group_processes(run.pid)
        if groups:
            victim = groups[int(p["which"]) % len(groups)]
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                victim = None
    result = _finish(context, run, outcome)
    died = GROUP_DIED.search(result.stderr)
    if died is not None:
        outcome.label = replace(step, params={**p, "group": died.group(1)}).label()
    outcome.fired = victim is not None and died is not None
    outcome.finished_before = victim is None
    if result.completed:
        outcome.result = "recovered" if outcome.fired else "completed"
        _expect_status(context, outcome, "completed")
        if victim is not None and died is None:
            outcome.finished_before = True  # killed while the attempt was already ending
    else:
        outcome.anomalies.append(f"{step.label()}: exit {result.returncode} (expected 0 completed): "
                                 f"{tail(result.stderr)}")
        outcome.status = context.status()
    return outcome


PERFORMERS: dict[str, Callable[[StepContext, Step], StepOutcome]] = {
    "fault": perform_fault,
    "signal": perform_signal,
    "double-signal": perform_signal,
    "sigkill-engine": perform_sigkill,
    "kill-group": perform_kill_group,
}


def perform(context: StepContext, step: Step) -> StepOutcome:
    """Carry out ``step`` on the context's run and judge it."""
    return PERFORMERS[step.kind](context, step)
