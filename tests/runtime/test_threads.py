"""Unit tests for snapgraph.runtime.threads: the transport contract on the thread transport, and more.

The transport conformance suite (tests/runtime/transport_contract.py) on the thread transport (threads
of this process, in-memory queues), and what is particular to it: links without file descriptors,
nothing left running.
"""

from __future__ import annotations

import threading

from transport_contract import TransportContract, contract_covers

from snapgraph.runtime import backends
from snapgraph.runtime.remote import RemoteEngine
from snapgraph.runtime.threads import QueueLink, QueueReceiver, ThreadHandle
from snapgraph.runtime.transport import GroupHandle

COVERED = {"process", "thread"}  # the transports the conformance suite runs on (a module each)


class TestThreadTransport(TransportContract):
    backend = "thread"

    def kill(self, handle: GroupHandle) -> None:
        assert isinstance(handle, ThreadHandle)
        handle.kill()


def test_every_registered_transport_runs_the_conformance_suite() -> None:
    remote = {name for name in backends.backend_names()
              if issubclass(backends.get_backend(name).engine, RemoteEngine)}  # type: ignore[arg-type]
    assert remote == COVERED
    for name in COVERED:
        contract_covers(name)


def test_a_queue_link_needs_no_file_descriptor_and_calls_the_inbox_back() -> None:
    link = QueueLink(2)
    receiver = QueueReceiver(link)
    calls: list[int] = []
    assert receiver.wakeup(lambda: calls.append(1)) is None
    link.put("a", lambda: False)
    link.put("b", lambda: False)
    assert calls == [1, 1]
    blocked = threading.Thread(target=link.put, args=("c", lambda: False))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive(), "a full link blocks its sender"
    assert receiver.pull() == ["a", "b"]
    blocked.join(2)
    assert not blocked.is_alive()
    assert receiver.pull() == ["c"]
    assert receiver.pull() == []
    link.close_sending()
    assert receiver.pull() is None and receiver.closed
