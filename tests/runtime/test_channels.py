"""The inbox (runtime/channels.py): the receiving dispatcher reads its own pipes, is woken by work
posted from another thread, leaves a blocked channel's pipe unread (back-pressure across processes),
and takes its inputs fairly, so neither a timer that is always due nor a busy local sender starves an
input from another group."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from test_process_flow import run_in_groups
from test_wire import CONNECTION, links, message

from snapgraph.api.table import Table
from snapgraph.runtime import channels
from snapgraph.runtime.channels import Inbox
from snapgraph.runtime.messages import Barrier, ControlEvent
from snapgraph.runtime.wire import OutboundLink


# -- the receiving dispatcher reads its own pipes -----------------------------------------------------------
def remote_inbox(pipes: tuple[int, int, int, int], capacity: int = 8) -> tuple[Inbox, Any, OutboundLink, list[int]]:
    received: list[int] = []
    inbox = Inbox(lambda: False, received.append)
    channel = inbox.add_channel(CONNECTION, capacity)
    sender, receiver = links(pipes)
    inbox.add_remote(channel, receiver)
    return inbox, channel, sender, received


def test_the_dispatcher_takes_items_from_its_pipe_and_counts_them(pipes) -> None:
    inbox, channel, sender, received = remote_inbox(pipes)
    sender.put(message(Table([[1]])))
    sender.put(Barrier("e1"))
    first = inbox.next_item(10)
    second = inbox.next_item(10)
    assert first is not None and first[0] is channel and first[1].decode(first[1].data).body.body == [[1]]
    assert second == (channel, Barrier("e1"))
    assert sum(received) == 2
    assert inbox.next_item(0.05) is None


def test_work_posted_from_another_thread_wakes_a_dispatcher_waiting_on_its_pipes(pipes, monkeypatch) -> None:
    monkeypatch.setattr(channels, "MAX_WAIT", 120.0)  # without the wake-up pipe it would sleep this long
    inbox, _, _, _ = remote_inbox(pipes)
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(inbox.next_item(None)))
    waiting.start()
    event = ControlEvent(lambda: None)
    while not inbox._polling:  # until the dispatcher is inside its wait
        time.sleep(0.001)
    inbox.post(event)
    waiting.join(30)
    assert not waiting.is_alive()
    assert got == [(None, event)]


def test_a_blocked_channel_leaves_its_pipe_unread_so_the_sender_blocks(pipes) -> None:
    """Back-pressure across processes: while a channel aligns (blocked), nothing more is read from its
    pipe; the pipe fills and the sending process blocks, then everything arrives in order."""
    inbox, channel, sender, _ = remote_inbox(pipes)
    sender.put(Barrier("e1"))
    assert inbox.next_item(10) == (channel, Barrier("e1"))
    with inbox.cond:
        channel.blocked = True
    rows = [[i, "x" * 100] for i in range(100)]  # ~10 KB a table: the pipe holds a few only
    sent = threading.Thread(target=lambda: [sender.put(message(Table(rows + [[n]]))) for n in range(500)])
    sent.start()
    for _ in range(5):
        assert inbox.next_item(0.05) is None  # blocked: nothing handed out
    sent.join(0.5)
    assert sent.is_alive(), "the sender should be held back by the full pipe"
    assert not channel.items  # not even read into the channel
    with inbox.cond:
        channel.blocked = False
    tails = []
    while len(tails) < 500:
        item = inbox.next_item(10)
        assert item is not None
        tails.append(item[1].decode(item[1].data).body.body[-1][0])
    sent.join(10)
    assert tails == list(range(500))


# -- fairness, end to end across group processes ----------------------------------------------------
def test_a_timer_that_is_always_due_does_not_starve_inputs_from_another_group(tmp_path: Path) -> None:
    """A poller ticking with interval 0 until a message from another group arrives must get it."""
    gen = """
    api.set_prestart(lambda: api.outputs.out.publish("hello"))
    """
    poller = """
    import time
    ticks = 0
    got = []
    def tick():
        global ticks
        ticks += 1
        time.sleep(0.001)
        if got or ticks >= 5000:        # 5 s without the message: the input was starved
            return -1
        return 0
    api.add_timer(tick)
    api.set_port_callback("in", lambda m, h, b: got.append(b.get()))
    api.set_shutdown(lambda: report(got=got, ticks=ticks))
    """
    reports = run_in_groups(tmp_path, {
        "gen": {"code": gen, "outputs": {"out": "string"}},
        "poller": {"code": poller, "inputs": {"in": "string"}},
    }, ["gen.out -> poller.in"])
    assert reports["poller"]["got"] == ["hello"]
    assert reports["poller"]["ticks"] < 5000


def test_a_busy_local_sender_does_not_starve_inputs_from_another_group(tmp_path: Path) -> None:
    """Fan-in of a local and a remote connection stays fair: remote messages are not left in the pipe
    until the local sender is done."""
    local = """
    def start():
        for i in range(2000):
            api.outputs.out.publish(i)
    api.set_prestart(start)
    """
    remote = """
    def start():
        for i in range(5):
            api.outputs.out.publish(i)
    api.set_prestart(start)
    """
    merge = """
    import time
    local_seen = 0
    remote_at = []
    def on_local(msg_id, header, body):
        global local_seen
        local_seen += 1
        time.sleep(0.0005)              # the local sender keeps this channel full
    api.set_port_callback("local", on_local)
    api.set_port_callback("remote", lambda m, h, b: remote_at.append(local_seen))
    api.set_shutdown(lambda: report(remote_at=remote_at, local_seen=local_seen))
    """
    reports = run_in_groups(tmp_path, {
        "local": {"code": local, "outputs": {"out": "int64"}},
        "remote": {"code": remote, "outputs": {"out": "int64"}},
        "merge": {"code": merge, "inputs": {"local": "int64", "remote": "int64"}},
    }, ["local.out -> merge.local", "remote.out -> merge.remote"], groups={"local": "g", "merge": "g"})
    got = reports["merge"]
    assert got["local_seen"] == 2000 and len(got["remote_at"]) == 5
    assert max(got["remote_at"]) < 1000, got["remote_at"]  # interleaved, not all after the local ones
