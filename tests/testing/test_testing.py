"""snapgraph.testing: the public harness for operator scripts, on the real runtime."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from snapgraph.api.table import Record, Table
from snapgraph.model.problems import GraphError
from snapgraph.testing import (
    ABORT,
    EOF,
    ManualClock,
    OperatorBusy,
    OperatorError,
    OperatorTest,
    Recorder,
    RestoreMismatch,
    Send,
    SendStream,
    Tick,
    batch_header,
    check_restore,
    last_batch,
    run_graph,
    run_operator,
    run_with_faults,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(doc_blocks())))
def test_every_example_in_docs_testing_md_passes(index: int) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_testing_{index}"}
    exec(compile(doc_blocks()[index], f"docs/testing.md block {index + 1}", "exec"), namespace)  # noqa: S102
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert tests, "each example defines at least one test"
    for test in tests:
        test()


def test_the_docs_have_examples_of_every_part() -> None:
    text = "".join(doc_blocks())
    for name in ("OperatorTest", "run_operator", "check_restore", "run_graph", "run_with_faults", "Recorder",
                 "advance", "EOF"):
        assert name in text


# -- messages in, messages out --------------------------------------------------------------------------

ECHO = """
def on_input(msg_id, header, body):
    api.outputs.out.publish(body.get(), header)

api.set_port_callback("in", on_input)
"""


def test_outputs_keep_order_bodies_headers_and_type_ids() -> None:
    with OperatorTest(ECHO, inputs={"in": "string"}, outputs={"out": "string"}) as op:
        op.send("in", "a", {"k": [1]})
        op.send("in", "b")
        out = op.outputs["out"]
        assert out.bodies == ["a", "b"]
        assert out.headers == [{"k": [1]}, {}]
        assert [m.type_id for m in out] == ["com.sap.core.string"] * 2
        assert len(out[0].msg_id) == 12


def test_tables_records_bytes_and_header_only_messages() -> None:
    script = """
def on_input(msg_id, header, body):
    api.outputs.out.publish((body.get_base_type(), body.get() if body.get_base_type() != "scalar" else None))

api.set_port_callback("in", on_input)
"""
    with OperatorTest(script, inputs={"in": "*"}, outputs={"out": "*"}) as op:
        op.send("in", Table([[1, "x"]], infer_type=True))
        op.send("in", Record([1, 2]))
        op.send("in", None, {"only": ["header"]})
        values = op.outputs["out"].bodies
    assert values[0][0] == "table" and values[0][1].body == [[1, "x"]]
    assert values[1] == ("structure", Record([1, 2]))
    assert values[2] == ("none", None)


def test_binary_input_and_streamed_output() -> None:
    script = """
def on_input(msg_id, header, body):
    data = body.get_reader().read(-1)
    _, writer = api.outputs.out.with_writer()
    writer.write(data[:2])
    writer.write(data[2:])
    writer.close()

api.set_port_callback("in", on_input)
"""
    with OperatorTest(script, inputs={"in": "binary"}, outputs={"out": "binary"}) as op:
        op.send("in", b"hello")
        op.send_stream("in", [b"wor", b"ld"])
        out = op.outputs["out"]
        assert out.bodies == [b"hello", b"world"]
        assert all(m.streamed and m.closed for m in out)


def test_table_streams_in_both_directions_on_dynamic_ports() -> None:
    script = """
def on_input(msg_id, header, body):
    reader = body.get_reader()
    api.outputs.out.set_dynamic_type(api.DataTypeReference("table", body.get_type_id()))
    _, writer = api.outputs.out.with_writer(header)
    while True:
        rows = reader.read(2)
        if not len(rows):
            break
        writer.write([[r[0] * 10] for r in rows])
    writer.close()

api.set_port_callback("in", on_input)
"""
    with OperatorTest(script, inputs={"in": "table"}, outputs={"out": "table"}) as op:
        op.send_stream("in", [[[1], [2], [3]], [[4]]], last_batch())
        assert op.outputs["out"].values == [[[10], [20], [30], [40]]]
        assert op.outputs["out"].ended


def test_a_value_of_the_wrong_type_is_refused_naming_the_input_port() -> None:
    with OperatorTest(ECHO, inputs={"in": "string"}, outputs={"out": "string"}) as op:
        with pytest.raises(TypeError, match="input port 'in' of operator 'op'.*expected a str"):
            op.send("in", 1)
        assert op.outputs["out"].bodies == []


def test_an_unknown_input_port_is_named_with_the_ports_there_are() -> None:
    with OperatorTest(ECHO, inputs={"in": "string"}, outputs={"out": "string"}) as op:
        with pytest.raises(ValueError, match=r"no input port 'inn' \(its input ports: in\)"):
            op.send("inn", "x")


def test_publishing_to_an_undeclared_output_port_fails_naming_it() -> None:
    script = """
def on_input(msg_id, header, body):
    api.outputs.result.publish(1)

api.set_port_callback("in", on_input)
"""
    with pytest.raises(OperatorError, match=r"no output port 'result' \(its ports: out\)") as caught:
        with OperatorTest(script, inputs={"in": "int64"}, outputs={"out": "int64"}) as op:
            op.send("in", 1)
    assert caught.value.failure.phase == "port callback of 'in'"
    assert "<script of op>" in str(caught.value)  # the script traceback


def test_unconnected_ports_are_not_connected_for_the_script() -> None:
    script = """
import sg_rec
sg_rec.add("connected", (api.is_inport_connected, api.is_outport_connected))
"""
    with Recorder() as rec:
        with OperatorTest(script, inputs={"a": "int64", "b": "int64"}, outputs={"out": "int64"},
                          unconnected=["b"]) as op:
            with pytest.raises(ValueError, match="declared unconnected"):
                op.send("b", 1)
        assert rec["connected"] == [({"a": True, "b": False}, {"out": True})]
    with pytest.raises(ValueError, match="unknown port"):
        OperatorTest(ECHO, inputs={"in": "string"}, unconnected=["nope"])


def test_bad_declarations_fail_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="input port 'in'.*unknown port type 'int65'"):
        OperatorTest(ECHO, inputs={"in": "int65"})
    with pytest.raises(GraphError, match="syntax error"):
        OperatorTest("def broken(:\n    pass\n", outputs={"out": "int64"})
    with pytest.raises(GraphError, match="Gen1 API"):
        OperatorTest("api.send('out', 1)\n", outputs={"out": "int64"})
    with pytest.raises(ValueError, match="restore= needs snapshots=True"):
        OperatorTest(ECHO, inputs={"in": "string"}, restore=("e", b""))


def test_a_failing_script_body_raises_at_start() -> None:
    with pytest.raises(OperatorError, match="script body: ZeroDivisionError"):
        OperatorTest("x = 1 / 0\n").start()


def test_a_failing_shutdown_is_reported_on_stop() -> None:
    op = OperatorTest("def stop():\n    raise RuntimeError('boom')\napi.set_shutdown(stop)\n").start()
    with pytest.raises(OperatorError, match="shutdown: RuntimeError: boom"):
        op.stop()


def test_the_harness_refuses_use_outside_its_life() -> None:
    op = OperatorTest(ECHO, inputs={"in": "string"}, outputs={"out": "string"})
    with pytest.raises(RuntimeError, match="start the operator first"):
        op.send("in", "x")
    op.start()
    op.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        op.send("in", "x")


def test_a_script_file_imports_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "helper_for_testing_test.py").write_text("def twice(x):\n    return 2 * x\n")
    script = tmp_path / "script.py"
    script.write_text("import helper_for_testing_test as h\n"
                      "api.set_port_callback('in', lambda m, hd, b: api.outputs.out.publish(h.twice(b.get())))\n")
    with OperatorTest(script, inputs={"in": "int64"}, outputs={"out": "int64"}) as op:
        op.send("in", 21)
        assert op.outputs["out"].values == [42]


# -- error handling modes -----------------------------------------------------------------------------------

FAILS_ON_NEGATIVE = """
def on_input(msg_id, header, body):
    if body.get() < 0:
        raise api.OperatorException(7, "negative")
    api.outputs.out.publish(body.get())

api.set_port_callback("in", on_input)
"""


def test_propagate_to_error_port_captures_the_error_record() -> None:
    with OperatorTest(FAILS_ON_NEGATIVE, inputs={"in": "int64"},
                      outputs={"out": "int64", "error": "structure:com.sap.error"},
                      config={"errorHandling": "propagate to error port"}) as op:
        op.send("in", -1)
        op.send("in", 2)
        assert op.outputs["out"].values == [2]
        code, _, process, text, _ = op.outputs["error"].values[0]
        assert (code, process, text) == (7, "op", "negative")


def test_log_and_ignore_keeps_the_log_records() -> None:
    with OperatorTest(FAILS_ON_NEGATIVE, inputs={"in": "int64"}, outputs={"out": "int64"},
                      config={"errorHandling": "log and ignore"}) as op:
        op.send("in", -1)
        op.send("in", 3)
        assert op.outputs["out"].values == [3]
        assert any("negative" in r.getMessage() for r in op.logs)


def test_retry_mode_reports_the_exception_per_message() -> None:
    with OperatorTest(FAILS_ON_NEGATIVE, inputs={"in": "int64"}, outputs={"out": "int64"},
                      config={"errorHandling": "retry"}) as op:
        bad = op.send("in", -1)
        good = op.send("in", 1)
        assert str(op.responses[bad]) == "negative"
        assert op.responses[good] is None


def test_response_callbacks_run_when_the_test_side_took_the_message() -> None:
    script = """
import sg_rec
def start():
    api.outputs.out.publish(1, response_callback=lambda msg_id, ex: sg_rec.add("response", ex))
api.set_prestart(start)
"""
    with Recorder() as rec:
        with OperatorTest(script, outputs={"out": "int64"}):
            pass
        assert rec["response"] == [None]


# -- the clock ------------------------------------------------------------------------------------------------

TWO_TIMERS = """
import sg_rec
ticks = {"a": 0, "b": 0}

def timer(name, interval, times):
    def tick():
        ticks[name] += 1
        sg_rec.add("ticks", (name, ticks[name]))
        return interval if ticks[name] < times else -1
    return tick

api.add_timer(timer("a", 2, 3))
api.add_timer(timer("b", 3, 2))
"""


def test_advance_fires_timers_in_time_order() -> None:
    with Recorder() as rec:
        with OperatorTest(TWO_TIMERS) as op:
            assert rec["ticks"] == [("a", 1), ("b", 1)]
            op.advance(1.5)
            assert len(rec["ticks"]) == 2
            op.advance(10)
            assert rec["ticks"] == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
            assert op.timers == 0
            assert op.clock.now == 11.5


def test_a_shared_clock_can_start_anywhere_and_never_goes_back() -> None:
    clock = ManualClock(100.0)
    with OperatorTest("api.add_timer(lambda: 5)\n", clock=clock) as op:
        op.advance(5)
        assert clock() == 105.0
        with pytest.raises(ValueError, match="only moves forward"):
            op.advance(-1)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(1.0)


def test_a_timer_that_always_returns_zero_is_reported_busy() -> None:
    with pytest.raises(OperatorBusy, match="returns 0"):
        OperatorTest("api.add_timer(lambda: 0)\n", timeout=0.3).start()


def test_timers_do_not_follow_wall_time() -> None:
    script = "import sg_rec\ndef t():\n    sg_rec.add('t')\n    return 0.01\napi.add_timer(t)\n"
    with Recorder() as rec:
        with OperatorTest(script) as op:
            op.run_until_idle()
            import time
            time.sleep(0.1)
            op.run_until_idle()
            assert len(rec["t"]) == 1
            op.advance(0.05)
            assert len(rec["t"]) == 6


# -- run_operator, EOF, ABORT -------------------------------------------------------------------------------------

SLOW_ECHO = """
import time
def on_input(msg_id, header, body):
    time.sleep(0.05)
    api.outputs.out.publish(body.get(), header)
api.set_port_callback("in", on_input)
"""


def test_run_operator_with_tuples_ticks_and_eof() -> None:
    script = ECHO + "api.add_timer(lambda: (api.outputs.out.publish(0), 10)[1])\n"
    run = run_operator(script, [("in", 1), Tick(10), ("in", 2, last_batch()), EOF, ("in", 3)],
                       inputs={"in": "int64"}, outputs={"out": "int64"})
    assert run.failure is None and not run.aborted
    assert run["out"].values == [0, 1, 0, 2]
    assert run["out"].ended
    with pytest.raises(KeyError, match="no output port 'nope'"):
        run["nope"]


def test_abort_stops_without_processing_what_is_queued() -> None:
    op_steps = [Send("in", i) for i in range(3)]
    run = run_operator(SLOW_ECHO, [*op_steps, ABORT, Send("in", 99)], inputs={"in": "int64"},
                       outputs={"out": "int64"})
    assert run.aborted
    assert run["out"].values == [0, 1, 2]


def test_run_operator_returns_the_failure_and_refuses_non_steps() -> None:
    run = run_operator(FAILS_ON_NEGATIVE, [Send("in", 1), Send("in", -1), Send("in", 2)],
                       inputs={"in": "int64"}, outputs={"out": "int64"})
    assert run["out"].values == [1]
    assert run.failure is not None and "negative" in run.failure.message
    with pytest.raises(TypeError, match="not a step"):
        run_operator(ECHO, [42], inputs={"in": "int64"}, outputs={"out": "int64"})


def test_batch_headers_follow_the_gen2_field_order() -> None:
    assert batch_header(2, False, 5, 100, "rows") == {"com.sap.headers.batch": [2, False, 5, 100, "rows"]}
    assert last_batch(4)["com.sap.headers.batch"][:2] == [4, True]


# -- snapshots and restore -----------------------------------------------------------------------------------------

STATEFUL = """
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
state = {"total": 0, "completed": []}

def on_input(msg_id, header, body):
    state["total"] += body.get()
    api.outputs.out.publish(state["total"])

def serialize(epoch):
    return pickle.dumps(state)

def restore(epoch, data):
    state.update(pickle.loads(data))

def complete(epoch):
    state["completed"].append(epoch)

api.set_port_callback("in", on_input)
api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(complete)
"""
PORTS: dict[str, Any] = {"inputs": {"in": "int64"}, "outputs": {"out": "int64"}}
STEPS = [Send("in", 1), Send("in", 2), Send("in", 3)]


def test_snapshot_forwards_the_barrier_and_restore_continues_the_state() -> None:
    with OperatorTest(STATEFUL, snapshots=True, **PORTS) as op:
        op.send("in", 5)
        state = op.snapshot("e1")
        assert state is not None and op.states == {"e1": state}
        assert op.outputs["out"].epochs == ["e1"]
        op.complete_epoch("e1")
        assert pickle_state(op.snapshot("e2"))["completed"] == ["e1"]
    with OperatorTest(STATEFUL, snapshots=True, restore=("e1", state), **PORTS) as op:
        op.send("in", 1)
        assert op.outputs["out"].values == [6]
        # restore, prestart, and epoch_complete of the restored epoch again, as in a recovery
        assert pickle_state(op.snapshot())["completed"] == ["e1"]


def pickle_state(state: bytes | None) -> Any:
    import pickle

    assert state is not None
    return pickle.loads(OperatorTest.script_state(state))


def test_alignment_holds_an_input_back_until_every_input_has_the_barrier() -> None:
    script = STATEFUL.replace('api.set_port_callback("in", on_input)',
                              'api.set_port_callback("in", on_input)\napi.set_port_callback("other", on_input)')
    with OperatorTest(script, snapshots=True, inputs={"in": "int64", "other": "int64"},
                      outputs={"out": "int64"}) as op:
        op.send_barrier("in", "e1")
        op.send("in", 100)                       # behind the barrier: held back
        assert op.outputs["out"].values == []
        op.send("other", 1)                      # before the barrier on 'other': processed
        assert op.outputs["out"].values == [1]
        op.send_barrier("other", "e1")           # aligned: snapshot, then 'in' flows again
        op.run_until_idle()
        assert pickle_state(op.states["e1"])["total"] == 1
        assert op.outputs["out"].values == [1, 101]


def test_a_source_takes_its_snapshot_between_two_timer_calls() -> None:
    script = """
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
n = 0
def tick():
    global n
    n += 1
    api.outputs.out.publish(n)
    return 1
def restore(epoch, data):
    global n
    n = pickle.loads(data)
api.set_serialize_callback(lambda epoch: pickle.dumps(n))
api.set_restore_callback(restore)
api.add_timer(tick)
"""
    with OperatorTest(script, snapshots=True, outputs={"out": "int64"}) as op:
        op.advance(2)
        state = op.snapshot()
    assert pickle_state(state) == 3
    with OperatorTest(script, snapshots=True, restore=("epoch-1", state), outputs={"out": "int64"}) as op:
        assert op.outputs["out"].values == [4]


def test_snapshot_needs_snapshots_on() -> None:
    with OperatorTest(STATEFUL, **PORTS) as op:
        with pytest.raises(RuntimeError, match="snapshots=True"):
            op.snapshot()


def test_check_restore_passes_a_correct_operator_at_every_split_point() -> None:
    check = check_restore(STATEFUL, STEPS, **PORTS)
    assert check.split_points == [0, 1, 2, 3]
    assert check.outputs == {"out": [1, 3, 6]}
    assert set(check.states) == {0, 1, 2, 3}


def test_check_restore_catches_a_restore_callback_that_drops_the_state() -> None:
    broken = STATEFUL.replace("state.update(pickle.loads(data))", "pass")
    with pytest.raises(RestoreMismatch, match=r"does not round-trip \(a snapshot after step 1 of 3"):
        check_restore(broken, STEPS, **PORTS)


def test_check_restore_catches_a_restore_callback_that_raises() -> None:
    broken = STATEFUL.replace("state.update(pickle.loads(data))", "raise ValueError('cannot restore')")
    with pytest.raises(OperatorError, match="cannot restore"):
        check_restore(broken, STEPS, **PORTS)


def test_check_restore_catches_state_kept_outside_serialize() -> None:
    # serialize/restore round-trip, but a counter the state leaves out changes the replayed output.
    leaky = STATEFUL.replace("api.outputs.out.publish(state[\"total\"])",
                             "global seen\n    seen = globals().get('seen', 0) + 1\n"
                             "    api.outputs.out.publish(state[\"total\"] * 100 + seen)")
    with pytest.raises(RestoreMismatch, match="port 'out' after a restore from a snapshot after step 1"):
        check_restore(leaky, STEPS, **PORTS)


def test_check_restore_catches_a_snapshot_that_changes_the_output() -> None:
    noisy = STATEFUL.replace("return pickle.dumps(state)",
                             "api.outputs.out.publish(-1)\n    return pickle.dumps(state)")
    with pytest.raises(RestoreMismatch, match="without snapshots"):
        check_restore(noisy, STEPS, at=[1], **PORTS)


def test_check_restore_with_a_custom_state_comparison_and_split_points() -> None:
    seen: list[tuple[bytes, bytes]] = []

    def same(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return True

    check = check_restore(STATEFUL, STEPS, at=[2], same_state=same, **PORTS)
    assert check.split_points == [2] and len(seen) == 1
    with pytest.raises(ValueError, match="outside 0..3"):
        check_restore(STATEFUL, STEPS, at=[4], **PORTS)


def test_check_restore_refuses_operators_without_state_and_abort_steps() -> None:
    with pytest.raises(ValueError, match="not stateful"):
        check_restore(ECHO, [Send("in", 1)], inputs={"in": "int64"}, outputs={"out": "int64"})
    with pytest.raises(ValueError, match="leave ABORT out"):
        check_restore(STATEFUL, [*STEPS, ABORT], **PORTS)


def test_check_restore_replays_streams_and_ticks() -> None:
    script = STATEFUL.replace("state[\"total\"] += body.get()",
                              "state[\"total\"] += sum(r[0] for r in body.get().body)").replace(
        "api.set_port_callback(\"in\", on_input)",
        "api.set_port_callback(\"in\", on_input)\napi.add_timer(lambda: 5)")
    check_restore(script, [SendStream("in", [[[1], [2]]]), Tick(5), Send("in", [[3]])],
                  inputs={"in": "table"}, outputs={"out": "int64"})


# -- graphs ----------------------------------------------------------------------------------------------------------

def test_run_graph_captures_every_port_and_the_terminal(tmp_path: Path) -> None:
    graph = """
operators:
  gen:
    code: |
      def start():
          api.outputs.out.publish("a", {"com.sap.headers.batch": [0, True, 1, 1, "rows"]})
      api.set_prestart(start)
    outputs: {out: string}
  show:
    component: terminal
  stop:
    component: terminator
connections:
  - gen.out -> show.in
  - gen.out -> stop.in
"""
    run = run_graph(graph, folder=tmp_path).check()
    assert run["gen.out"].values == ["a"] and run["gen.out"].ended
    assert run.stdout == "a\n"
    assert "graph terminator" in run.reason
    with pytest.raises(KeyError, match="gen.nope"):
        run["gen.nope"]


def test_run_graph_reports_a_failed_run() -> None:
    graph = """
operators:
  bad:
    code: |
      api.set_prestart(lambda: 1 / 0)
    outputs: {out: int64}
"""
    run = run_graph(graph)
    assert run.status == "failed"
    with pytest.raises(OperatorError, match="ZeroDivisionError"):
        run.check()
    with pytest.raises(ValueError, match="files= goes with YAML text"):
        run_graph(Path("graph.yaml"), {"a.py": ""})


# -- Recorder ----------------------------------------------------------------------------------------------------------

def test_recorder_installs_and_removes_its_module() -> None:
    import sys

    with Recorder("sg_rec_test") as rec:
        sys.modules["sg_rec_test"].add("k", 1)
        sys.modules["sg_rec_test"].shared["x"] = 2
        assert rec["k"] == [1] and "k" in rec and list(rec) == ["k"] and rec.shared == {"x": 2}
        with pytest.raises(RuntimeError, match="already imported"):
            Recorder("sg_rec_test").__enter__()
    assert "sg_rec_test" not in sys.modules


# -- run_with_faults -------------------------------------------------------------------------------------

COUNTING_SOURCE = """
import pickle

state = {"next": 0}
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True,
                                                     outports_info={"out": api.OutportInfo(is_generator=True)}))

def tick():
    if state["next"] == 200:
        return -1
    header = {"com.sap.headers.batch": [state["next"], state["next"] == 199, 200, 1, "rows"]}
    api.outputs.out.publish(state["next"], header)
    state["next"] += 1
    return 0.001

def restore(epoch, data):
    state.update(pickle.loads(data))

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(state))
api.set_restore_callback(restore)
"""

SET_WRITER = """
import os

def on_input(msg_id, header, body):
    with open(os.path.join(api.config.folder, str(body.get())), "w") as out:
        out.write("x")

api.set_port_callback("in", on_input)
"""


def _counting_graph(folder: Path) -> Path:
    (folder / "source.py").write_text(COUNTING_SOURCE)
    (folder / "writer.py").write_text(SET_WRITER)
    (folder / "out").mkdir()
    graph = folder / "graph.yaml"
    graph.write_text(textwrap.dedent(f"""
        name: counting
        operators:
          source: {{script: source.py, outputs: {{out: int64}}}}
          writer: {{script: writer.py, inputs: {{in: int64}}, config: {{folder: {folder / 'out'}}},
                   delivery: {{writer: idempotent}}}}
          stop: {{component: graphTerminator}}
        connections: [source.out -> writer.in, source.out -> stop.in]
        """))
    return graph


def test_run_with_faults_recovers_and_says_which_faults_fired(tmp_path: Path) -> None:
    graph = _counting_graph(tmp_path)
    run = run_with_faults(graph, "port_callback:writer:120:raise").check_recovered()
    assert run.unfired == [] and run.outcome.attempts == 2
    assert sorted(int(name) for name in os.listdir(tmp_path / "out")) == list(range(200))
    never = run_with_faults(graph, "port_callback:writer:999:raise")
    assert never.status == "completed" and never.unfired == ["port_callback:writer:999:raise"]
    with pytest.raises(OperatorError, match="faults that never fired: port_callback:writer:999:raise; no attempt "
                                            "failed; the last attempt started from scratch"):
        never.check_recovered()
