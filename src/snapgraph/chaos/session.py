"""One ``snapgraph chaos`` invocation: the reference run, the schedules under a progress bar, the report.

:func:`run_chaos` returns the command's exit code: 0 every schedule passed, 1 a schedule failed (its
result differed from the failure-free run's, or the engine did what the documentation rules out), 2
nothing could be compared (the setup or the failure-free run failed; raised as
:class:`~snapgraph.chaos.runner.ChaosInputError` for the command to report), 130 interrupted (Ctrl-C: the
engine running then is killed, the schedules done so far are reported, the work folder is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from snapgraph.chaos.engine import kill_live_runs
from snapgraph.chaos.report import reference_line, reference_warnings, schedule_line, summary
from snapgraph.chaos.runner import ChaosConfig, ChaosRunner, ScheduleResult

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def run_chaos(config: ChaosConfig, out: TextIO, err: TextIO, *, progress: bool | None = None) -> int:
    """Run the reference and every schedule; print a line per schedule and the summary to ``out``, the
    progress bar to ``err`` (``progress`` None: only when ``err`` is a terminal)."""
    console = Console(file=err, force_terminal=True if progress else None)
    show = progress if progress is not None else console.is_terminal
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not show, transient=False, redirect_stdout=False)
    task = bar.add_task("failure-free run", total=config.schedules + 1)
    runner = ChaosRunner(config, on_progress=lambda text: bar.update(task, description=text))
    results: list[ScheduleResult] = []
    code: int | None = None  # None: bad input (ChaosInputError) on its way out
    try:
        with bar:
            _run_all(runner, results, out, lambda: bar.advance(task),
                     lambda text: bar.update(task, description=text))
        code = EXIT_FAILED if any(not r.passed for r in results) else EXIT_PASSED
    except KeyboardInterrupt:
        kill_live_runs()
        _print(out, f"interrupted after {len(results)} of {config.schedules} schedules; "
                    f"work folder kept: {runner.root}")
        code = EXIT_INTERRUPTED
    finally:
        runner.close(keep=code in (EXIT_FAILED, EXIT_INTERRUPTED))  # their runs stay for inspection
    for line in summary(results, config.reproduce):
        _print(out, line)
    return code


def _run_all(runner: ChaosRunner, results: list[ScheduleResult], out: TextIO, advance: Callable[[], None],
             describe: Callable[[str], None]) -> None:
    reference = runner.reference()
    advance()
    _print(out, reference_line(reference, runner.config.comparison.description))
    for warning in reference_warnings(reference):
        _print(out, warning)
    plans = runner.plans(reference.shape)
    for number, schedule in enumerate(plans, 1):
        describe(f"schedule {schedule.seed} ({number}/{len(plans)})")
        result = runner.run_schedule(schedule, reference)
        results.append(result)
        runner.discard(result)
        advance()
        _print(out, schedule_line(number, len(plans), result))
    describe("done")


def _print(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()
