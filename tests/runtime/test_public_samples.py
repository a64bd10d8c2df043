"""The public Gen2 Python3 operator samples (issue 10), re-written and run end to end.

Each graph reproduces the API use of one public sample or a chain of them (same ports, callbacks,
headers and state pattern) with scripts written for this file; no third-party script text is copied.
Sources and results: docs/gen2-compatibility.md, "Public samples". Every graph runs through the real
command line twice, with every operator in a group (a process) of its own and ``--in-process``.
External systems get a stand-in, noted at each graph: SQLite for SAP HANA and for the Table Producer,
config values for the REST APIs (DI Pipeline API, CouchDB, Salesforce), numpy least squares for the
scikit-learn model, a Python operator writing files for the Binary File Producer.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import no_process_left, snapgraph_cli, write_files

MODES = [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")]


def run(folder: Path, files: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    write_files(folder, files)
    proc = snapgraph_cli("run", "graph.yaml", *args, cwd=folder, timeout=timeout)
    no_process_left(folder)
    return proc


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def table_vtype(name: str, columns: dict[str, str], keys: tuple[str, ...] = ()) -> str:
    return json.dumps({"name": name, "vflow.type": "table", "keys": list(keys), "rows": {"components": [
        {c: {"vflow.type": "scalar", "vtype-ID": f"com.sap.core.{t}"}} for c, t in columns.items()]}})


# --------------------------------------------------------------------------------------
# DI-Extract-Usage: users -> runtime graphs -> data sources -> pairs, two table producers,
# an inline two-input barrier, a Graph Terminator. REST API: config; Table Producer: SQLite.
# --------------------------------------------------------------------------------------

USAGE_GRAPH = """
name: extract-usage
operators:
  users:
    group: g1
    script: users.py
    outputs: {output: "table:extract.users"}
    config: {connection_id: {connectionID: PIPELINE_API}, api_users: [[acme, alice], [acme, bob]]}
  runtimegraphs:
    group: g2
    script: runtimegraphs.py
    inputs: {input: "table:extract.users"}
    outputs: {output: "table:extract.runtime_graphs"}
  datasources:
    group: g3
    script: datasources.py
    inputs: {input: "table:extract.runtime_graphs"}
    outputs: {output1: "table:$GRAPH.graph_datasources", output2: "table:$GRAPH.graph_datasources"}
  pairs:
    group: g4
    script: pairs.py
    inputs: {input: "table:$GRAPH.graph_datasources"}
    outputs: {output: "table:$GRAPH.datasource_pairs"}
  producer1: {group: g5, script: producer.py, inputs: {inTable: "table:$GRAPH.graph_datasources"},
              outputs: {out: string}, config: {table: sources}}
  producer2: {group: g6, script: producer.py, inputs: {inTable: "table:$GRAPH.datasource_pairs"},
              outputs: {out: string}, config: {table: pairs}}
  barrier: {group: g7, script: barrier.py, inputs: {input1: string, input2: string}, outputs: {output: string}}
  stop: {component: graphTerminator, inputs: {in: string}}
connections:
  - users.output -> runtimegraphs.input
  - runtimegraphs.output -> datasources.input
  - datasources.output2 -> producer1.inTable
  - datasources.output1 -> pairs.input
  - pairs.output -> producer2.inTable
  - producer2.out -> barrier.input1
  - producer1.out -> barrier.input2
  - barrier.output -> stop.in
"""

USAGE_VTYPES = {
    "vtypes/extract.users.vtype": table_vtype("extract.users", {"tenant": "string", "username": "string"}),
    "vtypes/extract.runtime_graphs.vtype": table_vtype(
        "extract.runtime_graphs", {"user": "string", "handle": "string", "runtime": "int64", "sources": "string"},
        ("handle",)),
    "vtypes/extract.connection_http.vtype": json.dumps({
        "name": "extract.connection_http", "vflow.type": "structure", "components": [
            {f: {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}
            for f in ("host", "user", "password", "path", "tenant")]}),
    "vtypes/graph_datasources.vtype": table_vtype(
        "graph_datasources", {"user": "string", "handle": "string", "runtime": "int64", "data_source": "string"}),
    "vtypes/datasource_pairs.vtype": table_vtype(
        "datasource_pairs", {"data_source1": "string", "data_source2": "string", "count": "int64"}),
}

USAGE_SCRIPTS = {
    # prestart generator: managed connection properties, VSYSTEM_TENANT, pandas -> typed api.Table,
    # a batch header plus a custom structure header carrying the connection on to the next operators
    "users.py": """
        import os
        import pandas as pd

        def start():
            props = api.config.connection_id["connectionProperties"]
            tenant = os.environ.get("VSYSTEM_TENANT")
            if not tenant:
                api.logger.warning("VSYSTEM_TENANT is not set, using 'default'")
                tenant = "default"
            frame = pd.DataFrame(api.config.api_users, columns=["tenant", "username"])
            header = {"com.sap.headers.batch": [0, True, 1, 0, ""],
                      "extract.connection_http": [props["host"], props["user"], props["password"], "", tenant]}
            api.outputs.output.publish(api.Table(frame.values.tolist(), "extract.users"), header=header)

        api.set_prestart(start)
    """,
    # reads the header fields by position, iterates .body, orders columns by the port vtype
    "runtimegraphs.py": """
        import pandas as pd

        def on_input(msg_id, header, body):
            host, user, _pwd, _path, tenant = header["extract.connection_http"]
            users = body.get()
            if not users:
                return None
            graphs = [{"sources": f"db/{u[1]}, files/{u[1]}, files/shared", "runtime": 7 * (n + 1),
                       "handle": f"h{n}", "user": u[1]} for n, u in enumerate(users.body)]
            vtype = api.type_context.get_vtype(api.DataTypeReference("table", "extract.runtime_graphs"))
            frame = pd.DataFrame(graphs)[list(vtype.columns.keys())]
            api.logger.info(f"{tenant}@{host}: {len(frame)} graphs")
            api.outputs.output.publish(api.Table(frame.values.tolist(), "extract.runtime_graphs"),
                                       header=header.copy())

        api.set_port_callback("input", on_input)
    """,
    # get_vtype of the received table's own reference, the same table published on two ports
    "datasources.py": """
        import pandas as pd

        def on_input(msg_id, header, body):
            tbl = body.get()
            columns = list(api.type_context.get_vtype(tbl.get_type_reference()).columns.keys())
            frame = pd.DataFrame(tbl.body, columns=columns)
            out = []
            for _, row in frame.iterrows():
                for source in row["sources"].split(", "):
                    out.append([row["user"], row["handle"], int(row["runtime"]), source])
            ref = api.DataTypeReference("table", "$GRAPH.graph_datasources")
            assert list(api.type_context.get_vtype(ref).columns) == ["user", "handle", "runtime", "data_source"]
            result = api.Table(out, "$GRAPH.graph_datasources")
            batch = {"com.sap.headers.batch": [0, True, 1, 0, ""]}
            api.outputs.output1.publish(result, header=batch)
            api.outputs.output2.publish(result, header=batch)

        api.set_port_callback("input", on_input)
    """,
    "pairs.py": """
        import itertools
        import pandas as pd

        def on_input(msg_id, header, body):
            tbl = body.get()
            columns = list(api.type_context.get_vtype(tbl.get_type_reference()).columns.keys())
            frame = pd.DataFrame(tbl.body, columns=columns)
            combos = [pair for _, sources in frame.groupby("handle")["data_source"]
                      for pair in itertools.combinations(list(sources), 2)]
            counted = pd.DataFrame(combos, columns=["data_source1", "data_source2"])
            counted = counted.groupby(["data_source1", "data_source2"]).size().reset_index(name="count")
            api.outputs.output.publish(api.Table(counted.values.tolist(), "$GRAPH.datasource_pairs"),
                                       header={"com.sap.headers.batch": [0, True, 1, 0, ""]})

        api.set_port_callback("input", on_input)
    """,
    # stand-in for com.sap.database.table.producer.v3 (SQLite); reports on `out` as the producer does
    "producer.py": """
        import sqlite3

        def on_input(msg_id, header, body):
            tbl = body.get()
            columns = list(api.type_context.get_vtype(tbl.type_ref).columns)
            with sqlite3.connect("usage.db") as con:
                con.execute(f"CREATE TABLE IF NOT EXISTS {api.config.table} ({', '.join(columns)})")
                con.executemany(f"INSERT INTO {api.config.table} VALUES ({', '.join('?' * len(columns))})",
                                [list(r) for r in tbl.body])
            api.outputs.out.publish(f"{api.config.table}: {len(tbl)} rows")

        api.set_port_callback("inTable", on_input)
    """,
    # the inline barrier: two flags, publish once both ports were seen
    "barrier.py": """
        got_first = got_second = False

        def on_first(msg_id, header, body):
            global got_first
            got_first = True
            if got_first and got_second:
                api.outputs.output.publish("stop")

        def on_second(msg_id, header, body):
            global got_second
            got_second = True
            if got_first and got_second:
                api.outputs.output.publish("stop")

        api.set_port_callback("input1", on_first)
        api.set_port_callback("input2", on_second)
    """,
}


@pytest.mark.parametrize("mode", MODES)
def test_di_extract_usage_chain(tmp_path: Path, mode: list[str]) -> None:
    connections = ("PIPELINE_API:\n  connectionType: HTTP\n"
                   "  connectionProperties: {host: 'https://di.example', user: admin, password: pw}\n")
    proc = run(tmp_path, {"graph.yaml": USAGE_GRAPH, "conns.yaml": connections, **USAGE_VTYPES, **USAGE_SCRIPTS},
               "--connections", "conns.yaml", *mode)
    assert proc.returncode == 0, proc.stderr
    assert "VSYSTEM_TENANT is not set" in proc.stderr and "default@https://di.example: 2 graphs" in proc.stderr
    db = tmp_path / "usage.db"
    assert rows(db, "SELECT user, handle, runtime, data_source FROM sources ORDER BY 2, 4") == [
        ("alice", "h0", 7, "db/alice"), ("alice", "h0", 7, "files/alice"), ("alice", "h0", 7, "files/shared"),
        ("bob", "h1", 14, "db/bob"), ("bob", "h1", 14, "files/bob"), ("bob", "h1", 14, "files/shared")]
    assert len(rows(db, "SELECT * FROM pairs")) == 6


# --------------------------------------------------------------------------------------
# DI-Extract-Pipelines: a prestart publishing BytesIO(..), n=-1 with batch and file headers into a
# Binary File Producer (stand-in: a Python operator writing the files), then a Graph Terminator.
# --------------------------------------------------------------------------------------

PIPELINES_GRAPH = """
name: extract-pipelines
operators:
  extract:
    group: g1
    script: extract.py
    outputs: {output: binary}
    config: {status: "completed, dead", stopped_after: 0, stopped_before: 9999999999,
             users: {alice: [completed, dead], bob: [running], carol: [completed]}}
  writer: {group: g2, script: writer.py, inputs: {file: binary}, outputs: {file: binary}}
  stop: {component: graphTerminator}
connections:
  - extract.output -> writer.file
  - writer.file -> stop.in
"""

PIPELINES_SCRIPTS = {
    "extract.py": """
        import io
        import json

        def start():
            wanted = [s.strip() for s in api.config.status.split(",")]
            active = {u: [s for s in states if s in wanted] for u, states in api.config.users.items()}
            active = {u: s for u, s in active.items() if s}
            for i, (user, states) in enumerate(sorted(active.items())):
                header = {"com.sap.headers.batch": [i, i == len(active) - 1, len(active), 0, ""],
                          "com.sap.headers.file": ['{"connectionID": "FILES"}', f"out/{user}.jsonl", 9999999,
                                                   False, "1982-04-15T00:00:00"]}
                for state in states:
                    api.outputs.output.publish(io.BytesIO(json.dumps({"status": state}).encode()), n=-1,
                                               header=header)

        api.set_prestart(start)
    """,
    # stand-in for com.sap.file.write.v2 in Append mode: writes each body to the header's path and
    # sends a header-only file reference on `file` after the last batch
    "writer.py": """
        import os

        def on_file(msg_id, header, body):
            _conn, path, _size, _is_dir, _mod = header["com.sap.headers.file"]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "ab") as f:
                f.write(body.get_reader().read(-1) + b"\\n")
            if header["com.sap.headers.batch"][1]:
                api.outputs.file.publish(None, header={"com.sap.headers.file": header["com.sap.headers.file"]})

        api.set_port_callback("file", on_file)
    """,
}


@pytest.mark.parametrize("mode", MODES)
def test_di_extract_pipelines_binary_files_with_batch_and_file_headers(tmp_path: Path, mode: list[str]) -> None:
    proc = run(tmp_path, {"graph.yaml": PIPELINES_GRAPH, **PIPELINES_SCRIPTS}, *mode)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alice.jsonl", "carol.jsonl"]
    assert (tmp_path / "out/alice.jsonl").read_text() == '{"status": "completed"}\n{"status": "dead"}\n'


# --------------------------------------------------------------------------------------
# Examples: Operator States (EXSTATE), with SQLite standing in for SAP HANA:
# exactly-once generator (is_generator, offset state) -> UPSERT writer, and the WAL pair
# (ad-hoc one-element-list headers, epoch_complete cleaning the WAL). pickle unimported, as there.
# --------------------------------------------------------------------------------------

EXSTATE_GRAPH = """
name: exstate
operators:
  gen: {group: g1, script: gen.py, outputs: {output: table}, config: {db: source.db, batch: 3}}
  upsert: {group: g2, script: upsert.py, inputs: {input: table}}
  walgen: {group: g3, script: walgen.py, outputs: {output: table}, config: {db: source.db}}
  walwriter: {group: g4, script: walwriter.py, inputs: {input: table}, outputs: {output: string}}
  show: {group: g5, component: terminal}
connections:
  - gen.output -> upsert.input
  - walgen.output -> walwriter.input
  - walwriter.output -> show.in
"""

EXSTATE_SCRIPTS = {
    "gen.py": """
        import sqlite3

        offset = 0
        cursor = None
        api.set_initial_snapshot_info(api.InitialProcessInfo(
            is_stateful=True, outports_info={"output": api.OutportInfo(is_generator=True)}))

        def prestart():
            global cursor
            cursor = sqlite3.connect(api.config.db).cursor()

        def poll():
            global offset
            cursor.execute(f"SELECT x, y, z FROM test ORDER BY x LIMIT {api.config.batch} OFFSET {offset}")
            found = cursor.fetchall()
            offset += api.config.batch
            if not found:
                return -1      # snapgraph test: the sample polls forever (return 0); here the source ends
            api.outputs.output.publish(api.Table([list(r) for r in found]))
            return 0.1

        def serialize(epoch):
            return pickle.dumps(offset)

        def restore(epoch, state_bytes):
            global offset
            offset = pickle.loads(state_bytes)

        api.add_timer(poll)
        api.set_prestart(prestart)
        api.set_serialize_callback(serialize)
        api.set_restore_callback(restore)
    """,
    "upsert.py": """
        import sqlite3

        con = None

        def prestart():
            global con
            con = sqlite3.connect("target.db", isolation_level=None)
            con.execute("CREATE TABLE IF NOT EXISTS test (x PRIMARY KEY, y, z)")

        def on_input(msg_id, header, body):
            for row in body.get().body:
                row.append(row[0])            # the key once more, for the WHERE clause of HANA's UPSERT
                con.execute("INSERT OR REPLACE INTO test (x, y, z) SELECT ?, ?, ? WHERE ? IS NOT NULL", row)

        api.set_port_callback("input", on_input)
        api.set_prestart(prestart)
    """,
    "walgen.py": """
        import sqlite3

        offset = 0
        ident = 0
        final = False
        cursor = None
        batch_size, message_size = 2, 4
        api.set_initial_snapshot_info(api.InitialProcessInfo(
            is_stateful=True, outports_info={"output": api.OutportInfo(is_generator=True)}))

        def prestart():
            global cursor
            cursor = sqlite3.connect(api.config.db).cursor()

        def poll():
            global offset, ident, final
            cursor.execute(f"SELECT x, y, z FROM test ORDER BY x LIMIT {batch_size} OFFSET {offset}")
            found = cursor.fetchall()
            if not found or final:
                return -1
            header = {"isFinal": [len(found) < batch_size or (offset + batch_size) % message_size == 0],
                      "batchNum": [offset // batch_size], "messageNum": [offset // message_size], "ID": [ident]}
            final = len(found) < batch_size
            api.outputs.output.publish(api.Table([list(r) for r in found]), header)
            ident += 1
            offset += batch_size
            return 0.15

        def serialize(epoch):
            return pickle.dumps([offset, ident, final])

        def restore(epoch, state_bytes):
            global offset, ident, final
            offset, ident, final = pickle.loads(state_bytes)

        api.add_timer(poll)
        api.set_prestart(prestart)
        api.set_serialize_callback(serialize)
        api.set_restore_callback(restore)
    """,
    "walwriter.py": """
        import sqlite3

        con = None
        done = {}
        api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

        def prestart():
            global con
            con = sqlite3.connect("wal.db", isolation_level=None)
            con.execute("CREATE TABLE IF NOT EXISTS wal (id, batch, message)")
            con.execute("CREATE TABLE IF NOT EXISTS test2 (x, y, z)")

        def on_input(msg_id, header, body):
            data = body.get().body
            batch, message = header["batchNum"][0], header["messageNum"][0]
            if header["isFinal"][0]:
                done[message] = None
            if con.execute("SELECT 1 FROM wal WHERE batch=? AND message=?", (batch, message)).fetchall():
                return
            con.executemany("INSERT INTO test2 VALUES (?, ?, ?)", data)
            con.execute("INSERT INTO wal VALUES (?, ?, ?)", (header["ID"][0], batch, message))
            api.outputs.output.publish(str(data))

        def serialize(epoch):
            for message, seen in done.items():
                if seen is None:
                    done[message] = epoch
            return pickle.dumps(done)

        def restore(epoch, state_bytes):
            global done
            done = pickle.loads(state_bytes)

        def complete(epoch):
            for message in [m for m, e in done.items() if e == epoch]:
                con.execute("DELETE FROM wal WHERE message=?", (message,))
                del done[message]
                api.logger.info(f"removed message {message} from the WAL")

        api.set_port_callback("input", on_input)
        api.set_prestart(prestart)
        api.set_serialize_callback(serialize)
        api.set_restore_callback(restore)
        api.set_epoch_complete_callback(complete)
    """,
}


@pytest.mark.parametrize("mode", MODES)
def test_exstate_exactly_once_and_wal_pairs(tmp_path: Path, mode: list[str]) -> None:
    with sqlite3.connect(tmp_path / "source.db") as con:
        con.execute("CREATE TABLE test (x, y, z)")
        con.executemany("INSERT INTO test VALUES (?, ?, ?)", [(i, f"y{i}", i * 0.5) for i in range(11)])
    proc = run(tmp_path, {"graph.yaml": EXSTATE_GRAPH, **EXSTATE_SCRIPTS}, "--snapshot-period", "1", *mode)
    assert proc.returncode == 0, proc.stderr
    expected = [(i, f"y{i}", i * 0.5) for i in range(11)]
    assert rows(tmp_path / "target.db", "SELECT x, y, z FROM test ORDER BY x") == expected
    assert rows(tmp_path / "wal.db", "SELECT x, y, z FROM test2 ORDER BY x") == expected
    assert "removed message" in proc.stderr   # epoch_complete ran for a finished message
    assert len([line for line in proc.stdout.splitlines() if line.startswith("[[")]) == 6


# --------------------------------------------------------------------------------------
# diadmin utils: big_data_generator (custom operator importing its helper module through
# `operators.<path>`, pandas, a custom header structure, stop/log ports, a forced crash after a
# sleep, serialize/restore/epoch_complete publishing) -> device_null (table reader in parts).
# The crash-and-recover pattern needs `snapshotWhileBusy` (docs: "Snapshots during long callbacks").
# --------------------------------------------------------------------------------------

BDG_OPERATOR = json.dumps({
    "component": "com.sap.system.python3Operator.v2",
    "outports": [{"name": "output", "type": "table", "vtype-ID": "diadmin.utils.performance_test"},
                 {"name": "log", "type": "scalar", "vtype-ID": "com.sap.core.string"},
                 {"name": "stop", "type": "scalar", "vtype-ID": "com.sap.core.bool"}],
    "config": {"errorHandling": "{\"type\":\"terminate on error\"}", "script": "file://script.py",
               "max_index": "5", "num_rows": 4, "periodicity": "0.3", "crash_index": 3, "snapshot_time": 2,
               "max_time": 10}})

BDG_HELPER = """
import time
import pandas as pd

class RowMaker:
    def __init__(self, rows):
        self.rows, self.batch, self.crashed_already, self.started = rows, 0, False, time.time()
        self.data = None

    def next(self):
        self.batch += 1
        start = pd.Timestamp("2022-01-23T08:10:29")
        self.data = pd.DataFrame({"batch": [self.batch] * self.rows, "id": range(self.rows),
                                  "timestamp": start + pd.to_timedelta(range(self.rows), "s"),
                                  "string_value": [f"s{i}" for i in range(self.rows)],
                                  "float_value": [i / 2 for i in range(self.rows)]})

    def running_minutes(self):
        return (time.time() - self.started) / 60
"""

BDG_SCRIPT = """
import time
import pickle
import pandas as pd

from operators.utils.big_data_generator.data_generator import RowMaker

maker = RowMaker(4)

def tick():
    maker.next()
    values = [maker.batch, api.config.max_index, api.config.num_rows, float(api.config.periodicity)]
    header = {"diadmin.headers.utils.performance_test": values}
    if maker.batch > int(api.config.max_index) or int(api.config.max_time) < maker.running_minutes():
        api.outputs.stop.publish(True, header=header)
        return -1
    if maker.batch == api.config.crash_index and not maker.crashed_already:
        maker.crashed_already = True
        time.sleep(api.config.snapshot_time)
        raise ValueError("forced crash")
    maker.data["timestamp"] = maker.data["timestamp"].apply(pd.Timestamp.isoformat)
    api.outputs.output.publish(api.Table(maker.data.values.tolist(), "diadmin.utils.performance_test"), header=header)
    api.outputs.log.publish(f"batch {maker.batch}")
    return float(api.config.periodicity)

def serialize(epoch):
    return pickle.dumps(maker)

def restore(epoch, state_bytes):
    global maker
    maker = pickle.loads(state_bytes)
    api.logger.info(f"restored batch {maker.batch}, crashed_already={maker.crashed_already}")

def complete(epoch):
    api.outputs.log.publish(f"epoch {epoch} is completed")

api.add_timer(tick)
api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
"""

DEVNULL_SCRIPT = """
import pandas as pd

def on_input(msg_id, header, body):
    info = dict(zip(["index", "max_index", "num_rows", "periodicity"], list(header.values())[0]))
    if api.config.batch_size == -1:
        tbl = body.get()
        parts = [tbl]
    else:
        reader = body.get_reader()
        parts = []
        while True:
            tbl = reader.read(api.config.batch_size)
            if len(tbl) == 0:
                break
            parts.append(tbl)
    columns = list(api.type_context.get_vtype(parts[0].type_ref).columns.keys())
    frame = pd.concat([pd.DataFrame(p.body, columns=columns) for p in parts])
    with open("devnull.log", "a") as f:
        f.write(f"{info['index']} {len(parts)} {len(frame)} {frame['timestamp'].iloc[-1]}\\n")

api.set_port_callback("input", on_input)
"""

BDG_GRAPH = """
name: big-data
operators:
  gen: {{group: g1, component: utils.big_data_generator, config: {{snapshotWhileBusy: 1}}}}
  devnull: {{group: g2, script: devnull.py, inputs: {{input: "table:diadmin.utils.performance_test"}},
            config: {{batch_size: {batch_size}}}}}
  show: {{group: g3, component: terminal}}
  stop: {{component: graphTerminator}}
connections:
  - gen.output -> devnull.input
  - gen.log -> show.in
  - gen.stop -> stop.in
recovery: {{max_retries: 2, retry_interval: 0}}
"""

BDG_VTYPES = {
    "vtypes/diadmin.utils.performance_test.vtype": table_vtype("diadmin.utils.performance_test", {
        "batch": "int64", "id": "int64", "timestamp": "string", "string_value": "string", "float_value": "float64"},
        ("id",)),
    "vtypes/diadmin.headers.utils.performance_test.vtype": json.dumps({
        "name": "diadmin.headers.utils.performance_test", "vflow.type": "structure", "components": [
            {"index": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
            {"max_index": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
            {"num_rows": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
            {"periodicity": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.float64"}}]}),
}


@pytest.mark.parametrize("mode, batch_size", [
    pytest.param([], 3, id="processes-stream-reader"),
    pytest.param(["--in-process"], -1, id="in-process-get"),
])
def test_diadmin_big_data_generator_crash_recovery_into_device_null(tmp_path: Path, mode: list[str],
                                                                   batch_size: int) -> None:
    op = "ops/utils/big_data_generator/"
    files = {"graph.yaml": BDG_GRAPH.format(batch_size=batch_size), **BDG_VTYPES, "devnull.py": DEVNULL_SCRIPT,
             op + "operator.json": BDG_OPERATOR, op + "script.py": BDG_SCRIPT, op + "data_generator.py": BDG_HELPER}
    proc = run(tmp_path, files, "--operators", "ops", "--snapshot-period", "1", *mode, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "forced crash" in proc.stderr and "crashed_already=True" in proc.stderr
    received = (tmp_path / "devnull.log").read_text().split("\n")[:-1]
    parts = 1 if batch_size == -1 else 2
    # batch 3 is the one the crash consumed, as in the sample; the timestamps arrive as ISO strings
    assert received == [f"{b} {parts} 4 2022-01-23T08:10:32" for b in (1, 2, 4, 5)]
    assert "is completed" in proc.stdout


# --------------------------------------------------------------------------------------
# diadmin couchdb get_data -> json2table v3 (outport type_ref, column order from the port vtype,
# an untyped api.Table on a typed port) and salesforce opportunity_details (an untyped table on a
# dynamic port). CouchDB and Salesforce: config values.
# --------------------------------------------------------------------------------------

JSON_GRAPH = """
name: couch
operators:
  getdata:
    group: g1
    script: getdata.py
    outputs: {json: string}
    config:
      couchdb: {connectionID: COUCH}
      view: _design/v/_view/all
      startkey: a
      endkey: z
      content: '{"rows": [{"value": {"name": "n1", "qty": 2}}, {"value": {"qty": 5, "name": "n2", "extra": 1}}]}'
  json2table: {group: g2, script: json2table.py, inputs: {JSON: string}, outputs: {table: "table:demo.items"}}
  opportunity: {group: g3, script: opportunity.py, inputs: {input: "table:demo.items"}, outputs: {output: table}}
  check: {group: g4, script: check.py, inputs: {input: table}}
connections:
  - getdata.json -> json2table.JSON
  - json2table.table -> opportunity.input
  - opportunity.output -> check.input
"""

JSON_SCRIPTS = {
    "vtypes/demo.items.vtype": table_vtype("demo.items", {"name": "string", "qty": "int64"}),
    "vtypes/demo.couch.vtype": json.dumps({"name": "demo.couch", "vflow.type": "structure", "components": [
        {f: {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}
        for f in ("host", "db", "view", "start", "end", "a", "b")]}),
    "getdata.py": """
        def start():
            props = api.config.couchdb["connectionProperties"]
            header = {"demo.couch": api.Record([props["host"], props["path"], api.config.view, api.config.startkey,
                                                api.config.endkey, 0, 0])}
            api.logger.info(f"header sent: {header}")
            api.outputs.json.publish(api.config.content, header=header)

        api.set_prestart(start)
    """,
    "json2table.py": """
        import json
        import pandas as pd

        def on_input(msg_id, header, body):
            frame = pd.DataFrame([r["value"] for r in json.loads(body.get())["rows"]])
            for c in frame.select_dtypes(include=["float64", "int64"]):
                frame[c] = frame[c].fillna(0)
            ref = api.DataTypeReference(api.outputs.table.type_ref.type_, api.outputs.table.type_ref.type_id)
            names = list(api.type_context.get_vtype(ref).columns.keys())
            api.outputs.table.publish(api.Table(frame[names].values.tolist()), header=header)

        api.set_port_callback("JSON", on_input)
    """,
    "opportunity.py": """
        def on_input(msg_id, header, body):
            for name, qty in body.get():
                record = {"prid": f"P-{name}", "opportunityName": name.upper(), "amount": qty * 10}
                api.outputs.output.publish(api.Table([list(record.values())]), header=header)

        api.set_port_callback("input", on_input)
    """,
    "check.py": """
        def on_input(msg_id, header, body):
            tbl = body.get()
            vtype = api.type_context.get_vtype(tbl.type_ref)
            with open("check.log", "a") as f:
                f.write(f"{list(header)} {tbl.type_ref.type_} {list(vtype.columns)} {tbl.body}\\n")

        api.set_port_callback("input", on_input)
    """,
}


@pytest.mark.parametrize("mode", MODES)
def test_diadmin_couchdb_json2table_and_salesforce_tables(tmp_path: Path, mode: list[str]) -> None:
    conns = ("COUCH:\n  connectionType: HTTP\n"
             "  connectionProperties: {host: 'http://couch', path: shop, user: u, password: p}\n")
    proc = run(tmp_path, {"graph.yaml": JSON_GRAPH, "conns.yaml": conns, **JSON_SCRIPTS},
               "--connections", "conns.yaml", *mode)
    assert proc.returncode == 0, proc.stderr
    assert sorted((tmp_path / "check.log").read_text().splitlines()) == [
        "['demo.couch'] table ['col0', 'col1', 'col2'] [['P-n1', 'N1', 20]]",
        "['demo.couch'] table ['col0', 'col1', 'col2'] [['P-n2', 'N2', 50]]"]


# --------------------------------------------------------------------------------------
# diadmin ml train / predict_price: a table stream in batches (isLast False -> return 1), the
# model pickled to a binary port with publish(BytesIO, -1, header), is_outport_connected, two
# inputs in either order. scikit-learn's LinearRegression: numpy least squares.
# --------------------------------------------------------------------------------------

ML_GRAPH = """
name: ml
operators:
  data: {group: g1, script: data.py, outputs: {train: "table:demo.cars", score: "table:demo.cars"}}
  train: {group: g2, script: train.py, inputs: {input: "table:demo.cars"}, outputs: {model: binary, logging: string}}
  predict: {group: g3, script: predict.py, inputs: {model: binary, data: "table:demo.cars"},
            outputs: {prediction: "table:demo.cars"}}
  show: {group: g4, component: terminal}
connections:
  - data.train -> train.input
  - data.score -> predict.data
  - train.model -> predict.model
  - predict.prediction -> show.in
"""

ML_SCRIPTS = {
    "vtypes/demo.cars.vtype": table_vtype("demo.cars", {"YEAR": "int64", "HP": "int64", "PRICE": "float64"}),
    "data.py": """
        def start():
            cars = [[2000 + i, 50 + 7 * i * i, 1000.0 + 100 * i + 5 * (50 + 7 * i * i)] for i in range(6)]
            for n, part in enumerate((cars[:3], cars[3:])):
                api.outputs.train.publish(api.Table(part), header={"com.sap.headers.batch": [n, n == 1, 2, 3, "rows"]})
            api.outputs.score.publish(api.Table([[2010, 150, 0.0], [2020, 200, 0.0]]))

        api.set_prestart(start)
    """,
    "train.py": """
        import io
        import pickle
        import numpy as np
        import pandas as pd

        frame = pd.DataFrame()

        def log(text):
            if api.is_outport_connected["logging"]:
                api.outputs.logging.publish(text, header=None)

        def on_input(msg_id, header, data):
            global frame
            tbl = data.get()
            names = list(api.type_context.get_vtype(tbl.type_ref).columns.keys())
            part = pd.DataFrame(tbl, columns=names)
            frame = part if frame.empty else pd.concat([frame, part])
            log("never seen: logging is not connected")
            if "com.sap.headers.batch" in header and header["com.sap.headers.batch"][1] == False:
                return 1
            x = np.column_stack([frame[["YEAR", "HP"]].values, np.ones(len(frame))]).astype(float)
            coefficients = np.linalg.lstsq(x, frame["PRICE"].values, rcond=None)[0]
            stream = io.BytesIO(pickle.dumps(coefficients))
            stream.seek(0)
            api.outputs.model.publish(stream, -1, header)

        api.set_port_callback("input", on_input)
    """,
    "predict.py": """
        import io
        import pickle
        import numpy as np
        import pandas as pd

        frame = pd.DataFrame()
        model = None
        loaded = False
        data_header = None

        def on_model(msg_id, header, data):
            global model
            model = pickle.load(io.BytesIO(data.get_reader().read(-1)))
            if loaded:
                process()

        def on_input(msg_id, header, data):
            global frame, loaded, data_header
            tbl = data.get()
            frame = pd.DataFrame(tbl, columns=list(api.type_context.get_vtype(tbl.type_ref).columns.keys()))
            data_header = header
            loaded = True
            if model is not None:
                process()

        def process():
            x = np.column_stack([frame[["YEAR", "HP"]].values, np.ones(len(frame))]).astype(float)
            frame["PRICE"] = np.round(x @ model, 3)
            # snapgraph test: the sample's frame.values.tolist() turns the int columns into floats
            # (2010.0), which the int64 column check refuses; astype(object) keeps them int
            api.outputs.prediction.publish(api.Table(frame.astype(object).values.tolist(), "demo.cars"),
                                           header=data_header)

        api.set_port_callback("model", on_model)
        api.set_port_callback("data", on_input)
    """,
}


@pytest.mark.parametrize("mode", MODES)
def test_diadmin_ml_train_and_predict(tmp_path: Path, mode: list[str]) -> None:
    proc = run(tmp_path, {"graph.yaml": ML_GRAPH, **ML_SCRIPTS}, *mode)
    assert proc.returncode == 0, proc.stderr
    # PRICE = 1000 + 100 (YEAR - 2000) + 5 HP exactly, so the fit is exact
    assert "[2010, 150, 2750.0]\n[2020, 200, 4000.0]" in proc.stdout, proc.stdout
