"""A JSON-lines event log: one JSON object per engine event (``snapgraph run --events FILE``).

Every line has ``event`` (the hook's name), ``time`` (seconds since 1970, from the injected
clock), ``run`` (the run id, null without snapshots), ``attempt`` (1, 2, …), ``operator`` and
``epoch`` where the event concerns one, and ``fields`` (the rest). At the end of each attempt
one ``operator_stats`` line per operator (``fields``: :meth:`OperatorStats.as_dict`) precedes
``attempt_ended``. Each line is flushed as it is written, so the file can be followed live.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from snapgraph.instruments.base import Attempt, Instrument, Outcome, install, uninstall
from snapgraph.instruments.stats import EpochStats


class EventLog(Instrument):
    """Writes every event to ``out`` as one JSON object per line."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.time, *, close: bool = False) -> None:
        self._out = out
        self._clock = clock
        self._close = close
        self._lock = threading.Lock()
        self._attempt: Attempt | None = None

    @classmethod
    def open(cls, path: str | Path, clock: Callable[[], float] = time.time) -> EventLog:
        return cls(open(path, "w", encoding="utf-8"), clock, close=True)

    def close(self) -> None:
        with self._lock:
            if self._close and not self._out.closed:
                self._out.close()

    def __repr__(self) -> str:
        return f"EventLog({getattr(self._out, 'name', self._out)!r})"

    def write(self, event: str, operator: str | None = None, epoch: str | None = None, **fields: Any) -> None:
        self.record(event, operator, epoch, fields)

    def record(self, event: str, operator: str | None, epoch: str | None, fields: Mapping[str, object]) -> None:
        """Write one line; ``fields`` is taken as it is (its keys may be any names, ``operator`` too)."""
        attempt = self._attempt
        record: dict[str, Any] = {"event": event, "time": round(self._clock(), 6),
                                  "run": attempt.run if attempt else None,
                                  "attempt": attempt.attempt if attempt else None}
        if operator is not None:
            record["operator"] = operator
        if epoch is not None:
            record["epoch"] = epoch
        record["fields"] = dict(fields)
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            if not self._out.closed:
                self._out.write(line)
                self._out.flush()

    # -- attempts ------------------------------------------------------------------------------
    def attempt_started(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self.write("attempt_started", graph=attempt.graph, handle=attempt.handle,
                   restored_from=attempt.restored_from, backend=attempt.backend)

    def recovery(self, attempt: Attempt, failure: Any) -> None:
        self._attempt = attempt
        self.write("recovery", restored_from=attempt.restored_from, after=str(failure) if failure else None,
                   failed_operator=failure.process if failure else None)

    def attempt_failed(self, attempt: Attempt, failure: Any) -> None:
        self.write("attempt_failed", failed_operator=failure.process if failure else None,
                   reason=str(failure) if failure else None,
                   traceback=failure.traceback if failure else None)

    def attempt_ended(self, attempt: Attempt, outcome: Outcome) -> None:
        for name, stats in outcome.stats.items():
            data = stats.as_dict()
            del data["operator"]
            self.record("operator_stats", name, None, data)
        self.write("attempt_ended", status=outcome.status, reason=outcome.reason,
                   seconds=round(outcome.seconds, 6), epochs=sum(1 for e in outcome.epochs if e.seconds is not None))

    # -- operators ----------------------------------------------------------------------------
    def operator_loaded(self, operator: str) -> None:
        self.write("operator_loaded", operator=operator)

    def operator_failed(self, failure: Any) -> None:
        self.write("operator_failed", operator=failure.process, phase=failure.phase, message=failure.message,
                   traceback=failure.traceback)

    # -- the snapshot protocol ----------------------------------------------------------------
    def epoch_started(self, epoch: str, final: bool) -> None:
        self.write("epoch_started", epoch=epoch, final=final)

    def final_epoch(self, epoch: str, number: int, sealed: bool) -> None:
        self.write("final_epoch", epoch=epoch, number=number, sealed=sealed)

    def barrier_injected(self, operator: str, epoch: str) -> None:
        self.write("barrier_injected", operator=operator, epoch=epoch)

    def barrier_aligned(self, operator: str, epoch: str, seconds: float) -> None:
        self.write("barrier_aligned", operator=operator, epoch=epoch, seconds=seconds)

    def state_serialized(self, operator: str, epoch: str, nbytes: int, seconds: float) -> None:
        self.write("state_serialized", operator=operator, epoch=epoch, bytes=nbytes, seconds=seconds)

    def state_persisted(self, operator: str, epoch: str, nbytes: int, seconds: float) -> None:
        self.write("state_persisted", operator=operator, epoch=epoch, bytes=nbytes, seconds=seconds)

    def epoch_acked(self, operator: str, epoch: str, stateful: bool) -> None:
        self.write("epoch_acked", operator=operator, epoch=epoch, stateful=stateful)

    def epoch_completed(self, epoch: EpochStats) -> None:
        data = epoch.as_dict()
        del data["epoch"]
        self.record("epoch_completed", None, epoch.epoch, data)

    def drain_started(self, status: str, reason: str) -> None:
        self.write("drain_started", status=status, reason=reason)

    def state_restored(self, operator: str, epoch: str, nbytes: int) -> None:
        self.write("state_restored", operator=operator, epoch=epoch, bytes=nbytes)


def events_option(ctx: Any, param: Any, value: str | None) -> None:
    """A click option callback for ``--events FILE``: log this command's runs to FILE.

    The log is installed for the command and removed (and closed) when its context closes.
    """
    if not value:
        return None
    log = EventLog.open(value)
    install(log)

    def done() -> None:
        uninstall(log)
        log.close()

    ctx.call_on_close(done)
    return None


__all__ = ["EventLog", "events_option"]
