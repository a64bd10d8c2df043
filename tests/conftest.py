"""Shared test helpers: write a graph and its scripts to a folder, run it in-process or via the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import Engine, RunOptions, RunResult


@dataclass
class GraphRun:
    result: RunResult
    stdout: str


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


def no_process_left(folder: Path, timeout: float = 10) -> None:
    """No process started from ``folder`` (an engine, its group processes, its fork server, what a script
    forked) is still alive, waiting up to ``timeout`` seconds for them to go."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:  # a zombie's cwd cannot be read: it is skipped like a process that is gone
                cwd = os.readlink(f"/proc/{pid}/cwd")
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cwd == str(folder) and b"pytest" not in cmdline:
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
