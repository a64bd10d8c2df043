"""Engine backends chosen by name through one registry: the supervisor and ``snapgraph run --backend``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from snapgraph.model.loader import load_graph
from snapgraph.runtime import backends
from snapgraph.runtime.backends import ProcessEngine, UnknownBackend, backend_name, get_backend, make_engine
from snapgraph.runtime.engine import COMPLETED, Engine
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor


def _graph(tmp_path: Path) -> Path:
    """One operator that writes the pid of the process it runs in."""
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "where", "operators": {"op": {"group": "a", "code": textwrap.dedent(f"""
        import os
        with open({str(tmp_path / "pid")!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{os.getppid()}}")
        """)}}}))
    return path


def test_the_built_in_backends_are_registered() -> None:
    assert {"process", "inprocess"} <= set(backends.backend_names())
    assert get_backend("process").engine is ProcessEngine
    assert get_backend("inprocess").engine is Engine


def test_an_unknown_backend_is_a_clear_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownBackend) as raised:
        get_backend("ray")
    message = str(raised.value)
    assert "unknown engine backend 'ray'" in message
    for name in backends.backend_names():
        assert name in message
    with pytest.raises(UnknownBackend):
        Supervisor(None, RunOptions(), RecoveryPolicy(), backend="ray")  # type: ignore[arg-type]


def test_in_process_option_selects_the_inprocess_backend() -> None:
    assert backend_name(RunOptions()) == "process"
    assert backend_name(RunOptions(in_process=True)) == "inprocess"
    assert backend_name(RunOptions(in_process=True), "thread") == "thread"


def test_the_old_import_of_process_engine_still_works() -> None:
    from snapgraph.runtime.processes import ProcessEngine as Old

    assert Old is ProcessEngine


@pytest.mark.parametrize("name", ["process", "inprocess"])
def test_the_supervisor_runs_the_named_backend(tmp_path: Path, name: str) -> None:
    outcome = Supervisor(load_graph(_graph(tmp_path)), RunOptions(stdout=io.StringIO()), RecoveryPolicy(),
                         say=lambda text: None, backend=name).run()
    assert outcome.result.status == COMPLETED, outcome.result.reason
    here = int((tmp_path / "pid").read_text().split()[0]) == os.getpid()
    assert here == (name == "inprocess")


def test_make_engine_builds_one_attempt(tmp_path: Path) -> None:
    engine = make_engine("inprocess", load_graph(_graph(tmp_path)), RunOptions(stdout=io.StringIO()))
    assert isinstance(engine, Engine)
    assert engine.run().status == COMPLETED


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", str(_graph(tmp_path)), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["--backend", "inprocess"], ["--in-process"],
                                  ["--in-process", "--backend", "inprocess"], ["--backend", "process"]])
def test_cli_backend_option(tmp_path: Path, args: list[str]) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    # In one process the operator runs in the CLI's own process (a child of this one), else in a group
    # process forked by the CLI's fork server.
    parent = int((tmp_path / "pid").read_text().split()[1])
    assert (parent == os.getpid()) == ("process" not in args)


def test_cli_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--backend", "ray")
    assert done.returncode == 2
    assert "unknown engine backend 'ray'; known backends: " in done.stderr
    assert "process" in done.stderr and "inprocess" in done.stderr


def test_cli_in_process_and_another_backend_exclude_each_other(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--in-process", "--backend", "process")
    assert done.returncode == 2
    assert "--in-process and --backend process exclude each other" in done.stderr
