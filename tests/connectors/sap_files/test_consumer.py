"""SAP's Binary File Consumer on local files (src/snapgraph/connectors/sap_files/consumer.py): its config
checks and traits, reading a partitioned file in part order, and a ``Once`` read restored from a snapshot
that sends exactly what followed it (a fault at its crash point against the failure-free run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snapgraph.model.builtins import BUILTINS
from snapgraph.model.file_builtins import BINARY_FILE_CONSUMER
from snapgraph.runtime.engine import COMPLETED

from ..file_helpers import parts, run_supervised
from .graphs import FILES, partitioned_source, sap_graph, taps

LOCAL = {"configurationType": "Local File System"}


def test_the_consumer_is_a_built_in_with_sap_ports_and_traits() -> None:
    assert BUILTINS["com.sap.file.read.v2"] is BINARY_FILE_CONSUMER
    assert BINARY_FILE_CONSUMER.inports == ("file",) and BINARY_FILE_CONSUMER.outports == ("file",)
    once = BINARY_FILE_CONSUMER.delivery_of({"mode": "Once", "staticConnection": LOCAL, "path": "/x"})
    on_input = BINARY_FILE_CONSUMER.delivery_of({"dynamicConnection": LOCAL})
    assert once.replayable and once.deterministic and not once.batches
    assert not on_input.replayable and on_input.deterministic


@pytest.mark.parametrize(("config", "problem"), [
    ({}, "config 'dynamicConnection': {'configurationType': 'From input'} is not supported"),
    ({"mode": "Once"}, "config 'staticConnection': {} is not supported"),
    ({"mode": "Once", "staticConnection": LOCAL, "path": ""}, "config 'path' must be a non-empty string"),
    ({"mode": "Always", "dynamicConnection": LOCAL}, "config 'mode' must be one of 'On input', 'Once'"),
    ({"mode": "Once", "staticConnection": {"connectionID": "F", "connectionType": "S3"}},
     "config 'staticConnection': connection 'F' has connectionType 'S3', which snapgraph cannot reach"),
])
def test_consumer_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = BINARY_FILE_CONSUMER.config_problems(config)
    assert any(problem in text for text in problems), problems


def _reader_graph(folder: Path, path: str, *, pace: float = 0.0, writer: str = "file-writer") -> Path:
    operators: dict[str, Any] = {
        "read": {"component": "com.sap.file.read.v2", "group": "source",
                 "config": {"mode": "Once", "staticConnection": FILES, "path": path}},
        "write": {"component": writer, "group": "sink", "config": {"folder": "out", "format": "binary"}},
    }
    connections = ["read.file -> write.input"]
    if pace:
        operators["pace"] = {"group": "source", "config": {"delay": pace}}
        connections = ["read.file -> pace.input", "pace.output -> write.input"]
    (folder / "out").mkdir(exist_ok=True)
    return sap_graph(folder, operators, connections)


def test_once_reads_a_partitioned_file_in_part_order_with_headers(tmp_path: Path) -> None:
    """Parts by uuid, then by index as a number (part 10 after part 9); the header of each names the part
    on the connection; the last has isLast, so the terminator ends the graph."""
    partitioned_source(tmp_path / "root" / "data.bin", {"a": 11, "b": 2})
    sap_graph(tmp_path, {
        "read": {"component": "com.sap.file.read.v2",
                 "config": {"mode": "Once", "staticConnection": FILES, "path": "/data.bin"}},
        "tap": {"component": "wiretap"}, "stop": {"component": "graphTerminator"},
    }, ["read.file -> tap.in", "tap.out -> stop.in"])
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = taps(done.stdout)
    assert len(lines) == 13
    assert "'/data.bin/part-a-9.bin', 18, False" in lines[9] and "'/data.bin/part-a-10.bin'" in lines[10]
    assert "'/data.bin/part-b-1.bin'" in lines[12]
    assert "'com.sap.headers.batch': [12, True, 13, 1, 'parts']" in lines[12]
    assert "'com.sap.headers.batch': [0, False, 13, 1, 'parts']" in lines[0]


def test_an_ongoing_partitioned_write_is_refused_naming_it(tmp_path: Path) -> None:
    partitioned_source(tmp_path / "root" / "data.bin", {"a": 2}, complete=False)
    graph = _reader_graph(tmp_path, "/data.bin")
    outcome, _ = run_supervised(tmp_path, graph, period=None, max_retries=0, connections=tmp_path / "conns.yaml")
    assert outcome.result.status != COMPLETED
    assert "operator 'read': '/data.bin' is a folder without _SUCCESS" in str(outcome.result.reason)


@pytest.mark.parametrize("faults", ["", "file_consumer_published:read:30", "file_consumer_published:read:50"])
def test_a_restored_once_read_continues_after_the_snapshot(tmp_path: Path, faults: str) -> None:
    """A transactional writer after the consumer: the output equals the parts once each, in order, after a
    crash at the consumer's crash point, and the recovery restored a snapshot (no restart from scratch)."""
    expected = partitioned_source(tmp_path / "root" / "data.bin", {"a": 60})
    graph = _reader_graph(tmp_path, "/data.bin", pace=0.008)
    outcome, plan = run_supervised(tmp_path, graph, faults, connections=tmp_path / "conns.yaml")
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert plan.remaining() == [], "the fault fired"
    if faults:
        assert outcome.attempts == 2 and outcome.restored_from[1] is not None, "restored from a snapshot"
    out = [name for name in parts(tmp_path / "out")]
    assert not [name for name in out if name.startswith(".")]
    assert b"".join((tmp_path / "out" / name).read_bytes() for name in out) == expected


@pytest.mark.parametrize(("path", "problem"), [
    ("/missing.bin", "config 'path': '/missing.bin' ({local!r}) does not exist on the connection of config "
                     "'staticConnection'"),
    ("/../outside.bin", "path '/../outside.bin' leaves the folder {root!r} of connection 'FILES' (config 'path')"),
])
def test_a_once_path_that_is_not_there_is_refused_at_load(tmp_path: Path, path: str, problem: str) -> None:
    """Exit 2 when the graph loads, naming the operator, the key and the path, as the file reader does
    for a missing folder (not a failure at the first timer call that every recovery would repeat)."""
    _reader_graph(tmp_path, path)
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    root = tmp_path / "root"
    expected = problem.format(local=str(root / "missing.bin"), root=str(root))
    assert f"operator 'read': {expected}" in done.stderr, done.stderr
    assert parts(tmp_path / "out") == []
