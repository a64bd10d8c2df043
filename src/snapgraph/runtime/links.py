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

Replies (for response callbacks) of a message that crossed a link are tracked by
:class:`ReplyTokens` in the sending instance; a receiver that cannot call the
sender's reply directly answers through :class:`RemoteReply`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, Protocol

from snapgraph.runtime.messages import Barrier, Reply

# How a receiving instance reports an answer to message ``token`` of instance ``origin``.
ReportReply = Callable[[str, int, BaseException | None], None]


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
    """One end of a link as a transport hands it to a group; the group makes it a sender or receiver."""

    def sending(self, origin: str, tokens: ReplyTokens, on_sent: Callable[[], None],
                stopping: Callable[[], bool]) -> Sender:
        """The sending side, for messages published by instance ``origin``; ``on_sent`` counts each item."""

    def receiving(self, report_reply: ReportReply, stopping: Callable[[], bool],
                  on_thread_start: Callable[[], None]) -> Receiver:
        """The receiving side; a thread it starts calls ``on_thread_start`` first."""


class ReplyTokens:
    """Replies of messages that left this instance, by token, until every receiver answered."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._replies: dict[int, Reply] = {}
        self._lock = threading.Lock()

    def register(self, reply: Reply) -> int:
        token = next(self._next)
        with self._lock:
            self._replies[token] = reply
        return token

    def resolve(self, token: int, exc: BaseException | None) -> None:
        with self._lock:
            reply = self._replies.get(token)
        if reply is not None and reply.done(exc):
            with self._lock:
                self._replies.pop(token, None)


class RemoteReply:
    """Stands in for the sender's Reply in the receiving instance."""

    __slots__ = ("token", "origin", "_report")

    def __init__(self, token: int, origin: str, report: ReportReply) -> None:
        self.token = token
        self.origin = origin
        self._report = report

    def done(self, exc: BaseException | None) -> bool:
        self._report(self.origin, self.token, exc)
        return True


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


__all__ = ["LinkEnd", "Receiver", "RemoteReply", "ReplyTokens", "ReportReply", "RoundRobinLink", "Sender"]
