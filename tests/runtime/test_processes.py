"""Unit tests for snapgraph.runtime.processes: groups as OS processes, and the transport contract on them.

Isolation, recovery from a killed group, back-pressure, no orphans; the transport conformance suite
(tests/runtime/transport_contract.py) on the process transport (OS processes, pipes).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from transport_contract import TransportContract, contract_covers

from conftest import session_descendants
from snapgraph.model.loader import load_graph
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.processes import ProcessEngine, _ProcessHandle
from snapgraph.runtime.remote import groups_of
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.runtime.transport import GroupHandle

GRAPH = {
    "name": "groups",
    "operators": {
        "gen": {"group": "a", "outputs": {"output": "table"}, "code": textwrap.dedent("""
            import os, pickle, time
            i = 0
            api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True,
                outports_info={'output': api.OutportInfo(is_generator=True)}))
            def tick():
                global i
                if i >= int(api.config.total):
                    return -1
                api.outputs.output.publish(api.Table([[j, os.getpid()] for j in range(i, i + 10)]))
                i += 10
                return float(api.config.pause)
            api.add_timer(tick)
            api.set_serialize_callback(lambda epoch: pickle.dumps(i))
            def restore(epoch, state):
                global i
                i = pickle.loads(state)
            api.set_restore_callback(restore)
            """), "config": {"total": 300, "pause": 0}},
        "sink": {"group": "b", "inputs": {"input": "table"}, "outputs": {"out": "string"},
                 "code": textwrap.dedent("""
            import os, time
            seen = set()
            pids = set()
            api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
            def on_input(msg_id, header, body):
                for x, pid in body.get():
                    seen.add(x)
                    pids.add(pid)
                time.sleep(float(api.config.slow))
                with open(api.config.pidfile, "w") as f:
                    f.write(str(os.getpid()))
            api.set_port_callback("input", on_input)
            import pickle
            api.set_serialize_callback(lambda epoch: pickle.dumps(sorted(seen)))
            def restore(epoch, state):
                seen.update(pickle.loads(state))
            api.set_restore_callback(restore)
            def shutdown():
                with open(api.config.result, "w") as f:
                    f.write(f"{len(seen)} {min(seen)} {max(seen)} {len(pids)} {os.getpid()}")
            api.set_shutdown(shutdown)
            """), "config": {"slow": 0, "pidfile": "", "result": ""}},
    },
    "connections": ["gen.output -> sink.input"],
}


def write_graph(tmp_path: Path, sink_patch: tuple[str, str] = ("", ""), **config: dict) -> Path:  # type: ignore[type-arg]
    graph = yaml.safe_load(yaml.safe_dump(GRAPH))
    if sink_patch[0]:
        graph["operators"]["sink"]["code"] = graph["operators"]["sink"]["code"].replace(*sink_patch)
    graph["operators"]["sink"]["config"].update(pidfile=str(tmp_path / "sink.pid"),
                                                result=str(tmp_path / "result.txt"))
    for op, values in config.items():
        graph["operators"][op]["config"].update(values)
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


def result(tmp_path: Path) -> list[int]:
    return [int(v) for v in (tmp_path / "result.txt").read_text().split()]


def test_each_group_runs_in_its_own_process(tmp_path: Path) -> None:
    path = write_graph(tmp_path)
    graph = load_graph(path)
    assert groups_of(graph) == {"a": ["gen"], "b": ["sink"]}
    outcome = ProcessEngine(graph, RunOptions(stdout=io.StringIO())).run()
    assert outcome.status == COMPLETED, outcome.reason
    count, low, high, gen_pids, sink_pid = result(tmp_path)
    assert (count, low, high) == (300, 0, 299)
    assert gen_pids == 1
    assert sink_pid != os.getpid()
    published_by = {int(line) for line in [(tmp_path / "sink.pid").read_text()]}
    assert published_by == {sink_pid}


def test_in_process_switch_runs_everything_here(tmp_path: Path) -> None:
    path = write_graph(tmp_path)
    outcome = Supervisor(load_graph(path), RunOptions(stdout=io.StringIO(), in_process=True),
                         RecoveryPolicy(), say=lambda text: None).run()
    assert outcome.result.status == COMPLETED
    assert result(tmp_path)[4] == os.getpid()


def test_back_pressure_holds_across_processes(tmp_path: Path) -> None:
    """A slow sink in another process holds the generator back (bounded channel + pipe), no deadlock."""
    path = write_graph(tmp_path, gen={"total": 400}, sink={"slow": 0.01})
    outcome = ProcessEngine(load_graph(path), RunOptions(stdout=io.StringIO())).run()
    assert outcome.status == COMPLETED
    assert result(tmp_path)[:3] == [400, 0, 399]


def _run_cli(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "snapgraph", "run", str(path), *args], cwd=path.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_pid(path: Path, timeout: float = 30) -> int:
    """The pid a script writes to ``path`` (it opens the file with "w": it may be empty for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if text.strip().isdigit():
            return int(text)
        assert time.monotonic() < deadline, f"{path} never held a pid"
        time.sleep(0.02)


def _descendants_of(pid: int) -> list[int]:
    """Children, grandchildren, ... (group processes are forked by the engine's fork server)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for child in children for d in _descendants_of(child)]


def _group_processes() -> set[int]:
    """Group processes and fork servers of the engines this test session started (by their command
    lines); orphans included, the session being their subreaper (tests/conftest.py)."""
    found = set()
    for pid in session_descendants():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline or b"multiprocessing.forkserver" in cmdline:
            found.add(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_sigkill_of_a_group_process_is_recovered(tmp_path: Path) -> None:
    """A group process killed from outside is an operator failure: recovery from the last epoch."""
    path = write_graph(tmp_path, gen={"total": 3000, "pause": 0.002})
    proc = _run_cli(path, "--snapshot-period", "1", "--max-retries", "2", "--retry-interval", "0")
    victim = _wait_for_pid(tmp_path / "sink.pid")
    assert victim in _descendants_of(proc.pid)
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "the group process died (killed by SIGKILL)" in err
    count, low, high, _, sink_pid = result(tmp_path)
    assert (count, low, high) == (3000, 0, 2999)
    assert sink_pid != victim


def _orphans_after(proc: subprocess.Popen[str], before: set[int]) -> set[int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        leftover = {p for p in _group_processes() - before if _alive(p)}
        if not leftover:
            return set()
        time.sleep(0.1)
    return leftover


@pytest.mark.parametrize("ending", ["completion", "failure", "retries exhausted", "SIGINT", "SIGTERM",
                                    "kill -9 of the engine"])
def test_no_orphan_processes(tmp_path: Path, ending: str) -> None:
    before = _group_processes()
    args: list[str] = []
    streaming = ending in ("SIGINT", "SIGTERM", "kill -9 of the engine")
    gen = {"total": 10**9, "pause": 0.01} if streaming else {}
    path = write_graph(tmp_path, gen=gen)
    env = dict(os.environ)
    if ending == "failure":
        env["SNAPGRAPH_FAULTS"] = "port_callback:sink:3"
    if ending == "retries exhausted":
        env["SNAPGRAPH_FAULTS"] = ",".join(f"port_callback:sink:{n}" for n in range(1, 10))
        args = ["--max-retries", "1", "--retry-interval", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", str(path), *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if streaming:
        _wait_for_pid(tmp_path / "sink.pid")
        children = _descendants_of(proc.pid)
        assert len(children) >= 2
        sig = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}.get(ending, signal.SIGKILL)
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    expected = {"completion": 0, "failure": 1, "retries exhausted": 1, "SIGINT": 0, "SIGTERM": 0,
                "kill -9 of the engine": -signal.SIGKILL}[ending]
    assert proc.returncode == expected, err
    assert _orphans_after(proc, before) == set()
    if ending in ("SIGINT", "SIGTERM"):
        assert (tmp_path / "result.txt").exists(), "shutdown callbacks ran in the group processes"


@pytest.mark.parametrize("crash, described", [
    ("__import__('os').kill(__import__('os').getpid(), 9)", "killed by SIGKILL"),
    ("__import__('ctypes').string_at(0)", "killed by SIGSEGV"),
    ("__import__('ctypes').CDLL(None)._exit(3)", "exit code 3"),
])
def test_a_crashing_group_does_not_take_the_engine_down(tmp_path: Path, crash: str, described: str) -> None:
    """A kill, a segfault or a C-level exit in user code ends only its group; without retries the run fails
    cleanly (os._exit and sys.exit fail just the operator: tests/runtime/test_script_guards.py)."""
    path = write_graph(tmp_path, sink_patch=("seen.add(x)", f"seen.add(x)\n        if x == 150: {crash}"))
    outcome = Supervisor(load_graph(path), RunOptions(stdout=io.StringIO()), RecoveryPolicy(),
                         say=lambda text: None).run()
    assert outcome.result.status == FAILED
    assert f"group process died ({described})" in outcome.result.reason
    assert "sink" in outcome.result.reason


MULTI = {
    "name": "multi",
    "operators": {
        "gen": {"group": "src", "outputs": {"output": "table"}, "code": textwrap.dedent("""
            i = 0
            def tick():
                global i
                if i >= 200:
                    return -1
                api.outputs.output.publish(api.Table([[i]]))
                i += 1
                return 0
            api.add_timer(tick)
            """)},
        "work": {"group": "workers", "inputs": {"input": "table"}, "outputs": {"output": "table"},
                 "code": textwrap.dedent("""
            import os
            def on_input(msg_id, header, body):
                (x,), = body.get().body
                api.outputs.output.publish(api.Table([[x, api.multiplicity_index, api.multiplicity, os.getpid()]]))
            api.set_port_callback("input", on_input)
            """)},
        "sink": {"group": "out", "inputs": {"input": "table"}, "code": textwrap.dedent("""
            rows = []
            def on_input(msg_id, header, body):
                rows.extend(body.get().body)
            def shutdown():
                with open(api.config.result, "w") as f:
                    f.write(repr(sorted(rows)))
            api.set_port_callback("input", on_input)
            api.set_shutdown(shutdown)
            """), "config": {"result": ""}},
    },
    "connections": ["gen.output -> work.input", "work.output -> sink.input"],
    "groups": {"workers": {"multiplicity": 3}},
}


def test_group_multiplicity_spreads_messages_round_robin(tmp_path: Path) -> None:
    """A group with multiplicity 3 runs as three processes; each message is processed by exactly one."""
    graph = yaml.safe_load(yaml.safe_dump(MULTI))
    graph["operators"]["sink"]["config"]["result"] = str(tmp_path / "rows.txt")
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    outcome = ProcessEngine(load_graph(path), RunOptions(stdout=io.StringIO())).run()
    assert outcome.status == COMPLETED, outcome.reason
    rows = eval((tmp_path / "rows.txt").read_text())  # noqa: S307 - our own repr
    assert [r[0] for r in rows] == list(range(200))
    assert {(r[1], r[2]) for r in rows} == {(0, 3), (1, 3), (2, 3)}
    assert len({r[3] for r in rows}) == 3
    per_instance = [sum(1 for r in rows if r[1] == i) for i in range(3)]
    assert per_instance == [67, 67, 66]  # round robin


DEBUG = {
    "name": "debug",
    "operators": {
        "gen": {"group": "a", "outputs": {"out": "int64"},
                "code": "api.set_prestart(lambda: api.outputs.out.publish(21))\n"},
        "sink": {"group": "b", "inputs": {"in": "int64"}, "code": textwrap.dedent("""
            def on_input(msg_id, header, body):
                value = body.get()
                breakpoint()
                print("after the breakpoint", value)
            api.set_port_callback("in", on_input)
            """)},
    },
    "connections": ["gen.out -> sink.in"],
}


@pytest.mark.parametrize("in_process", [True, False], ids=["--in-process", "groups as processes"])
def test_breakpoints_work_in_process_and_group_processes_say_how_to_debug(tmp_path: Path, in_process: bool) -> None:
    """pdb on the terminal in --in-process mode; a group process has no terminal and says so."""
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(DEBUG))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONBREAKPOINT"}
    args = [sys.executable, "-m", "snapgraph", "run", str(path)] + (["--in-process"] if in_process else [])
    proc = subprocess.run(args, input="p value * 2\nc\n", capture_output=True, text=True, timeout=60, env=env)
    if in_process:
        assert proc.returncode == 0, proc.stderr
        assert "(Pdb) 42" in proc.stdout  # the debugger evaluated in the operator's frame
        assert "after the breakpoint 21" in proc.stdout
    else:
        assert proc.returncode == 1
        assert "breakpoint() in a group process, which has no terminal: run the graph with --in-process" in proc.stderr


@pytest.mark.parametrize("value", ["first", "second"])
def test_group_processes_run_with_the_engines_current_directory_and_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Group processes are forked from a long-lived fork server; each still starts with this
    process's working directory and environment as they are now (run twice in one process)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SNAPGRAPH_TEST_VALUE", value)
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({
        "name": "where",
        "operators": {"probe": {"group": "a", "code": textwrap.dedent("""
            import json, os
            with open("where.json", "w") as f:   # relative: the working directory
                json.dump([os.getcwd(), os.environ.get("SNAPGRAPH_TEST_VALUE")], f)
            """)}},
    }))
    outcome = ProcessEngine(load_graph(path), RunOptions(stdout=io.StringIO())).run()
    assert outcome.status == COMPLETED, outcome.reason
    assert (tmp_path / "where.json").exists()
    cwd, seen = json.loads((tmp_path / "where.json").read_text())
    assert (Path(cwd), seen) == (tmp_path.resolve(), value)


@pytest.mark.parametrize("stopping", [True, False], ids=["stop-killed-it", "no-stop"])
def test_a_group_that_cannot_be_started_is_a_failure_unless_a_stop_caused_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopping: bool) -> None:
    """A signal to the whole process group can kill the fork server while it starts (before its preload
    ignores SIGTERM); the engine sees the start fail a moment before it handles the same signal."""
    from snapgraph.runtime.processes import ProcessTransport
    from snapgraph.runtime.transport import GroupStartFailed

    path = write_graph(tmp_path)
    engine: list[ProcessEngine] = []
    start = ProcessTransport.start
    started: list[str] = []

    def start_then_fail(self, spec):  # type: ignore[no-untyped-def]
        if started:
            if stopping:
                threading.Timer(0.2, engine[0].stop, ("SIGTERM received",)).start()  # the stop comes late
            raise GroupStartFailed("the fork server that starts group processes died (EOFError: unexpected EOF)")
        started.append(spec.instance)
        return start(self, spec)

    monkeypatch.setattr(ProcessTransport, "start", start_then_fail)
    engine.append(ProcessEngine(load_graph(path), RunOptions(stdout=io.StringIO())))
    result = engine[0].run()
    assert started, "the first group started"
    if stopping:
        assert result.status == "stopped" and result.reason == "SIGTERM received"
    else:
        assert result.status == FAILED
        assert "failed in starting group" in result.reason and "the fork server" in result.reason
    assert result.stuck == []


# -- the transport conformance suite on the process transport (OS processes, pipes) ----------------
class TestProcessTransport(TransportContract):
    backend = "process"

    def kill(self, handle: GroupHandle) -> None:
        assert isinstance(handle, _ProcessHandle)
        pid = handle._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)


def test_the_process_backend_is_a_transport() -> None:
    contract_covers("process")
