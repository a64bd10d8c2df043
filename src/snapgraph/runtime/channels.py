"""Bounded channels and the per-operator inbox that multiplexes them.

Each connection of the graph is one :class:`Channel`. All channels into one
operator share that operator's :class:`Inbox` lock, so the dispatcher can
wait for "anything to do" (a message on any input, a control event, a due
timer) on a single condition variable. A publisher blocks while its channel
is full: that is the engine's back-pressure. A channel can be *blocked* by
the consumer (barrier alignment): its items stay queued and are not handed
out until it is unblocked.

A channel fed from another group instance has a :class:`RemoteInput` (the
receiving end of a link, :class:`snapgraph.runtime.links.Receiver`): the
dispatcher itself pulls it when it runs out of queued items. An input that
has a file descriptor (a pipe) is waited on with ``poll()``, together with a
wake-up pipe, instead of the condition variable; one without (an in-memory
queue) calls the inbox back when items arrive, and the dispatcher waits on
the condition variable. Only while a channel has room and is not blocked is
its input pulled, so the link fills behind a busy or aligning receiver and
back-pressure reaches the sender.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from snapgraph.model.graph import Connection
from snapgraph.runtime.links import Receiver
from snapgraph.runtime.messages import ControlEvent, GraphStopping

DEFAULT_CAPACITY = 8
MAX_WAIT = 0.5  # seconds a waiting dispatcher sleeps at most before it checks for stopping again


RemoteInput = Receiver  # what delivers the items of one channel from another group instance


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

    def __init__(self, stopping: Callable[[], bool], on_received: Callable[[int], None] | None = None) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.channels: list[Channel] = []
        self.control: deque[ControlEvent] = deque()
        self._stopping = stopping
        self._next = 0  # round-robin start among channels, for fair fan-in
        self._remote: list[tuple[Channel, RemoteInput]] = []
        self._fds: dict[int, int] = {}  # id(remote input) -> the descriptor it is waited on by, if it has one
        self._on_received = on_received  # counts items taken off remote inputs (they become local work)
        self._waker: tuple[int, int] | None = None  # (read, write) ends of the wake-up pipe
        self._polling = False  # the dispatcher is reading or waiting on its remote inputs
        self._woken = False  # a wake-up byte is pending
        self._arrived = False  # an input without a descriptor called back since the dispatcher last looked

    def add_channel(self, connection: Connection, capacity: int = DEFAULT_CAPACITY) -> Channel:
        channel = Channel(connection, self, capacity)
        self.channels.append(channel)
        return channel

    def add_remote(self, channel: Channel, source: RemoteInput) -> None:
        """Feed ``channel`` from ``source``; only the dispatcher reads it (:meth:`next_item`, :meth:`has_input`)."""
        fd = source.wakeup(self._on_arrival)
        if fd is not None:
            self._fds[id(source)] = fd
            if self._waker is None:
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                os.set_blocking(write_end, False)
                self._waker = (read_end, write_end)
        self._remote.append((channel, source))

    def _on_arrival(self) -> None:
        """An input without a descriptor received items (or lost its sender): look again."""
        with self.cond:
            self._arrived = True
            self._notify()

    def put(self, channel: Channel, item: Any) -> None:
        with self.cond:
            while len(channel.items) >= channel.capacity:
                if self._stopping():
                    raise GraphStopping()
                self.cond.wait(0.1)
            channel.items.append(item)
            self._notify()

    def post(self, event: ControlEvent) -> None:
        """Queue control work; never blocks (replies must not deadlock a busy sender)."""
        with self.cond:
            self.control.append(event)
            self._notify()

    def wake(self) -> None:
        with self.cond:
            self._notify()

    def _notify(self) -> None:
        """Wake whoever waits on this inbox (call with the lock held)."""
        self.cond.notify_all()
        if self._polling and not self._woken and self._waker is not None:
            self._woken = True
            os.write(self._waker[1], b"\0")

    def next_item(self, timeout: float | None) -> tuple[Channel | None, Any] | None:
        """The next control event ``(None, event)`` or input ``(channel, item)``.

        Control events come first. Inputs are taken round-robin over the
        unblocked channels; a remote input whose channel ran empty is read
        first, so a busy local sender cannot starve it. Returns None when
        nothing arrived within ``timeout`` seconds (None = wait until woken).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._pull_empty()
            with self.cond:
                found = self._take()
                if found is not None:
                    return found
                if self._stopping():
                    return None
                wait = MAX_WAIT if deadline is None else min(deadline - time.monotonic(), MAX_WAIT)
                if wait <= 0:
                    return None
                if self._arrived:  # an input called back after it was pulled: pull again first
                    self._arrived = False
                    continue
                if self._waker is None:  # no input to poll: arrivals notify the condition
                    self.cond.wait(wait)
                    continue
                readable = self._readable()
                if len(self._fds) != len(self._remote):  # some inputs are not polled (they call back)
                    readable = [(c, s) for c, s in readable if id(s) in self._fds]
                self._polling = True
            try:
                self._wait(readable, wait)
            finally:
                with self.cond:
                    self._polling = False

    def has_input(self) -> bool:
        """Whether an input or control event is waiting (remote inputs are read to find out)."""
        self._pull_empty()
        with self.cond:
            return bool(self.control) or any(c.items and not c.blocked for c in self.channels)

    def _take(self) -> tuple[Channel | None, Any] | None:
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
        return None

    def _readable(self) -> list[tuple[Channel, RemoteInput]]:
        """The remote inputs worth reading now: open, unblocked, and with room in their channel."""
        return [(channel, source) for channel, source in self._remote
                if not source.closed and not channel.blocked and len(channel.items) < channel.capacity]

    def _pull_empty(self) -> None:
        """Read, without blocking, the remote inputs whose channels ran empty (dispatcher thread only)."""
        if not self._remote:
            return
        with self.cond:
            empty = [(channel, source) for channel, source in self._readable() if not channel.items]
        for channel, source in empty:
            items = source.pull()
            if items:
                if self._on_received is not None:
                    self._on_received(len(items))
                with self.cond:
                    channel.items.extend(items)

    def _wait(self, readable: list[tuple[Channel, RemoteInput]], seconds: float) -> None:
        """Sleep until a remote input can be read, something is queued or posted, or ``seconds`` passed."""
        assert self._waker is not None
        poller = select.poll()
        poller.register(self._waker[0], select.POLLIN)
        for _, source in readable:
            poller.register(self._fds[id(source)], select.POLLIN)
        poller.poll(seconds * 1000)
        with self.cond:
            if self._woken:
                self._woken = False
                try:
                    os.read(self._waker[0], 64)
                except BlockingIOError:
                    pass

