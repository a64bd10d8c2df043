"""SAP's Binary File Producer on local files (src/snapgraph/connectors/sap_files/producer.py), and SAP-samples'
DI-Extract-Pipelines graph running with it.

Small graphs of a script that publishes binary messages with ``com.sap.headers.file`` headers into a
``com.sap.file.write.v2`` run through the real command line; the negative control shows that the
Append mode writes a replayed message twice, as ``validate`` says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.file_builtins import BINARY_FILE_PRODUCER
from snapgraph.runtime.engine import COMPLETED

from .file_helpers import make_csv_source, run_supervised, write_graph

FIXTURE = Path(__file__).parent.parent / "model" / "fixtures" / "di_extract_pipelines"
LOCAL = {"configurationType": "Local File System"}
ROOTED = {"connectionID": "FILES", "connectionType": "LOCAL_FILE_SYSTEM", "connectionProperties": {"rootPath": "x"}}


# -- the descriptor ---------------------------------------------------------------------------------------

def test_the_producer_is_a_built_in_with_sap_ports() -> None:
    assert BUILTINS["com.sap.file.write.v2"] is BINARY_FILE_PRODUCER
    assert BINARY_FILE_PRODUCER.inports == ("file",) and BINARY_FILE_PRODUCER.outports == ("file",)


@pytest.mark.parametrize(("mode", "kind"), [("Overwrite", WriterKind.IDEMPOTENT), ("Append", WriterKind.PLAIN),
                                            ("Create only", WriterKind.PLAIN)])
def test_the_producer_promises_what_its_mode_does(mode: str, kind: WriterKind) -> None:
    assert BINARY_FILE_PRODUCER.delivery_of({"connection": LOCAL, "mode": mode}).writer is kind
    partitioned = {"connection": LOCAL, "mode": mode, "fileMode": "Partitioned file"}
    assert BINARY_FILE_PRODUCER.delivery_of(partitioned).writer is WriterKind.TRANSACTIONAL


@pytest.mark.parametrize(("config", "problem"), [
    ({}, "config 'connection': {'configurationType': 'From input'} is not supported (snapgraph's file operators use "
         "local files only"),
    ({"connection": {**ROOTED, "connectionType": "S3"}},
     "config 'connection': connection 'FILES' has connectionType 'S3', which snapgraph cannot reach"),
    ({"connection": {**ROOTED, "connectionProperties": {}}},
     "connection 'FILES' needs connectionProperties.rootPath"),
    ({"connection": "FILES"}, "config 'connection' must be a connection object"),
    ({"connection": LOCAL, "mode": "Replace"}, "config 'mode' must be one of 'Overwrite', 'Append', 'Create only'"),
    ({"connection": LOCAL, "pathMode": "Static (from configuration)", "path": None}, "config 'path' is missing"),
    ({"connection": LOCAL, "pathMode": "from input"}, "config 'pathMode' must be one of 'Dynamic (from input)'"),
    ({"connection": LOCAL, "incrementName": "sometimes"}, "config 'incrementName' must be true or false"),
    ({"connection": LOCAL, "fileMode": "Partitioned file", "incrementName": True},
     "config 'incrementName' applies to fileMode 'Single file' only"),
    ({"connection": LOCAL, "fileMode": "Parts"}, "config 'fileMode' must be one of 'Single file', 'Partitioned file'"),
])
def test_producer_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = BINARY_FILE_PRODUCER.config_problems(config)
    assert any(problem in text for text in problems), problems


def test_good_producer_configs_have_no_problems() -> None:
    assert BINARY_FILE_PRODUCER.config_problems({"connection": LOCAL}) == []
    assert BINARY_FILE_PRODUCER.config_problems({"connection": ROOTED, "mode": "Overwrite",
                                                 "pathMode": "Static with placeholders", "path": "/a/<counter>"}) == []
    assert BINARY_FILE_PRODUCER.config_problems({"connection": {"connectionID": "FILES"}}) == []  # not resolved yet


# -- SAP-samples' DI-Extract-Pipelines graph ----------------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["processes", "in-process"])
def test_the_di_extract_pipelines_graph_runs_with_a_local_connection(tmp_path: Path, mode: list[str]) -> None:
    """The fixture graph as exported (custom operator, Binary File Producer in Append mode, Graph
    Terminator), with its file connection pointed at a local folder instead of S3."""
    shutil.copy(FIXTURE / "graph.json", tmp_path / "graph.json")
    connections = yaml.safe_load((FIXTURE / "connections.yaml").read_text())
    connections["DEMO_FILES"] = {"connectionType": "LOCAL_FILE_SYSTEM", "connectionProperties": {"rootPath": "files"}}
    (tmp_path / "conns.yaml").write_text(yaml.safe_dump(connections))
    (tmp_path / "files").mkdir()
    done = subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.json", "--operators",
                           str(FIXTURE / "operators"), "--connections", "conns.yaml", "--no-progress", *mode],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "graph terminator 'graphterminator11' fired" in done.stderr
    # the operator's header paths /demo/<user>.jsonl, relative to the connection's folder
    assert sorted(p.name for p in (tmp_path / "files" / "demo").iterdir()) == ["alice.jsonl", "bob.jsonl"]
    assert (tmp_path / "files" / "demo" / "alice.jsonl").read_bytes() == b"{}"


# -- the producer's modes through the command line ------------------------------------------------------

# Publishes config `bodies` as binary messages with file headers for config `paths` and batch headers.
SENDER = """
import io

def start():
    bodies, paths = api.config.bodies, api.config.paths
    for i, (body, path) in enumerate(zip(bodies, paths)):
        header = {"com.sap.headers.file": ["{}", path, len(body), False, "2000-01-01T00:00:00"],
                  "com.sap.headers.batch": [i, i == len(bodies) - 1, len(bodies), 0, ""], "ext": ["txt"]}
        api.outputs.out.publish(io.BytesIO(body.encode()), -1, header)

api.set_prestart(start)
"""


def producer_graph(folder: Path, bodies: list[str], paths: list[str], **producer: Any) -> None:
    graph = {"name": "producer", "operators": {
        "send": {"script": "send.py", "outputs": {"out": "binary"}, "config": {"bodies": bodies, "paths": paths}},
        "write": {"component": "com.sap.file.write.v2", "config": {"connection": {"connectionID": "FILES"},
                                                                   **producer}},
        "tap": {"component": "wiretap"},
        "stop": {"component": "graphTerminator"},
    }, "connections": ["send.out -> write.file", "write.file -> tap.in", "tap.out -> stop.in"]}
    (folder / "graph.yaml").write_text(yaml.safe_dump(graph, sort_keys=False))
    (folder / "send.py").write_text(textwrap.dedent(SENDER).lstrip())
    (folder / "root").mkdir(exist_ok=True)
    (folder / "conns.yaml").write_text(yaml.safe_dump({"FILES": {
        "connectionType": "LOCAL_FILE_SYSTEM", "connectionProperties": {"rootPath": "root"}}}))


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--connections", "conns.yaml",
                           "--no-progress", *args], cwd=folder, capture_output=True, text=True, timeout=60)


def test_append_appends_and_the_output_names_each_file_with_the_batch(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["a", "b", "c"], ["/out/one.txt", "/out/one.txt", "/out/two.txt"], mode="Append")
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "root/out/one.txt").read_text() == "ab" and (tmp_path / "root/out/two.txt").read_text() == "c"
    taps = [line for line in done.stdout.splitlines() if line.startswith("[tap]")]
    assert len(taps) == 3, "one file reference per write; the terminator waited for the last batch"
    assert """'com.sap.headers.file': ['{"connectionID": "FILES", "configurationType": "Connection Management"}', """ \
           "'/out/one.txt', 2, False, '" in taps[1]
    assert "'com.sap.headers.batch': [2, True, 3, 0, '']" in taps[2]


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["first", "second"], ["/x.bin", "/x.bin"], mode="Overwrite")
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["x.bin"], "no temporary file is left"
    assert (tmp_path / "root/x.bin").read_text() == "second"


def test_create_only_refuses_an_existing_file_or_numbers_a_new_one(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["new"], ["/x.txt"])  # Create only is the default mode
    (tmp_path / "root/x.txt").write_text("old")
    refused = run(tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert f"operator 'write': mode 'Create only': '{tmp_path}/root/x.txt' exists" in refused.stderr
    assert (tmp_path / "root/x.txt").read_text() == "old"
    producer_graph(tmp_path, ["new", "newer"], ["/x.txt", "/x.txt"], incrementName=True)
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / "root" / name).read_text() for name in ("x.txt", "x (1).txt", "x (2).txt")] == \
        ["old", "new", "newer"]
    assert "'/x (2).txt'" in done.stdout, "the output names the file written"


def test_static_paths_with_placeholders(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["a", "b"], ["/in/first.csv", "/in/second.csv"], pathMode="Static with placeholders",
                   path="/<dirname>/<basename>_<counter>.<header:ext>")
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "root/in").iterdir()) == ["first.csv_000001.txt",
                                                                         "second.csv_000002.txt"]


def test_a_path_outside_the_connections_folder_is_refused(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["x"], ["/../../escape.txt"], mode="Overwrite")
    done = run(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "operator 'write': path '/../../escape.txt' leaves the folder" in done.stderr
    assert not (tmp_path.parent / "escape.txt").exists()


def test_a_message_without_a_file_header_fails_naming_the_port(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["x"], ["/a"])
    (tmp_path / "send.py").write_text("api.set_prestart(lambda: api.outputs.out.publish(b'x'))\n")
    done = run(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pathMode 'Dynamic (from input)' takes the path from the com.sap.headers.file header, but a message on " \
           "port 'file' has none" in done.stderr


def test_an_s3_connection_is_refused_by_validate(tmp_path: Path) -> None:
    producer_graph(tmp_path, ["x"], ["/a"])
    (tmp_path / "conns.yaml").write_text(yaml.safe_dump({"FILES": {"connectionType": "S3",
                                                                   "connectionProperties": {"host": "s3"}}}))
    done = run(tmp_path)
    assert done.returncode == 2, done.stderr
    assert re.search(r"graph.yaml:\d+: process 'write': Binary File Producer: config 'connection': connection "
                     r"'FILES' has connectionType 'S3', which snapgraph cannot reach", done.stderr), done.stderr


def test_validate_names_the_producers_guarantee_by_mode(tmp_path: Path) -> None:
    for mode, expected in (("Append", "at-least-once"), ("Overwrite", "exactly-once")):
        make_csv_source(tmp_path / "in", 1, 5)
        write_graph(tmp_path, period=1, writer_component="com.sap.file.write.v2",
                    writer={"connection": LOCAL, "mode": mode, "pathMode": "Static (from configuration)",
                            "path": "out/all.csv"})
        done = subprocess.run([sys.executable, "-m", "snapgraph", "validate", "graph.yaml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert f"writer 'writer': {expected}" in done.stdout + done.stderr


# -- the negative control: Append writes a replayed message again -------------------------------------------

def test_append_after_a_replay_writes_duplicates(tmp_path: Path) -> None:
    """Binary messages of a replayable reader appended to one file: a crash replays messages after the
    restored epoch, and Append writes them a second time (what at-least-once means)."""
    make_csv_source(tmp_path / "in", 6, 50)
    graph = write_graph(tmp_path, reader={"format": "binary", "chunk": 64}, delay=0.004,
                        writer_component="com.sap.file.write.v2",
                        writer={"connection": LOCAL, "mode": "Append", "pathMode": "Static (from configuration)",
                                "path": "out/all.csv"})
    expected = b"".join(path.read_bytes() for path in sorted((tmp_path / "in").iterdir()))
    failure_free, _ = run_supervised(tmp_path, graph)
    assert failure_free.result.status == COMPLETED and (tmp_path / "out/all.csv").read_bytes() == expected
    (tmp_path / "out/all.csv").unlink()
    outcome, plan = run_supervised(tmp_path, graph, "file_producer_written:writer:40")
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert outcome.restored_from[1] is not None, "the recovery restored an epoch and replayed after it"
    written = (tmp_path / "out/all.csv").read_bytes()
    assert len(written) > len(expected), "a replay after the crash must show up as bytes written twice"
    assert set(written.decode().splitlines()) >= set(expected.decode().splitlines()), "nothing lost"


def test_the_local_file_system_takes_paths_as_they_are(tmp_path: Path) -> None:
    """SAP's Local File System (no connection id): this machine's paths; the header names it so."""
    target = tmp_path / "plain" / "z.txt"
    producer_graph(tmp_path, ["z"], [str(target)], connection=LOCAL, mode="Overwrite")
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "z"
    assert f"""'com.sap.headers.file': ['{json.dumps(LOCAL)}', '{target}', 1, False, '""" in done.stdout
