"""JSON logs on standard error (``snapgraph run --log-format json``), for log shippers.

Every line is one JSON object, in the encoding of :class:`~snapgraph.instruments.eventlog.EventLog`
(``event``, ``time``, ``run``, ``attempt``, ``operator``, ``epoch``, ``fields``):

* the engine's events, as ``--events`` writes them (the log is that instrument);
* ``log``: a line an operator logged with ``api.logger`` (in this process or forwarded from a group
  process), with ``operator`` and ``fields``: ``level``, ``message``, ``logged_at`` (seconds since 1970);
* ``output``: what a group process wrote to its standard error (``fields``: ``stream``, ``text``);
* ``message``: a line the engine or the command line wrote to standard error (recoveries, warnings,
  the final "graph … completed after …"), ``fields``: ``level``, ``message``.

:attr:`JsonLog.messages` is what the command line puts in place of ``sys.stderr`` while the run
lasts, so that nothing but JSON reaches standard error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from snapgraph.instruments.eventlog import EventLog
from snapgraph.instruments.output import LineStream
from snapgraph.monitor.progress import LogLine


class JsonLog(EventLog):
    """The engine's events, operator log lines and engine messages, one JSON object per line on ``out``."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.time) -> None:
        super().__init__(out, clock)
        self.messages = LineStream(lambda text: self.message(text.removesuffix("\n")),
                                   getattr(out, "encoding", None) or "utf-8")

    def __repr__(self) -> str:
        return f"JsonLog({getattr(self._out, 'name', self._out)!r})"

    # -- the log destination --------------------------------------------------------------------------
    def operator_log(self, record: LogLine) -> None:
        self.record("log", record.operator, None,
                    {"level": record.level, "message": record.message, "logged_at": round(record.time, 6)})

    def process_output(self, text: str) -> None:
        self.write("output", stream="stderr", text=text.removesuffix("\n"))

    def message(self, text: str, level: str = "INFO") -> None:
        self.write("message", level=level, message=text)


__all__ = ["JsonLog"]
