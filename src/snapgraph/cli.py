"""The ``snapgraph`` command line.

Exit codes: 0 the graph completed (or was stopped on request), 1 the graph
failed, 2 invalid input (bad graph, bad script, bad arguments).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from snapgraph import __version__
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.problems import GraphError
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import MAX_PERIOD, MIN_PERIOD
from snapgraph.snapshot.store import ABANDONED, SQLiteStore, StoreError

DEFAULT_STORE = Path(".snapgraph") / "snapshots.db"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        params[name.strip()] = value
    return params


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


@main.command()
@with_graph_options
def validate(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None) -> None:
    """Check GRAPH_FILE without running it; print every problem found."""
    graph, _ = _load(graph_file, params, operators, connections)
    click.echo(
        f"{graph_file}: ok ({len(graph.processes)} operators, {len(graph.connections)} connections)"
    )


@main.command()
@with_graph_options
@click.option("--stop-after", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop a streaming graph gracefully after this many seconds.")
@click.option("--snapshot-period", type=click.FloatRange(MIN_PERIOD, MAX_PERIOD), metavar="SECONDS",
              help="Take a consistent graph snapshot every SECONDS (1 s to 24 h); overrides the graph file.")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), metavar="PATH",
              help=f"Snapshot store (SQLite file); default {DEFAULT_STORE} in the working directory.")
@click.option("--max-retries", type=click.IntRange(min=0), metavar="N",
              help="Recover automatically from failures; the run finally fails once more than N "
                   "consecutive attempts failed within --retry-threshold.")
@click.option("--retry-interval", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Seconds to wait before a recovery attempt (default 1).")
@click.option("--retry-threshold", type=click.FloatRange(min=0), metavar="SECONDS",
              help="An attempt that ran longer than this resets the failure counter (default 30).")
@click.option("--resume", is_flag=True, help="Continue this graph's unfinished run from its last complete epoch.")
@click.option("--fresh", is_flag=True, help="Abandon this graph's unfinished run and start a new one.")
@click.option("--in-process", is_flag=True,
              help="Run every group in this one process (for debuggers and breakpoints in scripts) "
                   "instead of one OS process per group.")
@click.option("--verbose", "-v", is_flag=True, help="Show api.logger.debug output.")
def run(graph_file: str, params: tuple[str, ...], operators: tuple[str, ...], connections: str | None,
        stop_after: float | None, snapshot_period: float | None, store_path: str | None,
        max_retries: int | None, retry_interval: float | None, retry_threshold: float | None,
        resume: bool, fresh: bool, in_process: bool, verbose: bool) -> None:
    """Run GRAPH_FILE until it completes, fails or is stopped."""
    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    graph, load_options = _load(graph_file, params, operators, connections,
                                snapshots=True if snapshot_period is not None else None)
    settings = graph.settings
    for group in graph.groups.values():
        if group.multiplicity > 1 and in_process:
            click.echo(f"snapgraph: warning: group {group.name!r} has multiplicity {group.multiplicity}; "
                       "with --in-process each group runs once", err=True)
    period = snapshot_period if snapshot_period is not None else settings.period
    if period is not None and not MIN_PERIOD <= period <= MAX_PERIOD:
        _invalid(f"{graph_file}: snapshot period {period:g}s is outside 1 s .. 24 h")
    policy = RecoveryPolicy(
        max_retries=max_retries if max_retries is not None else settings.max_retries,
        retry_interval=_first(retry_interval, settings.retry_interval, 1.0),
        retry_threshold=_first(retry_threshold, settings.retry_threshold, 30.0),
    )
    try:
        faults = FaultPlan.from_env()
    except ValueError as err:
        _invalid(f"SNAPGRAPH_FAULTS: {err}")
    store = None
    resume_run = None
    if period is not None:
        store = _open_store(store_path)
        unfinished = store.unfinished_run(str(graph.path.resolve()))
        if unfinished is not None and not (resume or fresh):
            epoch = store.latest_intact_epoch(unfinished.run_id)
            where = f"its last complete epoch is {epoch[0].epoch}" if epoch else "it has no complete epoch yet"
            _invalid(
                f"graph {graph_file} has an unfinished run {unfinished.run_id} ({where}); "
                "use --resume to continue it or --fresh to abandon it and start over"
            )
        if unfinished is not None and fresh:
            store.finish_run(unfinished.run_id, ABANDONED)
        if unfinished is not None and resume:
            resume_run = unfinished
        elif resume:
            click.echo("snapgraph: no unfinished run to resume; starting a new run", err=True)
    elif resume:
        _invalid("--resume needs snapshots (--snapshot-period or snapshots.period in the graph file)")
    supervisor = Supervisor(
        graph,
        RunOptions(stop_after=stop_after, operator_dirs=load_options.operator_dirs,
                   log_level=logging.DEBUG if verbose else logging.INFO, in_process=in_process),
        policy, store=store, period=period, resume=resume_run, faults=faults,
    )
    _install_signal_handlers(supervisor)
    started = time.monotonic()
    try:
        outcome = supervisor.run()
    except StoreError as err:
        click.echo(f"snapgraph: {err}", err=True)
        sys.exit(EXIT_FAILED)
    result = outcome.result
    elapsed = time.monotonic() - started
    attempts = f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else ""
    if result.status == FAILED:
        click.echo(f"snapgraph: graph {graph.name!r} failed after {elapsed:.2f}s{attempts}: {result.reason}",
                   err=True)
        if result.failure is not None and result.failure.traceback:
            click.echo(result.failure.traceback, err=True)
        code = EXIT_INVALID if result.failure is not None and result.failure.invalid else EXIT_FAILED
    else:
        word = "completed" if result.status == COMPLETED else "stopped"
        click.echo(f"snapgraph: graph {graph.name!r} {word} after {elapsed:.2f}s{attempts}: {result.reason}",
                   err=True)
        code = EXIT_OK
    if result.stuck:
        click.echo(f"snapgraph: operators still busy after stop: {', '.join(result.stuck)}; exiting anyway",
                   err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def _invalid(message: str) -> None:
    click.echo(f"snapgraph: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _open_store(store_path: str | None) -> SQLiteStore:
    try:
        return SQLiteStore(Path(store_path) if store_path else DEFAULT_STORE)
    except StoreError as err:
        _invalid(str(err))
        raise  # unreachable; keeps type checkers happy


store_option = click.option("--store", "store_path", type=click.Path(dir_okay=False), metavar="PATH",
                            help=f"Snapshot store (SQLite file); default {DEFAULT_STORE}.")


@main.group()
def snapshots() -> None:
    """List, show and delete runs and their snapshot epochs."""


@snapshots.command("list")
@store_option
def snapshots_list(store_path: str | None) -> None:
    """List runs with their status and newest complete epoch."""
    store = _open_existing_store(store_path)
    runs = store.runs()
    if not runs:
        click.echo("no runs")
        return
    click.echo(f"{'RUN':24} {'GRAPH':20} {'STATUS':10} {'ATTEMPTS':>8} {'EPOCHS':>6}  NEWEST EPOCH")
    for run in runs:
        epochs = store.epochs(run.run_id)
        newest = epochs[-1].epoch if epochs else "-"
        click.echo(f"{run.run_id:24} {run.graph_name[:20]:20} {run.status:10} {run.attempts:>8} "
                   f"{len(epochs):>6}  {newest}")


@snapshots.command("show")
@click.argument("run_id")
@store_option
def snapshots_show(run_id: str, store_path: str | None) -> None:
    """Show one run: its epochs with time, duration and bytes per operator."""
    store = _open_existing_store(store_path)
    run = next((r for r in store.runs() if r.run_id == run_id), None)
    if run is None:
        _invalid(f"no run {run_id!r} in {store.path} (see 'snapgraph snapshots list')")
        return
    click.echo(f"run {run.run_id}: graph {run.graph_name} ({run.graph_key})")
    click.echo(f"status {run.status}, {run.attempts} attempt(s), started "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.created))}")
    for epoch in store.epochs(run_id):
        sizes = ", ".join(f"{name}={size}B" for name, size in sorted(epoch.operator_bytes.items())) or "no state"
        click.echo(f"  epoch {epoch.epoch}  took {epoch.duration * 1000:.1f} ms  "
                   f"{epoch.total_bytes} bytes  ({sizes})")


@snapshots.command("delete")
@click.argument("run_id")
@store_option
def snapshots_delete(run_id: str, store_path: str | None) -> None:
    """Delete a run and all its snapshots."""
    store = _open_existing_store(store_path)
    if not store.delete_run(run_id):
        _invalid(f"no run {run_id!r} in {store.path}")
    click.echo(f"deleted run {run_id}")


def _open_existing_store(store_path: str | None) -> SQLiteStore:
    path = Path(store_path) if store_path else DEFAULT_STORE
    if not path.is_file():
        _invalid(f"no snapshot store at {path}")
    return _open_store(str(path))


def _install_signal_handlers(supervisor: Supervisor) -> None:
    """SIGINT/SIGTERM stop the graph gracefully; a second one exits at once."""

    def handler(signum: int, frame: Any) -> None:
        if supervisor.is_stopping():
            os._exit(EXIT_FAILED)
        supervisor.stop(f"{signal.Signals(signum).name} received")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    main()
