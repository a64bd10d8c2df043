"""The engine (runtime/engine.py) ends a run: the end is bounded, a drain ends, and nothing already
sent is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

TERMINATED = """
name: term
operators:
  gen:
    group: a
    outputs: {out: int64, done: string}
    code: |
      n = 0
      def tick():
          global n
          api.outputs.out.publish(n)
          n += 1
          if n == 200:
              api.outputs.done.publish("x")
              return -1
          return 0
      api.add_timer(tick)
  sink:
    group: b
    inputs: {in: int64}
    code: |
      import time
      f = open("received.txt", "a")
      def on(mid, h, b):
          time.sleep(0.002)  # slower than the generator: messages queue up in the pipe
          f.write(f"{b.get()}\\n"); f.flush()
      api.set_port_callback("in", on)
  stop:
    group: c
    component: graphTerminator
connections:
  - gen.out -> sink.in
  - gen.done -> stop.in
"""

MODES = [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("snapshots", [[], ["--snapshot-period", "1"]], ids=["no-snapshots", "snapshots"])
def test_every_message_sent_before_the_terminator_fired_is_processed(
        tmp_path: Path, mode: list[str], snapshots: list[str]) -> None:
    write_files(tmp_path, {"graph.yaml": TERMINATED})
    for round_ in range(3):
        (tmp_path / "received.txt").unlink(missing_ok=True)
        proc = snapgraph_cli("run", "graph.yaml", *mode, *snapshots, "--fresh" if snapshots else "--verbose",
                             cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "graph terminator 'stop' fired" in proc.stderr
        received = (tmp_path / "received.txt").read_text().split()
        assert received == [str(i) for i in range(200)], f"round {round_}: {len(received)} of 200"


ALWAYS_PUBLISHING = """
name: chatty
operators:
  gen:
    outputs: {out: int64, done: string}
    code: |
      import pickle
      n = 0
      api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
      def tick():
          global n
          n += 1
          api.outputs.out.publish(n)
          if n == 5:
              api.outputs.done.publish("x")
              return -1
          return 0
      api.add_timer(tick)
      api.set_serialize_callback(lambda epoch: pickle.dumps(n))
      def restore(epoch, data):
          global n
          n = pickle.loads(data)
      api.set_restore_callback(restore)
      def complete(epoch):
          api.outputs.out.publish(-1)  # every epoch_complete publishes: the drain must still end
      api.set_epoch_complete_callback(complete)
  sink:
    inputs: {in: int64}
    code: |
      def on(mid, h, b):
          with open("received.txt", "a") as f:
              f.write(f"{b.get()}\\n")
      api.set_port_callback("in", on)
  stop:
    component: graphTerminator
connections:
  - gen.out -> sink.in
  - gen.done -> stop.in
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_drain_ends_even_if_epoch_complete_always_publishes(tmp_path: Path, mode: list[str]) -> None:
    write_files(tmp_path, {"graph.yaml": ALWAYS_PUBLISHING})
    proc = snapgraph_cli("run", "graph.yaml", "--snapshot-period", "1", *mode, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "graph terminator 'stop' fired; final epoch" in proc.stderr
    assert "is discarded: the graph is ending" in proc.stderr
    received = (tmp_path / "received.txt").read_text().split()
    # the five items, and what epoch_complete of every epoch but the last final one published
    assert [r for r in received if r != "-1"] == ["1", "2", "3", "4", "5"]
    assert received.count("-1") >= 2
    runs = snapgraph_cli("snapshots", "list", cwd=tmp_path).stdout.splitlines()[1:]
    assert len(runs) == 1 and runs[0].split()[2] == "completed"
