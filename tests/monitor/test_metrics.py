"""Prometheus metrics (snapgraph.monitor.metrics): the collector on hand-made views, and real runs through
the CLI scraped over HTTP with prometheus_client's own parser."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from conftest import ROW_COUNTING_SINK, no_process_left, snapgraph_cli, write_files
from snapgraph.instruments.stats import CALLBACK_BUCKETS
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.monitor.live import EpochView, OperatorView, PortView, RunView, RunWatcher
from snapgraph.monitor.metrics import EPOCH_BUCKETS, EpochDurations, RunCollector

TABLES = 25  # the generator publishes this many tables …
ROWS = 3  # … of this many rows each, then only keeps ticking

GRAPH = """
name: metered
operators:
  gen:
    script: gen.py
    outputs: {out: table}
    group: left
  relay:
    script: relay.py
    inputs: {in: table}
    outputs: {out: table}
    group: middle
  sink:
    script: sink.py
    inputs: {in: table}
    group: right
connections:
  - gen.out -> relay.in
  - relay.out -> sink.in
"""

GEN = f"""
import pickle
sent = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={{'out': api.OutportInfo(is_generator=True)}}))

def tick():
    global sent
    if sent < {TABLES}:
        api.outputs.out.publish(api.Table([[sent, i] for i in range({ROWS})]))
        sent += 1
        return 0
    return 0.05  # stays alive, publishing nothing

def restore(epoch, data):
    global sent
    sent = pickle.loads(data)

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(sent))
api.set_restore_callback(restore)
"""

RELAY = """
api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get()))
"""

SINK = ROW_COUNTING_SINK  # a stateful sink that counts the rows it received

Scrape = dict[str, list[Sample]]


def parse(text: str) -> Scrape:
    """Samples by sample name (``…_total``, ``…_bucket``, …), as Prometheus would read them."""
    samples: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: Scrape, name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())


# -- the collector on hand-made views ----------------------------------------------------------------------
def port(messages: int, rows: int, queued: int = 0) -> PortView:
    return PortView(messages, rows, 0, messages + 100, rows + 1000, 7, queued)


def operator(name: str, buckets: tuple[int, ...]) -> OperatorView:
    return OperatorView(
        name=name, group="g", state="blocked", instances=2, messages_in=1, messages_out=1, rows_in=1, rows_out=1,
        bytes_in=0, bytes_out=0, messages_in_per_s=0, messages_out_per_s=0, rows_in_per_s=0, rows_out_per_s=0,
        callback_share=0, blocked_share=0.8, callbacks=1, callback_seconds=0.1, send_seconds=0.2, snapshots=1,
        last_epoch="E2", state_bytes=512, run_callbacks=sum(buckets), run_callback_seconds=1.5, run_send_seconds=2.5,
        inputs={"in": port(3, 30, queued=4)}, outputs={"out": port(5, 50)}, run_callback_buckets=buckets)


def epoch(name: str, seconds: float | None, status: str = "completed", attempt: int = 1) -> EpochView:
    return EpochView(name, attempt, status, 1000.0, seconds, 64, 1, 1, False, False, {})


def run_view(epochs: list[EpochView]) -> RunView:
    buckets = tuple([0] * 3 + [2] + [0] * (len(CALLBACK_BUCKETS) - 4) + [1])  # two at 100 µs, one above 10 s
    return RunView(graph="hand", run="R1", status="running", at=2000.0, elapsed=12.0, attempt=2, recoveries=1,
                   completed_epochs=len([e for e in epochs if e.status == "completed"]), last_completed_epoch="E2",
                   last_epoch_seconds=0.3, last_epoch_bytes=64, operators=[operator("op", buckets)], epochs=epochs,
                   attempts=[], failures=[])


class FixedWatcher(RunWatcher):
    """A watcher whose view is set by the test (the collector reads nothing else)."""

    def __init__(self, view: RunView) -> None:
        self.current = view

    def view(self) -> RunView:
        return self.current


def exposition(collector: RunCollector) -> str:
    """What a scrape of ``collector`` returns."""
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def collect(collector: RunCollector) -> Scrape:
    return parse(exposition(collector))


def test_the_collector_publishes_the_run_totals_of_a_view() -> None:
    watcher = FixedWatcher(run_view([epoch("E1", 0.02), epoch("E2", 0.3), epoch("E3", None, "in_flight")]))
    samples = collect(RunCollector(watcher))
    op = {"graph": "hand", "group": "g", "operator": "op"}
    assert value(samples, "snapgraph_messages_in_total", port="in", **op) == 103  # run totals, not the attempt's
    assert value(samples, "snapgraph_rows_out_total", port="out", **op) == 1050
    assert value(samples, "snapgraph_bytes_in_total", port="in", **op) == 7
    assert value(samples, "snapgraph_queued_messages", port="in", **op) == 4
    assert value(samples, "snapgraph_send_seconds_total", **op) == 2.5
    assert value(samples, "snapgraph_callbacks_total", **op) == 3
    assert value(samples, "snapgraph_state_bytes", **op) == 512
    assert value(samples, "snapgraph_operator_state", snapgraph_operator_state="blocked", **op) == 1
    assert value(samples, "snapgraph_operator_state", snapgraph_operator_state="running", **op) == 0
    assert value(samples, "snapgraph_callback_duration_seconds_bucket", le="5e-05", **op) == 0
    assert value(samples, "snapgraph_callback_duration_seconds_bucket", le="0.0001", **op) == 2
    assert value(samples, "snapgraph_callback_duration_seconds_bucket", le="10.0", **op) == 2
    assert value(samples, "snapgraph_callback_duration_seconds_bucket", le="+Inf", **op) == 3
    assert value(samples, "snapgraph_callback_duration_seconds_count", **op) == 3
    assert value(samples, "snapgraph_callback_duration_seconds_sum", **op) == 1.5
    assert value(samples, "snapgraph_run_status", graph="hand", snapgraph_run_status="running") == 1
    assert value(samples, "snapgraph_run_info", graph="hand", run="R1") == 1
    assert value(samples, "snapgraph_attempt", graph="hand") == 2
    assert value(samples, "snapgraph_recoveries_total", graph="hand") == 1
    assert value(samples, "snapgraph_epochs_completed_total", graph="hand") == 2
    assert value(samples, "snapgraph_last_epoch_duration_seconds", graph="hand") == 0.3
    assert value(samples, "snapgraph_last_epoch_completed_timestamp_seconds", graph="hand") == 1000.3
    assert value(samples, "snapgraph_epoch_duration_seconds_count", graph="hand") == 2  # not the one in flight
    assert value(samples, "snapgraph_epoch_duration_seconds_bucket", graph="hand", le="0.025") == 1
    assert value(samples, "snapgraph_epoch_duration_seconds_bucket", graph="hand", le="0.5") == 2
    assert value(samples, "snapgraph_epoch_duration_seconds_sum", graph="hand") == pytest.approx(0.32)


def test_epochs_are_counted_once_even_after_they_leave_the_view() -> None:
    durations = EpochDurations()
    first = run_view([epoch("E1", 0.02), epoch("E2", 0.3)])
    durations.update(first)
    durations.update(first)  # a second scrape of the same epochs adds nothing
    buckets, total = durations.update(run_view([epoch("E2", 0.3), epoch("E3", 400.0), epoch("E1", 0.02, attempt=2)]))
    assert buckets[-1] == ("+Inf", 4.0)  # E1 of attempt 1 dropped out of the history but stays counted
    assert dict(buckets)[repr(EPOCH_BUCKETS[-1])] == 3  # E3 is slower than every bound
    assert total == pytest.approx(400.34)


def test_a_view_without_callback_buckets_publishes_no_callback_histogram() -> None:
    view = run_view([])
    view = replace(view, operators=[replace(view.operators[0], run_callback_buckets=())])
    samples = collect(RunCollector(FixedWatcher(view)))
    assert "snapgraph_callback_duration_seconds_count" not in samples
    assert value(samples, "snapgraph_callbacks_total", graph="hand", group="g", operator="op") == 3  # still there
    assert "snapgraph_last_epoch_duration_seconds" not in samples  # no epoch completed yet


def test_a_real_watcher_starts_with_zeros(tmp_path: Path) -> None:
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "relay.py": RELAY, "sink.py": SINK})
    graph = load_graph(tmp_path / "graph.yaml", LoadOptions())
    samples = collect(RunCollector(RunWatcher(graph)))
    assert value(samples, "snapgraph_run_status", graph="metered", snapgraph_run_status="starting") == 1
    assert value(samples, "snapgraph_messages_in_total", graph="metered", group="right", operator="sink",
                 port="in") == 0
    assert value(samples, "snapgraph_callback_duration_seconds_count", graph="metered", group="left",
                 operator="gen") == 0


# -- real runs through the CLI -------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNAPGRAPH_FAULTS", raising=False)
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "relay.py": RELAY, "sink.py": SINK})
    return tmp_path


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    with open(folder / "stderr.txt", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "snapgraph", "run", "graph.yaml", *args], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))


def metrics_url(folder: Path, engine: subprocess.Popen[str], timeout: float = 30) -> str:
    """The URL the engine printed on standard error."""
    deadline = time.monotonic() + timeout
    prefix = "snapgraph: metrics at "
    while True:
        for line in (folder / "stderr.txt").read_text().splitlines():
            if line.startswith(prefix):
                return line.removeprefix(prefix)
        assert engine.poll() is None, (folder / "stderr.txt").read_text()
        assert time.monotonic() < deadline, "no metrics line on standard error"
        time.sleep(0.05)


def settled(url: str, engine: subprocess.Popen[str], timeout: float = 60) -> Scrape:
    """Scrape until the sink has its messages, an epoch completed (and the generator's state of it arrived),
    and three scrapes in a row agree."""
    deadline = time.monotonic() + timeout
    history: list[list[float]] = []
    while True:
        assert engine.poll() is None, "the engine ended"
        samples = scrape(url)
        moving = [s.value for name in ("snapgraph_messages_in_total", "snapgraph_messages_out_total",
                                       "snapgraph_rows_in_total", "snapgraph_rows_out_total")
                  for s in samples[name]]
        history.append(moving)
        epochs = value(samples, "snapgraph_epochs_completed_total", graph="metered")
        sink = value(samples, "snapgraph_messages_in_total", graph="metered", group="right", operator="sink",
                     port="in")
        # The epoch's completion is the driver's own news; the counters of group processes (their state
        # bytes) come with the next probe that asks for them: wait for those too.
        state = value(samples, "snapgraph_state_bytes", graph="metered", group="left", operator="gen")
        if (sink >= TABLES and epochs >= 1 and state > 0 and len(history) >= 3
                and history[-1] == history[-2] == history[-3]):
            return samples
        assert time.monotonic() < deadline, f"the counters never settled: {history[-3:]}"
        time.sleep(0.2)


def port_is_free(url: str) -> bool:
    """Nobody listens on the URL's port and a server may listen there again (as servers do, with
    SO_REUSEADDR: the connections of the scrapes may linger in TIME_WAIT)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as client:
        if client.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
            server.listen()
        except OSError:
            return False
    return True


@pytest.mark.parametrize("mode", [pytest.param([], id="processes"), pytest.param(["--in-process"], id="in-process")])
def test_a_scrape_of_a_running_graph_counts_exactly_what_it_moved(folder: Path, mode: list[str]) -> None:
    started = time.time()
    engine = start(folder, "--metrics-port", "0", "--snapshot-period", "1", "--store", "store.db", *mode)
    try:
        url = metrics_url(folder, engine)
        assert url.startswith("http://127.0.0.1:")
        samples = settled(url, engine)
    finally:
        engine.send_signal(signal.SIGINT)
        code = engine.wait(timeout=60)
    assert code == 0, (folder / "stderr.txt").read_text()
    assert "stopped" in (folder / "stderr.txt").read_text()

    def at(operator: str, group: str) -> dict[str, str]:
        return {"graph": "metered", "group": group, "operator": operator}

    for name, labels in (("snapgraph_messages_out_total", at("gen", "left")),
                         ("snapgraph_messages_in_total", at("relay", "middle")),
                         ("snapgraph_messages_out_total", at("relay", "middle")),
                         ("snapgraph_messages_in_total", at("sink", "right"))):
        assert value(samples, name, **labels) == TABLES, name
        assert value(samples, name.replace("messages", "rows"), **labels) == TABLES * ROWS, name
    assert value(samples, "snapgraph_callback_duration_seconds_count", **at("sink", "right")) == TABLES
    assert value(samples, "snapgraph_callbacks_total", **at("relay", "middle")) == TABLES
    gen_ticks = value(samples, "snapgraph_callback_duration_seconds_count", **at("gen", "left"))
    assert gen_ticks > TABLES  # the timer kept ticking
    assert value(samples, "snapgraph_callback_duration_seconds_bucket", le="+Inf", **at("gen", "left")) == gen_ticks
    assert 0 < value(samples, "snapgraph_callback_seconds_total", **at("gen", "left")) < time.time() - started
    bytes_in = value(samples, "snapgraph_bytes_in_total", port="in", **at("sink", "right"))
    assert bytes_in > 0 if not mode else bytes_in == 0  # group processes encode what crosses to another group
    assert value(samples, "snapgraph_queued_messages", port="in", **at("sink", "right")) == 0
    assert value(samples, "snapgraph_state_bytes", **at("gen", "left")) > 0
    assert value(samples, "snapgraph_state_bytes", **at("relay", "middle")) == 0  # stateless
    assert value(samples, "snapgraph_operator_state", snapgraph_operator_state="running", **at("sink", "right")) == 1
    assert value(samples, "snapgraph_run_status", graph="metered", snapgraph_run_status="running") == 1
    assert value(samples, "snapgraph_attempt", graph="metered") == 1
    assert value(samples, "snapgraph_recoveries_total", graph="metered") == 0
    epochs = value(samples, "snapgraph_epochs_completed_total", graph="metered")
    assert value(samples, "snapgraph_epoch_duration_seconds_count", graph="metered") == epochs >= 1
    completed_at = value(samples, "snapgraph_last_epoch_completed_timestamp_seconds", graph="metered")
    assert started < completed_at < time.time()
    assert 0 < value(samples, "snapgraph_last_epoch_duration_seconds", graph="metered") < 30
    assert [s.labels["run"] for s in samples["snapgraph_run_info"]] != [""]  # the store's run id
    assert port_is_free(url)
    no_process_left(folder)


def test_a_port_in_use_is_refused_before_the_run_starts(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = snapgraph_cli("run", "graph.yaml", "--metrics-port", str(port), "--snapshot-period", "1",
                             "--store", "store.db", cwd=folder)
    assert proc.returncode == 2, proc.stderr
    assert f"snapgraph: --metrics-port {port}: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert not (folder / "store.db").exists()  # nothing of the run was started


@pytest.mark.parametrize("args, message", [
    (["--metrics-port", "70000"], "70000 is not in the range 0<=x<=65535"),
    (["--metrics-port", "-1"], "-1 is not in the range 0<=x<=65535"),
    (["--metrics-port", "0", "--metrics-host", "192.0.2.1"], "cannot listen on 192.0.2.1:0"),
])
def test_a_bad_metrics_address_is_invalid_input(folder: Path, args: list[str], message: str) -> None:
    proc = snapgraph_cli("run", "graph.yaml", *args, "--snapshot-period", "1", "--store", "store.db", cwd=folder)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not (folder / "store.db").exists()


def test_the_docs_and_the_dashboard_name_only_metrics_that_exist() -> None:
    text = exposition(RunCollector(FixedWatcher(run_view([epoch("E1", 0.02)]))))
    samples = parse(text)
    published = set(samples) | {name.removesuffix("_count") for name in samples}
    docs = Path(__file__).parents[2] / "docs"
    dashboard = json.loads((docs / "grafana" / "snapgraph-dashboard.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    in_dashboard = set(re.findall(r"snapgraph_\w+", expressions))
    in_docs = set(re.findall(r"`(snapgraph_\w+)`", (docs / "monitoring.md").read_text()))
    assert in_dashboard and in_dashboard <= published, in_dashboard - published
    assert {name.removesuffix("_bucket") for name in in_dashboard} <= in_docs
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {name.removesuffix("_total") for name in in_docs} == families  # every family documented, no more
