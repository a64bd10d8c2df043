"""Operator loggers: ``api.logger`` writes to standard error, prefixed with the process name.

Every line an operator logs becomes an :class:`~snapgraph.runtime.control.OperatorLog` record
first, so that it can travel: a group process that forwards its output (``RunOptions.forward_output``)
sends the record to the driver, and the driver hands it to this process's :class:`LogDestination`
(a live display, a JSON log) when one is set. Without one — the default — the record is written to
``sys.stderr`` as ``[operator] LEVEL: message``, exactly where and how it always was.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

from snapgraph.runtime.control import OperatorLog


class LogDestination(Protocol):
    """Where this process's operator log lines and forwarded process output go instead of standard error."""

    def operator_log(self, record: OperatorLog) -> None: ...

    def process_output(self, text: str) -> None:
        """Text a group process wrote to its standard error (a script's ``print(..., file=sys.stderr)``)."""


_destination: LogDestination | None = None


def set_destination(destination: LogDestination | None) -> LogDestination | None:
    """Send this process's operator logs to ``destination`` (None: standard error again); the previous one."""
    global _destination
    previous, _destination = _destination, destination
    return previous


def as_text(record: OperatorLog) -> str:
    """The line the default destination writes (without its newline)."""
    return f"[{record.operator}] {record.level}: {record.message}"


def deliver(record: OperatorLog) -> None:
    """Place one operator log line of this process or of a group that forwarded it."""
    destination = _destination
    if destination is not None:
        destination.operator_log(record)
        return
    sys.stderr.write(as_text(record) + "\n")
    sys.stderr.flush()


def deliver_process_output(text: str) -> None:
    """Place what a forwarding group process wrote to its standard error."""
    destination = _destination
    if destination is not None:
        destination.process_output(text)
        return
    sys.stderr.write(text)
    sys.stderr.flush()


class _RecordHandler(logging.Handler):
    """Turns each log record into an :class:`OperatorLog` and routes it (read at emit time, so that
    redirection and test capture of ``sys.stderr`` work)."""

    def __init__(self, route: Callable[[OperatorLog], None]) -> None:
        super().__init__()
        self._route = route
        self.setFormatter(logging.Formatter("%(message)s"))  # adds a logged exception's traceback

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._route(OperatorLog(record.name, record.levelname, self.format(record), record.created))
        except Exception:  # noqa: BLE001 - logging must never break an operator
            self.handleError(record)


class OperatorLogger(logging.Logger):
    """A standard logger that also answers to ``warn`` (used by Gen2 scripts) without a deprecation warning."""

    def warn(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


def operator_logger(process: str, level: int = logging.INFO,
                    route: Callable[[OperatorLog], None] = deliver) -> OperatorLogger:
    """A logger named after ``process``, not registered globally (runs never share state); its lines go
    to ``route`` (by default :func:`deliver`)."""
    logger = OperatorLogger(process, level)
    logger.addHandler(_RecordHandler(route))
    logger.propagate = False
    return logger
