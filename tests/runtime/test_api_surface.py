"""End-to-end tests of the Gen2 ``api`` surface (gen2-api.md §8): real graphs run by the engine.

Scripts report what they saw through ``sg_rec``, a tiny module the ``rec``
fixture puts into ``sys.modules`` (graphs run in this process); everything
else -- loading, dispatching, channels, streams -- is the real engine.
"""

from __future__ import annotations

import json
import re

import pytest

from snapgraph.api.header import Header
from snapgraph.api.table import Record, Table
from snapgraph.snapshot.store import COMPLETED, FAILED
from snapgraph.testing import Recorder


@pytest.fixture
def rec():
    """``sg_rec.add(key, value)`` from scripts; the test reads ``rec[key]`` (a list)."""
    with Recorder("sg_rec") as recorder:
        yield recorder.data


def assert_completed(run) -> None:
    assert run.result.status == COMPLETED, (run.result.reason, run.result.failure and run.result.failure.traceback)


# --------------------------------------------------------------------------------------
# api.config, ${} parameters, managed connections
# --------------------------------------------------------------------------------------

CONFIG_GRAPH = """
name: config-demo
parameters: {rows: 3, label: hello, ratio: 0.5}
operators:
  op:
    script: op.py
    config:
      rows: "${rows}"
      text: "n=${rows} ${label}"
      ratio: "${ratio}"
      flag: true
      obj: {a: 1, b: [1, 2]}
      errorHandling: terminate on error
"""

CONFIG_SCRIPT = """
import sg_rec
sg_rec.add("values", (api.config.rows, api.config.text, api.config.ratio, api.config.flag, api.config.obj))
sg_rec.add("script_hidden", "script" in api.config)
try:
    api.config.missing
except AttributeError as exc:
    sg_rec.add("missing", str(exc))
"""


def test_config_attributes_and_parameter_defaults(run_yaml, rec):
    run = run_yaml(CONFIG_GRAPH, {"op.py": CONFIG_SCRIPT})
    assert_completed(run)
    assert rec["values"] == [(3, "n=3 hello", 0.5, True, {"a": 1, "b": [1, 2]})]
    assert rec["script_hidden"] == [False]
    assert "missing" in rec["missing"][0] and "'op'" in rec["missing"][0]


def test_config_parameters_from_the_command_line_are_typed(run_yaml, rec):
    run = run_yaml(CONFIG_GRAPH, {"op.py": CONFIG_SCRIPT}, params={"rows": "7", "label": "bye"})
    assert_completed(run)
    assert rec["values"][0][:3] == (7, "n=7 bye", 0.5)


@pytest.mark.parametrize("suffix,text", [
    ("yaml", "PG:\n  connectionType: POSTGRES\n  connectionProperties: {host: db.local, port: 5432, user: u}\n"),
    ("json", json.dumps({"PG": {"connectionType": "POSTGRES",
                                "connectionProperties": {"host": "db.local", "port": 5432, "user": "u"}}})),
])
def test_managed_connection_is_resolved_from_a_connections_file(run_yaml, rec, tmp_path, suffix, text):
    conn_file = tmp_path / f"connections.{suffix}"
    conn_file.write_text(text)
    graph = """
    operators:
      op:
        script: op.py
        config:
          connection: {configurationType: Connection Management, connectionID: PG}
    """
    script = """
    import sg_rec
    sg_rec.add("conn", api.config.connection)
    """
    run = run_yaml(graph, {"op.py": script}, connections=conn_file)
    assert_completed(run)
    conn = rec["conn"][0]
    assert conn["connectionID"] == "PG"
    assert conn["connectionType"] == "POSTGRES"
    assert conn["connectionProperties"] == {"host": "db.local", "port": 5432, "user": "u"}
    assert "configurationType" not in conn


# --------------------------------------------------------------------------------------
# api.logger
# --------------------------------------------------------------------------------------

def test_logger_writes_to_stderr_prefixed_with_the_process_name(run_yaml, capfd):
    graph = """
    operators:
      talker:
        script: talker.py
    """
    script = """
    def start():
        api.logger.info("info-text")
        api.logger.debug("debug-text")
        api.logger.warn("warn-text")
        api.logger.warning("warning-text %d", 42)
        api.logger.error("error-text")
        api.app_log_info("FA1001", "app-info", "some details")

    api.set_prestart(start)
    """
    run = run_yaml(graph, {"talker.py": script})
    assert_completed(run)
    err = capfd.readouterr().err
    assert "[talker] INFO: info-text" in err
    assert "[talker] WARNING: warn-text" in err
    assert "[talker] WARNING: warning-text 42" in err
    assert "[talker] ERROR: error-text" in err
    assert "[talker] INFO: [FA1001] app-info (some details)" in err
    assert "debug-text" not in err  # debug needs --verbose


# --------------------------------------------------------------------------------------
# lifecycle: script body, prestart, timers, port callbacks, shutdown
# --------------------------------------------------------------------------------------

LIFECYCLE_GRAPH = """
operators:
  gen:
    script: gen.py
    outputs: {out: int64}
  sink:
    script: sink.py
    inputs: {in: int64}
connections:
  - gen.out -> sink.in
"""


def test_lifecycle_order_body_prestart_timer_port_shutdown(run_yaml, rec):
    gen = """
    import sg_rec
    sg_rec.add("gen", "body")

    def prestart():
        sg_rec.add("gen", "prestart")
        api.outputs.out.publish(1)

    def tick():
        sg_rec.add("gen", "timer")
        api.outputs.out.publish(2)
        return -1

    def shutdown():
        sg_rec.add("gen", "shutdown")

    api.add_timer(tick)
    api.set_shutdown(shutdown)
    api.set_prestart(prestart)
    """
    sink = """
    import sg_rec
    sg_rec.add("sink", "body")

    def on_input(msg_id, header, body):
        sg_rec.add("sink", body.get())

    api.set_port_callback("in", on_input)
    api.set_prestart(lambda: sg_rec.add("sink", "prestart"))
    api.set_shutdown(lambda: sg_rec.add("sink", "shutdown"))
    """
    run = run_yaml(LIFECYCLE_GRAPH, {"gen.py": gen, "sink.py": sink})
    assert_completed(run)
    assert rec["gen"] == ["body", "prestart", "timer", "shutdown"]
    assert rec["sink"] == ["body", "prestart", 1, 2, "shutdown"]


def test_timer_return_values_zero_positive_negative_none(run_yaml, rec, capfd):
    graph = """
    operators:
      clock:
        script: clock.py
    """
    script = """
    import sg_rec
    calls = {"asap": 0, "positive": 0, "none": 0}

    def asap():
        calls["asap"] += 1
        sg_rec.add("asap", calls["asap"])
        return 0 if calls["asap"] < 5 else -1      # 0: again as soon as possible; < 0: stop

    def positive():
        calls["positive"] += 1
        sg_rec.add("positive", calls["positive"])
        return 0.01 if calls["positive"] < 3 else -0.5

    def returns_none():
        calls["none"] += 1
        sg_rec.add("none", calls["none"])       # no return: the timer stops (our decision)

    api.add_timer(asap)
    api.add_timer(positive)
    api.add_timer(returns_none)
    """
    run = run_yaml(graph, {"clock.py": script})
    assert_completed(run)  # every timer stopped, so the graph is done
    assert rec["asap"] == [1, 2, 3, 4, 5]
    assert rec["positive"] == [1, 2, 3]
    assert rec["none"] == [1]
    err = capfd.readouterr().err
    assert "[clock] WARNING: timer callback returns_none returned None; the timer stops" in err


def test_timer_with_zero_interval_does_not_starve_port_callbacks(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: int64}
      busy:
        script: busy.py
        inputs: {in: int64}
    connections:
      - gen.out -> busy.in
    """
    gen = """
    def start():
        for i in range(20):
            api.outputs.out.publish(i)
    api.set_prestart(start)
    """
    busy = """
    import sg_rec
    received = []

    def spin():
        sg_rec.add("ticks")
        return -1 if len(received) == 20 else 0

    def on_input(msg_id, header, body):
        received.append(body.get())
        sg_rec.add("got", body.get())

    api.add_timer(spin)
    api.set_port_callback("in", on_input)
    """
    # stop_after only guards against a hang; a starved input would end the run as "stopped".
    run = run_yaml(graph, {"gen.py": gen, "busy.py": busy}, stop_after=30)
    assert_completed(run)
    assert rec["got"] == list(range(20))
    assert len(rec["ticks"]) >= 2


def test_shutdown_runs_once_and_may_not_publish(run_yaml, rec):
    gen = """
    import sg_rec

    def prestart():
        api.outputs.out.publish(5)

    def shutdown():
        sg_rec.add("shutdown", api.graph_name)
        try:
            api.outputs.out.publish(6)
        except RuntimeError as exc:
            sg_rec.add("refused", str(exc))

    api.set_prestart(prestart)
    api.set_shutdown(shutdown)
    """
    sink = """
    import sg_rec
    api.set_port_callback("in", lambda m, h, b: sg_rec.add("got", b.get()))
    """
    run = run_yaml(LIFECYCLE_GRAPH, {"gen.py": gen, "sink.py": sink})
    assert_completed(run)
    assert rec["got"] == [5]
    assert len(rec["shutdown"]) == 1
    assert "not allowed during shutdown" in rec["refused"][0]


def test_publish_at_script_top_level_is_an_error_that_says_so(run_yaml, rec):
    gen = """
    import sg_rec
    try:
        api.outputs.out.publish(1)
    except RuntimeError as exc:
        sg_rec.add("caught", str(exc))
    api.outputs.out.publish(2)   # uncaught: the script fails to load
    """
    sink = """
    api.set_port_callback("in", lambda m, h, b: None)
    """
    run = run_yaml(LIFECYCLE_GRAPH, {"gen.py": gen, "sink.py": sink})
    assert run.result.status == FAILED
    message = rec["caught"][0]
    assert "'gen'" in message and "top level" in message and "publish" in message
    failure = run.result.failure
    assert failure.process == "gen" and failure.phase == "script body"
    assert "top level" in failure.message
    assert "gen.py" in failure.traceback and "line 6" in failure.traceback


def test_with_writer_at_top_level_is_refused_too(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: table}
    """
    script = """
    import sg_rec
    try:
        api.outputs.out.with_writer()
    except RuntimeError as exc:
        sg_rec.add("caught", str(exc))
    """
    run = run_yaml(graph, {"gen.py": script})
    assert_completed(run)
    assert "with_writer" in rec["caught"][0] and "top level" in rec["caught"][0]


def test_gen1_calls_raise_errors_naming_the_gen2_replacement(run_yaml, rec):
    graph = """
    operators:
      old:
        script: old.py
        inputs: {a: int64, b: int64}
    """
    script = """
    import sg_rec
    # Spelled so that validation cannot see them (it refuses the plain spellings before the run):
    # the same messages at run time.
    period, ports = "1s", ["a", "b"]
    for call in (lambda: getattr(api, "send")("out", 1), lambda: getattr(api, "add_generator")(print),
                 lambda: api.add_timer(period, print), lambda: api.set_port_callback(ports, print)):
        try:
            call()
        except (AttributeError, TypeError) as exc:
            sg_rec.add("errors", str(exc))
    """
    run = run_yaml(graph, {"old.py": script})
    assert_completed(run)
    errors = rec["errors"]
    assert len(errors) == 4
    assert "publish" in errors[0]
    assert "set_prestart" in errors[1]
    assert "api.add_timer(callback)" in errors[2]
    assert "one port name" in errors[3]


# --------------------------------------------------------------------------------------
# publish variants, msg ids, response callbacks
# --------------------------------------------------------------------------------------

PUBLISH_GRAPH = """
operators:
  src:
    script: src.py
    outputs:
      tbl: table
      rows: table
      i: int64
      s: string
      f: float64
      b: bool
      st: structure
      nothing: none
      bin: binary
  dst:
    script: dst.py
    inputs:
      tbl: table
      rows: table
      i: int64
      s: string
      f: float64
      b: bool
      st: structure
      nothing: any
      bin: binary
connections:
  - src.tbl -> dst.tbl
  - src.rows -> dst.rows
  - src.i -> dst.i
  - src.s -> dst.s
  - src.f -> dst.f
  - src.b -> dst.b
  - src.st -> dst.st
  - src.nothing -> dst.nothing
  - src.bin -> dst.bin
"""

PUBLISH_SRC = """
import io
import sg_rec

def start():
    ids = sg_rec.add
    ids("sent", ("tbl", api.outputs.tbl.publish(api.Table([[1, "a"], [2, "b"]]))))
    ids("sent", ("rows", api.outputs.rows.publish([[3, "c"]])))
    ids("sent", ("i", api.outputs.i.publish(42)))
    ids("sent", ("s", api.outputs.s.publish("text", {"my.header": ["v1", 2]})))
    ids("sent", ("f", api.outputs.f.publish(2.5)))
    ids("sent", ("b", api.outputs.b.publish(True)))
    ids("sent", ("st", api.outputs.st.publish(api.Record([7, "seven"]))))
    ids("sent", ("nothing", api.outputs.nothing.publish(None, header={"com.sap.headers.file": api.Record(
        ["conn", "dir/file.csv", 10, False, "2024-01-01T00:00:00"])})))
    ids("sent", ("bin", api.outputs.bin.publish(io.BytesIO(b"0123456789"), 4)))
    ids("sent", ("bin", api.outputs.bin.publish(io.BytesIO(b"all of it"), n=-1)))
    ids("sent", ("bin", api.outputs.bin.publish(io.BytesIO(b"xy"), 10)))
    ids("sent", ("bin", api.outputs.bin.publish(b"raw bytes")))

api.set_prestart(start)
"""

PUBLISH_DST = """
import sg_rec

def make(port):
    def on_input(msg_id, header, body):
        sg_rec.add("got", {
            "port": port, "msg_id": msg_id, "header": header.copy(),
            "value": body.get_reader().read(-1) if port == "bin" else body.get(),
            "base": body.get_base_type(), "type_id": body.get_type_id(), "stream": body.is_stream(),
        })
    return on_input

for port in api.get_inport_names():
    api.set_port_callback(port, make(port))
"""


def test_publish_variants_and_input_body_accessors(run_yaml, rec):
    run = run_yaml(PUBLISH_GRAPH, {"src.py": PUBLISH_SRC, "dst.py": PUBLISH_DST})
    assert_completed(run)
    got = rec["got"]
    by_port: dict[str, list] = {}
    for item in got:
        by_port.setdefault(item["port"], []).append(item)
    tbl = by_port["tbl"][0]
    assert isinstance(tbl["value"], Table) and tbl["value"].body == [[1, "a"], [2, "b"]]
    assert (tbl["base"], tbl["stream"]) == ("table", True)
    rows = by_port["rows"][0]
    assert isinstance(rows["value"], Table) and rows["value"].body == [[3, "c"]]
    assert by_port["i"][0]["value"] == 42
    assert (by_port["i"][0]["base"], by_port["i"][0]["type_id"], by_port["i"][0]["stream"]) == (
        "scalar", "com.sap.core.int64", False)
    assert by_port["s"][0]["value"] == "text"
    assert by_port["s"][0]["header"] == {"my.header": ["v1", 2]}
    assert by_port["f"][0]["value"] == 2.5 and by_port["b"][0]["value"] is True
    st = by_port["st"][0]
    assert isinstance(st["value"], Record) and list(st["value"]) == [7, "seven"]
    assert st["base"] == "structure"
    nothing = by_port["nothing"][0]
    assert nothing["value"] is None and nothing["base"] == "none"
    assert nothing["header"]["com.sap.headers.file"][1] == "dir/file.csv"
    bins = [item["value"] for item in by_port["bin"]]
    assert bins == [b"0123", b"all of it", b"xy", b"raw bytes"]
    assert all(item["type_id"] == "com.sap.core.binary" and item["stream"] for item in by_port["bin"])
    # msg ids: 12 bytes, the receiver sees the id publish returned, unique per port
    sent = rec["sent"]
    assert all(isinstance(mid, bytes) and len(mid) == 12 for _, mid in sent)
    sent_bin = [mid for port, mid in sent if port == "bin"]
    assert len(set(sent_bin)) == 4
    assert [item["msg_id"] for item in by_port["bin"]] == sent_bin
    assert by_port["i"][0]["msg_id"] == dict(sent)["i"]


def test_publish_checks_the_port_type(run_yaml, rec):
    graph = """
    operators:
      src:
        script: src.py
        outputs: {s: string, t: table, st: structure, n: none}
    """
    script = """
    import sg_rec

    def start():
        for call in (lambda: api.outputs.s.publish(5), lambda: api.outputs.t.publish("x"),
                     lambda: api.outputs.st.publish(3), lambda: api.outputs.n.publish(1)):
            try:
                call()
            except TypeError as exc:
                sg_rec.add("errors", str(exc))
        try:
            api.outputs.nope.publish(1)
        except AttributeError as exc:
            sg_rec.add("unknown", str(exc))
    api.set_prestart(start)
    """
    run = run_yaml(graph, {"src.py": script})
    assert_completed(run)
    errors = rec["errors"]
    assert len(errors) == 4
    assert "port 's'" in errors[0] and "expected a str" in errors[0]
    assert "port 't'" in errors[1]
    assert "port 'st'" in errors[2]
    assert "port 'n'" in errors[3]
    assert "'nope'" in rec["unknown"][0] and "s, t, st, n" in rec["unknown"][0]


def test_response_callbacks_run_on_the_senders_thread_after_processing(run_yaml, rec):
    gen = """
    import threading
    import sg_rec
    main = {}

    def explicit(msg_id, ex):
        sg_rec.add("explicit", (msg_id, ex, threading.get_ident() == main["ident"],
                                list(sg_rec.data.get("processed", []))))

    def default(msg_id, ex):
        sg_rec.add("default", (msg_id, ex))

    def prestart():
        main["ident"] = threading.get_ident()
        sg_rec.add("ids", api.outputs.out.publish(1, response_callback=explicit))
        sg_rec.add("ids", api.outputs.out.publish(2))
        sg_rec.add("ids", api.outputs.out.publish(3, None, explicit))

    api.set_response_callback("out", default)
    api.set_prestart(prestart)
    """
    sink = """
    import sg_rec
    api.set_port_callback("in", lambda m, h, b: sg_rec.add("processed", b.get()))
    """
    run = run_yaml(LIFECYCLE_GRAPH, {"gen.py": gen, "sink.py": sink})
    assert_completed(run)
    ids = rec["ids"]
    explicit = {mid: (ex, same_thread, processed) for mid, ex, same_thread, processed in rec["explicit"]}
    assert set(explicit) == {ids[0], ids[2]}
    assert all(ex is None and same for ex, same, _ in explicit.values())
    assert 1 in explicit[ids[0]][2]  # called after the receiver processed message 1
    assert 3 in explicit[ids[2]][2]
    assert rec["default"] == [(ids[1], None)]


# --------------------------------------------------------------------------------------
# streams: with_writer, TableReader / BinaryReader
# --------------------------------------------------------------------------------------

ROWS_VTYPE = json.dumps({
    "name": "demo.rows", "vflow.type": "table", "keys": ["id"],
    "rows": {"components": [{"id": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
                            {"name": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}]},
})
ROWS_VTYPE_FILE = "vtypes/tables/demo/rows/table.vtype"

STREAM_GRAPH = """
operators:
  src:
    script: src.py
    outputs: {tbl: "table:demo.rows", bin: binary, whole: "table:demo.rows"}
  dst:
    script: dst.py
    inputs: {tbl: "table:demo.rows", bin: binary, whole: "table:demo.rows"}
connections:
  - src.tbl -> dst.tbl
  - src.bin -> dst.bin
  - src.whole -> dst.whole
"""


def test_table_and_binary_writers_with_chunked_readers(run_yaml, rec):
    src = """
    import sg_rec

    def start():
        msg_id, writer = api.outputs.tbl.with_writer({"com.sap.headers.batch": [0, True, 1, 10, "rows"]})
        try:
            sg_rec.add("written", writer.write([[i, f"r{i}"] for i in range(3)]))
            sg_rec.add("written", writer.write(api.Table([[i, f"r{i}"] for i in range(3, 7)])))
            sg_rec.add("written", writer.write([[i, f"r{i}"] for i in range(7, 10)]))
        finally:
            writer.close()
        sg_rec.add("tbl_id", msg_id)
        bin_id, bwriter = api.outputs.bin.with_writer()
        try:
            sg_rec.add("written", bwriter.write(b"hello "))
            bwriter.flush()
            sg_rec.add("written", bwriter.write(b"world"))
        finally:
            bwriter.close()
        # a whole table read through a reader on the other side
        api.outputs.whole.publish(api.Table([[i, str(i)] for i in range(5)]))

    api.set_prestart(start)
    """
    dst = """
    import sg_rec

    def on_tbl(msg_id, header, body):
        sg_rec.add("tbl_meta", (msg_id, body.is_stream(), body.get_base_type(), header["com.sap.headers.batch"][1]))
        reader = body.get_reader()
        while True:
            part = reader.read(4)
            sg_rec.add("tbl_parts", [list(row) for row in part])
            if len(part) == 0:      # end of stream: an empty table
                break

    def on_bin(msg_id, header, body):
        reader = body.get_reader()
        while True:
            data = reader.read(3)
            sg_rec.add("bin_parts", data)
            if not data:            # end of stream: 0 bytes
                break

    def on_whole(msg_id, header, body):
        reader = body.get_reader()
        sg_rec.add("whole", [len(reader.read(2)), len(reader.read(2)), len(reader.read(2)), len(reader.read(2))])

    api.set_port_callback("tbl", on_tbl)
    api.set_port_callback("bin", on_bin)
    api.set_port_callback("whole", on_whole)
    """
    run = run_yaml(STREAM_GRAPH, {"src.py": src, "dst.py": dst, ROWS_VTYPE_FILE: ROWS_VTYPE})
    assert_completed(run)
    assert rec["written"] == [3, 4, 3, 6, 5]
    assert rec["tbl_meta"] == [(rec["tbl_id"][0], True, "table", True)]
    parts = rec["tbl_parts"]
    assert [len(p) for p in parts] == [4, 4, 2, 0]
    assert sum(parts, []) == [[i, f"r{i}"] for i in range(10)]
    assert rec["bin_parts"] == [b"hel", b"lo ", b"wor", b"ld", b""]
    assert rec["whole"] == [[2, 2, 1, 0]]


def test_streams_can_be_read_whole_with_get(run_yaml, rec):
    src = """
    def start():
        _, writer = api.outputs.tbl.with_writer()
        for i in range(50):
            writer.write([[i, str(i)]])
        writer.close()
        _, bwriter = api.outputs.bin.with_writer()
        for i in range(40):
            bwriter.write(bytes([65 + i % 26]))
        bwriter.close()
        api.outputs.whole.publish([[1, "a"], [2, "b"]])
    api.set_prestart(start)
    """
    dst = """
    import sg_rec
    api.set_port_callback("tbl", lambda m, h, b: sg_rec.add("tbl", b.get()))
    api.set_port_callback("bin", lambda m, h, b: sg_rec.add("bin", b.get_reader().read(-1)))
    api.set_port_callback("whole", lambda m, h, b: sg_rec.add("whole", b.get_reader().read(-1)))
    """
    run = run_yaml(STREAM_GRAPH, {"src.py": src, "dst.py": dst, ROWS_VTYPE_FILE: ROWS_VTYPE})
    assert_completed(run)
    table = rec["tbl"][0]
    assert isinstance(table, Table) and table.body == [[i, str(i)] for i in range(50)]
    assert rec["bin"] == [bytes(65 + i % 26 for i in range(40))]
    assert rec["whole"][0].body == [[1, "a"], [2, "b"]]


def test_writers_reject_writes_after_close_and_need_table_or_binary_ports(run_yaml, rec):
    graph = """
    operators:
      src:
        script: src.py
        outputs: {tbl: "table:demo.rows", s: string}
    """
    script = """
    import sg_rec

    def start():
        _, writer = api.outputs.tbl.with_writer()
        writer.close()
        try:
            writer.write([[1]])
        except ValueError as exc:
            sg_rec.add("closed", str(exc))
        try:
            api.outputs.s.with_writer()
        except TypeError as exc:
            sg_rec.add("scalar", str(exc))
    api.set_prestart(start)
    """
    run = run_yaml(graph, {"src.py": script, ROWS_VTYPE_FILE: ROWS_VTYPE})
    assert_completed(run)
    assert "closed" in rec["closed"][0]
    assert "table or binary port" in rec["scalar"][0]


def test_get_reader_on_a_string_body_raises(run_yaml, rec):
    gen = """
    api.set_prestart(lambda: api.outputs.out.publish(1))
    """
    sink = """
    import sg_rec

    def on_input(msg_id, header, body):
        try:
            body.get_reader()
        except TypeError as exc:
            sg_rec.add("err", str(exc))
    api.set_port_callback("in", on_input)
    """
    run = run_yaml(LIFECYCLE_GRAPH, {"gen.py": gen, "sink.py": sink})
    assert_completed(run)
    assert "use body.get()" in rec["err"][0]


# --------------------------------------------------------------------------------------
# data model inside scripts: Table, Record, DataTypeReference, type_context, pandas
# --------------------------------------------------------------------------------------

def test_table_record_and_type_context_inside_a_script(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    import sg_rec

    def start():
        t = api.Table([[1, "a", 1.5], [2, "b", 2.5], [3, "c", 3.5]])
        sg_rec.add("table", (t.body, t.type_ref, len(t), [row for row in t], t[1], t[1:].body,
                             type(t[:1]).__name__, t.is_typed(), t.get_type_reference()))
        ref = t.infer_dynamic_type(colnames=["id", "name"])
        vt = api.type_context.get_vtype(ref)
        sg_rec.add("inferred", (t.is_typed(), ref.type_, list(vt.columns), [c.type_id for c in vt.columns.values()],
                                vt.scope))
        typed = api.Table([[True, 7]], infer_type=True, colnames=["flag"])
        vt2 = api.type_context.get_vtype(typed.get_type_reference())
        sg_rec.add("typed", (typed.type_ref == typed.get_type_reference(), list(vt2.columns)))
        r = api.Record([1, "x", api.Table([[1]])])
        sg_rec.add("record", (len(r), r[0], r[1], list(r)[:2], r == [1, "x", r[2]]))
        int64 = api.DataTypeReference("scalar", "com.sap.core.int64")
        sg_rec.add("ref", (int64.type_, int64.type_id))
        new = api.type_context.create_new_table(
            {"id": int64, "name": api.DataTypeReference("scalar", "com.sap.core.string")}, keys=["id"])
        vt3 = api.type_context.get_vtype(new)
        sg_rec.add("created", (new.type_, list(vt3.columns), vt3.keys, vt3.scope))
        schema = api.type_context.infer_schema_from_row([1, "x", 2.0, True], colnames=["a", "b"])
        sg_rec.add("schema", (schema["vflow.type"], schema["row"]["components"]))
        schema["name"] = "my_dyn_table"
        name = api.type_context.register_schema(schema, "dynamic")
        vt4 = api.type_context.get_vtype(api.DataTypeReference("table", name))
        sg_rec.add("registered", (name, list(vt4.columns), vt4.scope))
        scalar = api.type_context.get_vtype(int64)
        sg_rec.add("scalar", (scalar.template, scalar.name))

    api.set_prestart(start)
    """
    run = run_yaml(graph, {"op.py": script})
    assert_completed(run)
    body, type_ref, length, rows, row1, tail, slice_type, typed, ref = rec["table"][0]
    assert body == [[1, "a", 1.5], [2, "b", 2.5], [3, "c", 3.5]]
    assert (type_ref, length, row1, slice_type, typed, ref) == (None, 3, [2, "b", 2.5], "Table", False, None)
    assert rows == body and tail == body[1:]
    typed_now, category, columns, column_types, scope = rec["inferred"][0]
    assert (typed_now, category, columns, scope) == (True, "table", ["id", "name", "col2"], "dynamic")
    assert column_types == ["com.sap.core.int64", "com.sap.core.string", "com.sap.core.float64"]
    assert rec["typed"] == [(True, ["flag", "col1"])]
    assert rec["record"] == [(3, 1, "x", [1, "x"], True)]
    assert rec["ref"] == [("scalar", "com.sap.core.int64")]
    assert rec["created"] == [("table", ["id", "name"], ["id"], "dynamic")]
    kind, components = rec["schema"][0]
    assert kind == "table"
    assert components == [
        {"a": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
        {"b": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}},
        {"col2": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.float64"}},
        {"col3": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.bool"}},
    ]
    assert rec["registered"] == [("my_dyn_table", ["a", "b", "col2", "col3"], "dynamic")]
    assert rec["scalar"] == [("int64", "com.sap.core.int64")]


def test_dataframe_round_trip_between_operators(run_yaml, rec):
    pytest.importorskip("pandas")
    graph = """
    operators:
      src:
        script: src.py
        outputs: {out: table}
      dst:
        script: dst.py
        inputs: {in: table}
    connections:
      - src.out -> dst.in
    """
    src = """
    import pandas as pd

    def start():
        df = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [0.5, 1.5, None]})
        api.outputs.out.publish(api.Table.from_dataframe(df, infer_type=True))
    api.set_prestart(start)
    """
    dst = """
    import sg_rec

    def on_input(msg_id, header, body):
        table = body.get()
        vt = api.type_context.get_vtype(table.get_type_reference())
        df, headers = table.to_dataframe()
        sg_rec.add("df", (list(df.columns), str(df["id"].dtype), df["name"].tolist(), df["score"].isna().tolist(),
                          isinstance(headers, dict), table.body, list(vt.columns),
                          [c.type_id for c in vt.columns.values()]))
    api.set_port_callback("in", on_input)
    """
    run = run_yaml(graph, {"src.py": src, "dst.py": dst})
    assert_completed(run)
    columns, id_dtype, names, score_na, headers_is_dict, body, vt_cols, vt_types = rec["df"][0]
    assert columns == ["id", "name", "score"] and vt_cols == columns
    assert id_dtype == "int64" and names == ["a", "b", "c"]
    assert score_na == [False, False, True]
    assert headers_is_dict
    assert body == [[1, "a", 0.5], [2, "b", 1.5], [3, "c", None]]
    assert vt_types == ["com.sap.core.int64", "com.sap.core.string", "com.sap.core.float64"]


def test_dynamic_output_type_and_type_ref(run_yaml, rec):
    graph = """
    operators:
      src:
        script: src.py
        outputs: {dyn: table, inferred: table, fixed: int64}
      dst:
        script: dst.py
        inputs: {dyn: table, inferred: table}
    connections:
      - src.dyn -> dst.dyn
      - src.inferred -> dst.inferred
    """
    src = """
    import sg_rec

    def start():
        sg_rec.add("before", (api.outputs.dyn.type_ref.type_, api.outputs.dyn.type_ref.type_id,
                              api.outputs.fixed.type_ref.type_, api.outputs.fixed.type_ref.type_id))
        try:
            api.outputs.dyn.with_writer()
        except TypeError as exc:
            sg_rec.add("no_type_yet", str(exc))
        try:
            api.outputs.fixed.set_dynamic_type(api.DataTypeReference("scalar", "com.sap.core.string"))
        except TypeError as exc:
            sg_rec.add("static", str(exc))
        ref = api.type_context.create_new_table({
            "id": api.DataTypeReference("scalar", "com.sap.core.int64"),
            "name": api.DataTypeReference("scalar", "com.sap.core.string")}, keys=["id"])
        api.outputs.dyn.set_dynamic_type(ref)
        sg_rec.add("after", (api.outputs.dyn.type_ref == ref, ref.type_id))
        _, writer = api.outputs.dyn.with_writer()
        writer.write([[1, "one"], [2, "two"]])
        writer.close()
        table = api.Table([[1.5, True]], infer_type=True, colnames=["x", "ok"])
        sg_rec.add("inferred_id", table.type_ref.type_id)
        api.outputs.inferred.publish(table)
    api.set_prestart(start)
    """
    dst = """
    import sg_rec

    def make(port):
        def on_input(msg_id, header, body):
            table = body.get()
            vt = api.type_context.get_vtype(api.DataTypeReference("table", body.get_type_id()))
            sg_rec.add(port, (body.get_type_id(), table.body, list(vt.columns), vt.keys))
        return on_input

    api.set_port_callback("dyn", make("dyn"))
    api.set_port_callback("inferred", make("inferred"))
    """
    run = run_yaml(graph, {"src.py": src, "dst.py": dst})
    assert_completed(run)
    assert rec["before"] == [("table", "*", "scalar", "com.sap.core.int64")]
    assert "set_dynamic_type" in rec["no_type_yet"][0]
    assert "static type" in rec["static"][0] and "'fixed'" in rec["static"][0]
    same, dyn_id = rec["after"][0]
    assert same and dyn_id != "*"
    assert rec["dyn"] == [(dyn_id, [[1, "one"], [2, "two"]], ["id", "name"], ["id"])]
    inferred_id = rec["inferred_id"][0]
    assert rec["inferred"] == [(inferred_id, [[1.5, True]], ["x", "ok"], [])]


# --------------------------------------------------------------------------------------
# headers
# --------------------------------------------------------------------------------------

def test_received_headers_are_read_only_and_copy_gives_a_dict(run_yaml, rec):
    graph = """
    operators:
      src:
        script: src.py
        outputs: {out: string}
      mid:
        script: mid.py
        inputs: {in: string}
        outputs: {out: string}
      dst:
        script: dst.py
        inputs: {in: string}
    connections:
      - src.out -> mid.in
      - mid.out -> dst.in
    """
    src = """
    def start():
        header = {"com.sap.headers.batch": [0, True, 1, 0, ""], "custom": ["a"]}
        api.outputs.out.publish("x", header)
        header["custom"][0] = "changed after publish"   # must not affect the sent message
    api.set_prestart(start)
    """
    mid = """
    import sg_rec

    def on_input(msg_id, header, body):
        for change in (lambda: header.__setitem__("k", [1]), lambda: header.update({}),
                       lambda: header.pop("custom")):
            try:
                change()
            except TypeError as exc:
                sg_rec.add("refused", str(exc))
        sg_rec.add("mid", (dict(header), list(header.keys()), "custom" in header,
                           header["com.sap.headers.batch"][1]))
        copy = header.copy()
        copy["custom"] = ["b"]
        copy["extra"] = api.Record([1, 2])
        sg_rec.add("copy_type", type(copy).__name__)
        api.outputs.out.publish(body.get(), copy)
        api.outputs.out.publish(body.get(), header)   # a received header can be sent on as is
    api.set_port_callback("in", on_input)
    """
    dst = """
    import sg_rec
    api.set_port_callback("in", lambda m, h, b: sg_rec.add("dst", h.copy()))
    """
    run = run_yaml(graph, {"src.py": src, "mid.py": mid, "dst.py": dst})
    assert_completed(run)
    assert len(rec["refused"]) == 3 and all("header.copy()" in r for r in rec["refused"])
    header, keys, has_custom, is_last = rec["mid"][0]
    assert header == {"com.sap.headers.batch": [0, True, 1, 0, ""], "custom": ["a"]}
    assert keys == ["com.sap.headers.batch", "custom"] and has_custom and is_last is True
    assert rec["copy_type"] == ["dict"]
    first, second = rec["dst"]
    assert first["custom"] == ["b"] and list(first["extra"]) == [1, 2]
    assert second == {"com.sap.headers.batch": [0, True, 1, 0, ""], "custom": ["a"]}
    assert isinstance(Header({"a": [1]}).copy(), dict)


# --------------------------------------------------------------------------------------
# runtime information
# --------------------------------------------------------------------------------------

def test_runtime_information(run_yaml, rec, tmp_path):
    graph = """
    name: info-graph
    operators:
      a:
        script: info.py
        inputs: {in1: int64, in2: int64}
        outputs: {out1: int64, out2: int64}
        group: workers
      b:
        script: info.py
        inputs: {in: int64}
    groups:
      workers: {multiplicity: 1}
    connections:
      - a.out1 -> b.in
    """
    script = """
    import sg_rec
    sg_rec.add("info", {
        "graph_name": api.graph_name, "graph_handle": api.graph_handle, "group_id": api.group_id,
        "multiplicity": api.multiplicity, "multiplicity_index": api.multiplicity_index,
        "inports": api.get_inport_names(), "outports": api.get_outport_names(),
        "in_connected": dict(api.is_inport_connected), "out_connected": dict(api.is_outport_connected),
        "repo_root": api.repo_root, "subengine_root": api.subengine_root,
    })
    """
    run = run_yaml(graph, {"info.py": script})
    assert_completed(run)
    info = {item["inports"][0]: item for item in rec["info"]}
    a, b = info["in1"], info["in"]
    assert a["graph_name"] == b["graph_name"] == "info-graph"
    assert re.fullmatch(r"[0-9a-f]{32}", a["graph_handle"]) and a["graph_handle"] == b["graph_handle"]
    assert (a["group_id"], b["group_id"]) == ("workers", "default")
    assert (a["multiplicity"], a["multiplicity_index"]) == (1, 0)
    assert a["inports"] == ["in1", "in2"] and a["outports"] == ["out1", "out2"]
    assert a["in_connected"] == {"in1": False, "in2": False}
    assert a["out_connected"] == {"out1": True, "out2": False}
    assert b["in_connected"] == {"in": True} and b["outports"] == [] and b["out_connected"] == {}
    assert a["repo_root"] == a["subengine_root"] == str(tmp_path)  # no --operators folder given
    first_handle = a["graph_handle"]
    rec.clear()
    run = run_yaml(graph, {"info.py": script})
    assert rec["info"][0]["graph_handle"] != first_handle  # a fresh handle per run


# --------------------------------------------------------------------------------------
# state management registrations (accepted without snapshots)
# --------------------------------------------------------------------------------------

def test_state_management_registrations_are_accepted(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: int64}
      acc:
        script: acc.py
        inputs: {in: int64}
    connections:
      - gen.out -> acc.in
    """
    gen = """
    import sg_rec
    info = api.InitialProcessInfo(is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)})
    sg_rec.add("info", (info.is_stateful, info.outports_info["out"].is_generator))
    api.set_initial_snapshot_info(info)
    api.set_serialize_callback(lambda epoch: sg_rec.add("called", "serialize") or b"")
    api.set_restore_callback(lambda epoch, state: sg_rec.add("called", "restore"))
    api.set_epoch_complete_callback(lambda epoch: sg_rec.add("called", "complete"))
    api.set_pause_callback(lambda: sg_rec.add("called", "pause"))
    api.set_resume_callback(lambda: sg_rec.add("called", "resume"))

    def start():
        api.outputs.out.publish(1)
        try:
            api.set_initial_snapshot_info(api.InitialProcessInfo())
        except RuntimeError as exc:
            sg_rec.add("late", str(exc))
    api.set_prestart(start)
    """
    acc = """
    import sg_rec
    api.set_initial_snapshot_info(api.InitProcessInfo(is_stateful=True))   # the alias SAP's docs also use
    api.set_serialize_callback(lambda epoch: b"")
    api.set_restore_callback(lambda epoch, state: None)
    default = api.InitialProcessInfo()
    sg_rec.add("defaults", (default.is_stateful, default.outports_info, api.OutportInfo().is_generator))
    api.set_port_callback("in", lambda m, h, b: sg_rec.add("got", b.get()))
    """
    run = run_yaml(graph, {"gen.py": gen, "acc.py": acc})
    assert_completed(run)
    assert rec["info"] == [(True, True)]
    assert rec["got"] == [1]
    assert rec["defaults"] == [(False, {}, False)]
    assert "top level" in rec["late"][0]
    assert "called" not in rec  # no snapshots: none of the state callbacks runs


def test_snapshot_info_with_an_unknown_outport_is_refused(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: int64}
    """
    script = """
    import sg_rec
    try:
        api.set_initial_snapshot_info(api.InitialProcessInfo(True, {"nope": api.OutportInfo(True)}))
    except ValueError as exc:
        sg_rec.add("err", str(exc))
    """
    run = run_yaml(graph, {"gen.py": script})
    assert_completed(run)
    assert "'nope'" in rec["err"][0]


# --------------------------------------------------------------------------------------
# one operator's callbacks never run concurrently
# --------------------------------------------------------------------------------------

def test_callbacks_of_one_operator_never_overlap(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: int64}
      worker:
        script: worker.py
        inputs: {in: int64}
        outputs: {out: int64}
      sink:
        script: sink.py
        inputs: {in: int64}
    connections:
      - gen.out -> worker.in
      - worker.out -> sink.in
    """
    gen = """
    def start():
        for i in range(40):
            api.outputs.out.publish(i)
    api.set_prestart(start)
    """
    worker = """
    import threading
    import time
    import sg_rec

    state = {"busy": False, "ticks": 0, "got": 0}

    def enter(kind):
        if state["busy"]:
            sg_rec.add("overlap", kind)
        state["busy"] = True
        sg_rec.add("thread", threading.get_ident())

    def leave():
        time.sleep(0.0005)
        state["busy"] = False

    def tick():
        enter("timer")
        state["ticks"] += 1
        leave()
        return -1 if state["got"] == 40 else 0

    def tick2():
        enter("timer2")
        leave()
        return -1 if state["got"] == 40 else 0.001

    def on_input(msg_id, header, body):
        enter("port")
        state["got"] += 1
        api.outputs.out.publish(body.get(), response_callback=on_response)
        leave()

    def on_response(msg_id, ex):
        enter("response")
        sg_rec.add("responses", 1)
        leave()

    def prestart():
        enter("prestart")
        leave()

    api.set_prestart(prestart)
    api.add_timer(tick)
    api.add_timer(tick2)
    api.set_port_callback("in", on_input)
    api.set_shutdown(lambda: (enter("shutdown"), leave()))
    """
    sink = """
    api.set_port_callback("in", lambda m, h, b: None)
    """
    run = run_yaml(graph, {"gen.py": gen, "worker.py": worker, "sink.py": sink}, stop_after=60)
    assert_completed(run)
    assert "overlap" not in rec
    assert len(set(rec["thread"])) == 1
    assert len(rec["responses"]) == 40
    assert len(rec["thread"]) >= 1 + 40 + 40 + 2 + 1  # prestart, ports, responses, timers, shutdown


def test_publishing_a_received_body_directly_is_refused(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: string}
      fwd:
        script: fwd.py
        inputs: {in: any}
        outputs: {out: any}
    connections:
      - gen.out -> fwd.in
    """
    gen = """
    api.set_prestart(lambda: api.outputs.out.publish("x"))
    """
    fwd = """
    import sg_rec

    def on_input(msg_id, header, body):
        try:
            api.outputs.out.publish(body, header)   # "Body cannot be directly sent, use the value instead"
        except TypeError as exc:
            sg_rec.add("err", str(exc))
    api.set_port_callback("in", on_input)
    """
    run = run_yaml(graph, {"gen.py": gen, "fwd.py": fwd})
    assert_completed(run)
    assert "body.get()" in rec["err"][0] and "'out'" in rec["err"][0]


def test_set_port_callback_checks_the_port_and_accepts_the_legacy_four_argument_form(run_yaml, rec):
    graph = """
    operators:
      gen:
        script: gen.py
        outputs: {out: int64}
      fwd:
        script: fwd.py
        inputs: {input: int64}
        outputs: {output: int64}
      picky:
        script: picky.py
        inputs: {in: int64}
        config: {errorHandling: retry}
    connections:
      - gen.out -> fwd.input
      - fwd.output -> picky.in
    """
    gen = """
    api.set_prestart(lambda: [api.outputs.out.publish(i) for i in range(3)])
    """
    fwd = """
    import sg_rec

    try:
        api.set_port_callback("inptu", print)
    except ValueError as exc:
        sg_rec.add("unknown", str(exc))

    def custom_response_callback(msg_id, ex):
        if ex:
            sg_rec.add("custom", str(ex))

    def on_input(msg_id, header, body):
        api.outputs.output.publish(body.get())   # no response callback given here

    # README-OLD's form: the 4th argument answers for what this callback publishes
    api.set_port_callback("input", on_input, {}, custom_response_callback)
    """
    picky = """
    def on_input(msg_id, header, body):
        if body.get() == 1:
            raise ValueError("one rejected")
    api.set_port_callback("in", on_input)
    """
    run = run_yaml(graph, {"gen.py": gen, "fwd.py": fwd, "picky.py": picky})
    assert "'inptu'" in rec["unknown"][0] and "input" in rec["unknown"][0]
    # without it, the default response callback would raise "one rejected" in fwd
    assert_completed(run)
    assert rec["custom"] == ["one rejected"]
