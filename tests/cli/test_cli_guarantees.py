"""The delivery guarantee on the command line: ``validate`` and ``run`` print one line per writer,
``--require`` refuses a graph that does not reach it (exit 2, nothing started, the store untouched)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pexpect

from conftest import snapgraph_cli, write_files

# A replayable counter, a deterministic doubler, an idempotent writer (a file per value), snapshots on.
# The scripts leave a mark when they are loaded, so a refused start can show that nothing ran.
GRAPH = """
name: delivered
snapshots: {period: 1}
operators:
  gen:
    outputs: {out: int64}
    delivery: {replayable: true}
    code: |
      import pathlib
      pathlib.Path("loaded-gen").touch()
      n = 0
      def tick():
          global n
          if n == 3:
              return -1
          n += 1
          api.outputs.out.publish(n)
          return 0
      api.add_timer(tick)
  double:
    inputs: {in: int64}
    outputs: {out: int64}
    delivery: {deterministic: true}
    code: |
      api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get() * 2))
  files:
    inputs: {in: int64}
    delivery: {writer: idempotent}
    code: |
      import pathlib
      def on_input(msg_id, header, body):
          pathlib.Path(f"out-{body.get()}").write_text(str(body.get()))
      api.set_port_callback("in", on_input)
connections:
  - gen.out -> double.in
  - double.out -> files.in
"""
EXACTLY_ONCE = ("snapgraph: delivery: writer 'files': exactly-once: source 'gen' replays from its snapshot, "
                "'double' is declared deterministic, 'files' is idempotent")
NOT_DETERMINISTIC = GRAPH.replace("    delivery: {deterministic: true}\n", "")
AT_LEAST_ONCE = "snapgraph: delivery: writer 'files': at-least-once: 'double' is not declared deterministic"
WITHOUT_SNAPSHOTS = GRAPH.replace("snapshots: {period: 1}\n", "")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_validate_prints_each_writer_s_guarantee(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    checked = snapgraph_cli("validate", "g.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == "g.yaml: ok (3 operators, 2 connections)\n"
    assert checked.stderr.splitlines() == [EXACTLY_ONCE]


def test_validate_of_a_graph_without_writers_says_so(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH.replace("    delivery: {writer: idempotent}\n",
                                                   "    delivery: {writer: none}\n")})
    checked = snapgraph_cli("validate", "g.yaml", "--require", "exactly-once", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        "snapgraph: delivery: the graph has no writer (no operator writes outside the graph)"]


def test_validate_without_snapshots_and_with_the_options_of_the_run(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": WITHOUT_SNAPSHOTS})
    off = snapgraph_cli("validate", "g.yaml", cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert off.stderr.splitlines() == [
        "snapgraph: delivery: writer 'files': at-most-once: snapshots are off and there is no automatic "
        "recovery: a failure ends the run (with snapshots: exactly-once)"]
    retried = snapgraph_cli("validate", "g.yaml", "--max-retries", "2", cwd=tmp_path)
    assert retried.stderr.splitlines() == [
        "snapgraph: delivery: writer 'files': at-least-once: snapshots are off: a recovery starts the graph "
        "from scratch and writes everything again (with snapshots: exactly-once)"]
    on = snapgraph_cli("validate", "g.yaml", "--snapshot-period", "5", "--require", "exactly-once", cwd=tmp_path)
    assert on.returncode == 0, on.stderr
    assert on.stderr.splitlines() == [EXACTLY_ONCE]
    bad_period = snapgraph_cli("validate", "g.yaml", "--snapshot-period", "0.1", cwd=tmp_path)
    assert bad_period.returncode == 2 and "outside 1 s .. 86400 s" in bad_period.stderr


def test_validate_require_refuses_naming_the_weakest_link(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": NOT_DETERMINISTIC})
    refused = snapgraph_cli("validate", "g.yaml", "--require", "exactly-once", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        AT_LEAST_ONCE,
        "snapgraph: --require exactly-once: writer 'files' is at-least-once: 'double' is not declared "
        "deterministic; nothing was started"]
    enough = snapgraph_cli("validate", "g.yaml", "--require", "at-least-once", cwd=tmp_path)
    assert enough.returncode == 0, enough.stderr


def test_validate_require_a_writer_with_no_guarantee(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": WITHOUT_SNAPSHOTS.replace("    delivery: {replayable: true}\n", "")})
    refused = snapgraph_cli("validate", "g.yaml", "--max-retries", "1", "--require", "at-most-once", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "snapgraph: --require at-most-once: writer 'files' has no guarantee: snapshots are off: a recovery "
        "starts the graph from scratch and writes everything again, and source 'gen' is not declared "
        "replayable; nothing was started")


def test_require_takes_only_the_guarantees(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    wrong = snapgraph_cli("run", "g.yaml", "--require", "exactly-twice", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "Invalid value for '--require'" in wrong.stderr and "exactly-once" in wrong.stderr
    assert not (tmp_path / ".snapgraph").exists() and not (tmp_path / "loaded-gen").exists()


def test_run_prints_the_guarantee_first(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    ran = snapgraph_cli("run", "g.yaml", "--require", "exactly-once", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    assert lines[0] == EXACTLY_ONCE
    assert lines[-1].startswith("snapgraph: graph 'delivered' completed after")
    assert sorted(p.name for p in tmp_path.glob("out-*")) == ["out-2", "out-4", "out-6"]


def test_run_refuses_before_anything_starts_and_leaves_the_store_as_it_is(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    first = snapgraph_cli("run", "g.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    store = tmp_path / ".snapgraph" / "snapshots.db"
    before = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in store.parent.iterdir()}
    (tmp_path / "loaded-gen").unlink()
    write_files(tmp_path, {"g.yaml": NOT_DETERMINISTIC})
    refused = snapgraph_cli("run", "g.yaml", "--require", "exactly-once", "--metrics-port", "0", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        AT_LEAST_ONCE,
        "snapgraph: --require exactly-once: writer 'files' is at-least-once: 'double' is not declared "
        "deterministic; nothing was started"]
    assert not (tmp_path / "loaded-gen").exists()  # no script was loaded, no metrics served
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in store.parent.iterdir()} == before


def test_run_that_cannot_recover_says_nothing_of_delivery(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": WITHOUT_SNAPSHOTS})
    ran = snapgraph_cli("run", "g.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "delivery" not in ran.stderr
    retried = snapgraph_cli("run", "g.yaml", "--max-retries", "1", cwd=tmp_path)
    assert retried.stderr.splitlines()[0].startswith("snapgraph: delivery: writer 'files': at-least-once: ")


def test_run_with_json_logs_prints_the_guarantee_as_a_json_message(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    ran = snapgraph_cli("run", "g.yaml", "--log-format", "json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    assert records[0]["event"] == "message" and records[0]["fields"]["message"] == EXACTLY_ONCE


def test_on_a_terminal_the_guarantee_is_a_line_of_its_own_above_the_progress(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    child = pexpect.spawn(sys.executable, ["-m", "snapgraph", "run", "g.yaml"], cwd=str(tmp_path), encoding="utf-8",
                          timeout=60, dimensions=(40, 200), env=dict(os.environ, PYTHONUNBUFFERED="1"))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    shown = [ANSI.sub("", line).strip() for line in re.split(r"\r\n|\n|\r", child.before)]
    assert [line for line in shown if "delivery" in line] == [EXACTLY_ONCE]
    assert shown[0] == EXACTLY_ONCE
