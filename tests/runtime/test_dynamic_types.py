"""Dynamic types across groups and types on publish (issue 10, items 1 and 2), end to end.

Every graph runs through the real command line twice: with each operator in a group (a process)
of its own, and ``--in-process``. Receivers write what they saw to a JSON-lines file in the
graph's folder (every group process shares the working directory). The last tests look at the
wire itself: which frames carry definitions, and how often.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import snapgraph_cli, write_files
from snapgraph.api.table import Table
from snapgraph.api.type_context import TypeContext, get_default_type_context, set_default_type_context
from snapgraph.model.types import DataTypeReference, PortType
from snapgraph.model.vtypes import VTypeRegistry
from snapgraph.runtime.messages import Encoded, Message
from snapgraph.runtime.wire import FrameReader, InboundLink, OutboundLink, write_frame
from snapgraph.snapshot.state import pack_state, unpack_state

MODES = [pytest.param([], id="groups-as-processes"), pytest.param(["--in-process"], id="in-process")]


def run(tmp_path: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    write_files(tmp_path, files)
    return snapgraph_cli("run", "graph.yaml", *args, cwd=tmp_path)


def records(tmp_path: Path, name: str = "seen.jsonl") -> list[Any]:
    path = tmp_path / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Appends one JSON line per call; every operator's script imports it from the graph folder.
RECORDER = """
import json

def record(*values, file="seen.jsonl"):
    with open(file, "a") as out:
        out.write(json.dumps(list(values)) + "\\n")
"""

# What a receiver learns about a table: the id it carries, and the columns of the vtype that id
# resolves to in the receiver's own group.
DESCRIBE = """
def describe(table):
    vtype = api.type_context.get_vtype(table.type_ref)
    return [table.type_ref.type_, table.type_ref.type_id, vtype.scope,
            {name: ref.type_id for name, ref in vtype.columns.items()}, vtype.keys, table.body]
"""

# --------------------------------------------------------------------------------------
# 1. Dynamic types across groups
# --------------------------------------------------------------------------------------

ACROSS_GRAPH = """
operators:
  src:
    group: g1
    script: src.py
    outputs: {inferred: table, created: table, streamed: table}
  relay:
    group: g2
    script: relay.py
    inputs: {in: table}
    outputs: {forwarded: table, own: table}
  sink:
    group: g3
    script: sink.py
    inputs: {inferred: table, created: table, streamed: table, forwarded: table, own: table}
connections:
  - src.inferred -> relay.in, sink.inferred
  - src.created -> sink.created
  - src.streamed -> sink.streamed
  - relay.forwarded -> sink.forwarded
  - relay.own -> sink.own
"""

# Each dynamic type goes out twice: the second message on a link finds the definition that came
# with the first one.
ACROSS_SRC = """
from recorder import record

def start():
    inferred = api.Table([[1, "one", 1.5]], infer_type=True, colnames=["id", "name"])
    created = api.type_context.create_new_table(
        {"key": api.DataTypeReference("scalar", "com.sap.core.int64"),
         "flag": api.DataTypeReference("scalar", "com.sap.core.bool")}, keys=["key"])
    streamed = api.type_context.create_new_table({"text": api.DataTypeReference("scalar", "com.sap.core.string")})
    record("made", "src", [inferred.type_ref.type_id, created.type_id, streamed.type_id])
    api.outputs.created.set_dynamic_type(created)
    api.outputs.streamed.set_dynamic_type(streamed)
    for round in range(2):
        api.outputs.inferred.publish(inferred)
        api.outputs.created.publish(api.Table([[round, True]], created.type_id))
        _, writer = api.outputs.streamed.with_writer()
        writer.write([["a"], ["b"]])
        writer.close()

api.set_prestart(start)
"""

# The relay resolves what it got, forwards it unchanged to a third group and makes a type of its
# own (numbered in its own type context).
ACROSS_RELAY = """
from recorder import record

own_ids = []

def on_input(msg_id, header, body):
    table = body.get()
    record("relay", describe(table))
    api.outputs.forwarded.publish(table)
    own = api.Table([[table.body[0][0], "x"]], infer_type=True, colnames=["n", "s"])
    own_ids.append(own.type_ref.type_id)
    if len(own_ids) == 1:
        record("made", "relay", own_ids)
    api.outputs.own.publish(own)

api.set_port_callback("in", on_input)
"""

ACROSS_SINK = """
from recorder import record

def make(port):
    def on_input(msg_id, header, body):
        record(port, body.get_type_id(), describe(body.get()))
    return on_input

for port in api.get_inport_names():
    api.set_port_callback(port, make(port))
"""


@pytest.mark.parametrize("mode", MODES)
def test_dynamic_types_resolve_in_every_group(tmp_path: Path, mode: list[str]) -> None:
    files = {"graph.yaml": ACROSS_GRAPH, "recorder.py": RECORDER, "src.py": ACROSS_SRC,
             "relay.py": DESCRIBE + ACROSS_RELAY, "sink.py": DESCRIBE + ACROSS_SINK}
    proc = run(tmp_path, files, *mode)
    assert proc.returncode == 0, proc.stderr
    seen = records(tmp_path)
    made = {entry[1]: entry[2] for entry in seen if entry[0] == "made"}
    inferred_id, created_id, streamed_id = made["src"]
    relay_ids = made["relay"]
    every_id = [inferred_id, created_id, streamed_id, *relay_ids]
    assert len(set(every_id)) == len(every_id), every_id  # ids made in two groups never collide
    assert all(type_id.startswith("$DYNAMIC.table_") for type_id in every_id)

    inferred = ["table", inferred_id, "dynamic",
                {"id": "com.sap.core.int64", "name": "com.sap.core.string", "col2": "com.sap.core.float64"},
                [], [[1, "one", 1.5]]]
    by_port: dict[str, list[Any]] = {}
    for entry in seen:
        if entry[0] not in ("made", "relay"):
            by_port.setdefault(entry[0], []).append(entry[1:])
    assert [entry[1] for entry in seen if entry[0] == "relay"] == [inferred, inferred]
    assert by_port["inferred"] == [[inferred_id, inferred]] * 2
    assert by_port["forwarded"] == [[inferred_id, inferred]] * 2
    assert by_port["created"] == [
        [created_id, ["table", created_id, "dynamic", {"key": "com.sap.core.int64", "flag": "com.sap.core.bool"},
                      ["key"], [[round, True]]]] for round in range(2)]
    assert by_port["streamed"] == [
        [streamed_id, ["table", streamed_id, "dynamic", {"text": "com.sap.core.string"}, [], [["a"], ["b"]]]]] * 2
    assert [entry[1][3] for entry in by_port["own"]] == [{"n": "com.sap.core.int64", "s": "com.sap.core.string"}] * 2


# Recovery: the generator makes a dynamic type at the start of every attempt and keeps the id of
# the first attempt's type in its state. After the sink's injected failure, the next attempt
# restores that id and makes its own type, which must be a different id and resolve downstream.
RECOVERY_GRAPH = """
name: dynamic-recovery
parameters: {count: 12, hold: 4}
operators:
  gen:
    group: g1
    script: gen.py
    outputs: {out: table}
    config: {count: "${count}", hold: "${hold}"}
  sink:
    group: g2
    script: sink.py
    inputs: {in: table}
connections:
  - gen.out -> sink.in
"""

RECOVERY_GEN = """
import pickle
from recorder import record

state = {"offset": 0, "first_type_id": None}
released = False
attempt_type = None

api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)}))

def start():
    global attempt_type
    attempt_type = api.type_context.create_new_table(
        {"offset": api.DataTypeReference("scalar", "com.sap.core.int64"),
         "label": api.DataTypeReference("scalar", "com.sap.core.string")})
    if state["first_type_id"] is None:
        state["first_type_id"] = attempt_type.type_id
    record("attempt", state["first_type_id"], attempt_type.type_id, file="gen.jsonl")

def tick():
    offset = state["offset"]
    if offset >= api.config.count:
        return -1
    if offset >= api.config.hold and not released:
        return 0.05
    api.outputs.out.publish(api.Table([[offset, f"row{offset}"]], attempt_type.type_id))
    state["offset"] = offset + 1
    return 0

api.set_prestart(start)
api.add_timer(tick)

def serialize(epoch):
    return pickle.dumps(state)

def restore(epoch, data):
    global state, released
    state = pickle.loads(data)
    released = True

def complete(epoch):
    global released
    released = True

api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""

RECOVERY_SINK = """
from recorder import record

def on_input(msg_id, header, body):
    table = body.get()
    vtype = api.type_context.get_vtype(table.type_ref)
    record(table.body[0][0], table.type_ref.type_id, list(vtype.columns))

api.set_port_callback("in", on_input)
"""


@pytest.mark.parametrize("mode", MODES)
def test_dynamic_types_survive_recovery(tmp_path: Path, mode: list[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"graph.yaml": RECOVERY_GRAPH, "recorder.py": RECORDER, "gen.py": RECOVERY_GEN,
             "sink.py": RECOVERY_SINK}
    monkeypatch.setenv("SNAPGRAPH_FAULTS", "port_callback:sink:7")  # after the hold: an epoch completed
    proc = run(tmp_path, files, "--snapshot-period", "1", "--max-retries", "2", "--retry-interval", "0", *mode)
    assert proc.returncode == 0, proc.stderr
    assert "InjectedFault" in proc.stderr  # the failure happened, and the run recovered from it
    attempts = records(tmp_path, "gen.jsonl")
    assert len(attempts) == 2, attempts
    (_, first_id, first_made), (_, restored_id, second_made) = attempts
    assert first_id == first_made == restored_id  # the restored state holds the first attempt's id
    assert second_made != restored_id  # the new attempt's type cannot be taken for the old one
    seen = records(tmp_path)
    assert sorted({entry[0] for entry in seen}) == list(range(12))
    assert all(columns == ["offset", "label"] for _, _, columns in seen)
    after_recovery = [entry for entry in seen if entry[1] == second_made]
    assert after_recovery and max(entry[0] for entry in after_recovery) == 11


# --------------------------------------------------------------------------------------
# 2. Types on publish
# --------------------------------------------------------------------------------------

ROWS_VTYPE = json.dumps({
    "name": "demo.rows", "vflow.type": "table", "keys": ["id"],
    "rows": {"components": [{"id": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.int64"}},
                            {"name": {"vflow.type": "scalar", "vtype-ID": "com.sap.core.string"}}]},
})

TYPED_GRAPH = """
operators:
  src:
    group: g1
    script: src.py
    outputs: {typed: "table:demo.rows", dynamic: table, fixed: table}
  sink:
    group: g2
    script: sink.py
    inputs: {typed: "table:demo.rows", dynamic: table, fixed: table}
connections:
  - src.typed -> sink.typed
  - src.dynamic -> sink.dynamic
  - src.fixed -> sink.fixed
"""

# Untyped tables (api.Table and plain row lists) on a typed port, on a dynamic port, and on a
# dynamic port that set_dynamic_type fixed; rows that do not fit the port's type are refused.
TYPED_SRC = """
from recorder import record

def refused(port, data):
    try:
        getattr(api.outputs, port).publish(data)
    except TypeError as exc:
        record("refused", port, str(exc), file="src.jsonl")

def start():
    untyped = api.Table([[1, "one"]])
    api.outputs.typed.publish(untyped)
    api.outputs.typed.publish([[2, "two"], [3, "three"]])
    record("typed in place", untyped.type_ref.type_id, file="src.jsonl")
    refused("typed", api.Table([[4]]))
    refused("typed", [["five", 5]])
    api.outputs.dynamic.publish(api.Table([[1, "a", 2.5, True]]))
    api.outputs.dynamic.publish([[2, "b", 3.5, False], [3, None, 4.5, True]])
    api.outputs.dynamic.publish(api.Table([["text only"]]))
    api.outputs.dynamic.publish(api.Table([]))
    fixed = api.type_context.create_new_table({"x": api.DataTypeReference("scalar", "com.sap.core.float64")})
    api.outputs.fixed.set_dynamic_type(fixed)
    api.outputs.fixed.publish(api.Table([[0.5]]))
    refused("fixed", [["not a float"]])

api.set_prestart(start)
"""

TYPED_SINK = """
from recorder import record

def make(port):
    def on_input(msg_id, header, body):
        record(port, body.get_type_id(), describe(body.get()))
    return on_input

for port in api.get_inport_names():
    api.set_port_callback(port, make(port))
"""


@pytest.mark.parametrize("mode", MODES)
def test_untyped_tables_take_the_type_of_their_port(tmp_path: Path, mode: list[str]) -> None:
    files = {"graph.yaml": TYPED_GRAPH, "recorder.py": RECORDER, "src.py": TYPED_SRC,
             "sink.py": DESCRIBE + TYPED_SINK, "vtypes/tables/demo/rows/table.vtype": ROWS_VTYPE}
    proc = run(tmp_path, files, *mode)
    assert proc.returncode == 0, proc.stderr
    by_port: dict[str, list[Any]] = {}
    for port, type_id, described in records(tmp_path):
        by_port.setdefault(port, []).append((type_id, described))

    rows_columns = {"id": "com.sap.core.int64", "name": "com.sap.core.string"}
    assert by_port["typed"] == [
        ("demo.rows", ["table", "demo.rows", "local", rows_columns, ["id"], [[1, "one"]]]),
        ("demo.rows", ["table", "demo.rows", "local", rows_columns, ["id"], [[2, "two"], [3, "three"]]]),
    ]

    (first_id, first), (second_id, second), (text_id, text), (empty_id, empty) = by_port["dynamic"]
    four_columns = {"col0": "com.sap.core.int64", "col1": "com.sap.core.string",
                    "col2": "com.sap.core.float64", "col3": "com.sap.core.bool"}
    assert first == ["table", first_id, "dynamic", four_columns, [], [[1, "a", 2.5, True]]]
    assert second_id == first_id  # first rows of the same value types: one inferred type
    assert second == ["table", first_id, "dynamic", four_columns, [], [[2, "b", 3.5, False], [3, None, 4.5, True]]]
    assert text_id != first_id and text[3] == {"col0": "com.sap.core.string"}
    assert empty_id not in (first_id, text_id) and empty[3] == {} and empty[5] == []
    assert all(type_id.startswith("$DYNAMIC.table_") for type_id in (first_id, text_id, empty_id))

    [(fixed_id, fixed)] = by_port["fixed"]
    assert fixed == ["table", fixed_id, "dynamic", {"x": "com.sap.core.float64"}, [], [[0.5]]]

    src = records(tmp_path, "src.jsonl")
    assert src[0] == ["typed in place", "demo.rows"]  # the table itself travels (by reference in a group)
    refusals = {(port, text) for _, port, text in src[1:]}
    assert refusals == {
        ("typed", "operator 'src': cannot publish on port 'typed': row 0 has 1 value but demo.rows has "
                  "2 columns (id, name)"),
        ("typed", "operator 'src': cannot publish on port 'typed': expected an int for column 'id' "
                  "(com.sap.core.int64) of demo.rows, row 0, got str"),
        ("fixed", f"operator 'src': cannot publish on port 'fixed': expected a float (or int) for column 'x' "
                  f"(com.sap.core.float64) of {fixed_id}, row 0, got str"),
    }


# --------------------------------------------------------------------------------------
# The wire: a definition goes once per link, before the first message that needs it
# --------------------------------------------------------------------------------------

def table_message(table: Table, type_id: str = "*") -> Message:
    return Message(b"\x00" * 12, {}, table, PortType("table", "*"), type_id)


@pytest.fixture
def two_groups() -> Iterator[tuple[TypeContext, TypeContext]]:
    """The type contexts of a sending and a receiving group; the test installs whichever acts."""
    previous = get_default_type_context()
    yield TypeContext(VTypeRegistry()), TypeContext(VTypeRegistry())
    set_default_type_context(previous)


def send_on_two_links(sender: TypeContext) -> tuple[list[bytes], DataTypeReference]:
    """A table every group knows, then four messages with a dynamic type on one link (once with the
    id as the message's type id as well, as set_dynamic_type sends it), then one on a second link.
    Returns the frames both links wrote to the one data pipe, and the dynamic type."""
    set_default_type_context(sender)
    data_r, data_w = os.pipe()
    stream_r, stream_w = os.pipe()
    try:
        first, second = (OutboundLink(data_w, stream_w, -1, lambda: None, lambda: False, lambda: None)
                         for _ in range(2))
        first.put(table_message(Table([[1]], "com.sap.error.details")))
        made = sender.create_new_table({"n": DataTypeReference("scalar", "com.sap.core.int64")})
        for n in range(3):
            first.put(table_message(Table([[n]], made.type_id)))
        first.put(table_message(Table([[9]], made.type_id), made.type_id))
        second.put(table_message(Table([[5]], made.type_id)))
        os.set_blocking(data_r, False)
        reader = FrameReader(data_r)
        frames: list[bytes] = []
        while batch := reader.read():
            frames += batch
        return frames, made
    finally:
        for fd in (data_r, data_w, stream_r, stream_w):
            os.close(fd)


def receive(frames: list[bytes], receiver: TypeContext) -> list[Message]:
    """What an InboundLink in the receiving group makes of ``frames``."""
    set_default_type_context(receiver)
    data_r, data_w = os.pipe()
    stream_r, stream_w = os.pipe()
    try:
        for frame in frames:
            write_frame(data_w, [frame])
        inbound = InboundLink(data_r, stream_r, -1, lambda: False, lambda: None)
        items = inbound.pull() or []
        return [item.decode(item.data) for item in items if isinstance(item, Encoded)]
    finally:
        for fd in (data_r, data_w, stream_r, stream_w):
            os.close(fd)


def test_definitions_go_once_per_link_ahead_of_their_first_message(two_groups) -> None:
    sender, receiver = two_groups
    frames, made = send_on_two_links(sender)
    assert [frame[:1] for frame in frames] == [b"T", b"V", b"T", b"T", b"T", b"T", b"V", b"T"]
    assert made.type_id not in receiver.registry
    messages = receive(frames, receiver)
    assert [message.body.body for message in messages] == [[[1]], [[0]], [[1]], [[2]], [[9]], [[5]]]
    assert list(receiver.get_vtype(made).columns) == ["n"]
    assert made.type_id in receiver.run_time_type_ids  # so it travels on from the receiving group


def test_a_group_without_run_time_types_sends_no_definitions(two_groups) -> None:
    sender, _ = two_groups
    set_default_type_context(sender)
    data_r, data_w = os.pipe()
    stream_r, stream_w = os.pipe()
    try:
        link = OutboundLink(data_w, stream_w, -1, lambda: None, lambda: False, lambda: None)
        link.put(table_message(Table([[1]])))
        link.put(table_message(Table([[1]], "$DYNAMIC.table_0123456789ab_1")))  # unknown here: nothing to send
        os.set_blocking(data_r, False)
        assert [frame[:1] for frame in FrameReader(data_r).read()] == [b"T", b"T"]
    finally:
        for fd in (data_r, data_w, stream_r, stream_w):
            os.close(fd)


# The same generator, but the type is made once, in the first attempt, and only its id is kept in the
# state: after the recovery the new attempt publishes tables of the *restored* type id.
KEPT_TYPE_GEN = RECOVERY_GEN.replace(
    """    attempt_type = api.type_context.create_new_table(""",
    """    if state["first_type_id"] is not None:
        attempt_type = api.DataTypeReference("table", state["first_type_id"])
        record("attempt", state["first_type_id"], attempt_type.type_id, file="gen.jsonl")
        return
    attempt_type = api.type_context.create_new_table(""")


@pytest.mark.parametrize("mode", MODES)
def test_a_type_id_kept_in_restored_state_resolves_after_recovery(tmp_path: Path, mode: list[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Run-time type definitions are persisted with the operator's state, so the new group process knows them."""
    assert KEPT_TYPE_GEN != RECOVERY_GEN
    files = {"graph.yaml": RECOVERY_GRAPH, "recorder.py": RECORDER, "gen.py": KEPT_TYPE_GEN,
             "sink.py": RECOVERY_SINK}
    monkeypatch.setenv("SNAPGRAPH_FAULTS", "port_callback:sink:7")
    proc = run(tmp_path, files, "--snapshot-period", "1", "--max-retries", "2", "--retry-interval", "0", *mode)
    assert proc.returncode == 0, proc.stderr
    assert "InjectedFault" in proc.stderr
    attempts = records(tmp_path, "gen.jsonl")
    assert len(attempts) == 2, attempts
    first_id = attempts[0][1]
    assert attempts[1][1:] == [first_id, first_id]  # the second attempt publishes the restored type id
    seen = records(tmp_path)
    assert sorted({entry[0] for entry in seen}) == list(range(12))
    assert all(type_id == first_id and columns == ["offset", "label"] for _, type_id, columns in seen)


def test_a_state_without_run_time_types_is_persisted_as_the_script_returned_it() -> None:
    assert pack_state(b"state", []) == b"state"
    assert unpack_state(b"state") == (b"state", [])
    context = TypeContext(VTypeRegistry())
    ref = context.create_new_table({"n": DataTypeReference("scalar", "com.sap.core.int64")})
    stored = pack_state(b"\x00state", context.all_run_time_definitions())
    data, types = unpack_state(stored)
    assert data == b"\x00state"
    assert [t.name for t in types] == [ref.type_id]
