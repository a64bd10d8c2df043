"""An operator's timers (``api.add_timer``): a heap of due times, read from an injected clock.

Each timer callback returns the seconds until its next call; a negative number
stops it. The wheel only keeps the order and the arithmetic: the operator's
dispatcher runs the callbacks (on its own thread, between messages) and counts
active timers as pending work.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any


class Timer:
    """One registered timer callback and the interval it last returned."""

    __slots__ = ("callback", "index", "interval")

    def __init__(self, callback: Callable[[], Any], index: int) -> None:
        self.callback = callback
        self.index = index
        self.interval = 0.0  # the last interval the callback returned


class BadInterval(TypeError):
    """A timer callback returned something that is not a number of seconds."""


class TimerWheel:
    """The due timers of one operator, soonest first.

    ``heap`` holds ``(due, index, timer)``; it stays the same list object for the
    wheel's life (the dispatcher loop and snapgraph.testing read it directly).
    ``clock`` (seconds, monotonic) may be replaced before the timers start:
    snapgraph.testing puts a manual clock there.
    """

    __slots__ = ("clock", "heap")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Timer]] = []

    def __len__(self) -> int:
        return len(self.heap)

    def start(self, callbacks: list[Callable[[], Any]]) -> int:
        """Start every callback, all due now; returns how many timers started."""
        now = self.clock()
        for index, callback in enumerate(callbacks):
            heapq.heappush(self.heap, (now, index, Timer(callback, index)))
        return len(callbacks)

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def pop(self) -> Timer:
        """The timer due first, taken off the wheel (it is back once :meth:`again` keeps it)."""
        return heapq.heappop(self.heap)[2]

    def again(self, timer: Timer, returned: Any, logger: Any) -> bool:
        """Put ``timer`` back after its callback returned ``returned``; False if the timer stops.

        None stops it (with a warning), a negative number stops it; anything that is
        not a number of seconds raises :class:`BadInterval`.
        """
        if returned is None:
            logger.warning(
                "timer callback %s returned None; the timer stops (return a number of seconds to "
                "keep it running, or a negative number to stop it explicitly)",
                getattr(timer.callback, "__name__", "?"),
            )
            returned = -1
        try:
            interval = float(returned)
        except (TypeError, ValueError):
            raise BadInterval(
                f"timer callback returned {returned!r}; it must return the seconds until its next call") from None
        if interval < 0:
            return False
        timer.interval = interval
        heapq.heappush(self.heap, (self.clock() + interval, timer.index, timer))
        return True

    def clear(self) -> int:
        """Stop every timer; returns how many there were."""
        n = len(self.heap)
        self.heap.clear()
        return n
