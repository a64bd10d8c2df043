"""The NATS JetStream source and sink (src/snapgraph/connectors/nats.py) against the real server at 127.0.0.1:4222.

Each test creates its own streams (unique names, deleted at the end). Graphs of ``nats-source`` -> (a
pacing, deterministic operator) -> ``nats-sink`` or ``sql-writer`` run under the supervisor with 20 ms
epochs for the fault matrix, and through the command line for engine kills and ``--resume``. Every crash
case asserts that its fault fired and compares the target with the failure-free result (asserted first):
the sink's stream must hold each message exactly once, in order. With de-duplication off the same crash
shows duplicates, which proves the comparison can fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.js.api import RetentionPolicy, StreamConfig

from snapgraph.connectors.nats import MSG_ID
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import WriterKind
from snapgraph.model.nats_builtins import NATS_SINK, NATS_SOURCE
from snapgraph.runtime.engine import COMPLETED
from snapgraph.runtime.supervisor import SupervisedResult
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.testing import run_with_faults

from .sql_helpers import SqlDatabase

URL = "nats://127.0.0.1:4222"
COUNT = 300  # messages in the input stream: batches of 10

# Stateless and deterministic: passes each JSON message on with a field added, `delay` seconds each, so
# that a run lasts several 20 ms epochs; with `table: true` it makes each message one row of a table.
PACE = """
import time

def on_input(msg_id, header, body):
    time.sleep(api.config.delay)
    value = body.get()
    if api.config.table:
        api.outputs.output.publish(api.Table([[value["i"], f"name{value['i']}", value["i"] * 2]]))
    else:
        api.outputs.output.publish({"i": value["i"], "twice": value["i"] * 2}, header)

api.set_port_callback("input", on_input)
"""

# Logs each value with its X-Origin header (a NATS header the source made a Gen2 header), forwards it.
SHOW = """
def on_input(msg_id, header, body):
    api.logger.info("%r %r", body.get(), header["X-Origin"])
    api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


class JetStream:
    """One test's streams on the server, handled through nats-py directly (not through the code under test)."""

    def __init__(self) -> None:
        self.name = f"SG{uuid.uuid4().hex[:10].upper()}"
        self.input = f"{self.name}_IN"
        self.output = f"{self.name}_OUT"
        self.in_subject = f"{self.name.lower()}.in"
        self.out_subject = f"{self.name.lower()}.out"
        self.created: list[str] = []

    def _run(self, work: Any) -> Any:
        async def session() -> Any:
            client = await nats.connect(URL)
            try:
                return await work(client.jetstream())
            finally:
                await client.close()

        return asyncio.run(session())

    def create(self, name: str, subjects: list[str], *, duplicate_window: float = 120,
               retention: RetentionPolicy = RetentionPolicy.LIMITS, max_msgs: int | None = None) -> None:
        async def work(js: Any) -> None:
            await js.add_stream(StreamConfig(name=name, subjects=subjects, duplicate_window=duplicate_window,
                                             retention=retention, max_msgs=max_msgs))

        self._run(work)
        self.created.append(name)

    def create_pair(self, count: int = COUNT, *, retention: RetentionPolicy = RetentionPolicy.LIMITS) -> None:
        """The input stream with ``count`` JSON messages {"i": i}, and the (empty) output stream."""
        self.create(self.input, [f"{self.in_subject}.>"], retention=retention)
        self.create(self.output, [self.out_subject])
        self.publish(count)

    def publish(self, count: int, start: int = 0) -> None:
        async def work(js: Any) -> None:
            for i in range(start, start + count):
                await js.publish(f"{self.in_subject}.{i % 3}", json.dumps({"i": i}).encode(),
                                 headers={"X-Origin": f"test-{i}"})

        self._run(work)

    def delete(self, stream: str, sequence: int) -> None:
        async def work(js: Any) -> None:
            await js.delete_msg(stream, sequence)

        self._run(work)

    def messages(self, stream: str) -> list[tuple[bytes, dict[str, str]]]:
        """Every message ``stream`` holds, in order: (payload, headers)."""
        async def work(js: Any) -> list[tuple[bytes, dict[str, str]]]:
            info = await js.stream_info(stream)
            found = []
            for sequence in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
                try:
                    msg = await js.get_msg(stream, sequence)
                except nats.js.errors.NotFoundError:
                    continue
                found.append((bytes(msg.data or b""), dict(msg.headers or {})))
            return found

        result: list[tuple[bytes, dict[str, str]]] = self._run(work)
        return result

    def payloads(self, stream: str) -> list[Any]:
        return [json.loads(data) for data, _ in self.messages(stream)]

    def consumer(self, stream: str, name: str) -> Any:
        async def work(js: Any) -> Any:
            return await js.consumer_info(stream, name)

        return self._run(work)

    def consumer_count(self, stream: str) -> int:
        async def work(js: Any) -> int:
            return int((await js.stream_info(stream)).state.consumer_count)

        result: int = self._run(work)
        return result

    def drop(self) -> None:
        async def work(js: Any) -> None:
            for name in self.created:
                try:
                    await js.delete_stream(name)
                except nats.js.errors.NotFoundError:
                    pass

        self._run(work)


def expected(count: int = COUNT, start: int = 0) -> list[dict[str, int]]:
    """What the failure-free run of the paced graph writes: each input message once, in order."""
    return [{"i": i, "twice": i * 2} for i in range(start, start + count)]


@pytest.fixture
def js() -> Iterator[JetStream]:
    streams = JetStream()
    yield streams
    streams.drop()


def write_graph(folder: Path, js: JetStream, *, source: dict[str, Any] | None = None,
                sink: dict[str, Any] | None = None, delay: float = 0.004, sql: bool = False,
                period: float | None = None, groups: bool = True) -> Path:
    """graph.yaml: nats-source over the input stream -> pace -> nats-sink into the output stream (or, with
    ``sql``, an SQL writer in transactional mode into table ``dst`` of connection DB)."""
    source_config = {"url": URL, "stream": js.input, "batch": 10, "format": "json", **(source or {})}
    operators: dict[str, Any] = {
        "src": {"component": "nats-source", "config": source_config},
        "pace": {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                 "config": {"delay": delay, "table": sql}, "delivery": {"deterministic": True}},
    }
    if sql:
        operators["out"] = {"component": "sql-writer", "config": {"connection": {"connectionID": "DB"},
                                                                  "table": "dst", "mode": "transactional"}}
    else:
        operators["out"] = {"component": "nats-sink", "config": {"url": URL, "subject": js.out_subject,
                                                                 **(sink or {})}}
    if groups:
        # As in the SQL tests: the pace operator shares the source's group, so the bounded local channel
        # keeps the source from running ahead and each epoch follows only a few messages.
        operators["src"]["group"] = operators["pace"]["group"] = "source"
        operators["out"]["group"] = "sink"
    graph: dict[str, Any] = {"name": "natsgraph", "operators": operators,
                             "connections": ["src.output -> pace.input", "pace.output -> out.input"]}
    if period is not None:
        graph["snapshots"] = {"period": period}
    (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def run_supervised(folder: Path, graph: Path, faults: str = "", *, period: float | None = 0.02,
                   in_process: bool = True, connections: Path | None = None) -> tuple[SupervisedResult, FaultPlan]:
    run = run_with_faults(graph, faults, period=period, connections=connections, in_process=in_process,
                          store=folder / f"store-{uuid.uuid4().hex[:6]}.db")
    return run.outcome, run.plan


def cli(folder: Path, *args: str, faults: str = "", graph: str = "graph.yaml",
        timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SNAPGRAPH_FAULTS": faults}
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", graph, "--no-progress", *args], cwd=folder,
                          capture_output=True, text=True, timeout=timeout, env=env)


def nats_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("snapgraph-nats-")]


def duplicates(values: list[Any]) -> int:
    return sum(count - 1 for count in Counter(json.dumps(v, sort_keys=True) for v in values).values())


# -- the descriptors ---------------------------------------------------------------------------------------

def test_the_descriptors_are_built_ins_with_their_delivery_traits() -> None:
    assert BUILTINS["snapgraph.nats.source"] is NATS_SOURCE and NATS_SOURCE.aliases == ("nats-source",)
    assert BUILTINS["snapgraph.nats.sink"] is NATS_SINK and NATS_SINK.aliases == ("nats-sink",)
    source = NATS_SOURCE.delivery_of({"url": URL, "stream": "S"})
    assert source.replayable and source.deterministic and not source.batches and source.writer is None
    assert NATS_SINK.delivery_of({"url": URL, "subject": "a.b"}).writer is WriterKind.IDEMPOTENT
    assert NATS_SINK.delivery_of({"url": URL, "subject": "a.b", "deduplicate": "false"}).writer is WriterKind.PLAIN
    assert NATS_SINK.delivery_of({"subject": "a.b"}).writer is WriterKind.PLAIN, "a config with problems: weakest"


@pytest.mark.parametrize(("config", "problem"), [
    ({"stream": "S"}, "config 'url' or 'connection' (exactly one of them)"),
    ({"url": URL, "connection": {"connectionID": "N"}, "stream": "S"}, "not both"),
    ({"url": "", "stream": "S"}, "config 'url' must be a server URL"),
    ({"connection": "N", "stream": "S"}, "config 'connection' must be {connectionID: ID}"),
    ({"connection": {"connectionID": "N", "connectionType": "POSTGRES"}, "stream": "S"},
     "connection 'N' has connectionType 'POSTGRES', not NATS"),
    ({"url": URL}, "config 'stream' is missing"),
    ({"url": URL, "stream": "a b"}, "config 'stream' must be a non-empty name without spaces"),
    ({"url": URL, "stream": "S", "consumer": 5}, "config 'consumer' must be a non-empty name"),
    ({"url": URL, "stream": "S", "start": "last"}, "config 'start' must be first, new or a stream sequence"),
    ({"url": URL, "stream": "S", "start": 0}, "config 'start' must be first, new or a stream sequence"),
    ({"url": URL, "stream": "S", "batch": 0}, "config 'batch' must be a whole number of messages"),
    ({"url": URL, "stream": "S", "format": "xml"}, "config 'format' must be one of binary, text, json"),
    ({"url": URL, "stream": "S", "streaming": "often"}, "config 'streaming' must be true or false"),
    ({"url": URL, "stream": "S", "poll": 0}, "config 'poll' must be a number of seconds > 0"),
    ({"url": URL, "stream": "S", "gaps": "ignore"}, "config 'gaps' must be one of fail, skip"),
])
def test_source_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = NATS_SOURCE.config_problems(config)
    assert any(problem in text for text in problems), problems


@pytest.mark.parametrize(("config", "problem"), [
    ({"url": URL}, "config 'subject' is missing"),
    ({"url": URL, "subject": "a.b", "deduplicate": "perhaps"}, "config 'deduplicate' must be true or false"),
    ({"url": URL, "subject": "a.b", "deduplicate": False, "msgIdHeader": "key"},
     "config 'msgIdHeader' names the message id, but 'deduplicate' is false"),
    ({"url": URL, "subject": "a.b", "stream": ""}, "config 'stream' must be a non-empty name"),
])
def test_sink_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = NATS_SINK.config_problems(config)
    assert any(problem in text for text in problems), problems


def test_good_configs_have_no_problems() -> None:
    assert NATS_SOURCE.config_problems({"url": URL, "stream": "S", "subject": "a.>", "consumer": "c", "start": "12",
                                        "batch": "5", "format": "text", "streaming": "yes", "poll": 0.5}) == []
    assert NATS_SOURCE.config_problems({"connection": {"connectionID": "N"}, "stream": "S", "start": "new"}) == []
    assert NATS_SINK.config_problems({"url": URL, "subject": "a.b", "stream": "S", "msgIdHeader": "k"}) == []


def test_validate_prints_the_guarantee(tmp_path: Path) -> None:
    streams = JetStream()  # validate needs no server
    graph = write_graph(tmp_path, streams, period=1)
    done = subprocess.run([sys.executable, "-m", "snapgraph", "validate", str(graph)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "writer 'out': exactly-once: source 'src' replays from its snapshot" in done.stdout + done.stderr
    write_graph(tmp_path, streams, period=1, sink={"deduplicate": False})
    done = subprocess.run([sys.executable, "-m", "snapgraph", "validate", str(graph)], capture_output=True, text=True,
                          timeout=60)
    assert "writer 'out': at-least-once" in done.stdout + done.stderr


# -- error paths ---------------------------------------------------------------------------------------------

def test_a_server_that_is_down_fails_the_attempt_naming_it(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(3)
    write_graph(tmp_path, js, source={"url": "nats://127.0.0.1:4299"})
    started = time.monotonic()
    done = cli(tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "operator 'src': cannot connect to the NATS server at nats://127.0.0.1:4299" in done.stderr
    assert time.monotonic() - started < 20, "gives up after a few tries"


def test_an_unknown_stream_is_a_config_error(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(3)
    write_graph(tmp_path, js, source={"stream": "NO_SUCH_STREAM"})
    done = cli(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "operator 'src': config 'stream': no stream 'NO_SUCH_STREAM' on the NATS server" in done.stderr
    assert js.input in done.stderr, "the message lists the streams there are"


def test_a_subject_no_stream_captures_is_a_config_error(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(3)
    write_graph(tmp_path, js, sink={"subject": "nowhere.at.all"})
    done = cli(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "operator 'out': config 'subject': no stream on the NATS server at nats://127.0.0.1:4222 captures " \
           "subject 'nowhere.at.all'" in done.stderr


def test_a_sink_expecting_another_stream_is_a_config_error(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(3)
    write_graph(tmp_path, js, sink={"stream": js.input})
    done = cli(tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"operator 'out': config 'stream': subject '{js.out_subject}' is captured by stream '{js.output}'" \
        in done.stderr


def test_a_bad_config_is_reported_by_validation(tmp_path: Path, js: JetStream) -> None:
    write_graph(tmp_path, js, source={"format": "xml"})
    done = cli(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "process 'src': NATS JetStream Source: config 'format' must be one of binary, text, json" in done.stderr


def test_a_payload_that_is_not_json_fails_the_source_naming_it(tmp_path: Path, js: JetStream) -> None:
    js.create(js.input, [f"{js.in_subject}.>"])
    js.create(js.output, [js.out_subject])

    async def publish(stream: Any) -> None:
        await stream.publish(f"{js.in_subject}.0", b"not json")

    js._run(publish)
    write_graph(tmp_path, js)
    done = cli(tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"operator 'src': message 1 of stream '{js.input}' (subject '{js.in_subject}.0') is not JSON" in done.stderr


# -- failure-free runs ---------------------------------------------------------------------------------------

def test_a_failure_free_run_writes_each_message_once_in_order(tmp_path: Path, js: JetStream) -> None:
    js.create_pair()
    done = cli(tmp_path, graph=str(write_graph(tmp_path, js, period=1)))
    assert done.returncode == 0, done.stderr
    assert "stream's duplicate window of 120 s" in done.stderr
    messages = js.messages(js.output)
    assert [json.loads(data) for data, _ in messages] == expected()
    first = messages[0][1]
    assert first["X-Origin"] == "test-0", "NATS headers reach the sink as Gen2 headers and go out again"
    assert json.loads(first["snapgraph.nats.message"]) == [js.input, f"{js.in_subject}.0", 1]
    assert first["Nats-Msg-Id"].startswith("natsgraph/out/0/")
    assert len({headers["Nats-Msg-Id"] for _, headers in messages}) == COUNT
    assert js.consumer_count(js.input) == 0, "the ephemeral consumer is deleted at shutdown"


def test_formats_decode_the_payload_and_a_rerun_within_the_window_is_dropped(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(20)
    shown = {}
    for fmt in ("binary", "text", "json"):
        spec = yaml.safe_load(write_graph(tmp_path, js, source={"format": fmt}).read_text())
        spec["operators"]["pace"]["script"] = "show.py"
        (tmp_path / "show.py").write_text(SHOW)
        (tmp_path / "graph.yaml").write_text(yaml.safe_dump(spec))
        done = cli(tmp_path)
        assert done.returncode == 0, done.stderr
        shown[fmt] = [line for line in done.stderr.splitlines() if "test-0" in line][0]
    assert shown["binary"].endswith("""b'{"i": 0}' ['test-0']"""), shown
    assert shown["text"].endswith("""'{"i": 0}' ['test-0']"""), shown
    assert shown["json"].endswith("""{'i': 0} ['test-0']"""), shown
    # Three runs, the same payloads and headers: the same ids, so the stream stored the first run only (a
    # re-run within the duplicate window is a duplicate; docs/connectors.md).
    assert "dropped 20 of the messages published as duplicates" in done.stderr
    assert [json.loads(data) for data, _ in js.messages(js.output)] == [{"i": i} for i in range(20)]


def test_msg_id_header_takes_the_id_from_the_message(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(12)
    spec = yaml.safe_load(write_graph(tmp_path, js, sink={"msgIdHeader": "X-Origin"}).read_text())
    del spec["operators"]["pace"]
    spec["connections"] = ["src.output -> out.input"]
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(spec))
    for _ in range(2):  # the second run sends the same ids: the stream drops every message of it
        done = cli(tmp_path)
        assert done.returncode == 0, done.stderr
    assert "dropped 12 of the messages published as duplicates" in done.stderr
    assert [headers["Nats-Msg-Id"] for _, headers in js.messages(js.output)] == [f"test-{i}" for i in range(12)]


def test_a_managed_connection_names_the_server(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(10)
    connections = tmp_path / "connections.yaml"
    connections.write_text(yaml.safe_dump({"BUS": {"connectionType": "NATS", "connectionProperties": {
        "host": "127.0.0.1", "port": 4222}}}))
    write_graph(tmp_path, js, source={"url": None, "connection": {"connectionID": "BUS"}},
                sink={"url": None, "connection": {"connectionID": "BUS"}})
    spec = yaml.safe_load((tmp_path / "graph.yaml").read_text())
    for name in ("src", "out"):
        del spec["operators"][name]["config"]["url"]
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(spec))
    done = cli(tmp_path, "--connections", "connections.yaml")
    assert done.returncode == 0, done.stderr
    assert js.payloads(js.output) == expected(10)


def test_no_thread_or_consumer_is_left_behind(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(50)
    before = nats_threads()
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js, delay=0.001), "nats_sink_published:out:20")
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert nats_threads() == before, "every operator's event loop thread is joined, the failed attempt's too"
    assert js.consumer_count(js.input) == 0
    assert js.payloads(js.output) == expected(50)


# -- the fault matrix: in-process, 20 ms epochs, under the supervisor ------------------------------------------

SOURCE_FAULTS = [
    "before_serialize:src:2", "after_serialize:src:2", "after_persist:src:2",
    "nats_source_published:src:17", "nats_source_published:src:150,restore:src:1",
]
SINK_FAULTS = [
    "port_callback:out:23", "nats_sink_published:out:23", "nats_sink_published:out:200",
    "before_serialize:out:2", "nats_sink_acked:out:2", "after_serialize:out:2", "after_persist:out:2",
    "before_complete:*:2", "epoch_complete:out:2", "nats_sink_acked:out:3,restore:out:1",
]


def _expect_exactly_once(js: JetStream, faults: str, outcome: SupervisedResult, plan: FaultPlan) -> None:
    assert outcome.result.status == COMPLETED, f"{faults}: {outcome.result.reason}"
    assert plan.remaining() == [], f"{faults}: these faults never fired"
    assert outcome.attempts >= 2, f"{faults}: no attempt failed"
    assert js.payloads(js.output) == expected(), f"{faults}: not the failure-free stream"


@pytest.mark.parametrize("faults", SOURCE_FAULTS + SINK_FAULTS)
def test_source_to_sink_is_exactly_once_under_every_crash(tmp_path: Path, js: JetStream, faults: str) -> None:
    js.create_pair()
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js), faults)
    _expect_exactly_once(js, faults, outcome, plan)


@pytest.mark.parametrize("faults", ["nats_sink_published:out:120:exit", "nats_sink_acked:out:2:exit",
                                    "nats_source_published:src:60:exit"])
def test_group_process_deaths(tmp_path: Path, js: JetStream, faults: str) -> None:
    js.create_pair()
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js), faults, in_process=False)
    _expect_exactly_once(js, faults, outcome, plan)


def test_without_snapshots_a_restart_from_scratch_is_deduplicated(tmp_path: Path, js: JetStream) -> None:
    js.create_pair()
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js), "nats_sink_published:out:150", period=None)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert outcome.restored_from == [None, None]
    assert js.payloads(js.output) == expected(), "the restart numbers its messages as the first attempt did"


def test_without_deduplication_a_replay_shows_duplicates(tmp_path: Path, js: JetStream) -> None:
    """The negative control: the same crash without Nats-Msg-Id stores replayed messages twice."""
    js.create_pair()
    faults = "nats_sink_published:out:200"
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js, sink={"deduplicate": False}), faults)
    assert outcome.result.status == COMPLETED and plan.remaining() == [] and outcome.attempts == 2
    assert outcome.restored_from[1] is not None, "the recovery restored an epoch and replayed after it"
    written = js.payloads(js.output)
    assert sorted(written, key=lambda v: v["i"]) != expected() and duplicates(written) > 0
    assert {v["i"] for v in written} == set(range(COUNT)), "nothing lost"
    assert all(MSG_ID not in headers for _, headers in js.messages(js.output))


# -- durable consumers and work-queue streams: acks on epoch completion ----------------------------------------

def test_a_durable_consumer_is_acked_and_a_new_run_continues_after_it(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(100)
    graph = write_graph(tmp_path, js, source={"consumer": "reader"}, period=1, delay=0.001)
    assert cli(tmp_path, graph=str(graph)).returncode == 0
    durable = js.consumer(js.input, "reader")
    assert durable.ack_floor.stream_seq == 100 and durable.num_ack_pending == 0, "every message acked"
    js.publish(40, start=100)
    done = cli(tmp_path, graph=str(graph))  # a new run, not --resume: the durable says where to go on
    assert done.returncode == 0, done.stderr
    assert js.payloads(js.output) == expected(140)
    assert js.consumer(js.input, "reader").ack_floor.stream_seq == 140


def test_messages_the_streams_limits_removed_before_a_new_run_read_them_are_named(tmp_path: Path,
                                                                                 js: JetStream) -> None:
    """A durable consumer's next run finds that the stream (max_msgs 40) dropped messages it never read:
    by default the run fails naming them; with gaps: skip it says they are lost and reads the rest."""
    js.create(js.input, [f"{js.in_subject}.>"], max_msgs=40)
    js.create(js.output, [js.out_subject])
    js.publish(30)
    graph = write_graph(tmp_path, js, source={"consumer": "reader"}, period=1, delay=0.001)
    assert cli(tmp_path, graph=str(graph)).returncode == 0
    js.publish(50, start=30)  # the stream keeps sequences 41-80: 31-40 were never read
    failed = cli(tmp_path, graph=str(graph))
    assert failed.returncode != 0
    assert (f"10 messages of stream {js.input!r} (sequence 31 to 40) were removed from the stream (its limits) "
            "before this source read them; set config 'gaps' to skip") in failed.stderr, failed.stderr
    assert js.payloads(js.output) == expected(30), "nothing written by the failed run"
    graph = write_graph(tmp_path, js, source={"consumer": "reader", "gaps": "skip"}, period=1, delay=0.001)
    done = cli(tmp_path, "--fresh", graph=str(graph))  # the failed run is abandoned
    assert done.returncode == 0, done.stderr
    assert "(sequence 31 to 40) were removed from the stream (its limits) before this source read them: lost" \
        in done.stderr
    assert js.payloads(js.output) == expected(30) + expected(40, start=40)


def test_a_message_missing_in_the_middle_of_the_stream_is_a_gap(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(30)
    js.delete(js.input, 10)
    failed = cli(tmp_path, graph=str(write_graph(tmp_path, js, delay=0.001)))
    assert failed.returncode != 0
    assert f"1 message of stream {js.input!r} (sequence 10) were removed" in failed.stderr, failed.stderr
    done = cli(tmp_path, graph=str(write_graph(tmp_path, js, source={"gaps": "skip"}, delay=0.001)))
    assert done.returncode == 0 and "(sequence 10) were removed" in done.stderr, done.stderr
    output = js.payloads(js.output)
    assert output[:9] == expected(9) and output[9:] == expected(20, start=10)[-len(output[9:]):]


def test_without_snapshots_nothing_is_acked_and_the_source_says_so(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(30)
    done = cli(tmp_path, graph=str(write_graph(tmp_path, js, source={"consumer": "reader"}, delay=0.001)))
    assert done.returncode == 0, done.stderr
    assert "snapshots are off, so no epoch completes and no message of stream" in done.stderr
    assert "a new run of consumer 'reader' starts where this one did" in done.stderr
    assert js.consumer(js.input, "reader").ack_floor.stream_seq == 0
    assert js.payloads(js.output) == expected(30)


@pytest.mark.parametrize("faults", ["nats_source_acked:src:2", "epoch_complete:src:2", "nats_sink_acked:out:3",
                                    "nats_source_acked:src:2,restore:src:1"])
def test_a_work_queue_stream_is_emptied_exactly_once(tmp_path: Path, js: JetStream, faults: str) -> None:
    js.create_pair(retention=RetentionPolicy.WORK_QUEUE)
    outcome, plan = run_supervised(tmp_path, write_graph(tmp_path, js, source={"consumer": "worker"}), faults)
    _expect_exactly_once(js, faults, outcome, plan)
    assert js.messages(js.input) == [], "every message was acked, so the work queue deleted it"


def test_an_ephemeral_consumer_on_a_work_queue_acks_too(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(60, retention=RetentionPolicy.WORK_QUEUE)
    outcome, _ = run_supervised(tmp_path, write_graph(tmp_path, js, delay=0.001))
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert js.payloads(js.output) == expected(60) and js.messages(js.input) == []


# -- through the command line: engine death and --resume, streaming ---------------------------------------------

@pytest.mark.parametrize(("fault", "consumer"), [
    ("nats_sink_acked:out:1:kill", None), ("nats_sink_published:out:40:kill", None),
    ("epoch_complete:out:1:kill", None), ("nats_source_acked:src:1:kill", "durable"),  # acks: a durable only
    ("nats_source_published:src:70:kill", "durable"),
])
def test_engine_death_then_resume_is_exactly_once(tmp_path: Path, js: JetStream, fault: str,
                                                  consumer: str | None) -> None:
    js.create_pair(120)
    graph = write_graph(tmp_path, js, period=1, delay=0.02, source={"batch": 5, "consumer": consumer})
    died = cli(tmp_path, faults=fault, graph=str(graph))
    assert died.returncode == 137, died.stderr
    assert "engine killed at" in died.stderr
    resumed = cli(tmp_path, "--resume", graph=str(graph))
    assert resumed.returncode == 0, resumed.stderr
    assert js.payloads(js.output) == expected(120)


def test_streaming_picks_up_new_messages_and_resumes(tmp_path: Path, js: JetStream) -> None:
    js.create_pair(20)
    graph = write_graph(tmp_path, js, period=1, delay=0.0, source={"streaming": True, "poll": 0.1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    engine = subprocess.Popen([sys.executable, "-m", "snapgraph", "run", str(graph), "--no-progress",
                               "--stop-after", "3"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while len(js.messages(js.output)) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        js.publish(15, start=20)  # messages that arrive while the source polls
        _, stderr = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, stderr
    assert js.payloads(js.output) == expected(35)
    js.publish(5, start=35)
    resumed = cli(tmp_path, "--resume", "--stop-after", "1.5", graph=str(graph))
    assert resumed.returncode == 0, resumed.stderr
    assert js.payloads(js.output) == expected(40)


# -- source -> SQL writer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("faults", ["", "nats_source_published:src:17", "sql_writer_moved:out:2",
                                    "sql_writer_committed:out:2,restore:src:1", "nats_source_acked:src:2"])
def test_source_to_transactional_sql_writer(tmp_path: Path, js: JetStream, faults: str) -> None:
    js.create_pair(retention=RetentionPolicy.WORK_QUEUE if "acked" in faults else RetentionPolicy.LIMITS)
    db = SqlDatabase("sqlite", tmp_path)
    db.create_target()
    graph = write_graph(tmp_path, js, sql=True, source={"consumer": "rows"} if "acked" in faults else {})
    outcome, plan = run_supervised(tmp_path, graph, faults, connections=db.connections_file)
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert plan.remaining() == [] and (outcome.attempts >= 2) == bool(faults)
    assert db.rows("dst") == [(i, f"name{i}", i * 2) for i in range(COUNT)]
