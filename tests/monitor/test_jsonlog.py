"""``snapgraph run --log-format json``: one JSON object per line on standard error, for log shippers,
with the log lines the operators write in their own group processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import snapgraph_cli, write_files

GRAPH = """
name: shipped
operators:
  src:
    group: a
    outputs: {out: int64}
    code: |
      import sys
      i = 0
      def tick():
          global i
          if i >= 20:
              return -1
          i += 1
          api.outputs.out.publish(i)
          if i % 10 == 0:
              api.logger.info("source reached %d", i)
              print("to stderr", i, file=sys.stderr)
          return 0
      api.add_timer(tick)
  sink:
    group: b
    inputs: {in: int64}
    code: |
      def on_input(msg_id, header, body):
          if body.get() == 20:
              try:
                  raise ValueError("twenty")
              except ValueError:
                  api.logger.exception("sink saw %d", body.get())
      api.set_port_callback("in", on_input)
connections:
  - src.out -> sink.in
"""


def test_every_line_is_a_json_object_with_the_operators_logs_and_the_events_in_order(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    ran = snapgraph_cli("run", "g.yaml", "--log-format", "json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    assert all(isinstance(record, dict) for record in records)
    logs = [(r["operator"], r["fields"]["level"], r["fields"]["message"]) for r in records if r["event"] == "log"]
    assert ("src", "INFO", "source reached 10") in logs
    assert ("src", "INFO", "source reached 20") in logs
    sink = [log for log in logs if log[0] == "sink"]
    assert len(sink) == 1 and sink[0][1] == "ERROR"
    assert sink[0][2].startswith("sink saw 20\nTraceback (most recent call last):")
    assert sink[0][2].endswith("ValueError: twenty")
    output = [r["fields"] for r in records if r["event"] == "output"]
    assert output == [{"stream": "stderr", "text": "to stderr 10"}, {"stream": "stderr", "text": "to stderr 20"}]
    events = [r["event"] for r in records if r["event"] not in ("log", "output", "operator_loaded", "operator_stats")]
    assert events == ["attempt_started", "attempt_ended", "message"]
    assert {r["operator"] for r in records if r["event"] == "operator_loaded"} == {"src", "sink"}
    started = next(i for i, r in enumerate(records) if r["event"] == "attempt_started")
    assert all(i > started for i, r in enumerate(records) if r["event"] in ("log", "output", "operator_loaded"))
    final = records[-1]
    assert final["event"] == "message" and final["attempt"] == 1
    assert re.fullmatch(r"snapgraph: graph 'shipped' completed after \S+s: .*", final["fields"]["message"])
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert ran.stdout == ""


def test_a_failed_run_and_its_traceback_are_json_too(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH.replace('raise ValueError("twenty")', 'pass').replace(
        "          if body.get() == 20:", "          if body.get() == 5:\n              raise KeyError(5)\n"
        "          if body.get() == 20:")})
    ran = snapgraph_cli("run", "g.yaml", "--log-format", "json", "--in-process", cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    assert [r["event"] for r in records if r["event"] in ("operator_failed", "attempt_failed", "attempt_ended")] == [
        "operator_failed", "attempt_failed", "attempt_ended"]
    assert any(r["event"] == "log" and r["operator"] == "sink" and r["fields"]["level"] == "ERROR"
               for r in records)
    messages = [r["fields"]["message"] for r in records if r["event"] == "message"]
    # In one process a script's standard error is the engine's: whether the source got to print before
    # the sink's failure ended the run is a race, but what it printed is a message like any other.
    printed = [m for m in messages if m.startswith("to stderr")]
    assert printed in ([], ["to stderr 10"])
    messages = messages[len(printed):]
    assert messages[0].startswith("snapgraph: graph 'shipped' failed after")
    assert messages[1].startswith("Traceback (most recent call last):") and "KeyError: 5" in messages[1]


def test_writes_to_the_file_descriptors_of_a_group_are_forwarded_too(tmp_path: Path) -> None:
    """What bypasses ``sys.stderr`` — ``os.write(2, …)`` as C code does, a child process that inherited
    the descriptor — still arrives as a JSON object, never as a raw line among them."""
    write_files(tmp_path, {"g.yaml": GRAPH.replace(
        '              print("to stderr", i, file=sys.stderr)',
        '              import os, subprocess\n'
        '              os.write(2, b"fd 2 %d\\n" % i)\n'
        '              os.write(1, b"fd 1 %d\\n" % i)\n'
        '              subprocess.run(["sh", "-c", "echo child err >&2; echo child out"], check=True)')})
    ran = snapgraph_cli("run", "g.yaml", "--log-format", "json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    output = [r["fields"] for r in records if r["event"] == "output"]
    assert output == [{"stream": "stderr", "text": text} for text in ("fd 2 10", "child err", "fd 2 20", "child err")]
    assert ran.stdout == "fd 1 10\nchild out\nfd 1 20\nchild out\n"
