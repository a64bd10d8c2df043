"""``snapgraph status``: the runs of a store with their live state, for people and for scripts.

A running engine renews its lease every few seconds and sends, with each heartbeat, a small report
made from its live view (:func:`progress_report`): the attempt, the epochs, the rows each operator
moved, and where its metrics and web monitor listen. :func:`store_status` reads the run records,
the lease and that report back — from any machine that reaches the store, without talking to the
engine — and tells a run whose engine is alive (``running``) from one whose engine died
(``unfinished``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from snapgraph.monitor.live import RunView
from snapgraph.snapshot.store import RunRecord, SnapshotStore


def progress_report(view: RunView, endpoints: dict[str, str] | None = None) -> dict[str, Any]:
    """What an engine sends with its heartbeat (JSON data): the view's summary, small whatever the run."""
    return {
        "status": view.status,
        "attempt": view.attempt,
        "recoveries": view.recoveries,
        "elapsed": round(view.elapsed, 3),
        "completed_epochs": view.completed_epochs,
        "last_completed_epoch": view.last_completed_epoch,
        "operators": {op.name: {"state": op.state, "messages_in": op.messages_in, "messages_out": op.messages_out,
                                "rows_in": op.rows_in, "rows_out": op.rows_out} for op in view.operators},
        "endpoints": dict(endpoints or {}),
    }


def heartbeat_source(view: Callable[[], RunView],
                     endpoints: Callable[[], dict[str, str]]) -> Callable[[], dict[str, Any]]:
    """A lease's report source (``Lease.report_progress``) reading ``view()`` at each heartbeat."""
    return lambda: progress_report(view(), endpoints())


@dataclass(frozen=True)
class RunStatusView:
    """One run of a store as ``snapgraph status`` shows it."""

    run: str
    graph: str
    graph_key: str
    status: str  # completed, stopped, failed, abandoned; running (its engine is alive); unfinished (it died)
    attempts: int
    epochs: int
    newest_epoch: str | None
    created: float
    updated: float
    engine: str | None = None  # "pid … on host …" while an engine holds the graph
    heartbeat_age: float | None = None  # seconds since the engine's last heartbeat
    progress: dict[str, Any] = field(default_factory=dict)  # the engine's last report (running runs only)
    progress_age: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_status(store: SnapshotStore, now: float) -> list[RunStatusView]:
    """Every run of ``store``, newest first; the newest run of a graph whose engine holds the lease is
    ``running`` with that engine's report. ``now``: the wall clock (seconds since 1970)."""
    runs = sorted(store.runs(), key=lambda r: (r.created, r.run_id), reverse=True)
    return [_status_of(store, run, now) for run in runs]


def _status_of(store: SnapshotStore, run: RunRecord, now: float) -> RunStatusView:
    epochs = store.epochs(run.run_id)
    shown = store.shown_status(run)
    base = RunStatusView(run.run_id, run.graph_name, run.graph_key, shown, run.attempts, len(epochs),
                         epochs[-1].epoch if epochs else None, run.created, run.updated)
    holder = store.lease_holder(run.graph_key)
    if shown != "running" or holder is None:
        return base
    progress = store.progress(run.graph_key)
    return _replace(base, status="running", engine=holder.describe(now),
                    heartbeat_age=max(0.0, now - holder.heartbeat),
                    progress=progress.report if progress is not None else {},
                    progress_age=max(0.0, now - progress.at) if progress is not None else None)


def _replace(view: RunStatusView, **changes: Any) -> RunStatusView:
    return RunStatusView(**{**asdict(view), **changes})


def render_status(runs: list[RunStatusView], location: str) -> str:
    """The text of ``snapgraph status``."""
    if not runs:
        return f"no runs in {location}"
    lines = [f"{'RUN':24} {'GRAPH':20} {'STATUS':10} {'ATTEMPTS':>8} {'EPOCHS':>6}  NEWEST EPOCH"]
    for run in runs:
        lines.append(f"{run.run:24} {run.graph[:20]:20} {run.status:10} {run.attempts:>8} {run.epochs:>6}  "
                     f"{run.newest_epoch or '-'}")
        if run.status != "running":
            continue
        lines.append(f"    engine {run.engine}")
        report = run.progress
        if not report:
            lines.append("    (no progress reported yet)")
            continue
        lines.append(f"    {report.get('status', '?')}, attempt {report.get('attempt', '?')} "
                     f"({report.get('recoveries', 0)} recoveries), {report.get('completed_epochs', 0)} epochs "
                     f"completed, elapsed {float(report.get('elapsed', 0.0)):.1f} s")
        for name, op in dict(report.get("operators", {})).items():
            lines.append(f"    {name:20} {op.get('state', '?'):12} in {op.get('messages_in', 0):>9} msg "
                         f"{op.get('rows_in', 0):>11} rows   out {op.get('messages_out', 0):>9} msg "
                         f"{op.get('rows_out', 0):>11} rows")
        for what, url in dict(report.get("endpoints", {})).items():
            lines.append(f"    {what}: {url}")
    return "\n".join(lines)


__all__ = ["RunStatusView", "heartbeat_source", "progress_report", "render_status", "store_status"]
