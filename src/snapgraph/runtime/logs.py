"""Operator loggers: ``api.logger`` writes to standard error, prefixed with the process name."""

from __future__ import annotations

import logging
import sys
from typing import Any


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (so redirection and test capture work)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break an operator
            self.handleError(record)


class OperatorLogger(logging.Logger):
    """A standard logger that also answers to ``warn`` (used by Gen2 scripts) without a deprecation warning."""

    def warn(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))


def operator_logger(process: str, level: int = logging.INFO) -> OperatorLogger:
    """A logger named after ``process``, not registered globally (runs never share state)."""
    logger = OperatorLogger(process, level)
    logger.addHandler(_HANDLER)
    logger.propagate = False
    return logger
