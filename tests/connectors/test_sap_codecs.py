"""SAP's table codecs (src/snapgraph/connectors/sap_codecs.py): Table to Binary and Binary to Table V2 in
small in-process graphs, and through a crash and recovery.

Round trips (a script's typed tables -> ``com.sap.table.encode`` -> ``com.sap.table.decode.v2``) per format
with ints, floats, strings holding separators, quotes and newlines, booleans and nulls; CSV options and
static output types on Binary to Table; batches out and batches collected; and a file-reader -> decode ->
encode -> decode -> file-writer graph under the supervisor whose crash runs (faults upstream, in each
codec and downstream) give the failure-free output.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.orc as orc
import pytest
import yaml

from snapgraph.runtime.engine import COMPLETED
from snapgraph.testing import GraphRun, run_graph

from .file_helpers import PACE, parts, run_supervised, written_rows

BATCH = "com.sap.headers.batch"

# Publishes config `batches` (lists of rows) as tables of a dynamic type of config `columns` ([name, core
# type] pairs), each with a batch header; the last one is the last batch.
TABLES = """
def start():
    columns = api.config.columns
    ref = api.type_context.create_new_table(
        {name: api.DataTypeReference("scalar", "com.sap.core." + kind) for name, kind in columns})
    batches = api.config.batches
    for index, rows in enumerate(batches):
        api.outputs.out.publish(api.Table(rows, ref.type_id), {"com.sap.headers.batch": [
            index, index == len(batches) - 1, 0, 0, "rows"], "note": [index]})

api.set_prestart(start)
"""
# Publishes config `bodies` (text) as binary messages, each with a batch header; the last is the last batch.
BYTES = """
def start():
    bodies = api.config.bodies
    for index, body in enumerate(bodies):
        api.outputs.out.publish(body.encode("utf-8"), {"com.sap.headers.batch": [
            index, index == len(bodies) - 1, 0, 0, "bytes"]})

api.set_prestart(start)
"""

# Publishes the column names and type ids of each table it receives (as JSON), with its headers.
COLUMN_TYPES = """
import json

def on_input(msg_id, header, body):
    vtype = api.type_context.get_vtype(body.get().get_type_reference())
    api.outputs.out.publish(json.dumps([[name, ref.type_id] for name, ref in vtype.columns.items()]), header)

api.set_port_callback("input", on_input)
"""

COLUMNS = [["id", "int64"], ["price", "float64"], ["text", "string"], ["flag", "bool"], ["note", "string"]]
ROWS = [[1, 2.5, 'comma, "quote"\nand a newline', True, None],
        [-7, 1e20, "plain", False, "x"],
        [3, 0.1, "semi;colon", None, "y"]]


def codec_graph(folder: Path, *, encoder: dict[str, Any] | None = None, decoder: dict[str, Any] | None = None,
                batches: list[list[list[Any]]] | None = None, bodies: list[str] | None = None,
                decoder_type: str | None = None, files: dict[str, str] | None = None) -> GraphRun:
    """Run tables (``batches``) through Table to Binary, or text (``bodies``) straight, into Binary to Table
    (when ``decoder`` is given; its ``table`` port typed ``decoder_type``), ended by a Graph Terminator."""
    operators: dict[str, Any] = {}
    connections = []
    if bodies is not None:
        operators["send"] = {"script": "bytes.py", "outputs": {"out": "binary"}, "config": {"bodies": bodies}}
        upstream = "send.out"
    else:
        operators["gen"] = {"script": "tables.py", "outputs": {"out": "table"},
                            "config": {"columns": COLUMNS, "batches": batches if batches is not None else [ROWS]}}
        operators["enc"] = {"component": "tableToBinary", "config": encoder or {}}
        connections.append("gen.out -> enc.table")
        upstream = "enc.binary"
    if decoder is not None:
        operators["dec"] = {"component": "binaryToTable", "config": decoder}
        if decoder_type is not None:
            operators["dec"]["outputs"] = {"table": decoder_type}
        operators["types"] = {"script": "types.py", "inputs": {"input": "table"}, "outputs": {"out": "string"}}
        connections += [f"{upstream} -> dec.binary", "dec.table -> types.input"]
        upstream = "types.out"
    operators["stop"] = {"component": "terminator"}
    connections.append(f"{upstream} -> stop.in")
    graph = yaml.safe_dump({"name": "codecs", "operators": operators, "connections": connections}, sort_keys=False)
    return run_graph(graph, {"tables.py": TABLES, "bytes.py": BYTES, "types.py": COLUMN_TYPES, **(files or {})},
                     folder=folder)


def decoded(run: GraphRun) -> list[list[Any]]:
    """Every row Binary to Table published, in order."""
    return [row for table in run["dec.table"].values for row in table]


def column_types(run: GraphRun) -> list[list[list[str]]]:
    """The [name, type id] of each column of each table Binary to Table published."""
    return [json.loads(text) for text in run["types.out"].values]


def core(*kinds: str) -> list[str]:
    return [f"com.sap.core.{kind}" for kind in kinds]


# -- round trips -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "layout"), [("CSV", None), ("JSONLINES", None), ("Parquet", None),
                                             *[("JSON", layout) for layout in ("records", "values", "split",
                                                                               "index", "columns", "table")]])
def test_each_format_decodes_what_it_encodes_with_types(tmp_path: Path, fmt: str, layout: str | None) -> None:
    extra = {"format": layout} if layout else {}
    run = codec_graph(tmp_path, encoder={"outputFormat": fmt, **extra}, decoder={"inputFormat": fmt, **extra}).check()
    assert decoded(run) == ROWS
    assert [[type(value) for value in row] for row in decoded(run)] == [[type(value) for value in row] for row in ROWS]
    [message] = run["dec.table"].messages
    assert message.header == {BATCH: [0, True, 0, 0, "rows"], "note": [0]}, "the input's headers go on"
    names = [name for name, _ in COLUMNS] if layout != "values" else ["col0", "col1", "col2", "col3", "col4"]
    assert column_types(run) == [[list(pair) for pair in zip(names, core("int64", "float64", "string", "bool",
                                                                          "string"))]]


def test_csv_is_written_as_configured(tmp_path: Path) -> None:
    run = codec_graph(tmp_path, encoder={"colSep": ";", "rowSep": "CRLF", "quoting": "QUOTE_MINIMAL", "decSep": ",",
                                         "colNames": "a,b,c,d,e"}, batches=[ROWS[1:]]).check()
    [data] = run["enc.binary"].values
    assert data == b'a;b;c;d;e\r\n-7;1e+20;plain;False;x\r\n3;0,1;"semi;colon";;y\r\n'
    headerless = codec_graph(tmp_path, encoder={"header": False, "quoteChar": "", "escapeChar": "\\"},
                             batches=[[[1, 0.5, "a,b", True, None]]]).check()
    assert headerless["enc.binary"].values == [b"1,0.5,a\\,b,True,\n"]


def test_dates_are_written_with_date_format_and_read_back_from_date_columns(tmp_path: Path) -> None:
    (tmp_path / "gen_dates.py").write_text(textwrap.dedent("""
        import datetime

        def start():
            ref = api.type_context.create_new_table({"day": api.DataTypeReference("scalar", "com.sap.core.date")})
            api.outputs.out.publish(api.Table([[datetime.date(2024, 2, 29)], [None]], ref.type_id))

        api.set_prestart(start)
        """))
    graph = {"operators": {"gen": {"script": "gen_dates.py", "outputs": {"out": "table"}},
                           "enc": {"component": "tableToBinary", "config": {"dateFormat": "%d.%m.%Y"}},
                           "dec": {"component": "binaryToTable", "config": {"dateCols": "day"}},
                           "enc2": {"component": "tableToBinary"},
                           "dec2": {"component": "binaryToTable", "config": {"dateCols": "day"}},
                           "stop": {"component": "terminator"}},
             "connections": ["gen.out -> enc.table", "gen.out -> enc2.table", "enc2.binary -> dec2.binary",
                             "enc.binary -> dec.binary", "dec.table -> stop.in", "dec2.table -> stop.in"]}
    run = run_graph(yaml.safe_dump(graph), folder=tmp_path).check()
    assert run["enc.binary"].values == [b'"day"\n"29.02.2024"\n""\n']
    assert decoded(run) == [["29.02.2024"], [None]], "not ISO 8601: the text stays"
    assert run["dec2.table"].values == [[[datetime.date(2024, 2, 29)], [None]]]


def test_csv_text_is_typed_by_the_decoder_options(tmp_path: Path) -> None:
    text = "name|amount|active|count\nann|1.234,5|yes|1.000\nbob||no|7\n"
    run = codec_graph(tmp_path, bodies=[text], decoder={"colSep": "|", "decSep": ",", "digitGrpSep": ".",
                                                        "trueValues": "yes", "falseValues": "no"}).check()
    assert decoded(run) == [["ann", 1234.5, True, 1000], ["bob", None, False, 7]]
    renamed = codec_graph(tmp_path, bodies=["1,2\n3,4,5\n6,7\n"], decoder={"header": False, "colNames": "x, y",
                                                                             "ignoreBad": True}).check()
    assert decoded(renamed) == [[1, 2], [6, 7]], "the row with too many values is dropped"
    assert column_types(renamed) == [[["x", "com.sap.core.int64"], ["y", "com.sap.core.int64"]]]


def test_a_static_output_type_names_and_converts_the_columns(tmp_path: Path) -> None:
    vtype = {"name": "codecs.people", "vflow.type": "table", "rows": {"components": [
        {"who": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"age": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int32"}},
        {"born": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.date"}},
        {"score": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.float64"}}]}}
    files = {"vtypes/codecs.people.vtype": json.dumps(vtype)}
    text = "NAME,AGE,BORN,SCORE\nann,41,1983-05-01,7\nbob,,1990-12-24,0.5\n"
    run = codec_graph(tmp_path, bodies=[text], decoder={}, decoder_type="table:codecs.people", files=files).check()
    assert decoded(run) == [["ann", 41, datetime.date(1983, 5, 1), 7.0],
                            ["bob", None, datetime.date(1990, 12, 24), 0.5]]
    assert run["dec.table"][0].type_id == "codecs.people"
    assert column_types(run) == [[["who", "com.sap.core.string"], ["age", "com.sap.core.int32"],
                                  ["born", "com.sap.core.date"], ["score", "com.sap.core.float64"]]]
    bad = codec_graph(tmp_path, bodies=["a,b,c,d\nann,forty,1983-05-01,7\n"], decoder={},
                      decoder_type="table:codecs.people", files=files)
    assert bad.status == "failed"
    assert "row 0, column 'age': 'forty' is not an integer" in str(bad.failure)


def test_output_batches_number_the_run_and_end_with_the_input(tmp_path: Path) -> None:
    bodies = ["n\n1\n2\n3\n4\n5\n", "n\n6\n7\n"]
    run = codec_graph(tmp_path, bodies=bodies, decoder={"outputBatches": True, "batchSize": 2}).check()
    assert run["dec.table"].values == [[[1], [2]], [[3], [4]], [[5]], [[6], [7]]]
    assert [header[BATCH] for header in run["dec.table"].headers] == [
        [0, False, 0, 2, "rows"], [1, False, 0, 2, "rows"], [2, False, 0, 2, "rows"], [3, True, 0, 2, "rows"]]


def test_collected_batches_are_encoded_as_one_message_at_the_last(tmp_path: Path) -> None:
    run = codec_graph(tmp_path, encoder={"outputFormat": "JSONLINES", "collectBatches": True},
                      batches=[ROWS[:1], ROWS[1:2], ROWS[2:]], decoder={"inputFormat": "JSONLINES"}).check()
    [message] = run["enc.binary"].messages
    assert message.header == {BATCH: [2, True, 0, 0, "rows"], "note": [2]}
    assert decoded(run) == ROWS


def test_orc_files_are_decoded(tmp_path: Path) -> None:
    sink = io.BytesIO()
    orc.write_table(pa.table({"k": [1, 2, None], "v": ["a", None, "c"]}), sink)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.orc").write_bytes(sink.getvalue())
    graph = {"operators": {
        "read": {"component": "file-reader", "config": {"folder": str(tmp_path / "in"), "format": "binary"}},
        "dec": {"component": "binaryToTable", "config": {"inputFormat": "ORC"}},
        "stop": {"component": "terminator"}}, "connections": ["read.output -> dec.binary", "dec.table -> stop.in"]}
    run = run_graph(yaml.safe_dump(graph), folder=tmp_path).check()
    assert decoded(run) == [[1, "a"], [2, None], [None, "c"]]
    assert run["dec.table"][0].header["com.sap.headers.file"][1].endswith("data.orc"), "the file header goes on"


def test_data_not_in_the_format_fails_the_decoder_naming_it(tmp_path: Path) -> None:
    run = codec_graph(tmp_path, bodies=["a,b\n1,2,3\n"], decoder={})
    assert run.status == "failed"
    assert "operator 'dec': CSV on port 'binary':2: a CSV row of 3 values, but the first row has 2" in str(run.failure)


def test_validate_refuses_what_snapgraph_cannot_encode(tmp_path: Path) -> None:
    graph = {"operators": {"gen": {"script": "tables.py", "outputs": {"out": "table"}},
                           "enc": {"component": "com.sap.table.encode", "config": {"outputFormat": "ORC"}}},
             "connections": ["gen.out -> enc.table"]}
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(graph))
    (tmp_path / "tables.py").write_text(TABLES)
    done = subprocess.run([sys.executable, "-m", "snapgraph", "validate", "graph.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Table to Binary: config 'outputFormat' must be one of CSV, JSON, JSONLINES, Parquet, got 'ORC'" in (
        done.stdout + done.stderr)


# -- through a crash and recovery ----------------------------------------------------------------------------

FILES, LINES = 30, 4
# Puts the batch index of each table's com.sap.headers.batch before each of its rows.
STAMP = """
def on_input(msg_id, header, body):
    index = header["com.sap.headers.batch"][0]
    api.outputs.output.publish([[index, *row] for row in body.get()], header)

api.set_port_callback("input", on_input)
"""


def recovery_graph(folder: Path) -> Path:
    """file-reader (whole CSV files as binary) -> pace -> decode (batches of 3) -> stamp (the batch index
    before each row) -> encode Parquet -> decode Parquet -> file-writer (JSON lines, exactly once): every
    stage but the writer in one group, so the pace holds the reader back and the run has several epochs."""
    source = folder / "in"
    source.mkdir(exist_ok=True)
    for number in range(FILES):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", "name", "amount"])
        writer.writerows([[number * LINES + line, f"n,{line}\n\"{number}\"", (number * LINES + line) / 4]
                          for line in range(LINES)])
        (source / f"f{number:02d}.csv").write_text(text.getvalue())
    (folder / "out").mkdir(exist_ok=True)
    (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    (folder / "stamp.py").write_text(textwrap.dedent(STAMP).lstrip())
    operators = {
        "reader": {"component": "file-reader", "config": {"folder": "in", "format": "binary"}, "group": "source"},
        "dec": {"component": "binaryToTable", "config": {"outputBatches": True, "batchSize": 3}, "group": "source"},
        "stamp": {"script": "stamp.py", "inputs": {"input": "table"}, "outputs": {"output": "table"},
                  "group": "source"},
        "enc": {"component": "tableToBinary", "config": {"outputFormat": "Parquet"}, "group": "source"},
        "dec2": {"component": "binaryToTable", "config": {"inputFormat": "Parquet"}, "group": "source"},
        "pace": {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                 "config": {"delay": 0.005}, "group": "source"},
        "writer": {"component": "file-writer", "config": {"folder": "out", "format": "jsonl"}, "group": "sink"},
    }
    connections = ["reader.output -> pace.input", "pace.output -> dec.binary", "dec.table -> stamp.input",
                   "stamp.output -> enc.table", "enc.binary -> dec2.binary", "dec2.table -> writer.input"]
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "codecgraph", "operators": operators, "connections": connections},
                                   sort_keys=False))
    return path


EXPECTED = [[number * LINES + line, f"n,{line}\n\"{number}\"", (number * LINES + line) / 4]
            for number in range(FILES) for line in range(LINES)]
# Batches of 3 rows: each file of 4 rows is two batches, numbered over the whole run.
STAMPED = [[2 * (index // LINES) + (index % LINES >= 3), *row] for index, row in enumerate(EXPECTED)]


def test_the_failure_free_run_writes_every_row_typed(tmp_path: Path) -> None:
    outcome, _ = run_supervised(tmp_path, recovery_graph(tmp_path))
    assert outcome.result.status == COMPLETED and outcome.attempts == 1
    assert written_rows(tmp_path / "out", "jsonl") == STAMPED
    assert len(parts(tmp_path / "out")) >= 2, "several epochs"


@pytest.mark.parametrize("faults", ["file_reader_published:reader:11", "port_callback:dec:14", "port_callback:enc:29",
                                    "port_callback:dec2:37", "before_serialize:dec:2", "port_callback:writer:45"])
def test_a_crash_anywhere_gives_the_failure_free_output(tmp_path: Path, faults: str) -> None:
    outcome, plan = run_supervised(tmp_path, recovery_graph(tmp_path), faults)
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: the fault never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert written_rows(tmp_path / "out", "jsonl") == STAMPED, f"{faults}: not the failure-free output"


def collecting_graph(folder: Path) -> Path:
    """file-reader (the CSV files as tables of 2 rows, the last one the last batch) -> pace -> encode as JSON
    lines, collecting every batch -> decode -> file-writer: the encoder holds rows across many epochs."""
    path = recovery_graph(folder)
    graph = yaml.safe_load(path.read_text())
    graph["operators"]["reader"]["config"] = {"folder": "in", "format": "csv", "batch": 2}
    graph["operators"]["enc"]["config"] = {"outputFormat": "JSONLINES", "collectBatches": True}
    graph["operators"]["dec2"]["config"] = {"inputFormat": "JSONLINES"}
    del graph["operators"]["dec"], graph["operators"]["stamp"]
    graph["connections"] = ["reader.output -> pace.input", "pace.output -> enc.table", "enc.binary -> dec2.binary",
                            "dec2.table -> writer.input"]
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


@pytest.mark.parametrize("faults", ["", "port_callback:enc:20", "before_serialize:enc:2"])
def test_collected_rows_survive_a_crash(tmp_path: Path, faults: str) -> None:
    outcome, plan = run_supervised(tmp_path, collecting_graph(tmp_path), faults)
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: the fault never fired"
    assert (outcome.attempts >= 2) == bool(faults), f"{faults}: {outcome.attempts} attempts"
    # the file-reader reads CSV values as text, which JSON lines keep
    assert written_rows(tmp_path / "out", "jsonl") == [[str(row[0]), row[1], str(row[2])] for row in EXPECTED]
    assert len(parts(tmp_path / "out")) == 1, "one message, at the last batch"
