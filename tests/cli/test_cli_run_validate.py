"""The real ``snapgraph`` command line in a subprocess: exit codes and error messages.

Exit codes: 0 completed or stopped on request, 1 the graph failed, 2 invalid input.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

DI_GRAPH = Path(__file__).resolve().parents[1] / "model" / "fixtures" / "di_graph"


def cli(folder: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Write ``files`` into ``folder`` and run ``snapgraph <args>`` there."""
    write_files(folder, files)
    return snapgraph_cli(*args, cwd=folder)


# --------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------

GOOD_GRAPH = """
name: good
parameters: {count: 3}
operators:
  gen:
    script: gen.py
    outputs: {out: int64}
    config: {count: "${count}"}
  double:
    script: double.py
    inputs: {in: int64}
    outputs: {out: int64}
  show: {component: terminal}
connections:
  - gen.out -> double.in
  - double.out -> show.in
"""

GOOD_GEN = """
def start():
    for i in range(api.config.count):
        api.outputs.out.publish(i)
api.set_prestart(start)
"""

GOOD_DOUBLE = """
api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get() * 2))
"""

GOOD_FILES = {"graph.yaml": GOOD_GRAPH, "gen.py": GOOD_GEN, "double.py": GOOD_DOUBLE}


def test_validate_a_good_graph(tmp_path):
    proc = cli(tmp_path, GOOD_FILES, "validate", "graph.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "graph.yaml: ok (3 operators, 2 connections)"


def test_run_a_good_graph_with_a_param(tmp_path):
    proc = cli(tmp_path, GOOD_FILES, "run", "graph.yaml", "--param", "count=4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "2", "4", "6"]
    assert "graph 'good' completed" in proc.stderr


def test_validate_reports_several_problems_at_once(tmp_path):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: string}
      sink:
        script: sink.py
        inputs: {in: int64}
      weird:
        component: com.acme.nope
    connections:
      - gen.out -> sink.in
      - gen.outt -> sink.in
      - gen.out -> ghost.in
    """
    files = {"graph.yaml": graph, "gen.py": "def f(:\n    pass\n", "sink.py": "pass\n"}
    proc = cli(tmp_path, files, "validate", "graph.yaml")
    assert proc.returncode == 2
    err = proc.stderr
    assert "graph.yaml: 5 problem(s):" in err
    assert "graph.yaml:8: process 'weird': unknown component 'com.acme.nope'" in err
    assert "graph.yaml:11: connection 'gen.out -> sink.in': incompatible ports" in err
    assert "graph.yaml:12: connection 'gen.outt -> sink.in': process 'gen' has no output port 'outt'" in err
    assert "graph.yaml:13: connection 'gen.out -> ghost.in': unknown target process 'ghost'" in err
    assert re.search(r"process 'gen': syntax error in script \S*gen\.py:1", err)


# --------------------------------------------------------------------------------------
# invalid input: exit 2
# --------------------------------------------------------------------------------------

def test_unknown_component(tmp_path):
    graph = """
    operators:
      reader:
        component: com.sap.kafka.consumer2.v2
    """
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml")
    assert proc.returncode == 2
    assert "graph.yaml:2: process 'reader': unknown component 'com.sap.kafka.consumer2.v2'" in proc.stderr


@pytest.mark.parametrize("connection,message", [
    ("gen.out -> ghost.in", "unknown target process 'ghost' (processes: gen, sink)"),
    ("phantom.out -> sink.in", "unknown source process 'phantom' (processes: gen, sink)"),
    ("gen.output -> sink.in", "process 'gen' has no output port 'output' (output ports: out)"),
    ("gen.out -> sink.input", "process 'sink' has no input port 'input' (input ports: in)"),
])
def test_unknown_process_or_port_in_a_connection(tmp_path, connection, message):
    graph = f"""
    operators:
      gen:
        script: gen.py
        outputs: {{out: int64}}
      sink:
        script: sink.py
        inputs: {{in: int64}}
    connections:
      - {connection}
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "gen.py": "pass\n", "sink.py": "pass\n"}, "run", "graph.yaml")
    assert proc.returncode == 2
    assert f"graph.yaml:9: connection '{connection}': {message}" in proc.stderr


def test_incompatible_port_types(tmp_path):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: table}
      sink:
        script: sink.py
        inputs: {in: string}
    connections:
      - gen.out -> sink.in
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "gen.py": "pass\n", "sink.py": "pass\n"}, "run", "graph.yaml")
    assert proc.returncode == 2
    assert ("graph.yaml:9: connection 'gen.out -> sink.in': incompatible ports: gen.out (table:*) -> "
            "sink.in (scalar:com.sap.core.string)") in proc.stderr


def test_script_syntax_error_names_file_and_line(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    def prestart():
        value = 1
        if value == 1
            api.logger.info("one")

    api.set_prestart(prestart)
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": script}, "run", "graph.yaml")
    assert proc.returncode == 2
    assert f"process 'op': syntax error in script {tmp_path / 'op.py'}:3: expected ':'" in proc.stderr
    assert "if value == 1" in proc.stderr


def test_inline_script_syntax_error_names_the_graph_and_line(tmp_path):
    graph = """
    operators:
      op:
        code: |
          x = 1
          y = (
    """
    proc = cli(tmp_path, {"graph.yaml": graph}, "validate", "graph.yaml")
    assert proc.returncode == 2
    # The line of the graph file (the block's second line), not the line within the code block.
    assert re.search(r"syntax error in script \S*graph\.yaml:5: ", proc.stderr), proc.stderr


def test_a_failing_inline_callback_names_the_graph_file_line_and_prints_its_traceback_once(tmp_path):
    graph = """
    operators:
      gen:
        outputs: {out: int64}
        code: |
          def tick():
              api.outputs.out.publish(7)
              return -1
          api.add_timer(tick)
      sink:
        inputs: {in: int64}
        code: |
          def on_input(msg_id, header, body):
              raise ValueError("no sevens")
          api.set_port_callback("in", on_input)
    connections:
      - gen.out -> sink.in
    """
    proc = cli(tmp_path, {"graph.yaml": graph}, "run", "graph.yaml")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("Traceback (most recent call last)") == 1, proc.stderr
    assert re.search(r'File "\S*graph\.yaml", line 13, in on_input\n\s+raise ValueError\("no sevens"\)',
                     proc.stderr), proc.stderr
    assert "(at graph.yaml:13)" in proc.stderr or re.search(r"\(at \S*graph\.yaml:15\)", proc.stderr)


def test_missing_param(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
        config: {table: "${table_name}"}
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": "pass\n"}, "run", "graph.yaml")
    assert proc.returncode == 2
    assert "parameter 'table_name' has no value" in proc.stderr
    assert "--param table_name=" in proc.stderr


@pytest.mark.parametrize("bad", ["novalue", "=value"])
def test_bad_param_syntax(tmp_path, bad):
    proc = cli(tmp_path, GOOD_FILES, "run", "graph.yaml", "--param", bad)
    assert proc.returncode == 2
    assert f"expected NAME=VALUE, got '{bad}'" in proc.stderr


@pytest.mark.parametrize("name,text,message", [
    ("conn.yaml", "PG: [1, 2\n", "conn.yaml:2: invalid connections file"),
    ("conn.json", '{"PG": ', "conn.json:1:8: invalid JSON in connections file"),
    ("conn.json", '{"PG": {"connectionType": 5}}', "connection 'PG': connectionType must be a string"),
])
def test_malformed_connections_file(tmp_path, name, text, message):
    graph = """
    operators:
      op:
        script: op.py
        config: {db: {connectionID: PG}}
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": "pass\n", name: text},
               "run", "graph.yaml", "--connections", name)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_unknown_connection_id(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
        config: {db: {connectionID: MISSING}}
    """
    conn = "PG:\n  connectionType: POSTGRES\n  connectionProperties: {host: h}\n"
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": "pass\n", "conn.yaml": conn},
               "run", "graph.yaml", "-c", "conn.yaml")
    assert proc.returncode == 2
    assert "config 'db' uses connection 'MISSING', but it is not in the connections file" in proc.stderr


def test_managed_connection_through_the_cli(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
        config: {db: {configurationType: Connection Management, connectionID: PG}}
    """
    script = """
    def start():
        props = api.config.db["connectionProperties"]
        api.logger.info("connect to %s:%s as %s" % (props["host"], props["port"], props["user"]))
    api.set_prestart(start)
    """
    conn = json.dumps({"PG": {"connectionType": "POSTGRES",
                              "connectionProperties": {"host": "db.example", "port": 5432, "user": "demo"}}})
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": script, "conn.json": conn},
               "run", "graph.yaml", "--connections", "conn.json")
    assert proc.returncode == 0, proc.stderr
    assert "[op] INFO: connect to db.example:5432 as demo" in proc.stderr


# --------------------------------------------------------------------------------------
# failures at run time: exit 1 (terminate on error) or 0 (log and ignore)
# --------------------------------------------------------------------------------------

FAILING_GRAPH = """
name: failing
operators:
  gen:
    script: gen.py
    outputs: {{out: int64}}
  op:
    script: op.py
    inputs: {{in: int64}}
    config: {{errorHandling: {mode}, where: {where}}}
connections:
  - gen.out -> op.in
"""

FAILING_GEN = """
api.set_prestart(lambda: api.outputs.out.publish(1))
"""

# Each callback raises (once) on its own line when api.config.where names it.
FAILING_OP = """
failed = set()

def fail(where):
    if api.config.where == where and where not in failed:
        failed.add(where)
        raise RuntimeError("boom in " + where)

fail("body")

def prestart():
    fail("prestart")

def tick():
    fail("timer")
    return -1

def on_input(msg_id, header, body):
    fail("port")

def shutdown():
    fail("shutdown")
    api.logger.info("shutdown ran")

api.set_prestart(prestart)
api.add_timer(tick)
api.set_port_callback("in", on_input)
api.set_shutdown(shutdown)
"""

CALL_LINES = {"body": 8, "prestart": 11, "timer": 14, "port": 18, "shutdown": 21}

@pytest.mark.parametrize("where", ["body", "prestart", "timer", "port", "shutdown"])
def test_exception_under_terminate_on_error_exits_1_with_the_script_line(tmp_path, where):
    files = {"graph.yaml": FAILING_GRAPH.format(mode="terminate on error", where=where),
             "gen.py": FAILING_GEN, "op.py": FAILING_OP}
    proc = cli(tmp_path, files, "run", "graph.yaml")
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert f"RuntimeError: boom in {where}" in err
    assert 'op.py", line 6, in fail' in err          # the raising line...
    assert f'op.py", line {CALL_LINES[where]}' in err  # ...and the callback's line
    assert "graph 'failing' failed" in err and "operator 'op' failed" in err


@pytest.mark.parametrize("where", ["prestart", "timer", "port"])
def test_exception_under_log_and_ignore_exits_0(tmp_path, where):
    files = {"graph.yaml": FAILING_GRAPH.format(mode="log and ignore", where=where),
             "gen.py": FAILING_GEN, "op.py": FAILING_OP}
    proc = cli(tmp_path, files, "run", "graph.yaml")
    assert proc.returncode == 0, proc.stderr
    assert f"RuntimeError: boom in {where}" in proc.stderr
    assert "(ignored: log and ignore)" in proc.stderr
    assert "[op] INFO: shutdown ran" in proc.stderr
    assert "graph 'failing' completed" in proc.stderr


@pytest.mark.parametrize("where", ["body", "shutdown"])
def test_script_body_and_shutdown_errors_fail_even_under_log_and_ignore(tmp_path, where):
    # errorHandling covers prestart, timers and port callbacks only.
    files = {"graph.yaml": FAILING_GRAPH.format(mode="log and ignore", where=where),
             "gen.py": FAILING_GEN, "op.py": FAILING_OP}
    proc = cli(tmp_path, files, "run", "graph.yaml")
    assert proc.returncode == 1, proc.stderr
    assert f"RuntimeError: boom in {where}" in proc.stderr


def test_publish_to_an_unknown_port_exits_1_naming_the_port(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
        outputs: {output: int64}
    """
    script = """
    def start():
        api.outputs.ouptut.publish(1)
    api.set_prestart(start)
    """
    proc = cli(tmp_path, {"graph.yaml": graph, "op.py": script}, "run", "graph.yaml")
    assert proc.returncode == 1
    assert "operator 'op' has no output port 'ouptut' (its ports: output)" in proc.stderr
    assert 'op.py", line 2' in proc.stderr


def test_verbose_shows_debug_logs(tmp_path):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    api.set_prestart(lambda: api.logger.debug("details for debugging"))
    """
    quiet = cli(tmp_path, {"graph.yaml": graph, "op.py": script}, "run", "graph.yaml")
    loud = snapgraph_cli("run", "graph.yaml", "--verbose", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 0
    assert "details for debugging" not in quiet.stderr
    assert "[op] DEBUG: details for debugging" in loud.stderr


# --------------------------------------------------------------------------------------
# stopping a streaming graph: --stop-after and SIGTERM
# --------------------------------------------------------------------------------------

STREAMING_GRAPH = """
name: streaming
operators:
  ticker:
    script: ticker.py
    outputs: {out: int64}
  show: {component: terminal, config: {layout: "tick %m"}}
connections:
  - ticker.out -> show.in
"""

TICKER = """
n = 0

def tick():
    global n
    n += 1
    api.outputs.out.publish(n)
    return 0.02

def shutdown():
    api.logger.info("shutdown ran after %d ticks" % n)

api.add_timer(tick)
api.set_shutdown(shutdown)
"""


def test_stop_after_on_a_streaming_graph(tmp_path):
    proc = cli(tmp_path, {"graph.yaml": STREAMING_GRAPH, "ticker.py": TICKER}, "run", "graph.yaml",
               "--stop-after", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\[ticker\] INFO: shutdown ran after \d+ ticks", proc.stderr)
    assert "graph 'streaming' stopped" in proc.stderr and "--stop-after 0.5s elapsed" in proc.stderr
    assert proc.stdout.startswith("tick 1\n")


def test_sigterm_stops_a_streaming_graph_gracefully(tmp_path):
    write_files(tmp_path, {"graph.yaml": STREAMING_GRAPH, "ticker.py": TICKER})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()  # the graph is running once it ticked
        assert first == "tick 1\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "graph 'streaming' stopped" in err
    match = re.search(r"\[ticker\] INFO: shutdown ran after (\d+) ticks", err)
    assert match
    ticks = ["tick 1"] + out.splitlines()
    assert ticks == [f"tick {i}" for i in range(1, len(ticks) + 1)]
    assert len(ticks) <= int(match.group(1))  # nothing printed after the ticker stopped


# --------------------------------------------------------------------------------------
# the DI-style fixture: graph.json, inline scripts, ${} params, a group, a custom operator
# --------------------------------------------------------------------------------------

@pytest.fixture
def di_graph(tmp_path) -> Path:
    """A copy of tests/model/fixtures/di_graph (running it writes __pycache__ next to the helper)."""
    target = tmp_path / "di_graph"
    shutil.copytree(DI_GRAPH, target)
    return target


def test_di_graph_fixture_runs_end_to_end(di_graph, tmp_path):
    proc = snapgraph_cli("run", str(di_graph / "graph.json"), "--operators", str(di_graph / "operators"),
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "[users1] INFO: published 3 users",
        "[graphterminator1] INFO: all inputs terminated: ending the graph",
        proc.stderr.splitlines()[-1],
    ]
    assert re.fullmatch(r"snapgraph: graph 'di_graph' completed after [\d.]+s: graph terminator "
                        r"'graphterminator1' fired", proc.stderr.splitlines()[-1])


def test_di_graph_name_with_a_relative_path(di_graph):
    # a graph.json is named after its folder, also when given as a relative path
    proc = snapgraph_cli("run", "graph.json", "--operators", "operators", cwd=di_graph)
    assert proc.returncode == 0, proc.stderr
    assert "graph 'di_graph' completed" in proc.stderr


def test_di_graph_fixture_with_params_and_a_wiretap(di_graph):
    # Route the counter's result through a Wiretap V2 before the terminator, to see it.
    data = json.loads((di_graph / "graph.json").read_text())
    data["processes"]["wiretap1"] = {"component": "com.sap.util.wiretap.v2",
                                     "metadata": {"generation": 2, "config": {}}}
    data["connections"][1]["tgt"] = {"process": "wiretap1", "port": "in"}
    data["connections"].append({"src": {"process": "wiretap1", "port": "out"},
                                "tgt": {"process": "graphterminator1", "port": "in"}})
    (di_graph / "tapped.json").write_text(json.dumps(data))
    proc = snapgraph_cli("run", "tapped.json", "--operators", "operators",
                         "--param", "user_count=5", "--param", "domain=corp.test", cwd=di_graph)
    assert proc.returncode == 0, proc.stderr
    assert "[users1] INFO: published 5 users" in proc.stderr
    assert proc.stdout.strip() == "[wiretap1] users at corp.test: 5"


def test_di_graph_fixture_needs_its_operators_folder(di_graph):
    proc = snapgraph_cli("validate", "graph.json", cwd=di_graph)
    assert proc.returncode == 2
    assert "unknown component 'demo.users'" in proc.stderr
    ok = snapgraph_cli("validate", "graph.json", "--operators", "operators", cwd=di_graph)
    assert ok.returncode == 0, ok.stderr
    assert "ok (3 operators, 2 connections)" in ok.stdout
