"""The signal handlers: a flag in a pipe, never a lock; the second signal forces the exit."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from snapgraph.runtime.signals import StopOnSignals, forced_exit_code


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_landing_inside_locked_code_never_deadlock(signum: int) -> None:
    """200 rounds: the signal arrives while this (the main) thread hammers the locks a stop takes."""
    lock = threading.Lock()
    event = threading.Event()
    for round_ in range(200):
        stops: list[str] = []
        exits: list[int] = []

        def stop(reason: str) -> None:
            with lock:  # the lock the interrupted code holds: the stop must not run in the handler
                stops.append(reason)
            event.set()

        signals = StopOnSignals(stop, exit_now=exits.append).install()
        try:
            killer = threading.Timer(0.0005 * (round_ % 7), os.kill, (os.getpid(), signum))
            killer.start()
            deadline = time.monotonic() + 10
            while not stops:
                with lock:  # a signal here would deadlock a handler that takes the lock
                    event.clear()
                    event.set()
                assert time.monotonic() < deadline, "the stop never happened"
            killer.join()
            assert stops == [f"{signal.Signals(signum).name} received"]
            assert exits == []
            os.kill(os.getpid(), signum)
            wait_for(lambda: exits != [])
            assert exits == [forced_exit_code(signum)]
            assert len(stops) == 1
        finally:
            signals.close()


def test_forced_exit_codes_are_the_shell_conventions() -> None:
    assert forced_exit_code(signal.SIGINT) == 130
    assert forced_exit_code(signal.SIGTERM) == 143
