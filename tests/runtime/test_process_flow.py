"""Message flow between group processes, end to end: streams, response callbacks, fan-in and values
that cannot cross (fairness between local and remote inputs and timers: tests/runtime/test_channels.py).
Operators are in groups of their own unless a test says otherwise, so connections cross process
boundaries; operators report what they saw in JSON files written at shutdown."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import yaml

from snapgraph.model.loader import load_graph
from snapgraph.runtime.engine import COMPLETED, RunOptions
from snapgraph.runtime.processes import ProcessEngine

REPORT = """
import json, os
def report(**values):
    with open(os.path.join(api.config.out, api.config.name + ".json"), "w") as f:
        json.dump(values, f)
"""


def run_in_groups(tmp_path: Path, operators: dict[str, dict[str, Any]], connections: list[str],
                  groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the graph with each operator in a group process of its own (or as ``groups`` says);
    the operators' reports by operator name."""
    for name, spec in operators.items():
        spec["group"] = (groups or {}).get(name, f"g_{name}")
        spec.setdefault("config", {}).update(out=str(tmp_path), name=name)
        spec["code"] = REPORT + textwrap.dedent(spec["code"])
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "flow", "operators": operators, "connections": connections}))
    result = ProcessEngine(load_graph(path), RunOptions(stdout=io.StringIO())).run()
    assert result.status == COMPLETED, result.reason
    return {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}


def test_table_and_binary_streams_cross_processes_read_in_the_callback_and_from_a_thread(tmp_path: Path) -> None:
    writer = """
    def start():
        api.outputs.rows.set_dynamic_type(
            api.Table([[0, "x"]], infer_type=True, colnames=["i", "s"]).get_type_reference())
        _, rows = api.outputs.rows.with_writer()
        for i in range(200):                       # far more chunks than a stream buffers
            rows.write([[i, "r" * 50]])
        rows.close()
        _, blob = api.outputs.blob.with_writer()
        for i in range(64):
            blob.write(bytes([i]) * 1000)
        blob.close()
        api.outputs.after.publish("sent after the streams")
    api.set_prestart(start)
    """
    reader = """
    import threading
    got = {}
    def on_rows(msg_id, header, body):              # reads the stream to its end inside the callback
        r = body.get_reader()
        ids = []
        while len(part := r.read(7)):
            ids += [row[0] for row in part]
        got["rows"] = ids
    def on_blob(msg_id, header, body):              # the Modeler template: a script thread reads it
        def read():
            got["blob"] = list(body.get_reader().read(-1))
        t = threading.Thread(target=read)
        t.start()
        t.join()
    def on_after(msg_id, header, body):
        got["after"] = body.get()
    api.set_port_callback("rows", on_rows)
    api.set_port_callback("blob", on_blob)
    api.set_port_callback("after", on_after)
    api.set_shutdown(lambda: report(**got))
    """
    reports = run_in_groups(tmp_path, {
        "writer": {"code": writer, "outputs": {"rows": "table", "blob": "binary", "after": "string"}},
        "reader": {"code": reader, "inputs": {"rows": "table", "blob": "binary", "after": "string"}},
    }, ["writer.rows -> reader.rows", "writer.blob -> reader.blob", "writer.after -> reader.after"])
    got = reports["reader"]
    assert got["rows"] == list(range(200))
    assert got["blob"] == [b for i in range(64) for b in bytes([i]) * 1000]
    assert got["after"] == "sent after the streams"


def test_fan_in_from_two_processes_delivers_every_table_in_order_per_sender(tmp_path: Path) -> None:
    gen = """
    def start():
        for i in range(300):
            api.outputs.out.publish(api.Table([[api.config.tag, i, "x" * 200] for _ in range(50)]))
    api.set_prestart(start)
    """
    sink = """
    seen = {"a": [], "b": []}
    def on_input(msg_id, header, body):
        rows = body.get()
        assert len({(r[0], r[1]) for r in rows}) == 1
        seen[rows[0][0]].append(rows[0][1])
    api.set_port_callback("in", on_input)
    api.set_shutdown(lambda: report(**seen))
    """
    reports = run_in_groups(tmp_path, {
        "gen_a": {"code": gen, "outputs": {"out": "table"}, "config": {"tag": "a"}},
        "gen_b": {"code": gen, "outputs": {"out": "table"}, "config": {"tag": "b"}},
        "sink": {"code": sink, "inputs": {"in": "table"}},
    }, ["gen_a.out -> sink.in", "gen_b.out -> sink.in"])
    assert reports["sink"] == {"a": list(range(300)), "b": list(range(300))}


def test_an_exception_class_of_the_receivers_script_reaches_the_sender_as_text(tmp_path: Path) -> None:
    """retry mode: the receiver raises an exception defined in its own script, which no other process
    can rebuild; the sender's response callback still gets it (as a RuntimeError with its text)."""
    sender = """
    responses = []
    def start():
        api.outputs.out.publish(1, response_callback=lambda mid, ex: responses.append(f"{type(ex).__name__}: {ex}"))
    api.set_prestart(start)
    api.set_shutdown(lambda: report(responses=responses))
    """
    receiver = """
    class NotWanted(Exception):
        pass
    def on_input(msg_id, header, body):
        raise NotWanted("no thanks")
    api.set_port_callback("in", on_input)
    """
    reports = run_in_groups(tmp_path, {
        "sender": {"code": sender, "outputs": {"out": "int64"}},
        "receiver": {"code": receiver, "inputs": {"in": "int64"}, "config": {"errorHandling": "retry"}},
    }, ["sender.out -> receiver.in"])
    assert reports["sender"]["responses"] == ["RuntimeError: NotWanted: no thanks"]


def test_a_value_that_cannot_be_sent_to_another_group_fails_the_publish_and_nothing_hangs(tmp_path: Path) -> None:
    """The script sees a clear error at publish (and may handle it); the count of messages in flight
    stays right, so the graph still completes."""
    gen = """
    import threading
    errors = []
    def start():
        try:
            api.outputs.out.publish(threading.Lock())
        except TypeError as e:
            errors.append(str(e))
        api.outputs.out.publish("after")
    api.set_prestart(start)
    api.set_shutdown(lambda: report(errors=errors))
    """
    sink = """
    got = []
    api.set_port_callback("in", lambda m, h, b: got.append(b.get()))
    api.set_shutdown(lambda: report(got=got))
    """
    reports = run_in_groups(tmp_path, {
        "gen": {"code": gen, "outputs": {"out": "any"}},
        "sink": {"code": sink, "inputs": {"in": "any"}},
    }, ["gen.out -> sink.in"])
    assert reports["sink"]["got"] == ["after"]
    [error] = reports["gen"]["errors"]
    assert error.startswith("a message to another group must be picklable: TypeError: cannot pickle '_thread.lock'")


def test_a_stream_chunk_that_cannot_be_sent_fails_the_writers_write_call(tmp_path: Path) -> None:
    writer = """
    import threading
    errors = []
    def start():
        _, w = api.outputs.out.with_writer()
        w.write(b"fine")
        try:
            w.write(threading.Lock())
        except TypeError as e:
            errors.append(type(e).__name__)
        w.close()
    api.set_prestart(start)
    api.set_shutdown(lambda: report(errors=errors))
    """
    reader = """
    got = []
    api.set_port_callback("in", lambda m, h, b: got.append(b.get_reader().read(-1).decode()))
    api.set_shutdown(lambda: report(got=got))
    """
    reports = run_in_groups(tmp_path, {
        "writer": {"code": writer, "outputs": {"out": "binary"}},
        "reader": {"code": reader, "inputs": {"in": "binary"}},
    }, ["writer.out -> reader.in"])
    assert reports["writer"]["errors"] == ["TypeError"]
    assert reports["reader"]["got"] == ["fine"]
