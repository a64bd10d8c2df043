"""An operator's ``errorHandling``: what happens when one of its callbacks raises an ``Exception``.

* ``terminate on error`` (the default): the operator fails, the graph stops.
* ``log and ignore``: the error is logged; the operator goes on.
* ``propagate to error port``: the error is logged and sent as a ``com.sap.error`` record on the
  operator's ``error`` port (failing as terminate on error if it has none).
* ``retry``: a port callback's error goes back to the message's sender (its response callback);
  other callbacks fail as terminate on error. The dispatcher hands the error back itself
  (:mod:`snapgraph.runtime.operator`); :meth:`ErrorHandling.retried` logs it.

What is not an ``Exception`` (``sys.exit``, ``KeyboardInterrupt``) and every protocol step fail the
operator whatever its mode; :mod:`snapgraph.runtime.operator` decides which path a call takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from snapgraph.api.operator_api import OperatorException
from snapgraph.api.table import Record, Table
from snapgraph.model.graph import LOG_AND_IGNORE, PROPAGATE_TO_ERROR_PORT, RETRY, Process, error_handling_mode
from snapgraph.runtime.failures import one_line
from snapgraph.runtime.messages import GraphStopping
from snapgraph.runtime.scripts import format_script_error

ERROR_TYPE_ID = "com.sap.error"


class ErrorHandling:
    """Applies one operator's ``errorHandling`` mode to what its callbacks raise.

    ``fail(phase, exc)`` fails the operator (it raises GraphStopping); ``emit(port, body, type_id)``
    publishes on one of its ports.
    """

    def __init__(self, process: Process, logger: Any, fail: Callable[[str, BaseException], NoReturn],
                 emit: Callable[[str, Any, str], object]) -> None:
        self.mode = error_handling_mode(process.config)
        self.retries = self.mode == RETRY
        self._process = process
        self._logger = logger
        self._fail = fail
        self._emit = emit

    def handle(self, phase: str, exc: Exception) -> None:
        """A callback in ``phase`` raised ``exc``: ignore it, send it to the error port, or fail."""
        if self.mode == LOG_AND_IGNORE:
            self._logger.error("%s raised (ignored: log and ignore)\n%s", phase, format_script_error(exc))
            return
        if self.mode == PROPAGATE_TO_ERROR_PORT and "error" in self._process.outports:
            self._logger.error("%s raised (sent to the error port)\n%s", phase, format_script_error(exc))
            self._publish_error(exc)
            return
        self._fail(phase, exc)

    def retried(self, port: str, exc: Exception) -> None:
        """A port callback raised ``exc`` in retry mode: it goes back to the sender."""
        self._logger.warning("port %r: %s (reported back to the sender for retry)", port, one_line(exc))

    def _publish_error(self, exc: Exception) -> None:
        if isinstance(exc, OperatorException):
            code, text, details = exc.code, exc.text, exc.details
        else:
            code, text, details = 0, str(exc) or type(exc).__name__, None
        if details is None:
            details = Table([], "")
        error = Record([code, self._process.component, self._process.name, text, details])
        try:
            self._emit("error", error, ERROR_TYPE_ID)
        except GraphStopping:
            raise
        except Exception as err:  # noqa: BLE001
            self._fail("error port", err)
