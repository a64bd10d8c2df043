"""The group host (runtime/group.py) loading its operators: a script body that loops at the top level
is named after a few seconds (``LOAD_WARNING_AFTER``), one SIGINT or SIGTERM stops the run however
the loading has got on, and the join lists the operator still in its script body instead of waiting
for it. Real command line, groups as processes and in one process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_script_guards import GEN, GRAPH, MODES

from conftest import no_process_left, write_files
from snapgraph.runtime import group


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The guards graph of tests/runtime/test_script_guards.py with a sink whose script body loops."""
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "sink.py": LOOP})
    return tmp_path


LOOP = "x = 0\nwhile True:\n    x += 1\n"


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml", *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.mark.parametrize("mode", MODES)
def test_a_loop_at_the_top_level_is_named_and_one_sigint_stops_it(folder: Path, mode: list[str]) -> None:
    engine = start(folder, *mode)
    time.sleep(group.LOAD_WARNING_AFTER + 2)
    assert engine.poll() is None
    engine.send_signal(signal.SIGINT)
    _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert "[sink] WARNING: still running its script body after 5 s" in err
    assert "graph 'guards' stopped" in err and "SIGINT received" in err
    assert "[gen]" not in err  # only the looping operator is named
    no_process_left(folder)


@pytest.mark.parametrize("mode", MODES)
def test_a_stop_while_a_script_body_loops_ends_the_run_every_time(folder: Path, mode: list[str]) -> None:
    """Eight rounds, the signal at random moments of the loading; one signal is enough every time."""
    rng = random.Random(f"loop{mode}")
    for round_ in range(8):
        engine = start(folder, "--fresh", *mode)  # the previous round's run is stopped: abandon it
        time.sleep(rng.uniform(0.6, 2.0))  # after Python started (its default handlers)
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        (os.killpg if round_ % 2 else os.kill)(engine.pid, signum)
        _, err = engine.communicate(timeout=30)
        assert engine.returncode == 0, (round_, err)
        assert "graph 'guards' stopped" in err, (round_, err)
        if mode:
            assert "sink (in its script body)" in err
        else:
            assert "operators still busy" not in err
        no_process_left(folder)
