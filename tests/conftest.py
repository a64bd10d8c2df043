"""Shared test helpers: write a graph and its scripts to a folder, run it in-process or via the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import Engine, RunOptions, RunResult


@dataclass
class GraphRun:
    result: RunResult
    stdout: str


# An operator script several tests share: a stateful sink that counts the rows of the tables on its port
# "in" (its state: the count).
ROW_COUNTING_SINK = """
import pickle
rows = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def on_input(msg_id, header, body):
    global rows
    rows += len(body.get())

def restore(epoch, data):
    global rows
    rows = pickle.loads(data)

api.set_port_callback("in", on_input)
api.set_serialize_callback(lambda epoch: pickle.dumps(rows))
api.set_restore_callback(restore)
"""


def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


@pytest.fixture
def graph_dir(tmp_path: Path):
    """``graph_dir(files)`` writes files (graph + scripts) under tmp_path and returns the folder."""

    def make(files: dict[str, str]) -> Path:
        write_files(tmp_path, files)
        return tmp_path

    return make


def run_graph_file(path: Path, *, params: dict[str, str] | None = None, operators: list[Path] | None = None,
                   connections: Path | None = None, stop_after: float | None = None) -> GraphRun:
    """Load and run a graph in this process; Terminal/Wiretap output is captured."""
    options = LoadOptions(params=params or {}, operator_dirs=operators or [], connections_file=connections)
    graph = load_graph(path, options)
    out = io.StringIO()
    result = Engine(graph, RunOptions(stop_after=stop_after, operator_dirs=options.operator_dirs,
                                      stdout=out)).run()
    return GraphRun(result, out.getvalue())


@pytest.fixture
def run_yaml(tmp_path: Path):
    """``run_yaml(graph_yaml, scripts={...}, **run options)``: write and run a YAML graph in-process."""

    def run(graph_yaml: str, scripts: dict[str, str] | None = None, **kwargs) -> GraphRun:  # type: ignore[no-untyped-def]
        write_files(tmp_path, {"graph.yaml": graph_yaml, **(scripts or {})})
        return run_graph_file(tmp_path / "graph.yaml", **kwargs)

    return run


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    """(data read, data write, stream read, stream write) descriptors, closed afterwards (the pipe
    backend's links over them: tests/runtime/test_wire.py, test_channels.py)."""
    data_r, data_w = os.pipe()
    stream_r, stream_w = os.pipe()
    fds = (data_r, data_w, stream_r, stream_w)
    yield fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _become_subreaper() -> None:
    """Make this test session the reaper of its orphans (Linux ``PR_SET_CHILD_SUBREAPER``): a process a
    test started whose parent died (a killed engine's group processes, what a script forked) is re-parented
    to this session instead of to init, so it stays among :func:`session_descendants`. Orphans that then
    end stay zombies of this session until it ends; every helper here counts a zombie as gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


_become_subreaper()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: parents from /proc/*/stat
            return [child for child, parent in _parents().items() if parent == pid]
        except OSError:
            continue
    return found


def _parents() -> dict[int, int]:
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        stat = _proc_stat(int(entry))
        if stat is not None:
            parents[int(entry)] = int(stat[1])
    return parents


def session_descendants() -> set[int]:
    """The live (not zombie) processes below this test session: what its tests started and, this
    session being their subreaper, whatever those left behind. Processes of other sessions or users
    on the machine are never looked at."""
    me = os.getpid()
    found: set[int] = set()
    todo = [me]
    while todo:
        for child in _children(todo.pop()):
            if child not in found and child != me:
                found.add(child)
                todo.append(child)
    return {pid for pid in found if (stat := _proc_stat(pid)) is not None and stat[0] != "Z"}


def no_process_left(folder: Path, timeout: float = 10) -> None:
    """No process started from ``folder`` (an engine, its group processes, its fork server, what a script
    forked) is still alive, waiting up to ``timeout`` seconds for them to go. Only this test session's
    descendants are looked at (see :func:`session_descendants`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in sorted(session_descendants()):
            try:  # a process that is gone meanwhile is skipped
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if cwd == str(folder):
                left.append(pid)
        if not left:
            return
        assert time.monotonic() < deadline, f"processes left behind: {left}"
        time.sleep(0.1)


def snapgraph_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``snapgraph`` command line in a subprocess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "snapgraph", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)
