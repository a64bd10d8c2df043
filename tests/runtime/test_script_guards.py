"""Scripts that try to end, clone or hang the engine: each ends with a message, in both modes.

``sys.exit`` / ``os._exit`` in any callback fail the operator naming it and the code; a fork leaves
no process behind and no hang (a loop at the top level of a script: tests/runtime/test_group.py).
Every case runs the real command line, with groups as processes and in one process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import no_process_left, snapgraph_cli, write_files

MODES = [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")]

GRAPH = """
name: guards
operators:
  gen:
    group: source
    script: gen.py
    outputs: {output: int64}
  sink:
    group: sink
    script: sink.py
    inputs: {input: int64}
    config: {errorHandling: {type: "log and ignore"}}
connections:
  - gen.output -> sink.input
snapshots: {period: 1}
"""

GEN = """
def tick():
    api.outputs.output.publish(1)
    return -1

api.add_timer(tick)
"""

# Where in the sink's script the call goes: each template gets CALL (an indented statement).
SITES = {
    "script body": "import os, sys\nCALL\n",
    "prestart": "import os, sys\ndef prestart():\n    CALL\napi.set_prestart(prestart)\n",
    "port callback of 'input'": "import os, sys\ndef on_input(msg_id, header, body):\n    CALL\n"
                                "api.set_port_callback('input', on_input)\n",
    "shutdown": "import os, sys\ndef shutdown():\n    CALL\napi.set_shutdown(shutdown)\n",
    "snapshot of epoch": "import os, sys, pickle\n"
                         "api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))\n"
                         "def serialize(epoch):\n    CALL\n"
                         "api.set_serialize_callback(serialize)\n"
                         "api.set_restore_callback(lambda epoch, data: None)\n"
                         "def on_input(msg_id, header, body):\n    import time; time.sleep(1.5)\n"
                         "api.set_port_callback('input', on_input)\n",
}
CALLS = {"sys.exit(3)": "the script called sys.exit(3)", "os._exit(4)": "the script called os._exit(4)",
         "raise SystemExit('bye')": "the script called sys.exit('bye')"}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN})
    return tmp_path


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("site", list(SITES))
def test_exiting_in_any_callback_fails_the_operator_with_its_code(folder: Path, site: str, call: str,
                                                                   mode: list[str]) -> None:
    """Whatever the error handling (the sink logs and ignores errors): an exit is no error to ignore."""
    write_files(folder, {"sink.py": SITES[site].replace("CALL", call)})
    proc = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder, timeout=60)
    expected = f"operator 'sink' failed in {site}"
    if site == "shutdown":
        # The graph completed; its shutdown failed, which the run reports as a failure.
        expected = "operator 'sink' failed in shutdown"
    assert expected in proc.stderr, proc.stderr
    assert CALLS[call] in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    no_process_left(folder)


@pytest.mark.parametrize("mode", MODES)
def test_an_exit_in_a_retry_mode_port_callback_is_no_error_to_hand_back(folder: Path, mode: list[str]) -> None:
    graph = GRAPH.replace('{type: "log and ignore"}', '{type: "retry"}')
    write_files(folder, {"graph.yaml": graph, "sink.py": SITES["port callback of 'input'"].replace(
        "CALL", "os._exit(9)")})
    proc = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "operator 'sink' failed in port callback of 'input': the script called os._exit(9)" in proc.stderr


FORKS = {
    # the child returns from the callback into the engine's code
    "returns": "def on_input(msg_id, header, body):\n    os.fork()\n",
    # the child outlives the callback, sleeping
    "sleeps": "def on_input(msg_id, header, body):\n    if os.fork() == 0:\n        time.sleep(120)\n",
    # the child is forked by the script body and sleeps
    "sleeps, from the script body": "if os.fork() == 0:\n    time.sleep(120)\n"
                                    "def on_input(msg_id, header, body):\n    pass\n",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fork", list(FORKS))
def test_a_fork_in_a_script_leaves_no_process_and_no_hang(folder: Path, fork: str, mode: list[str]) -> None:
    write_files(folder, {"sink.py": "import os, time\n" + FORKS[fork] + "api.set_port_callback('input', on_input)\n"})
    proc = snapgraph_cli("run", "graph.yaml", *mode, cwd=folder, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "graph 'guards' completed" in proc.stderr
    if fork == "returns":
        assert "returned from its callback into the engine; it ends here" in proc.stderr
    no_process_left(folder)
