"""Tests for snapgraph.runtime.error_modes: an operator's errorHandling modes, end to end.

Terminate on error, log and ignore, propagate to error port, retry.

Each mode is exercised in the three spellings DI uses (plain string, JSON
string, object), on real graphs run by the engine in this process.
"""

from __future__ import annotations

import json

import pytest

from snapgraph.snapshot.store import COMPLETED, FAILED
from snapgraph.testing import Recorder


@pytest.fixture
def rec():
    """``sg_rec.add(key, value)`` from scripts; the test reads ``rec[key]`` (a list)."""
    with Recorder("sg_rec") as recorder:
        yield recorder.data


def spellings(mode: str) -> list[str]:
    """The errorHandling value as YAML text in DI's three spellings."""
    return [
        json.dumps(mode),                              # plain string
        json.dumps(json.dumps({"type": mode})),        # a JSON string
        json.dumps({"type": mode}),                    # an object
    ]


def assert_completed(run) -> None:
    assert run.result.status == COMPLETED, (run.result.reason, run.result.failure and run.result.failure.traceback)


PIPE_GRAPH = """
operators:
  gen:
    script: gen.py
    outputs: {{out: int64}}
  work:
    script: work.py
    inputs: {{in: int64}}
    outputs: {{out: int64}}
    config: {{errorHandling: {mode}}}
  sink:
    script: sink.py
    inputs: {{in: int64}}
connections:
  - gen.out -> work.in
  - work.out -> sink.in
"""

GEN = """
import sg_rec

def start():
    for i in range(1, 5):
        api.outputs.out.publish(i)

api.set_prestart(start)
api.set_shutdown(lambda: sg_rec.add("shutdown", "gen"))
"""

WORK_FAILS_ON_2 = """
import sg_rec

def on_input(msg_id, header, body):
    value = body.get()
    if value == 2:
        raise ValueError("two is not allowed")
    api.outputs.out.publish(value * 10)

api.set_port_callback("in", on_input)
api.set_shutdown(lambda: sg_rec.add("shutdown", "work"))
"""

SINK = """
import sg_rec
api.set_port_callback("in", lambda m, h, b: sg_rec.add("sink", b.get()))
api.set_shutdown(lambda: sg_rec.add("shutdown", "sink"))
"""


# --------------------------------------------------------------------------------------
# terminate on error (also the default)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", spellings("terminate on error") + ["null"])
def test_terminate_on_error_fails_the_graph_and_runs_every_shutdown(run_yaml, rec, mode):
    graph = PIPE_GRAPH.format(mode=mode)
    if mode == "null":  # no errorHandling at all: terminate on error is the default
        graph = graph.replace("    config: {errorHandling: null}\n", "")
    run = run_yaml(graph, {"gen.py": GEN, "work.py": WORK_FAILS_ON_2, "sink.py": SINK})
    result = run.result
    assert result.status == FAILED
    failure = result.failure
    assert failure.process == "work"
    assert failure.phase == "port callback of 'in'"
    assert "ValueError: two is not allowed" in failure.message
    assert "work.py:6" in failure.message  # the script line
    assert 'raise ValueError("two is not allowed")' in failure.traceback
    assert 3 not in [v // 10 for v in rec.get("sink", [])]  # nothing after the failure reached the sink
    assert sorted(rec["shutdown"]) == ["gen", "sink", "work"]


# --------------------------------------------------------------------------------------
# log and ignore
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", spellings("log and ignore"))
def test_log_and_ignore_logs_and_keeps_processing(run_yaml, rec, capfd, mode):
    run = run_yaml(PIPE_GRAPH.format(mode=mode), {"gen.py": GEN, "work.py": WORK_FAILS_ON_2, "sink.py": SINK})
    assert_completed(run)
    assert rec["sink"] == [10, 30, 40]
    err = capfd.readouterr().err
    assert "[work] ERROR: port callback of 'in' raised (ignored: log and ignore)" in err
    assert "ValueError: two is not allowed" in err
    assert "work.py\", line 6" in err


def test_log_and_ignore_covers_prestart_and_timers(run_yaml, rec, capfd):
    graph = """
    operators:
      op:
        script: op.py
        config: {errorHandling: log and ignore}
    """
    script = """
    import sg_rec
    ticks = []

    def prestart():
        sg_rec.add("prestart")
        raise RuntimeError("prestart broke")

    def tick():
        ticks.append(1)
        sg_rec.add("tick", len(ticks))
        if len(ticks) < 3:
            raise RuntimeError(f"tick {len(ticks)} broke")
        return -1

    api.set_prestart(prestart)
    api.add_timer(tick)
    """
    run = run_yaml(graph, {"op.py": script})
    assert_completed(run)
    assert rec["tick"] == [1, 2, 3]  # a timer that raised keeps ticking
    err = capfd.readouterr().err
    assert "prestart raised (ignored: log and ignore)" in err
    assert "RuntimeError: tick 1 broke" in err and "RuntimeError: tick 2 broke" in err


def test_a_failing_timer_keeps_its_last_interval_under_log_and_ignore(run_yaml, rec):
    # A polling timer whose source is down must not turn into a busy loop flooding the log.
    graph = """
    operators:
      poller:
        script: poller.py
        config: {errorHandling: log and ignore}
    """
    script = """
    import time
    import sg_rec
    calls = []

    def poll():
        calls.append(time.monotonic())
        sg_rec.add("calls", calls[-1])
        if len(calls) == 1:
            return 0.05
        if len(calls) < 4:
            raise ConnectionError("source down")
        return -1

    api.add_timer(poll)
    """
    run = run_yaml(graph, {"poller.py": script})
    assert_completed(run)
    calls = rec["calls"]
    assert len(calls) == 4
    # the interval is a lower bound: after the errors the timer still waits its 0.05 s
    assert all(later - earlier >= 0.05 for earlier, later in zip(calls, calls[1:]))


# --------------------------------------------------------------------------------------
# propagate to error port
# --------------------------------------------------------------------------------------

ERROR_PORT_GRAPH = """
operators:
  gen:
    script: gen.py
    outputs: {{out: int64}}
  work:
    script: work.py
    inputs: {{in: int64}}
    outputs: {{out: int64, error: "structure:com.sap.error"}}
    config: {{errorHandling: {mode}}}
  sink:
    script: sink.py
    inputs: {{in: int64}}
  errors:
    script: errors.py
    inputs: {{in: "structure:com.sap.error"}}
connections:
  - gen.out -> work.in
  - work.out -> sink.in
  - work.error -> errors.in
"""

ERRORS_CONSUMER = """
import sg_rec

def on_error(msg_id, header, body):
    error = body.get()
    code, operator_id, process_id, text, details = error
    sg_rec.add("errors", {
        "type_id": body.get_type_id(), "base": body.get_base_type(), "record": type(error).__name__,
        "code": code, "operatorID": operator_id, "processID": process_id, "text": text,
        "details": [list(row) for row in details], "details_type": type(details).__name__,
    })

api.set_port_callback("in", on_error)
"""

WORK_OPERATOR_EXCEPTION = """
def on_input(msg_id, header, body):
    value = body.get()
    if value == 2:
        raise ValueError("two is not allowed")
    if value == 3:
        details = api.Table([["value", str(value)], ["hint", "odd"]])
        raise api.OperatorException(42, "three is special", details)
    api.outputs.out.publish(value * 10)

api.set_port_callback("in", on_input)
"""


@pytest.mark.parametrize("mode", spellings("propagate to error port"))
def test_propagate_to_error_port_sends_com_sap_error_records(run_yaml, rec, capfd, mode):
    run = run_yaml(ERROR_PORT_GRAPH.format(mode=mode), {
        "gen.py": GEN, "work.py": WORK_OPERATOR_EXCEPTION, "sink.py": SINK, "errors.py": ERRORS_CONSUMER})
    assert_completed(run)
    assert rec["sink"] == [10, 40]
    plain, custom = rec["errors"]
    assert plain == {
        "type_id": "com.sap.error", "base": "structure", "record": "Record",
        "code": 0, "operatorID": "com.sap.system.python3Operator.v2", "processID": "work",
        "text": "two is not allowed", "details": [], "details_type": "Table",
    }
    assert custom["code"] == 42 and custom["text"] == "three is special"
    assert custom["details"] == [["value", "3"], ["hint", "odd"]]
    assert custom["processID"] == "work"
    assert "raised (sent to the error port)" in capfd.readouterr().err


def test_propagate_to_error_port_covers_timers_and_prestart(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
        outputs: {error: "structure:com.sap.error"}
        config: {errorHandling: {type: propagate to error port}}
      errors:
        script: errors.py
        inputs: {in: "structure:com.sap.error"}
    connections:
      - op.error -> errors.in
    """
    script = """
    n = [0]

    def prestart():
        raise KeyError("missing")

    def tick():
        n[0] += 1
        if n[0] == 1:
            raise api.OperatorException(7, "tick failed", None)
        return -1

    api.set_prestart(prestart)
    api.add_timer(tick)
    """
    run = run_yaml(graph, {"op.py": script, "errors.py": ERRORS_CONSUMER})
    assert_completed(run)
    texts = [(e["code"], e["text"]) for e in rec["errors"]]
    assert texts == [(0, "'missing'"), (7, "tick failed")]


def test_propagate_to_error_port_needs_a_connected_error_port(run_yaml):
    from snapgraph.model.problems import GraphError

    graph = """
    operators:
      op:
        script: op.py
        outputs: {error: "structure:com.sap.error"}
        config: {errorHandling: propagate to error port}
    """
    with pytest.raises(GraphError) as info:
        run_yaml(graph, {"op.py": "pass\n"})
    assert "'error' is not connected" in str(info.value)


# --------------------------------------------------------------------------------------
# retry: the exception goes back to the sender's response callback
# --------------------------------------------------------------------------------------

RETRY_GRAPH = """
operators:
  gen:
    script: gen.py
    outputs: {{out: int64}}
  work:
    script: work.py
    inputs: {{in: int64}}
    config: {{errorHandling: {mode}}}
connections:
  - gen.out -> work.in
"""

RETRY_GEN = """
import threading
import sg_rec

main = {}
sent = {}
retried = set()

def on_response(msg_id, ex):
    value = sent[msg_id]
    sg_rec.add("responses", (value, type(ex).__name__ if ex else None, str(ex) if ex else None,
                             threading.get_ident() == main["ident"]))
    if ex is not None and value not in retried:   # the sender decides to publish again
        retried.add(value)
        sent[api.outputs.out.publish(value, response_callback=on_response)] = value

def start():
    main["ident"] = threading.get_ident()
    for i in range(1, 4):
        sent[api.outputs.out.publish(i, response_callback=on_response)] = i

api.set_prestart(start)
"""

RETRY_WORK = """
import sg_rec
seen = []

def on_input(msg_id, header, body):
    value = body.get()
    seen.append(value)
    if value == 2 and seen.count(2) == 1:
        raise ConnectionError("backend busy")
    sg_rec.add("processed", value)

api.set_port_callback("in", on_input)
"""


@pytest.mark.parametrize("mode", spellings("retry"))
def test_retry_reports_the_exception_to_the_senders_response_callback(run_yaml, rec, mode):
    run = run_yaml(RETRY_GRAPH.format(mode=mode), {"gen.py": RETRY_GEN, "work.py": RETRY_WORK})
    assert_completed(run)
    assert sorted(rec["processed"]) == [1, 2, 3]
    responses = rec["responses"]
    assert (2, "ConnectionError", "backend busy", True) in responses
    assert sorted(r for r in responses if r[1] is None) == [
        (1, None, None, True), (2, None, None, True), (3, None, None, True)]
    assert len(responses) == 4


def test_retry_with_the_default_response_callback_raises_in_the_sender(run_yaml, rec):
    gen = """
    def start():
        api.outputs.out.publish(2)    # no response callback: the default raises the downstream error
    api.set_prestart(start)
    """
    run = run_yaml(RETRY_GRAPH.format(mode="retry"), {"gen.py": gen, "work.py": RETRY_WORK})
    assert run.result.status == FAILED
    failure = run.result.failure
    assert failure.process == "gen" and failure.phase == "response callback"
    assert "ConnectionError: backend busy" in failure.message


def test_retry_mode_outside_port_callbacks_terminates(run_yaml):
    graph = """
    operators:
      op:
        script: op.py
        config: {errorHandling: retry}
    """
    script = """
    def prestart():
        raise RuntimeError("nobody to report to")
    api.set_prestart(prestart)
    """
    run = run_yaml(graph, {"op.py": script})
    assert run.result.status == FAILED
    assert run.result.failure.phase == "prestart"
    assert "nobody to report to" in run.result.failure.message


# --------------------------------------------------------------------------------------
# api.propagate_exception from a script thread
# --------------------------------------------------------------------------------------

THREAD_SCRIPT = """
import threading
import sg_rec

def worker():
    try:
        raise LookupError("failed in a worker thread")
    except Exception as e:
        api.propagate_exception(e)

def start():
    sg_rec.add("dispatcher", threading.get_ident())
    threading.Thread(target=worker).start()

api.set_prestart(start)
"""


def test_propagate_exception_from_a_thread_terminates_the_graph(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
    """
    run = run_yaml(graph, {"op.py": THREAD_SCRIPT})
    assert run.result.status == FAILED
    failure = run.result.failure
    assert failure.process == "op" and failure.phase == "propagate_exception"
    assert "LookupError: failed in a worker thread" in failure.message
    assert "op.py:6" in failure.message


def test_propagate_exception_follows_the_operators_error_handling(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
        outputs: {error: "structure:com.sap.error"}
        config: {errorHandling: propagate to error port}
      errors:
        script: errors.py
        inputs: {in: "structure:com.sap.error"}
    connections:
      - op.error -> errors.in
    """
    run = run_yaml(graph, {"op.py": THREAD_SCRIPT, "errors.py": ERRORS_CONSUMER})
    assert_completed(run)
    assert [e["text"] for e in rec["errors"]] == ["failed in a worker thread"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_exception_on_a_thread_without_propagate_is_not_an_operator_error(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    import threading
    import sg_rec

    def worker():
        sg_rec.add("ran")
        raise LookupError("lost")   # bypasses errorHandling, as in Gen2

    def start():
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    api.set_prestart(start)
    """
    run = run_yaml(graph, {"op.py": script})
    assert_completed(run)
    assert rec["ran"] == [None]


# --------------------------------------------------------------------------------------
# failures in each callback kind (terminate on error)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("where,phase,line", [
    ("body", "script body", 3),
    ("prestart", "prestart", 6),
    ("timer", "timer callback", 9),
    ("shutdown", "shutdown", 13),
])
def test_failure_names_the_callback_and_the_script_line(run_yaml, rec, where, phase, line):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = f"""
    import sg_rec
    if "{where}" == "body":
        raise RuntimeError("boom in {where}")

    def prestart():
        if "{where}" == "prestart": raise RuntimeError("boom in {where}")

    def tick():
        if "{where}" == "timer": raise RuntimeError("boom in {where}")
        return -1

    def shutdown():
        if "{where}" == "shutdown": raise RuntimeError("boom in {where}")

    api.set_prestart(prestart)
    api.add_timer(tick)
    api.set_shutdown(shutdown)
    """
    run = run_yaml(graph, {"op.py": script})
    assert run.result.status == FAILED
    failure = run.result.failure
    assert failure.process == "op" and failure.phase == phase
    assert f"RuntimeError: boom in {where}" in failure.message
    assert f"op.py\", line {line}" in failure.traceback
    if where != "body":
        assert f"op.py:{line}" in failure.message


def test_shutdown_exception_after_an_earlier_failure_keeps_the_first_failure(run_yaml):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    def prestart():
        raise ValueError("first")

    def shutdown():
        raise ValueError("second")

    api.set_prestart(prestart)
    api.set_shutdown(shutdown)
    """
    run = run_yaml(graph, {"op.py": script})
    assert run.result.status == FAILED
    assert run.result.failure.phase == "prestart" and "first" in run.result.failure.message


def test_timer_returning_a_non_number_is_an_operator_error(run_yaml):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    api.add_timer(lambda: "soon")
    """
    run = run_yaml(graph, {"op.py": script})
    assert run.result.status == FAILED
    assert run.result.failure.phase == "timer callback"
    assert "'soon'" in run.result.failure.message


def test_publish_to_an_unknown_port_fails_naming_the_port(run_yaml):
    graph = """
    operators:
      op:
        script: op.py
        outputs: {out: int64}
    """
    script = """
    def prestart():
        api.outputs.outt.publish(1)
    api.set_prestart(prestart)
    """
    run = run_yaml(graph, {"op.py": script})
    assert run.result.status == FAILED
    assert "'outt'" in run.result.failure.message and "out" in run.result.failure.message


def test_operator_exception_carries_code_text_and_details(run_yaml, rec):
    graph = """
    operators:
      op:
        script: op.py
    """
    script = """
    import sg_rec
    details = api.Table([["key", "value"]])
    e = api.OperatorException(3, "text", details)
    sg_rec.add("exc", (isinstance(e, Exception), e.code, e.text, e.details is details, str(e)))
    """
    run = run_yaml(graph, {"op.py": script})
    assert_completed(run)
    assert rec["exc"] == [(True, 3, "text", True, "text")]


def test_when_one_script_fails_to_load_the_others_still_shut_down(run_yaml, rec):
    broken = """
    import sg_rec
    api.set_shutdown(lambda: sg_rec.add("shutdown", "work"))
    raise ImportError("no such driver")
    """
    run = run_yaml(PIPE_GRAPH.format(mode="terminate on error"), {"gen.py": GEN, "work.py": broken, "sink.py": SINK})
    assert run.result.status == FAILED
    assert run.result.failure.process == "work" and run.result.failure.phase == "script body"
    assert "ImportError: no such driver" in run.result.failure.message
    # the others' script bodies ran, so their shutdowns run; nothing was published
    assert sorted(rec["shutdown"]) == ["gen", "sink"]
    assert "sink" not in rec
