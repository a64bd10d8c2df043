"""The Binary File Producer's ``Partitioned file`` mode (src/snapgraph/connectors/sap_files/producer.py):
a partitioned file read by the Binary File Consumer written again part by part, exactly once under a
fault at each of its crash points (compared with the failure-free run), through the command line with
an engine death and ``--resume``, and the modes ``Create only`` and ``Append``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snapgraph.runtime.engine import COMPLETED

from ..file_helpers import run_supervised
from .graphs import FILES, partitioned_source, read_back, sap_graph, taps

PARTS = 60


def _copy_graph(folder: Path, *, mode: str = "Overwrite", pace: float = 0.008, period: float | None = None) -> Path:
    """Once-read of /data.bin -> pace -> partitioned producer of /copy.bin -> wiretap -> terminator."""
    return sap_graph(folder, {
        "read": {"component": "com.sap.file.read.v2", "group": "source",
                 "config": {"mode": "Once", "staticConnection": FILES, "path": "/data.bin"}},
        "pace": {"group": "source", "config": {"delay": pace}},
        "write": {"component": "com.sap.file.write.v2", "group": "sink",
                  "config": {"connection": FILES, "fileMode": "Partitioned file", "mode": mode,
                             "pathMode": "Static (from configuration)", "path": "/copy.bin"}},
        "tap": {"component": "wiretap"}, "stop": {"component": "graphTerminator"},
    }, ["read.file -> pace.input", "pace.output -> write.file", "write.file -> tap.in", "tap.out -> stop.in"],
        period=period)


def _expect_the_copy(folder: Path, expected: bytes) -> None:
    copy = folder / "root" / "copy.bin"
    names = sorted(entry.name for entry in copy.iterdir())
    assert not [name for name in names if name.startswith(".")], "no temporary part is left"
    assert "_SUCCESS" in names and len(names) == PARTS + 1
    assert read_back(copy) == expected


@pytest.mark.parametrize("faults", ["", "file_writer_staged:write:2", "file_writer_linked:write:2",
                                    "file_writer_published:write:3,restore:write:1", "epoch_complete:write:2",
                                    "file_producer_finished:write:1"])
def test_a_partitioned_copy_is_exactly_once_under_every_crash(tmp_path: Path, faults: str) -> None:
    expected = partitioned_source(tmp_path / "root" / "data.bin", {"a": PARTS})
    (tmp_path / "root" / "copy.bin").mkdir()
    (tmp_path / "root" / "copy.bin" / "old.txt").write_text("removed by Overwrite")
    outcome, plan = run_supervised(tmp_path, _copy_graph(tmp_path), faults, connections=tmp_path / "conns.yaml")
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2 if faults else outcome.attempts == 1
    _expect_the_copy(tmp_path, expected)


def _run(folder: Path, *args: str, faults: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SNAPGRAPH_FAULTS": faults}
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress", *args], cwd=folder, capture_output=True, text=True, timeout=60, env=env)


def test_engine_death_then_resume_writes_the_partitioned_file_once(tmp_path: Path) -> None:
    expected = partitioned_source(tmp_path / "root" / "data.bin", {"a": PARTS})
    _copy_graph(tmp_path, pace=0.03, period=1)
    died = _run(tmp_path, faults="file_writer_linked:write:3:kill")
    assert died.returncode == 137, died.stderr
    assert "engine killed at" in died.stderr
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _expect_the_copy(tmp_path, expected)
    [reference] = taps(resumed.stdout)
    assert f"'/copy.bin', {len(expected)}, False" in reference, "the folder, the size of its parts, isDir false"
    assert f"'com.sap.headers.batch': [{PARTS - 1}, True, {PARTS}, 1, 'parts']" in reference


def test_create_only_refuses_an_existing_file_and_append_adds_a_write(tmp_path: Path) -> None:
    """Without snapshots: parts are published as they arrive and _SUCCESS at the last one."""
    expected = partitioned_source(tmp_path / "root" / "data.bin", {"a": PARTS})
    _copy_graph(tmp_path, mode="Create only", pace=0)
    assert _run(tmp_path).returncode == 0
    _expect_the_copy(tmp_path, expected)
    refused = _run(tmp_path)
    assert refused.returncode == 1 and f"mode 'Create only': '{tmp_path}/root/copy.bin' exists" in refused.stderr
    _copy_graph(tmp_path, mode="Append", pace=0)
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_back(tmp_path / "root" / "copy.bin") == expected * 2, "the second write's parts after the first's"
    assert (tmp_path / "root" / "copy.bin" / "_SUCCESS").exists()


@pytest.mark.parametrize(("header", "problem"), [
    ({}, "fileMode 'Partitioned file' writes the part a message's com.sap.headers.batch header names"),
    ({"com.sap.headers.batch": [3, False, 0, 0, ""]},
     "a message on port 'file' has batch index 3, but no partitioned write began"),
])
def test_a_message_that_names_no_part_fails_naming_the_port(tmp_path: Path, header: dict[str, Any],
                                                             problem: str) -> None:
    sap_graph(tmp_path, {
        "send": {"script": "send.py", "outputs": {"out": "binary"}},
        "write": {"component": "com.sap.file.write.v2",
                  "config": {"connection": FILES, "fileMode": "Partitioned file",
                             "pathMode": "Static (from configuration)", "path": "/p.bin"}},
    }, ["send.out -> write.file"])
    (tmp_path / "send.py").write_text(f"api.set_prestart(lambda: api.outputs.out.publish(b'x', {header!r}))\n")
    done = _run(tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"operator 'write': {problem}" in done.stderr
