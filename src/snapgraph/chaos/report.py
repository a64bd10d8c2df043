"""What ``snapgraph chaos`` prints: a line per schedule, the summary, and each failure with its reproduction.

A passed schedule whose faults did not all fire says so on its line (it tested less than it planned: a
fault whose point was not reached, or not that often, in its engine run). The summary counts schedules and
how many passed, the steps carried out (and those left out because the run had completed before them), the
faults injected and how many fired, the schedules whose faults all fired, the signals and kills sent and
how many landed while the graph ran. A failure-free run of a single epoch gets a warning: no schedule
can restore from the middle of such a run. Each failed schedule gets its seed, its plan, what differed or went
wrong, the folder kept with its engines' standard error, and one command line that replays exactly that
schedule (the same plan; where a signal lands depends on timing).
"""

from __future__ import annotations

from collections.abc import Callable

from snapgraph.chaos.runner import Reference, ScheduleResult


def verdict(result: ScheduleResult) -> str:
    """``passed``, ``FAILED``, or a pass that tested less than planned because faults did not fire."""
    if not result.passed:
        return "FAILED"
    planned, fired = result.faults()
    if fired == planned:
        return "passed"
    if planned == 1:
        return "passed (its fault did not fire)"
    return f"passed ({planned - fired} of its {planned} faults did not fire)"


def schedule_line(number: int, total: int, result: ScheduleResult) -> str:
    planned, fired = result.faults()
    strikes, landed = result.strikes()
    skipped = f", {result.skipped} skipped" if result.skipped else ""
    return (f"[{number}/{total}] seed {result.schedule.seed}: {result.label()} | {verdict(result)} | "
            f"faults fired {fired}/{planned}, strikes landed {landed}/{strikes}{skipped}; "
            f"{result.engine_runs} engine runs, {result.seconds:.1f}s")


def reference_line(reference: Reference, description: str) -> str:
    shape = reference.shape
    receivers = ", ".join(f"{name} {shape.messages_in[name]}" for name in shape.receivers) or "none"
    return (f"failure-free run: completed in {reference.seconds:.1f}s, {shape.epochs} epoch(s); messages received: "
            f"{receivers}; comparing {description}")


def reference_warnings(reference: Reference) -> list[str]:
    """What makes the schedules of this failure-free run weaker than they look."""
    if reference.shape.epochs > 1:
        return []
    return ["warning: the failure-free run completed a single epoch, so no schedule can restore from the middle "
            "of the run (every recovery starts it again): give a shorter --snapshot-period or a bigger input"]


def summary(results: list[ScheduleResult], reproduce: Callable[[int], str]) -> list[str]:
    passed = sum(1 for r in results if r.passed)
    steps = sum(len(r.steps) for r in results)
    skipped = sum(r.skipped for r in results)
    planned = sum(r.faults()[0] for r in results)
    fired = sum(r.faults()[1] for r in results)
    with_faults = [r.faults_all_fired for r in results if r.faults_all_fired is not None]
    strikes = sum(r.strikes()[0] for r in results)
    landed = sum(r.strikes()[1] for r in results)
    lines = [
        f"schedules: {len(results)}, passed {passed}, failed {len(results) - passed}",
        f"steps: {steps} carried out, {skipped} left out (the run had completed before them); "
        f"faults injected {planned}, fired {fired}; signals and kills {strikes}, landed while the graph ran {landed}",
        f"schedules with faults: {len(with_faults)}, all their faults fired in {sum(with_faults)}",
    ]
    for result in results:
        if result.passed:
            continue
        lines.append(f"FAILED seed {result.schedule.seed}: {result.label()}")
        if result.difference:
            lines.append(f"  result differs from the failure-free run: {result.difference}")
        lines += [f"  {anomaly.splitlines()[0][:700]}" for anomaly in result.anomalies]
        lines.append(f"  kept: {result.folder}")
        lines.append(f"  reproduce: {reproduce(result.schedule.seed)}")
    return lines
