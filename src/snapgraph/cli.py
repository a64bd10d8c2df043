"""The ``snapgraph`` command line.

Exit codes: 0 the graph completed (or was stopped on request), 1 the graph
failed, 2 invalid input or a refused start (bad graph, bad script, bad
arguments, a run that needs --resume or --fresh, another engine holding the
graph's lease, a damaged store), 130 / 143 a second SIGINT / SIGTERM forced the
stop (the run stays resumable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from snapgraph import __version__
from snapgraph.model.graph import period_problem
from snapgraph.model.guarantees import REQUIRABLE, Guarantee, compute_guarantees, unmet
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.params import parse_param_assignments
from snapgraph.model.problems import GraphError
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.signals import StopOnSignals
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.runs import RunPlan, RunRefused, open_run
from snapgraph.snapshot.store import Lease, RunRecord, SnapshotStore, StoreError, open_store

DEFAULT_STORE = Path(".snapgraph") / "snapshots.db"
STORE_HELP = (f"Snapshot store: the path of an SQLite file (default {DEFAULT_STORE} in the working directory) "
              "or postgresql://USER@HOST:PORT/DATABASE[?schema=NAME].")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_param_assignments(list(values))
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--param") from None


def _load(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None,
          snapshots: bool | None = None) -> Any:
    """Load and validate the graph; on problems print them all and exit 2.

    ``snapshots`` adds the snapshot checks (cycles, multiplicity, restart
    policy); None follows the graph file's own snapshot setting.
    """
    options = LoadOptions(
        params=_parse_params(params),
        operator_dirs=[Path(d) for d in operators],
        connections_file=Path(connections) if connections else None,
        snapshots=snapshots,
    )
    try:
        return load_graph(Path(graph_file), options), options
    except GraphError as err:
        click.echo(f"snapgraph: {graph_file}: {len(err.problems)} problem(s):", err=True)
        for problem in err.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_INVALID)


graph_options = [
    click.argument("graph_file", type=click.Path(dir_okay=False)),
    click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                 help="Value of a graph parameter used as ${NAME} (repeatable)."),
    click.option("--operators", "-o", multiple=True, type=click.Path(file_okay=False, exists=True),
                 metavar="DIR", help="Folder of custom operators laid out as DI's repository (repeatable)."),
    click.option("--connections", "-c", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
                 help="Managed connections (YAML or JSON): connection id -> connectionType, connectionProperties."),
]


def with_graph_options(fn: Any) -> Any:
    for option in reversed(graph_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snapgraph")
def main() -> None:
    """Run SAP Data Intelligence Gen2 graphs of Python3 operators anywhere."""


def _period_option(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    problem = period_problem(value) if value is not None else None
    if problem is not None:
        raise click.BadParameter(problem)
    return value


require_option = click.option(
    "--require", type=click.Choice([g.value for g in REQUIRABLE]), metavar="GUARANTEE",
    help="Refuse the graph (exit 2) unless every writer gets this delivery guarantee: exactly-once, "
         "at-least-once or at-most-once (docs/guarantees.md).")


@main.command()
@with_graph_options
@click.option("--snapshot-period", type=float, callback=_period_option, metavar="SECONDS",
              help="Check the graph as `run --snapshot-period SECONDS` runs it: the snapshot limitations and "
                   "the delivery guarantee with snapshots.")
@click.option("--max-retries", type=click.IntRange(min=0), metavar="N",
              help="The delivery guarantee with automatic recovery, as `run --max-retries N` gives it.")
@require_option
def validate(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None,
             snapshot_period: float | None, max_retries: int | None, require: str | None) -> None:
    """Check GRAPH_FILE without running it; print every problem found and each writer's delivery guarantee."""
    graph, _ = _load(graph_file, params, operators, connections,
                     snapshots=True if snapshot_period is not None else None)
    _check_delivery(graph, snapshots=snapshot_period is not None or graph.settings.period is not None,
                    recovery=(max_retries if max_retries is not None else graph.settings.max_retries) is not None,
                    require=require, show=True)
    click.echo(
        f"{graph_file}: ok ({_count(len(graph.processes), 'operator')}, {_count(len(graph.connections), 'connection')})"
    )


def _check_delivery(graph: Any, *, snapshots: bool, recovery: bool, require: str | None, show: bool) -> list[str]:
    """Each writer's delivery guarantee (docs/guarantees.md) as the lines to print; with ``show`` they are
    printed now. With ``require`` a graph whose weakest writer does not get it is refused: the lines, then
    the weakest link, exit 2."""
    guarantees = compute_guarantees(graph, snapshots=snapshots, recovery=recovery)
    lines = [f"snapgraph: delivery: {g.describe()}" for g in guarantees] or [
        "snapgraph: delivery: the graph has no writer (no operator writes outside the graph)"]
    weakest = unmet(guarantees, Guarantee(require)) if require is not None else None
    if show or weakest is not None:
        _echo_lines(lines)
    if weakest is not None:
        has = "has no guarantee" if weakest.guarantee is Guarantee.NONE else f"is {weakest.guarantee.value}"
        _invalid(f"--require {require}: writer '{weakest.writer}' {has}: {weakest.weakest_link}; "
                 "nothing was started")
    return lines


def _backend_option(value: str | None) -> str | None:
    """``--backend NAME``: a registered engine backend (snapgraph.runtime.backends), else a usage error."""
    from snapgraph.runtime.backends import UnknownBackend, get_backend

    try:
        return None if value is None else get_backend(value).name
    except UnknownBackend as err:
        raise click.BadParameter(str(err)) from None


@main.command()
@with_graph_options
@click.option("--stop-after", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop a streaming graph gracefully after this many seconds.")
@click.option("--snapshot-period", type=float, callback=_period_option, metavar="SECONDS",
              help="Take a consistent graph snapshot every SECONDS (1 s to 24 h); overrides the graph file.")
@click.option("--store", "store_path", metavar="PATH|URL", help=STORE_HELP)
@click.option("--max-retries", type=click.IntRange(min=0), metavar="N",
              help="Recover automatically from failures; the run finally fails once more than N "
                   "consecutive attempts failed within --retry-threshold.")
@click.option("--retry-interval", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Seconds to wait before a recovery attempt (default 1).")
@click.option("--retry-threshold", type=click.FloatRange(min=0), metavar="SECONDS",
              help="An attempt that ran longer than this resets the failure counter (default 30).")
@click.option("--resume", is_flag=True,
              help="Continue this graph's newest run (unfinished, stopped, failed or completed) from its "
                   "newest complete epoch.")
@click.option("--fresh", is_flag=True, help="Abandon this graph's unfinished, stopped or failed run and start over.")
@click.option("--accept-older-epoch", is_flag=True,
              help="If the newest complete epoch is damaged, restore the newest intact older one instead "
                   "(what epoch_complete did since then is done again: at-least-once).")
@click.option("--in-process", is_flag=True,
              help="Run every group in this one process (for debuggers and breakpoints in scripts) "
                   "instead of one OS process per group.")
@click.option("--backend", metavar="NAME", callback=lambda ctx, param, value: _backend_option(value),
              help="Where the groups run: process (default: an OS process per group instance), inprocess "
                   "(the same as --in-process) or thread (threads of this process, in-memory links).")
@click.option("--events", metavar="FILE", type=click.Path(dir_okay=False), expose_value=False,
              callback=lambda ctx, param, value: __import__(
                  "snapgraph.instruments.eventlog", fromlist=["events_option"]).events_option(ctx, param, value),
              help="Write one JSON object per engine event (attempts, epochs, failures, operator stats) to FILE.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT", expose_value=False,
              callback=lambda ctx, param, value: ctx.meta.__setitem__(_METRICS_PORT, value),
              help="Serve Prometheus metrics of the run at http://HOST:PORT/metrics (0: a free port, printed).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST", expose_value=False,
              callback=lambda ctx, param, value: ctx.meta.__setitem__(_METRICS_HOST, value),
              help="The address --metrics-port listens on.")
@click.option("--ui-port", type=click.IntRange(0, 65535), metavar="PORT", expose_value=False,
              callback=lambda ctx, param, value: ctx.meta.__setitem__(_UI_PORT, value),
              help="Serve the read-only web monitor of this run on PORT (0: a free port, printed).")
@click.option("--ui-host", metavar="HOST", expose_value=False,
              callback=lambda ctx, param, value: ctx.meta.__setitem__(_UI_HOST, value),
              help="Address the web monitor listens on (default 127.0.0.1: this machine only).")
@click.option("--progress/--no-progress", default=None, expose_value=False,
              callback=lambda ctx, param, value: ctx.meta.__setitem__(_PROGRESS, value),
              help="Show the live progress of the run on standard error (default: when it is a terminal).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              expose_value=False, callback=lambda ctx, param, value: ctx.meta.__setitem__(_LOG_FORMAT, value),
              help="json: one JSON object per line on standard error for every engine event, operator log "
                   "line and engine message (no live progress).")
@require_option
@click.option("--verbose", "-v", is_flag=True, help="Show api.logger.debug output.")
def run(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None,
        stop_after: float | None, snapshot_period: float | None, store_path: str | None,
        max_retries: int | None, retry_interval: float | None, retry_threshold: float | None,
        resume: bool, fresh: bool, accept_older_epoch: bool, in_process: bool, backend: str | None,
        require: str | None, verbose: bool) -> None:
    """Run GRAPH_FILE until it completes, fails or is stopped.

    A run that recovers (snapshots or --max-retries) or is given --require first prints each writer's
    delivery guarantee; a run that does neither ends at its first failure, and says nothing of it."""
    # First of all, so that no signal meets Python's default handlers once a run could be planned.
    signals = StopOnSignals().install()
    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    if in_process and backend not in (None, "inprocess"):
        raise click.UsageError(f"--in-process and --backend {backend} exclude each other")
    in_process = in_process or backend == "inprocess"
    graph, load_options = _load(graph_file, params, operators, connections,
                                snapshots=True if snapshot_period is not None else None)
    snapshots_on = snapshot_period is not None or graph.settings.period is not None
    settings = graph.settings
    recovery = (max_retries if max_retries is not None else settings.max_retries) is not None
    delivery = _check_delivery(graph, snapshots=snapshots_on, recovery=recovery, require=require, show=False)
    forward_output = _start_displays(graph, signals, (store_path or DEFAULT_STORE) if snapshots_on else None,
                                     first_lines=delivery if snapshots_on or recovery or require else [])
    for group in graph.groups.values():
        if group.multiplicity > 1 and in_process:
            click.echo(f"snapgraph: warning: group {group.name!r} has multiplicity {group.multiplicity}; "
                       "with --in-process each group runs once", err=True)
    period = snapshot_period if snapshot_period is not None else settings.period
    policy = RecoveryPolicy(
        max_retries=max_retries if max_retries is not None else settings.max_retries,
        retry_interval=_first(retry_interval, settings.retry_interval, 1.0),
        retry_threshold=_first(retry_threshold, settings.retry_threshold, 30.0),
    )
    try:
        faults = FaultPlan.from_env()
    except ValueError as err:
        _invalid(f"SNAPGRAPH_FAULTS: {err}")
    store: SnapshotStore | None = None
    lease: Lease | None = None
    plan: RunPlan | None = None
    if period is not None:
        try:
            opened = open_run(store_path or DEFAULT_STORE, str(graph.path.resolve()), graph.name, graph_file,
                              resume=resume, fresh=fresh, accept_older=accept_older_epoch)
        except (RunRefused, StoreError) as err:
            _refused(err)
        store, lease, plan = opened.store, opened.lease, opened.plan
        _report_progress(lease, graph)
    elif resume or fresh or accept_older_epoch:
        flag = "--resume" if resume else "--fresh" if fresh else "--accept-older-epoch"
        _invalid(f"{flag} needs snapshots (--snapshot-period or snapshots.period in the graph file)")
    supervisor = Supervisor(
        graph,
        RunOptions(stop_after=stop_after, operator_dirs=load_options.operator_dirs,
                   log_level=logging.DEBUG if verbose else logging.INFO, in_process=in_process,
                   forward_output=forward_output),
        policy, store=store, period=period, plan=plan, lease=lease, accept_older=accept_older_epoch,
        faults=faults, backend=backend,
    )
    signals.attach(supervisor)
    started = time.monotonic()
    outcome = supervisor.run()
    signals.run_ended()
    _end_progress()  # the final lines go below the display's final state
    result = outcome.result
    elapsed = time.monotonic() - started
    attempts = f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else ""
    if outcome.refusal is not None:
        code = EXIT_INVALID
        click.echo(f"snapgraph: graph {graph.name!r}: recovery refused after {elapsed:.2f}s{attempts}; "
                   f"run {outcome.run_id} is left as it is (see above)", err=True)
    elif result.status == FAILED:
        click.echo(f"snapgraph: graph {graph.name!r} failed after {elapsed:.2f}s{attempts}: {result.reason}",
                   err=True)
        if result.failure is not None and result.failure.traceback:
            click.echo(result.failure.traceback, err=True)
        code = EXIT_INVALID if result.failure is not None and result.failure.invalid else EXIT_FAILED
    else:
        word = "completed" if result.status == COMPLETED else "stopped"
        resumable = f"; resume with --resume (run {outcome.run_id})" if word == "stopped" and store else ""
        click.echo(f"snapgraph: graph {graph.name!r} {word} after {elapsed:.2f}s{attempts}: {result.reason}"
                   f"{resumable}", err=True)
        code = EXIT_OK
    if result.stuck:
        click.echo(f"snapgraph: operators still busy after stop: {', '.join(result.stuck)}; exiting anyway",
                   err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@main.command()
@with_graph_options
@click.option("--schedules", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
              help="How many fault schedules to run after the failure-free run.")
@click.option("--seed", type=int, default=1, show_default=True, metavar="S",
              help="The first schedule's seed; schedule k has seed S+k-1 (--seed S+k-1 --schedules 1 replays it).")
@click.option("--setup", metavar="CMD",
              help="A shell command that resets your targets, run before the failure-free run and every schedule.")
@click.option("--check", metavar="CMD",
              help="A shell command run after each completed run; its exit code and standard output must equal "
                   "the failure-free run's (e.g. a query printing a digest of the target table).")
@click.option("--compare-sinks", is_flag=True,
              help="Compare what reached each writer, as its kind makes it its result (the default without "
                   "--check).")
@click.option("--point", "points", multiple=True, metavar="NAME",
              help="A crash point your scripts reach (fault_point(NAME)), to inject faults at besides the "
                   "protocol steps and the built-ins' own crash points (repeatable).")
@click.option("--snapshot-period", type=float, callback=_period_option, metavar="SECONDS",
              help="Take snapshots every SECONDS (1 s to 24 h); overrides the graph file.")
@click.option("--in-process", is_flag=True, help="Run every group in the engine's process.")
@click.option("--backend", metavar="NAME", callback=lambda ctx, param, value: _backend_option(value),
              help="Where the groups run: process (default), inprocess or thread.")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Show a progress bar on standard error (default: when it is a terminal).")
def chaos(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None,
          schedules: int, seed: int, setup: str | None, check: str | None, compare_sinks: bool,
          points: tuple[str, ...], snapshot_period: float | None, in_process: bool, backend: str | None,
          show_progress: bool | None) -> None:
    """Prove GRAPH_FILE's delivery guarantee: run it without faults, then under N seeded fault schedules
    (exceptions, exits and kills at every protocol step of every operator and at the built-ins' own crash
    points, SIGKILL of group processes, SIGKILL / SIGTERM / a second signal to the engine, each followed by
    --resume), and compare each result with the failure-free one. Exit 0 all passed, 1 a schedule failed,
    2 bad input (docs/chaos.md)."""
    from snapgraph.chaos.compare import CheckCommand, Comparison, SinkComparison
    from snapgraph.chaos.recorder import RecorderError, taps_for
    from snapgraph.chaos.runner import ChaosConfig, ChaosInputError
    from snapgraph.chaos.schedules import crash_points_of_graph
    from snapgraph.chaos.session import run_chaos

    if check is not None and compare_sinks:
        raise click.UsageError("--check and --compare-sinks exclude each other")
    if in_process and backend not in (None, "inprocess"):
        raise click.UsageError(f"--in-process and --backend {backend} exclude each other")
    graph, _ = _load(graph_file, params, operators, connections, snapshots=True)
    if snapshot_period is None and graph.settings.period is None:
        _invalid(f"chaos: {graph_file} takes no snapshots; give --snapshot-period SECONDS (or snapshots.period "
                 "in the graph file): a fault schedule resumes runs from their snapshots")
    comparison: Comparison
    if check is not None:
        comparison = CheckCommand(check, Path.cwd())
    else:
        try:
            comparison = SinkComparison(Path(graph_file), taps_for(graph))
        except RecorderError as err:
            _invalid(f"chaos: {err}")
    run_args: list[str] = []
    for assignment in params:
        run_args += ["--param", assignment]
    for folder in operators:
        run_args += ["--operators", str(Path(folder).resolve())]
    if connections:
        run_args += ["--connections", str(Path(connections).resolve())]
    if snapshot_period is not None:
        run_args += ["--snapshot-period", f"{snapshot_period:g}"]
    if in_process:
        run_args.append("--in-process")
    if backend is not None:
        run_args += ["--backend", backend]
    chaos_args = [arg for point in points for arg in ("--point", point)]
    if setup is not None:
        chaos_args += ["--setup", setup]
    chaos_args += ["--check", check] if check is not None else ["--compare-sinks"] if compare_sinks else []

    def reproduce(schedule_seed: int) -> str:
        return shlex.join(["snapgraph", "chaos", graph_file, "--seed", str(schedule_seed), "--schedules", "1",
                           *chaos_args, *run_args])

    config = ChaosConfig(
        graph_file=Path(graph_file).resolve(), run_args=tuple(run_args), operators=tuple(graph.processes),
        groups_as_processes=not in_process and backend in (None, "process"), schedules=schedules, seed=seed,
        comparison=comparison, setup=setup, extra_points=points, cwd=Path.cwd(), reproduce=reproduce,
        groups=sum(graph.groups[name].multiplicity if name in graph.groups else 1
                   for name in {process.group or "default" for process in graph.processes.values()}),
        crash_points=crash_points_of_graph(graph))
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the engine running then goes too (its own session)
    try:
        code = run_chaos(config, sys.stdout, sys.stderr, progress=show_progress)
    except ChaosInputError as err:
        _invalid(f"chaos: {err}")
    sys.exit(code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# What the display options of ``run`` leave in the command's context (click's ``ctx.meta``).
_WATCHER = "snapgraph.run_watcher"
_METRICS_PORT = "snapgraph.metrics_port"
_METRICS_HOST = "snapgraph.metrics_host"
_UI_PORT = "snapgraph.ui_port"
_UI_HOST = "snapgraph.ui_host"
_PROGRESS = "snapgraph.progress"
_LOG_FORMAT = "snapgraph.log_format"
_DISPLAY = "snapgraph.progress_display"
_ENDPOINTS = "snapgraph.endpoints"  # what this run serves (metrics, web monitor): name -> URL


def _start_displays(graph: Any, signals: StopOnSignals, store_location: str | Path | None, *,
                    first_lines: list[str]) -> bool:
    """Everything that watches the run, before anything of it starts: Prometheus metrics, the web monitor
    (one shared :class:`RunWatcher` for all; an address that cannot be bound is bad input, exit 2, nothing
    of the run started), then the terminal's progress or JSON logs. Whether the groups must forward their
    output to this process.

    ``first_lines`` and the addresses served go out before the live progress (which owns the terminal once
    it started: they stay above it), or as JSON messages with ``--log-format json`` (every line of standard
    error is JSON then)."""
    json_logs = click.get_current_context().meta.get(_LOG_FORMAT) == "json"
    served = [line for line in (_serve_metrics(graph), _serve_monitor(graph, store_location)) if line]
    if not json_logs:
        _echo_lines(first_lines + served)
    forward_output = _start_terminal_output(graph, signals)
    if json_logs:
        _echo_lines(first_lines + served)
    return forward_output


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)


def run_watcher(graph: Any) -> Any:
    """The one :class:`~snapgraph.monitor.live.RunWatcher` of this command's run, shared by every display
    option (metrics, progress, web monitor): installed on first use, removed when the command ends."""
    from snapgraph.instruments import install, uninstall
    from snapgraph.monitor.live import RunWatcher

    ctx = click.get_current_context()
    watcher = ctx.meta.get(_WATCHER)
    if watcher is None:
        watcher = ctx.meta[_WATCHER] = RunWatcher(graph)
        install(watcher)
        ctx.call_on_close(lambda: uninstall(watcher))
    return watcher


def _start_terminal_output(graph: Any, signals: StopOnSignals) -> bool:
    """``--progress`` (by default on a terminal) or ``--log-format json``: they own standard error for the
    rest of the command, the operators' log lines go to them. Whether the groups must forward their output."""
    from snapgraph.runtime import logs

    ctx = click.get_current_context()
    progress, log_format = ctx.meta.get(_PROGRESS), ctx.meta.get(_LOG_FORMAT, "text")
    if log_format == "json":
        if progress:
            raise click.UsageError("--progress and --log-format json exclude each other")
        from snapgraph.instruments import install, uninstall
        from snapgraph.monitor.jsonlog import JsonLog

        stderr = sys.stderr
        log = JsonLog(stderr)
        install(log)
        logs.set_destination(log)
        sys.stderr = log.messages

        def end_json() -> None:
            log.messages.flush()
            sys.stderr = stderr
            logs.set_destination(None)
            uninstall(log)

        ctx.call_on_close(end_json)
        return True
    if not (progress or (progress is None and sys.stderr.isatty())):
        return False
    from rich.console import Console

    from snapgraph.monitor.progress import ProgressDisplay

    display = ProgressDisplay(run_watcher(graph), Console(stderr=True, force_terminal=True if progress else None))
    ctx.meta[_DISPLAY] = display
    logs.set_destination(display)
    signals.before_forced_exit(display.close)
    ctx.call_on_close(_end_progress)
    display.start()
    return True


def _end_progress() -> None:
    """Close the live display, if there is one (idempotent): its final state stays on the terminal."""
    from snapgraph.runtime import logs

    display = click.get_current_context().meta.get(_DISPLAY)
    if display is not None:
        display.close()
        logs.set_destination(None)


def _serve_metrics(graph: Any) -> str | None:
    """``--metrics-port``: serve /metrics before anything of the run starts; a port that cannot be bound
    is bad input (exit 2, the store untouched). The line that says where."""
    ctx = click.get_current_context()
    port, host = ctx.meta.get(_METRICS_PORT), ctx.meta.get(_METRICS_HOST, "127.0.0.1")
    if port is None:
        return None
    from snapgraph.monitor.metrics import serve_metrics

    try:
        server = serve_metrics(run_watcher(graph), host, port)
    except OSError as err:
        _invalid(f"--metrics-port {port}: cannot listen on {host}:{port}: {err.strerror or err}")
    ctx.call_on_close(server.close)
    ctx.meta.setdefault(_ENDPOINTS, {})["metrics"] = server.url
    return f"snapgraph: metrics at {server.url}"


def _serve_monitor(graph: Any, store_location: str | Path | None) -> str | None:
    """``--ui-port``: the read-only web monitor of this run (and of the other runs of its store). The line
    that says where."""
    ctx = click.get_current_context()
    port = ctx.meta.get(_UI_PORT)
    if port is None:
        return None
    from snapgraph.monitor.web import DEFAULT_HOST, LiveSource, MonitorError, MonitorServer

    host = ctx.meta.get(_UI_HOST) or DEFAULT_HOST
    try:
        server = MonitorServer(LiveSource(run_watcher(graph), store_location), host, port).start()
    except MonitorError as err:
        _invalid(f"--ui-port {port}: {err}")
    ctx.call_on_close(server.close)
    ctx.meta.setdefault(_ENDPOINTS, {})["monitor"] = server.url
    return f"snapgraph: monitor at {server.url}"


def _report_progress(lease: Lease, graph: Any) -> None:
    """Send the run's progress with the lease's heartbeats, for ``snapgraph status`` on any machine."""
    from snapgraph.monitor.status import heartbeat_source

    ctx = click.get_current_context()
    lease.report_progress(heartbeat_source(run_watcher(graph).view, lambda: dict(ctx.meta.get(_ENDPOINTS, {}))))



def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def _refused(err: RunRefused | StoreError) -> NoReturn:
    """A start that is not safe: say why and exit with the refusal's code (nothing was written)."""
    click.echo(f"snapgraph: {err}", err=True)
    sys.exit(err.exit_code if isinstance(err, StoreError) else EXIT_INVALID)


def _invalid(message: str) -> NoReturn:
    click.echo(f"snapgraph: {message}", err=True)
    sys.exit(EXIT_INVALID)


store_option = click.option("--store", "store_path", metavar="PATH|URL", help=STORE_HELP)


@main.group()
def snapshots() -> None:
    """List, show and delete runs and their snapshot epochs."""


@snapshots.command("list")
@store_option
def snapshots_list(store_path: str | None) -> None:
    """List runs with their status and newest complete epoch."""
    store = _open_existing_store(store_path)
    with _store_errors():
        runs = store.runs()
        if not runs:
            click.echo("no runs")
            return
        click.echo(f"{'RUN':24} {'GRAPH':20} {'STATUS':10} {'ATTEMPTS':>8} {'EPOCHS':>6}  NEWEST EPOCH")
        for run in runs:
            epochs = store.epochs(run.run_id)
            newest = epochs[-1].epoch if epochs else "-"
            click.echo(f"{run.run_id:24} {run.graph_name[:20]:20} {store.shown_status(run):10} "
                       f"{run.attempts:>8} {len(epochs):>6}  {newest}")


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except StoreError as err:
        click.echo(f"snapgraph: {err}", err=True)
        sys.exit(err.exit_code)


@snapshots.command("show")
@click.argument("run_id")
@store_option
def snapshots_show(run_id: str, store_path: str | None) -> None:
    """Show one run: its epochs with time, duration and bytes per operator."""
    store = _open_existing_store(store_path)
    with _store_errors():
        run = next((r for r in store.runs() if r.run_id == run_id), None)
        if run is None:
            _invalid(f"no run {run_id!r} in {store.location} (see 'snapgraph snapshots list')")
        _show_run(store, run)


def _show_run(store: SnapshotStore, run: RunRecord) -> None:
    click.echo(f"run {run.run_id}: graph {run.graph_name} ({run.graph_key})")
    click.echo(f"status {store.shown_status(run)}, {run.attempts} attempt(s), started "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.created))}")
    holder = store.live_holder(run.graph_key)
    if holder is not None:
        click.echo(f"engine {holder.describe(time.time())}")
    for epoch in store.epochs(run.run_id):
        sizes = ", ".join(f"{name}={size}B" for name, size in sorted(epoch.operator_bytes.items())) or "no state"
        click.echo(f"  epoch {epoch.epoch}  took {epoch.duration * 1000:.1f} ms  "
                   f"{epoch.total_bytes} bytes  ({sizes})")


@snapshots.command("delete")
@click.argument("run_id")
@store_option
def snapshots_delete(run_id: str, store_path: str | None) -> None:
    """Delete a run and all its snapshots."""
    store = _open_existing_store(store_path, read_only=False)
    with _store_errors():
        run = next((r for r in store.runs() if r.run_id == run_id), None)
        if run is None:
            _invalid(f"no run {run_id!r} in {store.location}")
        holder = store.live_holder(run.graph_key)
        if holder is not None:
            _invalid(f"run {run_id} belongs to graph {run.graph_key}, which an engine is running "
                     f"({holder.describe(time.time())}); stop it first")
        store.delete_run(run_id)
    click.echo(f"deleted run {run_id}")


@main.command()
@store_option
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def ui(store_path: str | None, port: int, host: str) -> None:
    """Serve the read-only web monitor of the runs in a store (their epochs and graphs) until Ctrl-C."""
    from snapgraph.monitor.web import MonitorError, MonitorServer, StoreSource

    _open_existing_store(store_path).close()  # a missing or damaged store is refused here, not in the browser
    try:
        server = MonitorServer(StoreSource(store_path or DEFAULT_STORE), host, port).start()
    except MonitorError as err:
        _invalid(f"--port {port}: {err}")
    click.echo(f"snapgraph: monitor at {server.url}", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@main.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the runs with their live state.")
def status(store_path: str | None, as_json: bool) -> None:
    """The runs of a store, newest first, with the live progress of those an engine is running now."""
    from snapgraph.monitor.status import render_status, store_status

    store = _open_existing_store(store_path)
    with _store_errors():
        runs = store_status(store, time.time())
    if as_json:
        click.echo(json.dumps({"store": store.location, "runs": [run.as_dict() for run in runs]}, indent=2))
    else:
        click.echo(render_status(runs, store.location))


def _open_existing_store(store_path: str | None, *, read_only: bool = True) -> SnapshotStore:
    try:
        return open_store(store_path or DEFAULT_STORE, create=False, read_only=read_only)
    except StoreError as err:
        _invalid(str(err))


if __name__ == "__main__":
    main()
