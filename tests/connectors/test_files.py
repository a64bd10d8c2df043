"""The file reader and writer (src/snapgraph/connectors/files/) end to end, on real files in tmp folders.

Graphs of ``file-reader`` -> ``file-writer`` (with a pacing operator where a run must last several epochs)
run through the real command line, and under the supervisor with 20 ms epochs for the fault matrix. Every
crash case is compared with the failure-free result (the source rows in order, which a failure-free run
writes: asserted first) and asserts that its fault fired.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from snapgraph.connectors.files.formats import CsvOptions, FileFormatError, encode_rows, iter_rows
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.file_builtins import FILE_READER, FILE_WRITER
from snapgraph.runtime.engine import COMPLETED

from .file_helpers import cli, make_csv_source, parts, run_supervised, source_rows, write_graph, written_rows

FILES, ROWS = 6, 50  # batches of 5: 60 messages


@pytest.fixture
def source(tmp_path: Path) -> Path:
    make_csv_source(tmp_path / "in", FILES, ROWS)
    return tmp_path


# -- the descriptors: config checks and delivery traits ------------------------------------------------

def test_the_descriptors_are_built_ins() -> None:
    assert BUILTINS["snapgraph.file.reader"] is FILE_READER and "file-reader" in FILE_READER.aliases
    assert BUILTINS["snapgraph.file.writer"] is FILE_WRITER and "file-writer" in FILE_WRITER.aliases
    reader = FILE_READER.delivery_of({"folder": "in", "format": "csv"})
    assert reader.replayable and reader.deterministic and not reader.batches
    assert FILE_WRITER.delivery_of({"folder": "out", "format": "csv"}).writer is WriterKind.TRANSACTIONAL


@pytest.mark.parametrize(("config", "problem"), [
    ({"format": "csv"}, "config 'folder' is missing"),
    ({"folder": "", "format": "csv"}, "config 'folder' must be a non-empty string"),
    ({"folder": "in"}, "config 'format' is missing: one of csv, jsonl, parquet, binary"),
    ({"folder": "in", "format": "xml"}, "config 'format' must be one of csv, jsonl, parquet, binary, got 'xml'"),
    ({"folder": "in", "format": "csv", "batch": 0}, "config 'batch' must be a whole number of rows >= 1"),
    ({"folder": "in", "format": "binary", "chunk": -1}, "config 'chunk' must be a whole number of bytes >= 0"),
    ({"folder": "in", "format": "csv", "delimiter": ";;"}, "config 'delimiter' must be one character"),
    ({"folder": "in", "format": "csv", "header": "maybe"}, "config 'header' must be true or false"),
    ({"folder": "in", "format": "csv", "streaming": "often"}, "config 'streaming' must be true or false"),
    ({"folder": "in", "format": "csv", "poll": 0}, "config 'poll' must be a number of seconds > 0"),
    ({"folder": "in", "format": "jsonl", "columns": 5}, "config 'columns' must be a column name or a list"),
])
def test_reader_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = FILE_READER.config_problems(config)
    assert any(problem in text for text in problems), problems


@pytest.mark.parametrize(("config", "problem"), [
    ({"format": "csv"}, "config 'folder' is missing"),
    ({"folder": "out", "format": "csv", "prefix": "a/b"}, "config 'prefix' must be a file name without '/'"),
    ({"folder": "out", "format": "csv", "prefix": ".hidden"}, "that does not start with '.'"),
])
def test_writer_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = FILE_WRITER.config_problems(config)
    assert any(problem in text for text in problems), problems


def test_good_configs_have_no_problems() -> None:
    assert FILE_READER.config_problems({"folder": "in", "format": "binary", "chunk": "4", "pattern": "*.bin",
                                        "streaming": "true", "poll": "0.5"}) == []
    assert FILE_WRITER.config_problems({"folder": "out", "format": "parquet", "prefix": "sales",
                                        "columns": "a, b"}) == []


# -- the formats ----------------------------------------------------------------------------------------

def rows_of(fmt: str, data: bytes, **options: Any) -> list[list[Any]]:
    import io

    return list(iter_rows(fmt, io.BytesIO(data), "x.dat", **options))


def test_each_table_format_reads_what_it_writes() -> None:
    rows = [[1, "a"], [2, "b,c"], [3, None]]
    assert rows_of("jsonl", encode_rows("jsonl", rows, ["id", "text"])) == rows
    assert rows_of("parquet", encode_rows("parquet", rows, ["id", "text"])) == rows
    # CSV is text: values come back as strings, None as an empty one
    assert rows_of("csv", encode_rows("csv", rows, ["id", "text"])) == [["1", "a"], ["2", "b,c"], ["3", ""]]
    semicolons = encode_rows("csv", rows, ["id", "text"], CsvOptions(delimiter=";", header=False))
    assert semicolons.startswith(b"1;a\n") and rows_of("csv", semicolons, csv_options=CsvOptions(";", False))[1] == \
        ["2", "b,c"]


def test_json_lines_take_objects_in_column_order_or_arrays() -> None:
    data = b'{"b": 1, "a": 2}\n\n[3, 4]\n{"a": 6}\n'
    assert rows_of("jsonl", data) == [[1, 2], [3, 4], [None, 6]]
    assert rows_of("jsonl", data, columns=["a", "b"]) == [[2, 1], [3, 4], [6, None]]


@pytest.mark.parametrize(("fmt", "data", "message"), [
    ("csv", b"a,b\n1,2\n3\n", "x.dat:3: a CSV row of 1 values, but the header has 2"),
    ("csv", b"a,b\n\xff\xfe,1\n", "x.dat: not UTF-8 text, so not CSV"),
    ("jsonl", b'{"a": 1}\n{"a": \n', "x.dat:2: not a JSON value"),
    ("jsonl", b'{"a": 1}\n"text"\n', "x.dat:2: a JSON line must be an object or an array, got str"),
    ("jsonl", b'{"a": 1}\n{"a": 2, "c": 3}\n', "x.dat:2: key(s) 'c' are not among the columns (a)"),
    ("parquet", b"PAR1 not really", "x.dat: not a Parquet file"),
])
def test_bad_data_names_the_file_and_line(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(FileFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rows_of(fmt, data)


# -- failure-free runs through the command line ---------------------------------------------------------

def test_csv_to_csv_copies_every_row_in_order(source: Path) -> None:
    write_graph(source, period=1, writer={"columns": ["id", "name", "amount"]})
    done = cli(source)
    assert done.returncode == 0, done.stderr
    assert "exactly-once: 'writer' is transactional" in done.stderr
    assert written_rows(source / "out") == source_rows(FILES, ROWS)
    assert not [name for name in parts(source / "out") if name.startswith(".")], "no temporary part is left"
    assert (source / "out/part-000000.csv").read_text().startswith("id,name,amount\n")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_round_trip(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "in").mkdir()
    rows = [[i, f"n{i}", i * 0.5] for i in range(23)]
    (tmp_path / "in" / f"a.{fmt}").write_bytes(encode_rows(fmt, rows[:10], ["id", "name", "x"]))
    (tmp_path / "in" / f"b.{fmt}").write_bytes(encode_rows(fmt, rows[10:], ["id", "name", "x"]))
    write_graph(tmp_path, period=1, reader={"format": fmt, "batch": 4},
                writer={"format": fmt, "columns": ["id", "name", "x"]})
    done = cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert written_rows(tmp_path / "out", fmt) == rows
    if fmt == "parquet":
        assert pq.read_table(next((tmp_path / "out").glob("*.parquet"))).schema.names == ["id", "name", "x"]


def test_binary_files_in_chunks_with_file_and_batch_headers(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.bin").write_bytes(b"0123456789")
    (tmp_path / "in" / "b.bin").write_bytes(b"abc")
    graph = write_graph(tmp_path, reader={"format": "binary", "chunk": 4}, writer={"format": "binary"})
    spec = yaml.safe_load(graph.read_text())
    spec["operators"]["tap"] = {"component": "wiretap"}  # prints each message with its headers
    spec["connections"].append("reader.output -> tap.in")
    graph.write_text(yaml.safe_dump(spec))
    done = cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "part-000000.bin").read_bytes() == b"0123456789abc"
    headers = [line for line in done.stdout.splitlines() if line.startswith("[tap]")]
    assert len(headers) == 4  # 4 + 4 + 2 bytes of a.bin, 3 of b.bin
    # the path as the folder is configured (relative: to the working directory)
    assert """'com.sap.headers.file': ['{"configurationType": "Local File System"}', 'in/b.bin', 3, False, '""" \
        in headers[3]
    assert "'com.sap.headers.batch': [3, True, 0, 4, 'bytes']" in headers[3]
    assert "'com.sap.headers.batch': [1, False, 0, 4, 'bytes']" in headers[1]


def test_an_empty_folder_ends_with_one_empty_last_message(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_graph(tmp_path, period=1)
    done = cli(tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert parts(tmp_path / "out") == []


def test_pattern_selects_files_and_a_foreign_part_name_is_never_overwritten(source: Path) -> None:
    (source / "in" / "notes.txt").write_text("not,csv,at,all,here\n")
    write_graph(source, period=1, reader={"pattern": "f*.csv"})
    (source / "out" / "part-000000.csv").write_text("foreign\n")  # a name the writer would use first
    done = cli(source)
    assert done.returncode == 0, done.stderr
    assert (source / "out" / "part-000000.csv").read_text() == "foreign\n", "a file that is not ours is kept"
    assert parts(source / "out")[1] == "part-000001.csv", "numbering continues after the parts in the folder"
    assert written_rows(source / "out") == source_rows(FILES, ROWS)  # the foreign line counts as a header


# -- bad input through the command line: exit 2 or 1, naming the operator, the key or the file ---------

@pytest.mark.parametrize(("reader", "writer", "message"), [
    ({"folder": "missing"}, {}, "operator 'reader': config 'folder': 'missing' does not exist"),
    ({"folder": "in/f00.csv"}, {}, "operator 'reader': config 'folder': 'in/f00.csv' is not a folder"),
    ({}, {"folder": "nowhere"}, "operator 'writer': config 'folder': 'nowhere' does not exist"),
    ({"format": "text"}, {}, "config 'format' must be one of csv, jsonl, parquet, binary, got 'text'"),
])
def test_bad_configs_are_refused_naming_operator_and_key(source: Path, reader: dict[str, Any],
                                                        writer: dict[str, Any], message: str) -> None:
    write_graph(source, reader=reader, writer=writer)
    done = cli(source)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_a_file_in_a_bad_format_fails_the_reader_naming_it(source: Path) -> None:
    (source / "in" / "f03.csv").write_text("id,name,amount\n1,2\n")
    write_graph(source)
    done = cli(source)
    assert done.returncode == 1, done.stderr
    assert "[reader] ERROR: timer callback failed: FileFormatError: in/f03.csv:2: a CSV row of 2 values, but the " \
        "header has 3" in done.stderr


def test_a_table_for_a_binary_writer_fails_naming_the_port(source: Path) -> None:
    write_graph(source, writer={"format": "binary"})
    done = cli(source)
    assert done.returncode == 1, done.stderr
    assert "operator 'writer': format 'binary' writes binary messages, but a message on port 'input' is Table" \
        in done.stderr


# -- the fault matrix: 20 ms epochs, under the supervisor ------------------------------------------------

READER_FAULTS = ["before_serialize:reader:2", "after_serialize:reader:2", "after_persist:reader:2",
                 "file_reader_published:reader:17", "file_reader_published:reader:33,restore:reader:1"]
WRITER_FAULTS = [
    "port_callback:writer:23", "before_serialize:writer:2", "after_serialize:writer:2", "after_persist:writer:2",
    "before_complete:*:2", "epoch_complete:writer:2", "file_writer_staged:writer:2", "file_writer_linked:writer:2",
    "file_writer_published:writer:2", "file_writer_published:writer:2,restore:writer:1",
    "file_writer_linked:writer:3,epoch_complete:writer:4",
]
PACED = {"delay": 0.004}


def _expect_exactly_once(folder: Path, faults: str, outcome: Any, plan: Any) -> None:
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert written_rows(folder / "out") == source_rows(FILES, ROWS), f"{faults}: not the failure-free output"
    assert not [name for name in parts(folder / "out") if name.startswith(".")], f"{faults}: a temporary part is left"


def test_the_failure_free_supervised_run_writes_several_parts(source: Path) -> None:
    outcome, _ = run_supervised(source, write_graph(source, **PACED))
    assert outcome.result.status == COMPLETED and outcome.attempts == 1
    assert written_rows(source / "out") == source_rows(FILES, ROWS)
    assert len(parts(source / "out")) >= 3, "several epochs, one part each"


@pytest.mark.parametrize("faults", READER_FAULTS + WRITER_FAULTS)
def test_the_writer_is_exactly_once_under_every_crash(source: Path, faults: str) -> None:
    outcome, plan = run_supervised(source, write_graph(source, **PACED), faults)
    _expect_exactly_once(source, faults, outcome, plan)


@pytest.mark.parametrize("faults", ["file_writer_staged:writer:2:exit", "file_writer_linked:writer:2:exit",
                                    "epoch_complete:writer:2:exit", "file_reader_published:reader:17:exit"])
def test_the_writer_survives_group_process_deaths(source: Path, faults: str) -> None:
    outcome, plan = run_supervised(source, write_graph(source, **PACED), faults, in_process=False)
    _expect_exactly_once(source, faults, outcome, plan)


def test_without_snapshots_the_part_is_published_at_the_last_message(source: Path) -> None:
    """No epochs: one part when the reader's last message arrives; a crash before it publishes nothing, and
    the restart from scratch writes every row once."""
    outcome, plan = run_supervised(source, write_graph(source, **PACED), "port_callback:writer:40", period=None)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert parts(source / "out") == ["part-000000.csv"]
    assert written_rows(source / "out") == source_rows(FILES, ROWS)


# -- through the command line: engine death and resume, savepoints, streaming ---------------------------

CLI_PACE = {"delay": 0.02}  # 60 messages of 20 ms: a run of about 1.5 s, epochs every second


@pytest.mark.parametrize("fault", ["file_writer_published:writer:1:kill", "file_writer_linked:writer:1:kill",
                                   "file_writer_staged:writer:2:kill", "epoch_complete:writer:1:kill"])
def test_engine_death_then_resume_is_exactly_once(source: Path, fault: str) -> None:
    write_graph(source, period=1, **CLI_PACE)
    died = cli(source, faults=fault)
    assert died.returncode == 137, died.stderr
    assert "engine killed at" in died.stderr
    resumed = cli(source, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert written_rows(source / "out") == source_rows(FILES, ROWS)
    assert not [name for name in parts(source / "out") if name.startswith(".")]


def test_a_foreign_file_at_a_parts_name_fails_the_publish_and_is_kept(source: Path) -> None:
    write_graph(source, period=1, **CLI_PACE)
    died = cli(source, faults="file_writer_staged:writer:2:kill")  # part 0 published, part 1 staged
    assert died.returncode == 137, died.stderr
    staged = [name for name in parts(source / "out") if name.endswith(".sg-tmp")]
    assert staged == [".part-000001.csv.filegraph-writer.00000001.sg-tmp"]
    (source / "out" / "part-000001.csv").write_text("someone else's\n")  # the name the replay publishes
    resumed = cli(source, "--resume", "--max-retries", "0")
    assert resumed.returncode == 1, resumed.stderr
    assert "operator 'writer': refusing to overwrite 'out/part-000001.csv': the file exists and was not written " \
           "by this writer" in resumed.stderr
    assert (source / "out" / "part-000001.csv").read_text() == "someone else's\n"
    assert staged[0] in parts(source / "out"), "our part is kept for the user to look at"


def test_resume_after_a_completed_run_reads_only_new_files(source: Path) -> None:
    write_graph(source, period=1)
    assert cli(source).returncode == 0
    make_csv_source(source / "in", 2, ROWS, start_file=FILES)
    resumed = cli(source, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert written_rows(source / "out") == source_rows(FILES + 2, ROWS), "each row once: the old files were skipped"


def test_streaming_reader_picks_up_new_files_and_resumes(source: Path) -> None:
    write_graph(source, period=1, reader={"streaming": True, "poll": 0.1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    engine = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--no-progress",
                               "--stop-after", "3"], cwd=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        start = time.monotonic()
        while len(written_rows(source / "out")) < FILES * ROWS and time.monotonic() - start < 30:
            time.sleep(0.1)
        make_csv_source(source / "in", 1, ROWS, start_file=FILES)  # a file that appears while the reader polls
        late = source / "in" / "a-late.csv"  # sorts before the files read: never read, logged
        late.write_text("id,name,amount\n-1,late,0\n")
        _, stderr = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, stderr
    assert written_rows(source / "out") == source_rows(FILES + 1, ROWS)
    assert "file 'a-late.csv' appeared in in after 'f06.csv' was read: it sorts before it, so it is not read" in stderr
    assert stderr.count("appeared in in after") == 1, "only the late file, not every file read before it"
    make_csv_source(source / "in", 1, ROWS, start_file=FILES + 1)
    resumed = cli(source, "--resume", "--stop-after", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "appeared in in after" not in resumed.stderr, "what was there when the resume looked is not late"
    assert written_rows(source / "out") == source_rows(FILES + 2, ROWS)


def test_validate_prints_the_guarantee(source: Path) -> None:
    write_graph(source, period=1)
    done = subprocess.run([sys.executable, "-m", "snapgraph", "validate", "graph.yaml"], cwd=source,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "exactly-once" in done.stdout + done.stderr


def test_parquet_writer_takes_column_names_from_a_typed_table(tmp_path: Path) -> None:
    """A JSON-lines source read with columns, written as Parquet with the configured names."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps({"k": i, "v": str(i)}) + "\n" for i in range(7)))
    write_graph(tmp_path, reader={"format": "jsonl", "columns": ["v", "k"]}, writer={"format": "parquet",
                                                                                      "columns": "v, k"})
    done = cli(tmp_path)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "out" / "part-000000.parquet")
    assert table.schema.names == ["v", "k"] and table.column("k").to_pylist() == list(range(7))
    assert table.schema.field("k").type == pa.int64()
