"""Live terminal progress of a run (``snapgraph run`` on a TTY, or ``--progress``).

A :class:`ProgressDisplay` draws a Rich :class:`~rich.live.Live` table on standard error: one row
per operator (state, messages and rows in/out with rates, callback share) under a line for the
graph (status, attempt and recoveries, epochs completed, the last epoch's duration and size,
elapsed time). It reads :meth:`RunWatcher.view` on a thread of its own every ``every`` seconds —
never per message, so the engine's hot path does not know it exists.

Everything else that would write to the terminal meanwhile is printed *above* the table, so
nothing garbles it: the driver's own ``sys.stderr`` (and ``sys.stdout`` when it is the terminal too)
are redirected by Rich, and the display is the process's log destination
(:func:`snapgraph.runtime.logs.set_destination`: it has ``operator_log`` and ``process_output``),
which receives the operators' log lines, forwarded from the group processes as control messages.

:meth:`ProgressDisplay.close` draws the final state once and gives the terminal back (cursor shown,
streams restored); it may be called from any thread, any number of times (the end of the run, a
forced exit on a second signal).
"""

from __future__ import annotations

import sys
import threading
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from snapgraph.monitor.live import OperatorView, RunView, RunWatcher

REDRAW_EVERY = 0.25  # seconds between two redraws

STATE_STYLES = {
    "loading": "cyan", "running": "green", "blocked": "yellow", "aligning": "magenta",
    "snapshotting": "magenta", "failed": "bold red", "done": "dim", "shutdown": "dim",
}


class LogLine(Protocol):
    """An operator's log line (:class:`snapgraph.runtime.control.OperatorLog`)."""

    @property
    def operator(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def time(self) -> float: ...


def count(value: float) -> str:
    """A count or rate, short: 999, 12.3k, 4.5M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def size(nbytes: int) -> str:
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if nbytes >= limit:
            return f"{nbytes / limit:.1f} {suffix}"
    return f"{nbytes} B"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def _total_and_rate(total: int, rate: float) -> str:
    return f"{count(total)} ({count(rate)}/s)" if rate else count(total)


def summary(view: RunView) -> str:
    """The graph's line: status, attempt and recoveries, epochs, the last epoch, elapsed time."""
    parts = [f"graph {view.graph!r}", view.status]
    if view.run:
        parts.append(f"run {view.run}")
    parts.append(f"attempt {view.attempt}" + (f", {view.recoveries} recoveries" if view.recoveries else ""))
    parts.append(f"{view.completed_epochs} epochs")
    if view.last_completed_epoch is not None and view.last_epoch_seconds is not None:
        parts.append(f"last {view.last_completed_epoch} in {duration(view.last_epoch_seconds)}, "
                     f"{size(view.last_epoch_bytes or 0)}")
    parts.append(f"elapsed {duration(view.elapsed)}")
    return " · ".join(parts)


def _row(operator: OperatorView) -> list[Text | str]:
    return [
        operator.name,
        Text(operator.state, style=STATE_STYLES.get(operator.state, "")),
        _total_and_rate(operator.messages_in, operator.messages_in_per_s),
        _total_and_rate(operator.messages_out, operator.messages_out_per_s),
        _total_and_rate(operator.rows_in, operator.rows_in_per_s),
        _total_and_rate(operator.rows_out, operator.rows_out_per_s),
        f"{operator.callback_share:.0%}",
    ]


def render(view: RunView) -> RenderableType:
    """The display for one view: the graph's line above the operators' table."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("operator", "state", "msgs in", "msgs out", "rows in", "rows out"):
        table.add_column(column, justify="left" if column in ("operator", "state") else "right")
    table.add_column("callback", justify="right")
    for operator in view.operators:
        table.add_row(*_row(operator))
    return Group(Text(summary(view), style="bold"), table)


class ProgressDisplay:
    """The live display of the run ``watcher`` watches, on ``console`` (see the module docstring)."""

    def __init__(self, watcher: RunWatcher, console: Console, *, every: float = REDRAW_EVERY,
                 redirect_stdout: bool | None = None) -> None:
        self._watcher = watcher
        self._console = console
        self._every = every
        # Standard output goes above the display only when it is the terminal too: a redirected
        # standard output (``> out.txt``) keeps every byte of the graph's output.
        if redirect_stdout is None:
            redirect_stdout = sys.stdout.isatty()
        self._live = Live(console=console, auto_refresh=False, redirect_stdout=redirect_stdout,
                          redirect_stderr=True)
        self._closing = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._redraw, name="progress", daemon=True)

    def start(self) -> ProgressDisplay:
        self._live.start()
        self._live.update(render(self._watcher.view()), refresh=True)
        self._thread.start()
        return self

    def _redraw(self) -> None:
        while not self._closing.wait(self._every):
            self._live.update(render(self._watcher.view()), refresh=True)

    def close(self) -> None:
        """Draw the final state once and give the terminal back (idempotent, from any thread)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            if self._thread.is_alive() and self._thread is not threading.current_thread():
                self._thread.join()
            self._live.update(render(self._watcher.view()), refresh=True)
            self._live.stop()

    # -- the log destination --------------------------------------------------------------------------
    def operator_log(self, record: LogLine) -> None:
        self._print(f"[{record.operator}] {record.level}: {record.message}")

    def process_output(self, text: str) -> None:
        self._print(text.removesuffix("\n"))

    def _print(self, line: str) -> None:
        """One line above the display, as it is (no markup, no highlighting, no wrapping of ours)."""
        self._console.print(Text(line), soft_wrap=True, markup=False, highlight=False)


__all__ = ["LogLine", "ProgressDisplay", "render", "summary"]
