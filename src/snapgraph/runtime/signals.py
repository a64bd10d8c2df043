"""Stopping on SIGINT and SIGTERM: a graceful stop, and a forced one on the second signal.

The handlers do nothing but write the signal's number to a wake-up pipe: a
Python signal handler runs on the main thread between two bytecodes, possibly
while that thread holds a lock the stop would need (a channel, a control
pipe, the store), so it takes no lock and does no other I/O. A watcher thread
reads the pipe and does the work:

* first signal: ``stop(reason)`` — the graph drains, takes its final epoch
  and the run ends ``stopped`` (exit 0), resumable with ``--resume``;
* second signal: the engine says so on standard error and exits at once with
  128 + the signal's number (130 for SIGINT, 143 for SIGTERM). No final
  epoch is taken; the run stays unfinished in the store and its lease dies
  with the process, so ``--resume`` continues from the last complete epoch.
  The forced exit waits for the record of how the run ended
  (:attr:`StopTarget.ending`): if that record is written, the run is over
  and the second signal changes nothing (the exit code is the run's).

The handlers are installed before the run is planned (:meth:`StopOnSignals.attach`
names what to stop once it exists): a first signal before then stops the run
as soon as it starts.

Group processes and the fork server ignore both signals (see
:mod:`snapgraph.runtime.processes`), so a signal to the whole process group —
what ``timeout``, systemd, Docker and Kubernetes send — reaches only the
engine, which decides.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_WAIT = 5.0  # seconds a forced exit waits for a run's end being recorded


class StopTarget(Protocol):
    """What the signals stop: a run that can be asked to stop and that records how it ended."""

    ending: threading.Lock  # held while the run's end is recorded

    def stop(self, reason: str) -> None: ...

    @property
    def ended(self) -> bool:
        """The run's end is recorded: nothing is left for a forced exit to cut short."""


def forced_exit_code(signum: int) -> int:
    return 128 + signum


class StopOnSignals:
    """Installs the handlers (main thread only) and runs the watcher thread."""

    def __init__(self, exit_now: Callable[[int], None] = os._exit) -> None:
        self._exit_now = exit_now
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.received: list[int] = []
        self._target: StopTarget | None = None
        self._pending: str | None = None  # a stop requested before there was a target
        self._lock = threading.Lock()
        self._before_forced_exit: list[Callable[[], None]] = []

    def before_forced_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the watcher thread) just before a second signal forces the exit: a live
        display gives the terminal back then, since a forced exit runs no cleanup of its own."""
        self._before_forced_exit.append(callback)

    def attach(self, target: StopTarget) -> None:
        """From now on signals stop ``target``; a stop requested before is passed on at once."""
        with self._lock:
            self._target = target
            pending = self._pending
        if pending is not None:
            target.stop(pending)

    def install(self) -> StopOnSignals:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handler)
        threading.Thread(target=self._watch, name="signals", daemon=True).start()
        return self

    def run_ended(self) -> None:
        """The run is over and recorded: later signals are ignored while the process exits (Python's
        finalization would otherwise restore the default handlers and a late signal kill it)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def close(self) -> None:
        """Restore the default handlers and end the watcher thread (tests install many in turn)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        os.close(self._write)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        try:
            os.write(self._write, bytes([signum]))
        except OSError:  # a full pipe already holds more signals than the watcher needs
            pass

    def _watch(self) -> None:
        while True:
            data = os.read(self._read, 64)
            if not data:  # closed
                os.close(self._read)
                return
            for signum in data:
                self.received.append(signum)
                name = signal.Signals(signum).name
                if len(self.received) == 1:
                    self._first(f"{name} received")
                elif self._second(signum, name):
                    return

    def _first(self, reason: str) -> None:
        with self._lock:
            target = self._target
            if target is None:
                self._pending = reason
        if target is not None:
            target.stop(reason)

    def _second(self, signum: int, name: str) -> bool:
        """Force the exit unless the run's end is already recorded; whether it exited."""
        with self._lock:
            target = self._target
        ending = target.ending if target is not None else None
        held = ending.acquire(timeout=FORCE_WAIT) if ending is not None else False
        try:
            if target is not None and target.ended:
                os.write(2, f"snapgraph: second signal ({name}): the run has already ended and is recorded; "
                            "finishing normally\n".encode())
                return False
            code = forced_exit_code(signum)
            for callback in self._before_forced_exit:
                callback()
            os.write(2, (f"snapgraph: second signal ({name}): stopping at once without a final epoch, exit "
                         f"{code}; the run stays resumable with --resume\n").encode())
            self._exit_now(code)
            return True
        finally:
            if held and ending is not None:
                ending.release()


__all__ = ["STOP_SIGNALS", "StopOnSignals", "StopTarget", "forced_exit_code"]
