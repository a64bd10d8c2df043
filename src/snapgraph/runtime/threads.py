"""Groups on threads of this process, linked by in-memory queues: the ``thread`` backend.

:class:`ThreadTransport` serves every group instance with
:func:`~snapgraph.runtime.transport.serve_group` on a thread of the driver's own
process; the control channel is a pair of queues and every link a bounded
in-memory queue (:class:`QueueLink`). Messages pass by reference, as inside a
group, and a receiver answers a message's reply directly (no detour through
the driver). The links have no file descriptor: the receiving inbox is called
back on each arrival (:meth:`QueueReceiver.wakeup`).

It exists to prove the transport seam — the same :class:`RemoteEngine`, the
same ``serve_group``, the same conformance suite as the process transport —
and to debug the remote driver without processes. It isolates nothing: a
crash of user code is the crash of the engine, and everything process-wide
(the default type context, ``os.environ``) is shared by all groups.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from snapgraph.model.graph import Connection, Graph
from snapgraph.runtime.channels import DEFAULT_CAPACITY
from snapgraph.runtime.control import ToDriver, ToGroup
from snapgraph.runtime.messages import Barrier, GraphStopping, Message
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.remote import RemoteEngine
from snapgraph.runtime.transport import Colocated, GroupHandle, GroupSpec, Transport, serve_group
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.protocol import SnapshotConfig

_END = object()  # on a control queue: the other side is gone
WAIT = 0.1  # seconds a blocked sender sleeps at most before it looks for a stop again


class QueueLink:
    """A bounded in-memory queue from one instance to another: the whole link, both ends."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._sender_gone = False
        self._receiver_gone = False
        self._notify: Callable[[], None] | None = None

    # -- the sending side
    def put(self, item: Any, stopping: Callable[[], bool]) -> None:
        with self._cond:
            while len(self._items) >= self.capacity and not self._receiver_gone:
                if stopping():
                    raise GraphStopping()
                self._cond.wait(WAIT)
            if self._receiver_gone or stopping():
                raise GraphStopping()  # the receiving group is gone
            self._items.append(item)
            notify = self._notify
        if notify is not None:
            notify()

    def close_sending(self) -> None:
        with self._cond:
            self._sender_gone = True
            self._cond.notify_all()
            notify = self._notify
        if notify is not None:
            notify()

    # -- the receiving side
    def pull(self) -> list[Any] | None:
        with self._cond:
            if self._items:
                items = list(self._items)
                self._items.clear()
                self._cond.notify_all()  # a sender may be waiting for room
                return items
            return None if self._sender_gone else []

    def watch(self, notify: Callable[[], None]) -> None:
        with self._cond:
            self._notify = notify

    def close_receiving(self) -> None:
        with self._cond:
            self._receiver_gone = True
            self._cond.notify_all()


class QueueSender:
    """The sending end of a :class:`QueueLink` (a :class:`~snapgraph.runtime.links.Sender`)."""

    bytes_sent = 0  # messages pass by reference

    def __init__(self, link: QueueLink, on_sent: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self._link = link
        self._on_sent = on_sent
        self._stopping = stopping

    def put(self, item: Any) -> None:
        assert isinstance(item, (Message, Barrier))
        if self._stopping():
            raise GraphStopping()
        self._on_sent()  # before it can be received: the driver waits for sent == received
        self._link.put(item, self._stopping)


class QueueReceiver:
    """The receiving end of a :class:`QueueLink` (a :class:`~snapgraph.runtime.links.Receiver`)."""

    bytes_received = 0  # messages pass by reference

    def __init__(self, link: QueueLink) -> None:
        self._link = link
        self.closed = False

    def pull(self) -> list[Any] | None:
        items = self._link.pull()
        if items is None:
            self.closed = True
        return items

    def wakeup(self, notify: Callable[[], None]) -> None:
        self._link.watch(notify)
        return None


class QueueEnd:
    """One end of a :class:`QueueLink` as the transport hands it to a group (a ``LinkEnd``)."""

    def __init__(self, link: QueueLink) -> None:
        self.link = link

    def sending(self, on_sent: Callable[[], None], stopping: Callable[[], bool],
                on_thread_start: Callable[[], None]) -> QueueSender:
        return QueueSender(self.link, on_sent, stopping)

    def receiving(self, stopping: Callable[[], bool], on_thread_start: Callable[[], None]) -> QueueReceiver:
        return QueueReceiver(self.link)


class _DriverGone(BaseException):
    """Unwinds a group thread whose control channel broke (a group never outlives its driver)."""


class _ControlEnd:
    """The group's end of its control channel: two queues."""

    def __init__(self, to_group: queue.SimpleQueue[Any], to_driver: queue.SimpleQueue[Any]) -> None:
        self._in = to_group
        self._out = to_driver
        self.gone = False

    def send(self, message: ToDriver) -> None:
        if self.gone:
            raise EOFError("the driver is gone")
        self._out.put(message)

    def recv(self) -> ToGroup:
        message = self._in.get()
        if message is _END:
            raise EOFError("the control channel was closed")
        return message  # type: ignore[no-any-return]


class ThreadHandle(GroupHandle):
    """The driver's end of a group instance served on a thread of this process."""

    def __init__(self, name: str, links: list[QueueLink], inbound: list[QueueLink]) -> None:
        self.name = name
        self._to_group: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._to_driver: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.control = _ControlEnd(self._to_group, self._to_driver)
        self._outbound = links
        self._inbound = inbound
        self._lock = threading.Lock()
        self._ended = False
        self._why = ""
        self.thread: threading.Thread | None = None

    def send(self, message: ToGroup) -> None:
        with self._lock:
            if not self._ended:
                self._to_group.put(message)

    def receive(self) -> ToDriver:
        message = self._to_driver.get()
        if message is _END:
            self._to_driver.put(_END)  # every later receive sees the end too
            raise EOFError
        return message  # type: ignore[no-any-return]

    def end_reason(self) -> str:
        return self._why or "the group thread ended"

    def finish(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        self.kill("the group thread was ended by force")

    def kill(self, why: str = "the group instance was killed") -> None:
        """End the instance as a process death would: its channels break at once (its threads, which
        cannot be killed, stop after their current callback)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._why = why
        self.control.gone = True
        self._to_group.put(_END)
        self._to_driver.put(_END)
        self.close_links()

    def close_links(self) -> None:
        for link in self._outbound:
            link.close_sending()
        for link in self._inbound:
            link.close_receiving()

    def serve(self, spec: GroupSpec, outbound: list[list[QueueEnd]], inbound: list[QueueEnd],
              colocated: Colocated) -> None:
        def driver_gone() -> NoReturn:
            raise _DriverGone()

        try:
            serve_group(spec, self.control, outbound, inbound, driver_gone, None, colocated)  # type: ignore[arg-type]
        except _DriverGone:
            pass
        except BaseException as exc:  # noqa: BLE001 - the group's death, as the driver will report it
            self._why = f"the group thread died ({type(exc).__name__}: {exc})"
            raise
        finally:
            self.close_links()  # the instance is gone: its receivers see the end, its senders a stop
            self._to_driver.put(_END)


class ThreadTransport(Transport):
    """Serves each group instance on a thread of this process, linked by bounded in-memory queues."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._links: dict[tuple[Connection, str, str], QueueLink] = {}
        self._colocated = Colocated(engine_threads=set())
        self.handles: dict[str, ThreadHandle] = {}

    def connect(self, connection: Connection, sender: str, receiver: str) -> None:
        self._links[(connection, sender, receiver)] = QueueLink(self._capacity)

    def start(self, spec: GroupSpec) -> GroupHandle:
        outbound = [[self._links[(connection, spec.instance, receiver)] for receiver in receivers]
                    for connection, _, receivers in spec.outbound]
        inbound = [self._links[(connection, sender, spec.instance)] for connection, sender in spec.inbound]
        handle = ThreadHandle(spec.instance, [link for links in outbound for link in links], inbound)
        handle.thread = threading.Thread(
            target=handle.serve, name=f"group:{spec.instance}",  # not a daemon: neither are its dispatchers
            args=(spec, [[QueueEnd(link) for link in links] for links in outbound],
                  [QueueEnd(link) for link in inbound], self._colocated))
        self.handles[spec.instance] = handle
        handle.thread.start()
        return handle

    def started(self) -> None:
        pass


class ThreadEngine(RemoteEngine):
    """Runs each group instance on threads of this process through in-memory links (the ``thread`` backend)."""

    def __init__(self, graph: Graph, options: RunOptions | None = None,
                 snapshots: SnapshotConfig | None = None, faults: FaultPlan | None = None, **driver: Any) -> None:
        options = options or RunOptions()
        super().__init__(graph, ThreadTransport(options.channel_capacity), options, snapshots, faults, **driver)


__all__ = ["QueueEnd", "QueueLink", "ThreadEngine", "ThreadHandle", "ThreadTransport"]
