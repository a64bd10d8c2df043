"""The ends of a data link between group instances, as every transport provides them.

A transport connects the instances of a graph's groups with one link per
(connection, sending instance, receiving instance) and hands each instance the
ends of its links (:class:`LinkEnd`). The group makes each end a

* :class:`Sender` — ``put(item)`` for the sending operator: it blocks while the
  link is full (back-pressure reaches the sender), and raises
  :class:`~snapgraph.runtime.messages.GraphStopping` once the receiver is gone;
* :class:`Receiver` — read by the receiving operator's dispatcher itself
  (:class:`~snapgraph.runtime.channels.Inbox`): ``pull()`` never blocks, and
  ``wakeup(notify)`` tells the inbox how to learn that items arrived: either a
  file descriptor that becomes readable (the pipes of the process transport:
  the dispatcher polls it, no thread hands bytes over), or None after arranging
  to call ``notify`` on every arrival (in-memory queues).

Neither side needs a file descriptor. The pipe backend's ends are in
:mod:`snapgraph.runtime.wire`, the in-memory ones in
:mod:`snapgraph.runtime.threads`.

Replies (for response callbacks) are the link's business too: a receiver
answers on the link it got the message from, straight back to the sending
instance (the in-memory links pass the sender's reply itself; the pipes have a
reply pipe), never through the driver.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from snapgraph.runtime.messages import Barrier


class Sender(Protocol):
    """The sending side of a link."""

    @property
    def bytes_sent(self) -> int:
        """Encoded bytes this side put on the link so far (0 where messages pass by reference)."""

    def put(self, item: Any) -> None:
        """Send a message or barrier; blocks while the link is full, GraphStopping once the receiver is gone."""


class Receiver(Protocol):
    """The receiving side of a link, read by the receiving operator's dispatcher only."""

    closed: bool  # the sender is gone and everything it sent was pulled

    @property
    def bytes_received(self) -> int:
        """Encoded bytes that arrived so far (0 where messages pass by reference)."""

    def pull(self) -> list[Any] | None:
        """The items that have arrived, without blocking ([] if none); None once the sender is gone."""

    def wakeup(self, notify: Callable[[], None]) -> int | None:
        """How the inbox learns of arrivals: a file descriptor to poll, or None after arranging to
        call ``notify`` (from any thread) whenever items arrive or the sender goes."""


class LinkEnd(Protocol):
    """One end of a link as a transport hands it to a group; the group makes it a sender or receiver.

    A thread an end starts (to read stream chunks, answers) calls ``on_thread_start`` first."""

    def sending(self, on_sent: Callable[[], None], stopping: Callable[[], bool],
                on_thread_start: Callable[[], None]) -> Sender:
        """The sending side; ``on_sent`` counts each item."""

    def receiving(self, stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> Receiver:
        """The receiving side."""


class RoundRobinLink:
    """A connection into a group with multiplicity > 1: messages go to its instances in turn.

    Barriers go to every instance (each must align); a message goes to one.
    """

    def __init__(self, links: list[Sender]) -> None:
        self._links = links
        self._next = itertools.cycle(links)

    @property
    def bytes_sent(self) -> int:
        return sum(link.bytes_sent for link in self._links)

    def put(self, item: Any) -> None:
        if isinstance(item, Barrier):
            for link in self._links:
                link.put(item)
            return
        next(self._next).put(item)


__all__ = ["LinkEnd", "Receiver", "RoundRobinLink", "Sender"]
