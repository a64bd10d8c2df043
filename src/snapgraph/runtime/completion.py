"""Telling that a graph has nothing more to do: one rule for every engine.

A graph is finished (or, draining, ready for its final epoch) when no message is
queued or travelling, no callback runs, no timer is active and no script thread
is alive. Each group instance counts its own pending work (``GroupHost.activity``)
and reports it as :class:`WorkCounts`: in one process the driver reads them
directly, across processes they come back in the answers to a probe wave
(:mod:`snapgraph.runtime.remote`).

:class:`CompletionDetector` applies Mattern's four-counter method to a wave of
reports: the graph is idle when every instance reports no pending work and no
live script thread, the messages sent between instances equal those received,
and the next wave reports the very same counts (so nothing was sent and
received between the reads of two instances). In one process the second wave
follows at once and costs nothing measurable; the engines differ only in how
they collect a wave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkCounts:
    """One group instance's pending work, read atomically (the script-thread check just after)."""

    pending: int  # queued items, control events, active timers, callbacks still starting
    published: int  # messages its operators published so far
    sent: int  # items that left for other instances
    received: int  # items that arrived from other instances
    script_threads: bool = False  # a thread a script started is still alive


@dataclass(frozen=True)
class Quiet:
    """The verdict on one wave: idle or not, and messages published so far (summed over instances)."""

    idle: bool
    published: int
    confirm: bool = False  # idle by this wave alone: take the confirming wave right away


class CompletionDetector:
    """Decides, wave by wave, whether the graph is idle (see the module docstring)."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None  # (sent, published) of the previous idle-looking wave

    def wave(self, reports: Iterable[WorkCounts]) -> Quiet:
        pending = published = sent = received = 0
        threads = False
        for report in reports:
            pending += report.pending
            published += report.published
            sent += report.sent
            received += report.received
            threads = threads or report.script_threads
        idle_now = pending == 0 and not threads and sent == received
        counts = (sent, published)
        idle = idle_now and self._last == counts
        self._last = counts if idle_now else None
        return Quiet(idle, published, confirm=idle_now and not idle)

    def unanswered(self) -> Quiet:
        """A wave that not every instance answered: not idle, and the next wave starts over."""
        self._last = None
        return Quiet(False, 0)


__all__ = ["CompletionDetector", "Quiet", "WorkCounts"]
