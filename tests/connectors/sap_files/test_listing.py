"""SAP's List Files V2 on local files (src/snapgraph/connectors/sap_files/listing.py): config checks and
traits, SAP's partitioned-file listing examples, and List Files -> Binary File Consumer (On input) ->
Binary File Producer, exactly once under a fault at the listing's crash point."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snapgraph.model.builtins import BUILTINS
from snapgraph.model.file_builtins import LIST_FILES
from snapgraph.runtime.engine import COMPLETED

from ..file_helpers import run_supervised
from .graphs import FILES, partitioned_source, sap_graph, taps

LOCAL = {"configurationType": "Local File System"}


def test_list_files_is_a_built_in_with_sap_ports_and_traits() -> None:
    assert BUILTINS["com.sap.file.list.v2"] is LIST_FILES
    assert LIST_FILES.inports == ("dirRef",) and LIST_FILES.outports == ("ref",)
    assert LIST_FILES.delivery_of({"mode": "Once", "connection": LOCAL}).replayable
    assert not LIST_FILES.delivery_of({"dynamicConnection": LOCAL}).replayable


@pytest.mark.parametrize(("config", "problem"), [
    ({}, "config 'dynamicConnection': {'configurationType': 'From input'} is not supported"),
    ({"mode": "Once"}, "config 'connection': {} is not supported"),
    ({"dynamicConnection": LOCAL, "recursive": "deep"}, "config 'recursive' must be true or false"),
    ({"dynamicConnection": LOCAL, "identifyPartFiles": "Part"}, "config 'identifyPartFiles' must be one of 'File'"),
    ({"dynamicConnection": LOCAL, "skipOngoingPartFile": "Skip"}, "config 'skipOngoingPartFile' must be one of"),
    ({"dynamicConnection": LOCAL, "filter": "With regular expression", "pattern": "(["},
     "config 'pattern' must be a regular expression"),
])
def test_list_files_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = LIST_FILES.config_problems(config)
    assert any(problem in text for text in problems), problems


def _sap_example(root: Path) -> None:
    """The folder of SAP's List Files examples with part files."""
    base = root / "myDirectory"
    (base / "subdir1").mkdir(parents=True)
    (base / "file1.txt").write_text("1")
    (base / "subdir1" / "file2.txt").write_text("2")
    partitioned_source(base / "partFile1.csv", {"0000": 2})
    partitioned_source(base / "incompletePartFile.txt", {"0123": 1}, complete=False)
    partitioned_source(base / "subdir2" / "partFile2.csv", {"abcd": 2})


def _listed(stdout: str, tap: str) -> list[tuple[str, bool]]:
    """(path below /myDirectory, isDir) of each file reference a wiretap printed."""
    found = [re.search(r"'/myDirectory/([^']*)', \d+, (True|False)", line) for line in taps(stdout, tap)]
    return [(match[1], match[2] == "True") for match in found if match is not None]


def test_part_files_are_listed_as_sap_shows(tmp_path: Path) -> None:
    """Two of SAP's examples at once: recursive with folders and ongoing parts ignored; recursive without
    folders, ongoing parts as a folder."""
    _sap_example(tmp_path / "root")
    once = {"mode": "Once", "connection": FILES, "path": "/myDirectory", "recursive": True}
    sap_graph(tmp_path, {
        "one": {"component": "com.sap.file.list.v2", "config": {**once, "listDirectories": True}},
        "two": {"component": "com.sap.file.list.v2", "config": {**once, "skipOngoingPartFile": "Treat as directory"}},
        "tap1": {"component": "wiretap"}, "tap2": {"component": "wiretap"},
        "stop": {"component": "graphTerminator", "inputs": {"a": "any", "b": "any"}},
    }, ["one.ref -> tap1.in", "two.ref -> tap2.in", "tap1.out -> stop.a", "tap2.out -> stop.b"])
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _listed(done.stdout, "tap1") == [("file1.txt", False), ("partFile1.csv", False), ("subdir1", True),
                                            ("subdir1/file2.txt", False), ("subdir2", True),
                                            ("subdir2/partFile2.csv", False)]
    assert _listed(done.stdout, "tap2") == [("file1.txt", False), ("incompletePartFile.txt/part-0123-0.bin", False),
                                            ("partFile1.csv", False), ("subdir1/file2.txt", False),
                                            ("subdir2/partFile2.csv", False)]
    assert "'com.sap.headers.batch': [4, True, 5, 1, 'files']" in taps(done.stdout, "tap2")[-1]


def _list_read_write(folder: Path) -> Path:
    """List Files (Once) over /in -> pace -> Binary File Consumer (On input) -> Binary File Producer
    (Overwrite, /out/<basename>) -> terminator."""
    return sap_graph(folder, {
        "list": {"component": "com.sap.file.list.v2", "group": "source",
                 "config": {"mode": "Once", "connection": FILES, "path": "/in", "filter": "With regular expression",
                            "pattern": r"\.(txt|bin)$"}},
        "pace": {"group": "source", "config": {"delay": 0.01}},
        "read": {"component": "com.sap.file.read.v2", "config": {"dynamicConnection": FILES}},
        "write": {"component": "com.sap.file.write.v2", "group": "sink",
                  "config": {"connection": FILES, "mode": "Overwrite", "pathMode": "Static with placeholders",
                             "path": "/out/<basename>"}},
        "stop": {"component": "graphTerminator"},
    }, ["list.ref -> pace.input", "pace.output -> read.file", "read.file -> write.file", "write.file -> stop.in"])


@pytest.mark.parametrize("faults", ["", "file_list_published:list:25"])
def test_list_read_write_is_exactly_once(tmp_path: Path, faults: str) -> None:
    """What the listing names (40 files, and a partitioned file whose parts the consumer sends) lands
    once each, the same as the failure-free run; validate says exactly-once."""
    inputs = tmp_path / "root" / "in"
    inputs.mkdir(parents=True)
    for number in range(40):
        (inputs / f"f{number:02d}.txt").write_text(f"file {number}\n")
    (inputs / "skipped.csv").write_text("not matched by the pattern")
    partitioned_source(inputs / "p.bin", {"u": 3})
    graph = _list_read_write(tmp_path)
    outcome, plan = run_supervised(tmp_path, graph, faults, connections=tmp_path / "conns.yaml")
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert plan.remaining() == [] and outcome.attempts == (2 if faults else 1)
    written = {entry.name: entry.read_bytes() for entry in (tmp_path / "root" / "out").iterdir()}
    assert written == {**{f"f{n:02d}.txt": f"file {n}\n".encode() for n in range(40)},
                       **{f"part-u-{i}.bin": (inputs / "p.bin" / f"part-u-{i}.bin").read_bytes() for i in range(3)}}
    if not faults:
        checked = subprocess.run([sys.executable, "-m", "snapgraph", "validate", "graph.yaml", "--connections",
                                  "conns.yaml", "--snapshot-period", "1"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert "writer 'write': exactly-once" in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_a_missing_once_path_is_refused_at_load_naming_operator_key_and_path(tmp_path: Path) -> None:
    """As the file reader refuses a missing folder: exit 2 before anything runs (no timer tick fails, so
    automatic recovery has nothing to retry)."""
    sap_graph(tmp_path, {
        "list": {"component": "com.sap.file.list.v2", "config": {"mode": "Once", "connection": FILES, "path": "/gone"}},
        "tap": {"component": "wiretap"},
    }, ["list.ref -> tap.in"])
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"operator 'list': config 'path': '/gone' ({str(tmp_path / 'root' / 'gone')!r}) does not exist on the " \
           "connection of config 'connection'" in done.stderr
    assert not taps(done.stdout)
