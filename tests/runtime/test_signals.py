"""The signal handlers: a flag in a pipe, never a lock; the second signal forces the exit."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from snapgraph.runtime.signals import StopOnSignals, forced_exit_code


class Run:
    """A stand-in for the supervisor: records stops; ``ended`` once its end is recorded."""

    def __init__(self, stop: object = None) -> None:
        self.ending = threading.Lock()
        self.ended = False
        self.stops: list[str] = []
        self._stop = stop

    def stop(self, reason: str) -> None:
        if callable(self._stop):
            self._stop(reason)
        self.stops.append(reason)


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
        signal_inside_locked_code(signum, 0.0005 * (round_ % 7), lock, event)


def signal_inside_locked_code(signum: int, delay: float, lock: threading.Lock, event: threading.Event) -> None:
    """One round: each round's stop and exit records are its own (a late handler cannot reach the next)."""
    stops: list[str] = []
    exits: list[int] = []

    def stop(reason: str) -> None:
        with lock:  # the lock the interrupted code holds: the stop must not run in the handler
            stops.append(reason)
        event.set()

    signals = StopOnSignals(exit_now=exits.append).install()
    signals.attach(Run(stop))
    try:
        killer = threading.Timer(delay, os.kill, (os.getpid(), signum))
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_before_the_run_exists_is_passed_on_when_it_is_attached(signum: int) -> None:
    exits: list[int] = []
    signals = StopOnSignals(exit_now=exits.append).install()
    try:
        os.kill(os.getpid(), signum)
        wait_for(lambda: signals.received != [])
        run = Run()
        signals.attach(run)
        assert run.stops == [f"{signal.Signals(signum).name} received"]
        assert exits == []
    finally:
        signals.close()


def test_a_second_signal_before_the_run_exists_exits_at_once() -> None:
    exits: list[int] = []
    signals = StopOnSignals(exit_now=exits.append).install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: exits != [])
        assert exits == [143]
    finally:
        signals.close()


def test_a_second_signal_after_the_run_end_is_recorded_changes_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """50 rounds: the end is being recorded when the second signal comes; the exit waits for the record."""
    for round_ in range(50):
        second_signal_while_the_end_is_recorded(0.0005 * (round_ % 5), capfd)


def second_signal_while_the_end_is_recorded(delay: float, capfd: pytest.CaptureFixture[str]) -> None:
    exits: list[int] = []
    signals = StopOnSignals(exit_now=exits.append).install()
    run = Run()
    signals.attach(run)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: run.stops != [])
        with run.ending:  # recording the end: the second signal arrives meanwhile
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(delay)
            run.ended = True
        wait_for(lambda: len(signals.received) == 2)
        wait_for(lambda: "already ended" in capfd.readouterr().err)
        assert exits == []
    finally:
        signals.close()


def test_a_second_signal_while_the_run_has_not_ended_forces_the_exit() -> None:
    exits: list[int] = []
    signals = StopOnSignals(exit_now=exits.append).install()
    run = Run()
    signals.attach(run)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: run.stops != [])
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: exits != [])
        assert exits == [130]
        assert run.stops == ["SIGINT received"]
    finally:
        signals.close()
