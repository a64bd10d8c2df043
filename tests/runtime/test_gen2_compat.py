"""Gen2 behaviours that migrating scripts rely on (issue 10, items 3, 4, 5, 7 and 8), end to end.

Every graph runs through the real command line twice: with each operator in a group (a process)
of its own, and ``--in-process``. The scripts are written for these tests; each reproduces the
pattern of a public SAP sample named in docs/gen2-compatibility.md.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import snapgraph_cli, write_files

MODES = [pytest.param([], id="groups-as-processes"), pytest.param(["--in-process"], id="in-process")]


def run(tmp_path: Path, graph: str, scripts: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    write_files(tmp_path, {"graph.yaml": graph, **scripts})
    return snapgraph_cli("run", "graph.yaml", *args, cwd=tmp_path)


def printed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line for line in proc.stdout.splitlines() if line)


# --------------------------------------------------------------------------------------
# 3. Names SAP's examples use without importing them
# --------------------------------------------------------------------------------------

TICKER = """
count = 0

def tick():
    global count
    api.outputs.out.publish(count)
    count += 1
    return 0.1 if count < 14 else -1

api.add_timer(tick)
"""

# The State Management pattern: a stateful counter whose serialize/restore use pickle, which the
# script never imports. BytesIO, io and threading are used unimported too, as the binary examples
# and the Modeler's older template do.
UNIMPORTED = """
total = 0
seen_by_thread = []

def on_input(msg_id, header, body):
    global total
    total += body.get()
    worker = threading.Thread(target=seen_by_thread.append, args=(total,))
    worker.start()
    worker.join()
    api.outputs.blob.publish(BytesIO(pickle.dumps(total)), -1)
    api.outputs.text.publish(io.StringIO(f"total {seen_by_thread[-1]}").read())

api.set_port_callback("in", on_input)
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def serialize(epoch):
    api.logger.info("serialized with the preloaded pickle")
    return pickle.dumps(total)

def restore(epoch, state):
    global total
    total = pickle.loads(state)

api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
"""

UNPICKLE = """
def on_blob(msg_id, header, body):
    api.outputs.out.publish(f"unpickled {pickle.loads(body.get_reader().read(-1))}")

api.set_port_callback("in", on_blob)
"""

UNIMPORTED_GRAPH = """
operators:
  ticker: {group: g1, script: ticker.py, outputs: {out: int64}}
  summer:
    group: g2
    script: summer.py
    inputs: {in: int64}
    outputs: {blob: binary, text: string}
  unpickle: {group: g3, script: unpickle.py, inputs: {in: binary}, outputs: {out: string}}
  show: {group: g4, component: terminal}
connections:
  - ticker.out -> summer.in
  - summer.blob -> unpickle.in
  - summer.text -> show.in
  - unpickle.out -> show.in
"""


@pytest.mark.parametrize("mode", MODES)
def test_pickle_bytesio_io_and_threading_are_there_without_an_import(tmp_path: Path, mode: list[str]) -> None:
    proc = run(tmp_path, UNIMPORTED_GRAPH, {"ticker.py": TICKER, "summer.py": UNIMPORTED, "unpickle.py": UNPICKLE},
               "--snapshot-period", "1", *mode)
    assert proc.returncode == 0, proc.stderr
    totals = [sum(range(n + 1)) for n in range(14)]
    assert printed(proc) == sorted([f"total {t}" for t in totals] + [f"unpickled {t}" for t in totals])
    assert "serialized with the preloaded pickle" in proc.stderr  # at least one snapshot was taken


OWN_BINDINGS = """
from json import dumps as pickle     # the script's own names win over the preloaded ones

def BytesIO(data):
    return "the script's own BytesIO"

def start():
    api.outputs.out.publish(pickle({"pickle": "json.dumps"}))
    api.outputs.out.publish(BytesIO(b""))

api.set_prestart(start)
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_script_that_binds_a_preloaded_name_gets_its_own(tmp_path: Path, mode: list[str]) -> None:
    graph = """
    operators:
      gen: {group: g1, script: gen.py, outputs: {out: string}}
      show: {group: g2, component: terminal}
    connections:
      - gen.out -> show.in
    """
    proc = run(tmp_path, graph, {"gen.py": OWN_BINDINGS}, *mode)
    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == ['the script\'s own BytesIO', '{"pickle": "json.dumps"}']


@pytest.mark.parametrize("mode", MODES)
def test_other_modules_still_need_their_import(tmp_path: Path, mode: list[str]) -> None:
    graph = """
    operators:
      gen: {group: g1, script: gen.py, outputs: {out: string}}
    """
    proc = run(tmp_path, graph, {"gen.py": "api.set_prestart(lambda: api.outputs.out.publish(json.dumps(1)))\n"},
               *mode)
    assert proc.returncode == 1
    assert "NameError: name 'json' is not defined" in proc.stderr


# --------------------------------------------------------------------------------------
# 4. body.get() on a binary body raises; SAP's OperatorException pattern reaches the error port
# --------------------------------------------------------------------------------------

BINARY_SOURCE = """
def start():
    api.outputs.out.publish(b"raw bytes")
    _, writer = api.outputs.out.with_writer()
    writer.write(b"streamed bytes")
    writer.close()

api.set_prestart(start)
"""

# The shape of SAP's OperatorException example: try body.get(), turn the failure into an
# OperatorException with a code and details, let errorHandling send it to the error port.
GET_OR_REPORT = """
def on_input(msg_id, header, body):
    try:
        value = body.get()
    except Exception as exc:
        raise api.OperatorException(7, f"cannot get: {exc}", api.Table([["port", "in"]]))
    api.outputs.out.publish(f"got {value!r}")

api.set_port_callback("in", on_input)
"""

READ_WITH_READER = """
def on_input(msg_id, header, body):
    api.outputs.out.publish(f"read {body.get_reader().read(-1)!r}")

api.set_port_callback("in", on_input)
"""

ERROR_REPORT = """
def on_error(msg_id, header, body):
    code, operator_id, process_id, text, details = body.get()
    api.outputs.out.publish(f"error {code} from {process_id}: {text} {details.body}")

api.set_port_callback("in", on_error)
"""

BINARY_GRAPH = """
operators:
  source: {group: g1, script: source.py, outputs: {out: binary}}
  getter:
    group: g2
    script: getter.py
    inputs: {in: binary}
    outputs: {out: string, error: "structure:com.sap.error"}
    config: {errorHandling: propagate to error port}
  reader: {group: g3, script: reader.py, inputs: {in: binary}, outputs: {out: string}}
  errors: {group: g4, script: errors.py, inputs: {in: "structure:com.sap.error"}, outputs: {out: string}}
  show: {group: g5, component: terminal}
connections:
  - source.out -> getter.in, reader.in
  - getter.error -> errors.in
  - getter.out -> show.in
  - reader.out -> show.in
  - errors.out -> show.in
"""

GET_REFUSED = ("body.get() does not read binary bodies (scalar:com.sap.core.binary); "
               "read them with body.get_reader().read(-1)")


@pytest.mark.parametrize("mode", MODES)
def test_get_on_a_binary_body_raises_and_the_operator_exception_goes_to_the_error_port(
        tmp_path: Path, mode: list[str]) -> None:
    scripts = {"source.py": BINARY_SOURCE, "getter.py": GET_OR_REPORT, "reader.py": READ_WITH_READER,
               "errors.py": ERROR_REPORT}
    proc = run(tmp_path, BINARY_GRAPH, scripts, *mode)
    assert proc.returncode == 0, proc.stderr
    refused = f"error 7 from getter: cannot get: {GET_REFUSED} [['port', 'in']]"
    assert printed(proc) == sorted([refused, refused, "read b'raw bytes'", "read b'streamed bytes'"])


@pytest.mark.parametrize("mode", MODES)
def test_get_on_a_binary_body_fails_the_graph_under_terminate_on_error(tmp_path: Path, mode: list[str]) -> None:
    graph = """
    operators:
      source: {group: g1, script: source.py, outputs: {out: binary}}
      getter: {group: g2, script: getter.py, inputs: {in: binary}}
    connections:
      - source.out -> getter.in
    """
    proc = run(tmp_path, graph, {"source.py": BINARY_SOURCE,
                                 "getter.py": "api.set_port_callback('in', lambda m, h, b: b.get())\n"}, *mode)
    assert proc.returncode == 1
    assert f"TypeError: {GET_REFUSED}" in proc.stderr


# --------------------------------------------------------------------------------------
# 5. publish(None, header): a header-only message on every port type
# --------------------------------------------------------------------------------------

FILE_HEADER = {"com.sap.headers.file": ["conn", "dir/file.csv", 10, False, "2024-01-01T00:00:00"]}

HEADER_ONLY_SOURCE = f"""
def start():
    header = {FILE_HEADER!r}
    for port in api.get_outport_names():
        getattr(api.outputs, port).publish(None, header)
    try:
        api.outputs.s.publish(0, header)       # a value must still fit the port
    except TypeError as exc:
        api.logger.info("refused: %s", exc)

api.set_prestart(start)
"""

HEADER_ONLY_SINK = """
def make(port):
    def on_input(msg_id, header, body):
        try:
            body.get_reader()
            reader = "a reader"
        except TypeError as exc:
            reader = str(exc)
        api.outputs.out.publish(
            f"{port}: {body.get_base_type()} {body.get_type_id()} {body.get()!r} stream={body.is_stream()} "
            f"{header['com.sap.headers.file'][1]} / {reader}")
    return on_input

for port in api.get_inport_names():
    api.set_port_callback(port, make(port))
"""


@pytest.mark.parametrize("mode", MODES)
def test_header_only_messages_pass_on_every_port_type(tmp_path: Path, mode: list[str]) -> None:
    graph = """
    operators:
      source:
        group: g1
        script: source.py
        outputs: {s: string, i: int64, t: table, st: structure, b: binary, n: none}
      tap: {group: g2, component: wiretap}
      sink:
        group: g3
        script: sink.py
        inputs: {s: string, i: int64, t: table, st: structure, b: binary, n: any, tapped: any}
        outputs: {out: string}
      show: {group: g4, component: terminal}
    connections:
      - source.s -> sink.s, tap.in
      - source.i -> sink.i
      - source.t -> sink.t
      - source.st -> sink.st
      - source.b -> sink.b
      - source.n -> sink.n
      - tap.out -> sink.tapped
      - sink.out -> show.in
    """
    proc = run(tmp_path, graph, {"source.py": HEADER_ONLY_SOURCE, "sink.py": HEADER_ONLY_SINK}, *mode)
    assert proc.returncode == 0, proc.stderr
    no_reader = "body.get_reader(): this message has headers only, no body to read (body.get() is None)"
    expected = [f"{port}: none {type_id} None stream=False dir/file.csv / {no_reader}" for port, type_id in [
        ("s", "com.sap.core.string"), ("i", "com.sap.core.int64"), ("t", "*"), ("st", "*"),
        ("b", "com.sap.core.binary"), ("n", "*"), ("tapped", "com.sap.core.string")]]
    tapped, *lines = printed(proc)
    assert tapped.startswith("[tap] {'com.sap.headers.file': ") and tapped.endswith(" None")
    assert lines == sorted(expected)
    assert "refused: operator 'source': cannot publish on port 's': expected a str" in proc.stderr


# --------------------------------------------------------------------------------------
# 7. Gen1 API use: validate and run report it before anything runs, naming the Gen2 form
# --------------------------------------------------------------------------------------

GEN1_SCRIPT = """
def on_both(a, b):
    api.send("out", api.Message(a + b))

def tick():
    api.send("out", 1)

api.set_port_callback(["a", "b"], on_both)
api.add_timer("1s", tick)
"""

GEN1_GRAPH = """
operators:
  old: {group: g1, script: old.py, inputs: {a: int64, b: int64}, outputs: {out: int64}}
"""


@pytest.mark.parametrize("command", [["validate"], ["run"], ["run", "--in-process"]])
def test_gen1_api_use_is_reported_with_its_gen2_replacement(tmp_path: Path, command: list[str]) -> None:
    write_files(tmp_path, {"graph.yaml": GEN1_GRAPH, "old.py": GEN1_SCRIPT})
    proc = snapgraph_cli(command[0], "graph.yaml", *command[1:], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    where = f"graph.yaml:2: process 'old': Gen1 API in script {tmp_path / 'old.py'}"
    assert "snapgraph: graph.yaml: 5 problem(s):" in proc.stderr
    for line, replacement in [
        (2, "api.send is Gen1; in Gen2 use api.outputs.<port>.publish(data, header)"),
        (2, "api.Message is Gen1; in Gen2 publish the value and pass headers as a dict"),
        (5, "api.send is Gen1; in Gen2 use api.outputs.<port>.publish(data, header)"),
        (7, "api.set_port_callback takes one port name in Gen2 (got the Gen1 list form ['a', 'b']); "
            "register one callback per port"),
        (8, "api.add_timer(period, callback) is the Gen1 form; in Gen2 call api.add_timer(callback) and "
            "return the seconds until the next call from the callback"),
    ]:
        assert f"  - {where}:{line}: {replacement}\n" in proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_gen1_calls_reached_at_run_time_raise_the_same_message(tmp_path: Path, mode: list[str]) -> None:
    # Only a name computed at run time escapes validation; the api object then says the same.
    graph = """
    operators:
      old: {group: g1, script: old.py}
    """
    script = "api.set_prestart(lambda: getattr(api, 'add_' + 'generator')(print))\n"
    proc = run(tmp_path, graph, {"old.py": script}, *mode)
    assert proc.returncode == 1
    assert "AttributeError: operator 'old': api.add_generator is Gen1; in Gen2 use api.set_prestart(fn)" in proc.stderr


# --------------------------------------------------------------------------------------
# 8. Outports expose their type: api.outputs.<port>.type_ref.type_ / .type_id
# --------------------------------------------------------------------------------------

ROWS_VTYPE = json.dumps({
    "name": "demo.rows", "vflow.type": "table",
    "rows": {"components": [{"id": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
                            {"name": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}]},
})

# The json2table pattern: rebuild a reference from the outport's type_ref, look its vtype up and
# order the columns as the port declares them.
PORT_TYPES = """
def describe(port):
    ref = getattr(api.outputs, port).type_ref
    try:
        vtype = api.type_context.get_vtype(api.DataTypeReference(ref.type_, ref.type_id))
        shape = list(vtype.columns) if ref.type_ == "table" else getattr(vtype, "template", None) or list(vtype.fields)
    except KeyError as exc:
        shape = f"KeyError {exc}"
    return f"{port}: {ref.type_} {ref.type_id} {shape}"

def start():
    for port in ("rows", "local", "text", "error", "dynamic"):
        api.outputs.report.publish(describe(port))
    made = api.type_context.create_new_table({"x": api.DataTypeReference("scalar", "com.sap.core.float64")})
    api.outputs.dynamic.set_dynamic_type(made)
    api.outputs.report.publish(describe("dynamic").replace(made.type_id, "<made>"))

api.set_prestart(start)
"""


@pytest.mark.parametrize("mode", MODES)
def test_outports_expose_their_declared_type(tmp_path: Path, mode: list[str]) -> None:
    graph = """
    operators:
      typed:
        group: g1
        script: typed.py
        outputs:
          rows: "table:demo.rows"
          local: "table:$GRAPH.demo.rows"
          text: string
          error: "structure:com.sap.error"
          dynamic: table
          report: string
      show: {group: g2, component: terminal}
    connections:
      - typed.report -> show.in
    """
    files = {"typed.py": PORT_TYPES, "vtypes/tables/demo/rows/table.vtype": ROWS_VTYPE}
    proc = run(tmp_path, graph, files, *mode)
    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == sorted([
        "rows: table demo.rows ['id', 'name']",
        "local: table $GRAPH.demo.rows ['id', 'name']",
        "text: scalar com.sap.core.string string",
        "error: structure com.sap.error ['code', 'operatorID', 'processID', 'text', 'details']",
        "dynamic: table * KeyError \"'*' is a dynamic type placeholder, not a vtype id\"",
        "dynamic: table <made> ['x']",
    ])
