"""``snapgraph status``: runs of a store with the live progress their engines report with each heartbeat."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import snapgraph_cli, write_files
from snapgraph.monitor.status import progress_report, render_status, store_status
from snapgraph.snapshot.store import COMPLETED, MemorySpace, MemoryStore

from .test_live import Clock, counters, graph

SLOW = """
name: slow
snapshots: {period: 1}
operators:
  gen:
    outputs: {out: table}
    group: left
    code: |
      import pickle
      n = 0
      api.set_initial_snapshot_info(api.InitialProcessInfo(
          is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)}))
      api.set_serialize_callback(lambda epoch: pickle.dumps(n))
      def restore(epoch, state):
          global n
          n = pickle.loads(state)
      api.set_restore_callback(restore)
      def tick():
          global n
          n += 1
          api.outputs.out.publish(api.Table([[n, 1], [n, 2]]))
          return 0.05
      api.add_timer(tick)
  sink:
    inputs: {in: table}
    group: right
    code: |
      api.set_port_callback("in", lambda msg_id, header, body: None)
connections:
  - gen.out -> sink.in
"""


def test_the_status_of_finished_running_and_dead_runs(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    space = MemorySpace()
    engine, reader = MemoryStore(space, clock=clock), MemoryStore(space, clock=clock)
    done = engine.begin_run("/a.yaml", "a")
    engine.finish_run(done.run_id, COMPLETED)
    clock.now += 1
    running = engine.begin_run("/b.yaml", "b")
    lease = engine.acquire_lease("/b.yaml")
    from snapgraph.instruments.base import Attempt
    from snapgraph.monitor.live import RunWatcher

    watcher = RunWatcher(graph(tmp_path), monotonic=clock, wall=clock)
    watcher.attempt_started(Attempt(running.run_id, 2, "watched", "h", stats_reader=lambda: counters(7, 28)))
    lease.report_progress(lambda: progress_report(watcher.view(), {"metrics": "http://127.0.0.1:9/metrics"}))
    clock.now += 2
    engine.renew_lease(lease)
    clock.now += 1
    dead = engine.begin_run("/c.yaml", "c")  # no engine holds graph c: its engine died
    runs = {r.graph: r for r in store_status(reader, clock.now)}
    assert [r.graph for r in store_status(reader, clock.now)] == ["c", "b", "a"]  # newest first
    assert runs["a"].status == COMPLETED and runs["a"].engine is None
    assert runs["c"].status == "unfinished" and runs["c"].run == dead.run_id
    live = runs["b"]
    assert live.status == "running" and live.heartbeat_age == 1.0 and live.progress_age == 1.0
    assert f"pid {lease.store.lease_holder('/b.yaml').pid}" in (live.engine or "")  # type: ignore[union-attr]
    assert live.progress["attempt"] == 2
    assert live.progress["operators"]["gen"]["rows_out"] == 28
    assert live.progress["endpoints"] == {"metrics": "http://127.0.0.1:9/metrics"}
    text = render_status(list(runs.values()), "memory")
    assert "last heartbeat 1.0s ago" in text and "attempt 2" in text and "metrics: http://127.0.0.1:9/metrics" in text
    json.dumps([r.as_dict() for r in runs.values()])  # --json can write it
    lease.release()
    assert store_status(reader, clock.now)[1].status == "unfinished"


def test_status_of_a_running_graph_through_the_cli(tmp_path: Path) -> None:
    write_files(tmp_path, {"slow.yaml": SLOW})
    engine = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "slow.yaml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        report: dict = {}
        while time.monotonic() < deadline and engine.poll() is None:
            shown = snapgraph_cli("status", "--json", cwd=tmp_path)
            if shown.returncode == 0:
                runs = json.loads(shown.stdout)["runs"]
                if runs and runs[0]["status"] == "running" and runs[0]["progress"].get("operators", {}).get(
                        "sink", {}).get("rows_in", 0) > 0:
                    report = runs[0]
                    break
            time.sleep(0.5)
        assert report, "no progress reported while the graph ran"
        assert report["graph"] == "slow" and report["progress"]["status"] == "running"
        ops = report["progress"]["operators"]
        assert ops["gen"]["rows_out"] >= ops["sink"]["rows_in"] > 0 and ops["sink"]["rows_in"] % 2 == 0
        text = snapgraph_cli("status", cwd=tmp_path)
        assert text.returncode == 0 and "running" in text.stdout and "heartbeat" in text.stdout, text.stdout
    finally:
        engine.send_signal(signal.SIGINT)
        _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    after = json.loads(snapgraph_cli("status", "--json", cwd=tmp_path).stdout)["runs"]
    assert [(r["graph"], r["status"], r["progress"]) for r in after] == [("slow", "stopped", {})]


def test_status_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    missing = snapgraph_cli("status", "--store", str(tmp_path / "nothing.db"), cwd=tmp_path)
    assert missing.returncode == 2 and "nothing.db" in missing.stderr
