"""Bounded channels and the per-operator inbox that multiplexes them.

Each connection of the graph is one :class:`Channel`. All channels into one
operator share that operator's :class:`Inbox` lock, so the dispatcher can
wait for "anything to do" (a message on any input, a control event, a due
timer) on a single condition variable. A publisher blocks while its channel
is full: that is the engine's back-pressure. A channel can be *blocked* by
the consumer (barrier alignment): its items stay queued and are not handed
out until it is unblocked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any
from collections.abc import Callable

from snapgraph.model.graph import Connection
from snapgraph.runtime.messages import ControlEvent, GraphStopping

DEFAULT_CAPACITY = 8


class Channel:
    """One connection's queue of messages and barriers, bounded by ``capacity`` messages."""

    def __init__(self, connection: Connection, inbox: Inbox, capacity: int = DEFAULT_CAPACITY) -> None:
        self.connection = connection
        self.port = connection.tgt.port
        self.capacity = capacity
        self.items: deque[Any] = deque()
        self.blocked = False
        self._inbox = inbox

    def put(self, item: Any) -> None:
        """Append ``item``, blocking while the channel is full (back-pressure)."""
        self._inbox.put(self, item)


class Inbox:
    """Everything one operator's dispatcher waits on."""

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.channels: list[Channel] = []
        self.control: deque[ControlEvent] = deque()
        self._stopping = stopping
        self._next = 0  # round-robin start among channels, for fair fan-in

    def add_channel(self, connection: Connection, capacity: int = DEFAULT_CAPACITY) -> Channel:
        channel = Channel(connection, self, capacity)
        self.channels.append(channel)
        return channel

    def put(self, channel: Channel, item: Any) -> None:
        with self.cond:
            while len(channel.items) >= channel.capacity:
                if self._stopping():
                    raise GraphStopping()
                self.cond.wait(0.1)
            channel.items.append(item)
            self.cond.notify_all()

    def post(self, event: ControlEvent) -> None:
        """Queue control work; never blocks (replies must not deadlock a busy sender)."""
        with self.cond:
            self.control.append(event)
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def next_item(self, timeout: float | None) -> tuple[Channel | None, Any] | None:
        """The next control event ``(None, event)`` or input ``(channel, item)``.

        Control events come first. Inputs are taken round-robin over the
        unblocked channels. Returns None when nothing arrived within
        ``timeout`` seconds (None = wait until woken).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                if self.control:
                    return None, self.control.popleft()
                n = len(self.channels)
                for i in range(n):
                    channel = self.channels[(self._next + i) % n]
                    if channel.items and not channel.blocked:
                        self._next = (self._next + i + 1) % n
                        item = channel.items.popleft()
                        self.cond.notify_all()  # a publisher may be waiting for room
                        return channel, item
                if self._stopping():
                    return None
                if deadline is None:
                    self.cond.wait(0.5)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self.cond.wait(min(remaining, 0.5))

    def has_input(self) -> bool:
        with self.cond:
            return bool(self.control) or any(c.items and not c.blocked for c in self.channels)
