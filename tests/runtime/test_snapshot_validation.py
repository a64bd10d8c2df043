"""What snapshots demand of a graph and its scripts, checked through the real CLI.

With snapshots on (``--snapshot-period`` or ``snapshots: {period}`` in the graph file): no cycles,
no group with multiplicity > 1, no group restart policy ``restart`` (exit 2); a stateful operator must
register serialize and restore (exit 2); serialize must return bytes and not raise (else the run fails,
exit 1, and automatic recovery retries it like any failure).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

# how snapshots are switched on: on the command line, or in the graph file
CLI = pytest.param(("--snapshot-period", "1"), "", id="cli")
YAML = pytest.param((), "snapshots: {period: 1}\n", id="yaml")


@pytest.fixture(autouse=True)
def no_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)


def cli(folder: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    write_files(folder, files)
    return snapgraph_cli(*args, cwd=folder)


def lines(path: Path) -> list[str]:
    return path.read_text().split()


# --------------------------------------------------------------------------------------
# graph shape: cycles, multiplicity, restart policy
# --------------------------------------------------------------------------------------

CYCLE_GRAPH = """
name: ping-pong
operators:
  a:
    code: |
      def start():
          api.outputs.out.publish(0)
      def on_input(msg_id, header, body):
          value = body.get()
          with open("cycle.log", "a") as f:
              f.write(f"{value}\\n")
          if value < 3:
              api.outputs.out.publish(value + 1)
      api.set_prestart(start)
      api.set_port_callback("in", on_input)
    inputs: {in: int64}
    outputs: {out: int64}
  b:
    code: |
      api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get()))
    inputs: {in: int64}
    outputs: {out: int64}
connections:
  - a.out -> b.in
  - b.out -> a.in
"""


@pytest.mark.parametrize("flags, setting", [CLI, YAML])
def test_a_cycle_is_rejected_with_snapshots(tmp_path: Path, flags: tuple[str, ...], setting: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": CYCLE_GRAPH + setting}, "run", "graph.yaml", *flags)
    assert proc.returncode == 2
    assert re.search(r"snapshots do not support cycles, but the graph has the cycle (a -> b -> a|b -> a -> b)",
                     proc.stderr), proc.stderr
    assert "1 problem(s)" in proc.stderr
    assert not (tmp_path / "cycle.log").exists()
    assert not (tmp_path / ".snapgraph").exists()


def test_a_cycle_is_fine_without_snapshots(tmp_path: Path) -> None:
    files = {"graph.yaml": CYCLE_GRAPH}
    check = cli(tmp_path, files, "validate", "graph.yaml")
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "graph.yaml: ok (2 operators, 2 connections)"
    proc = cli(tmp_path, files, "run", "graph.yaml")
    assert proc.returncode == 0, proc.stderr
    assert lines(tmp_path / "cycle.log") == ["0", "1", "2", "3"]


def test_validate_follows_the_graph_files_snapshot_setting(tmp_path: Path) -> None:
    proc = cli(tmp_path, {"graph.yaml": CYCLE_GRAPH + "snapshots: 2\n"}, "validate", "graph.yaml")
    assert proc.returncode == 2
    assert "snapshots do not support cycles" in proc.stderr


GROUP_GRAPH = """
name: grouped
operators:
  gen:
    code: |
      def start():
          for i in range(3):
              api.outputs.out.publish(i)
      api.set_prestart(start)
    outputs: {out: int64}
  sink:
    code: |
      import os
      def on_input(msg_id, header, body):
          with open(f"sink-{os.getpid()}.log", "a") as f:
              f.write(f"{body.get()}\\n")
      api.set_port_callback("in", on_input)
    inputs: {in: int64}
    group: g
connections:
  - gen.out -> sink.in
groups:
  g: {@GROUP@}
"""

MULTIPLICITY = GROUP_GRAPH.replace("@GROUP@", "multiplicity: 2")
RESTART = GROUP_GRAPH.replace("@GROUP@", "restartPolicy: restart")


@pytest.mark.parametrize("flags, setting", [CLI, YAML])
def test_multiplicity_above_one_is_rejected_with_snapshots(tmp_path: Path, flags: tuple[str, ...],
                                                           setting: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": MULTIPLICITY + setting}, "run", "graph.yaml", *flags)
    assert proc.returncode == 2
    assert "group 'g': snapshots do not support groups with multiplicity > 1 (multiplicity is 2)" in proc.stderr
    assert not list(tmp_path.glob("sink-*.log"))


@pytest.mark.parametrize("flags, setting", [CLI, YAML])
def test_restart_policy_restart_is_rejected_with_snapshots(tmp_path: Path, flags: tuple[str, ...],
                                                           setting: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": RESTART + setting}, "run", "graph.yaml", *flags)
    assert proc.returncode == 2
    assert "group 'g': group restart policy is 'restart' while snapshots are enabled" in proc.stderr
    assert not list(tmp_path.glob("sink-*.log"))


def test_all_snapshot_problems_are_reported_together(tmp_path: Path) -> None:
    graph = GROUP_GRAPH.replace("@GROUP@", "multiplicity: 3, restartPolicy: restart")
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml", "--snapshot-period", "1")
    assert proc.returncode == 2
    assert "2 problem(s)" in proc.stderr
    assert "(multiplicity is 3)" in proc.stderr
    assert "group restart policy is 'restart'" in proc.stderr


@pytest.mark.parametrize("graph", [MULTIPLICITY, RESTART], ids=["multiplicity", "restart"])
def test_groups_are_fine_without_snapshots(tmp_path: Path, graph: str) -> None:
    check = cli(tmp_path, {"graph.yaml": graph}, "validate", "graph.yaml")
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "graph.yaml: ok (2 operators, 1 connection)"
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml")
    assert proc.returncode == 0, proc.stderr
    logs = list(tmp_path.glob("sink-*.log"))
    assert logs
    assert sorted(int(v) for log in logs for v in lines(log)) == [0, 1, 2]


# --------------------------------------------------------------------------------------
# stateful operators: serialize and restore
# --------------------------------------------------------------------------------------

def stateful_graph(body: str) -> str:
    """A stateful source ``gen`` (three items, then done) and a stateless sink."""
    code = """
import pickle
count = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'out': api.OutportInfo(is_generator=True)}))
def tick():
    global count
    if count >= 3:
        return -1
    api.outputs.out.publish(count)
    count += 1
    return 0
api.add_timer(tick)
""" + body
    indented = "\n".join("      " + line if line else "" for line in code.strip("\n").splitlines())
    return f"""
name: stateful
operators:
  gen:
    code: |
{indented}
    outputs: {{out: int64}}
  sink:
    code: |
      def on_input(msg_id, header, body):
          with open("sink.log", "a") as f:
              f.write(f"{{body.get()}}\\n")
      api.set_port_callback("in", on_input)
    inputs: {{in: int64}}
connections:
  - gen.out -> sink.in
"""


NO_CALLBACKS = stateful_graph("")
ONLY_SERIALIZE = stateful_graph("api.set_serialize_callback(lambda epoch: pickle.dumps(count))\n")
ONLY_RESTORE = stateful_graph("api.set_restore_callback(lambda epoch, data: None)\n")
RESTORE = ("def restore(epoch, data):\n    global count\n    count = pickle.loads(data)\n"
           "api.set_restore_callback(restore)\n")
RETURNS_STR = stateful_graph("api.set_serialize_callback(lambda epoch: str(count))\n" + RESTORE)
RAISES = stateful_graph(
    "def serialize(epoch):\n    raise ValueError('cannot pickle the cursor')\n"
    "api.set_serialize_callback(serialize)\n" + RESTORE)
GOOD = stateful_graph("api.set_serialize_callback(lambda epoch: bytearray(pickle.dumps(count)))\n" + RESTORE)

STATEFUL_MESSAGE = ("operator 'gen' is declared stateful (api.set_initial_snapshot_info) but does not register "
                    "both api.set_serialize_callback and api.set_restore_callback")


@pytest.mark.parametrize("graph", [NO_CALLBACKS, ONLY_SERIALIZE, ONLY_RESTORE],
                         ids=["neither", "only-serialize", "only-restore"])
def test_stateful_without_serialize_and_restore_is_exit_2(tmp_path: Path, graph: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml", "--snapshot-period", "1")
    assert proc.returncode == 2, proc.stderr
    assert STATEFUL_MESSAGE in proc.stderr
    assert not (tmp_path / "sink.log").exists()


def test_stateful_without_serialize_and_restore_is_exit_2_with_the_yaml_setting(tmp_path: Path) -> None:
    proc = cli(tmp_path, {"graph.yaml": NO_CALLBACKS + "snapshots: {period: 1}\n"}, "run", "graph.yaml")
    assert proc.returncode == 2, proc.stderr
    assert STATEFUL_MESSAGE in proc.stderr


def test_stateful_without_callbacks_runs_without_snapshots(tmp_path: Path) -> None:
    proc = cli(tmp_path, {"graph.yaml": NO_CALLBACKS}, "run", "graph.yaml")
    assert proc.returncode == 0, proc.stderr
    assert lines(tmp_path / "sink.log") == ["0", "1", "2"]
    assert "declared stateful" not in proc.stderr


def test_serialize_may_return_a_bytearray(tmp_path: Path) -> None:
    proc = cli(tmp_path, {"graph.yaml": GOOD}, "run", "graph.yaml", "--snapshot-period", "1")
    assert proc.returncode == 0, proc.stderr
    assert lines(tmp_path / "sink.log") == ["0", "1", "2"]


SERIALIZE_STR = re.compile(
    r"operator 'gen' failed in snapshot of epoch \S+: TypeError: serialize\('\S+'\) returned str; "
    r"it must return bytes")
SERIALIZE_RAISES = re.compile(
    r"operator 'gen' failed in snapshot of epoch \S+: ValueError: cannot pickle the cursor")


@pytest.mark.parametrize("flags, setting", [CLI, YAML])
def test_serialize_returning_str_fails_the_run(tmp_path: Path, flags: tuple[str, ...], setting: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": RETURNS_STR + setting}, "run", "graph.yaml", *flags)
    assert proc.returncode == 1, proc.stderr
    assert "snapgraph: graph 'stateful' failed after" in proc.stderr
    assert SERIALIZE_STR.search(proc.stderr), proc.stderr


@pytest.mark.parametrize("flags, setting", [CLI, YAML])
def test_serialize_raising_fails_the_run(tmp_path: Path, flags: tuple[str, ...], setting: str) -> None:
    proc = cli(tmp_path, {"graph.yaml": RAISES + setting}, "run", "graph.yaml", *flags)
    assert proc.returncode == 1, proc.stderr
    assert "snapgraph: graph 'stateful' failed after" in proc.stderr
    assert SERIALIZE_RAISES.search(proc.stderr), proc.stderr
    assert "raise ValueError('cannot pickle the cursor')" in proc.stderr  # the traceback


@pytest.mark.parametrize("graph, pattern", [(RETURNS_STR, SERIALIZE_STR), (RAISES, SERIALIZE_RAISES)],
                         ids=["returns-str", "raises"])
def test_serialize_failures_are_retried_then_fail(tmp_path: Path, graph: str, pattern: re.Pattern[str]) -> None:
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml", "--snapshot-period", "1",
               "--max-retries", "1", "--retry-interval", "0")
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "attempt 1 failed" in err and "(failure counter 1/1)" in err
    assert "attempt 2 failed" not in err
    assert re.search(r"maximum retries reached \(1\): " + pattern.pattern, err), err
    assert re.search(r"graph 'stateful' failed after \S+ \(2 attempts\): " + pattern.pattern, err), err
    listing = snapgraph_cli("snapshots", "list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    [row] = listing.stdout.splitlines()[1:]
    assert row.split()[1:4] == ["stateful", "failed", "2"]
