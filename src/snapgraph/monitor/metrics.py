"""Prometheus metrics of a running graph: ``snapgraph run GRAPH --metrics-port PORT``.

:class:`RunCollector` is a ``prometheus_client`` custom collector: every scrape reads one
:meth:`RunWatcher.view() <snapgraph.monitor.live.RunWatcher.view>` and turns it into metric families.
Nothing is counted on the engine's hot path for the metrics, and nothing twice: the counters are the
view's run totals (every attempt of this engine, replays included), which only grow, as Prometheus
counters must. Group processes report their counters to the driver, which the view aggregates, so one
endpoint covers the whole graph whatever the backend.

Only the epoch-duration histogram keeps state of its own: the view holds the newest
:data:`~snapgraph.monitor.live.KEPT_EPOCHS` epochs only, so a histogram rebuilt from it would shrink
once old epochs drop out; the collector adds each completed epoch once to buckets it keeps.

Labels are bounded: ``graph``, ``group``, ``operator``, ``port``; epoch ids and run ids are values of
gauges or of the one ``snapgraph_run_info`` series, never labels of a growing set of series.
docs/monitoring.md lists every metric.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from snapgraph.instruments.stats import CALLBACK_BUCKETS, STATES
from snapgraph.monitor.live import OperatorView, RunView, RunWatcher

RUN_STATUSES = ("starting", "running", "draining", "completed", "stopped", "failed")
OPERATOR_STATES = (*STATES, "blocked", "failed")  # the threads' own states, and the two the view infers
# Upper bounds (seconds) of the epoch-duration buckets: an epoch of a small graph takes milliseconds, one
# that waits for a slow operator or persists much state may take minutes.
EPOCH_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                    120.0, 300.0)

OPERATOR_LABELS = ("graph", "group", "operator")
PORT_LABELS = ("graph", "group", "operator", "port")


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one: above every bound) as Prometheus' cumulative ``le`` buckets."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
    return buckets


class EpochDurations:
    """The durations of the completed epochs of a run, each counted once, as histogram buckets.

    ``update`` takes the epochs of a view and adds those not seen before; it remembers only the epochs
    still in the view, so its memory is bounded by the view's history.
    """

    def __init__(self, bounds: Sequence[float] = EPOCH_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()
        self._counted: set[tuple[int, str]] = set()
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def update(self, view: RunView) -> tuple[list[tuple[str, float]], float]:
        """Add the view's newly completed epochs; the cumulative buckets and the sum of durations."""
        with self._lock:
            present: set[tuple[int, str]] = set()
            for epoch in view.epochs:
                if epoch.status != "completed" or epoch.seconds is None:
                    continue
                key = (epoch.attempt, epoch.epoch)
                present.add(key)
                if key not in self._counted:
                    index = next((i for i, bound in enumerate(self.bounds) if epoch.seconds <= bound),
                                 len(self.bounds))
                    self._counts[index] += 1
                    self._sum += epoch.seconds
            self._counted = present
            return _cumulative(self.bounds, self._counts), self._sum


class RunCollector(Collector):
    """Metric families of the run a :class:`RunWatcher` watches, read at scrape time."""

    def __init__(self, watcher: RunWatcher) -> None:
        self.watcher = watcher
        self._epochs = EpochDurations()

    def collect(self) -> Iterator[Metric]:
        view = self.watcher.view()
        yield from run_metrics(view, self._epochs.update(view))
        yield from operator_metrics(view)


def run_metrics(view: RunView, epoch_histogram: tuple[list[tuple[str, float]], float]) -> Iterator[Metric]:
    """The graph-wide families: run status, attempts, recoveries, epochs."""
    graph = [view.graph]
    info = InfoMetricFamily("snapgraph_run", "The run this engine runs (run id: null without snapshots).",
                            labels=["graph"])
    info.add_metric(graph, {"run": view.run or "", "backend": view.attempts[-1].backend if view.attempts else ""})
    yield info
    status = StateSetMetricFamily("snapgraph_run_status", "What the run is doing: one state is 1.",
                                  labels=["graph"])
    status.add_metric(graph, {state: state == view.status for state in RUN_STATUSES})
    yield status
    yield _gauge("snapgraph_run_elapsed_seconds", "Seconds since the run's first attempt started.",
                 ["graph"], [(graph, view.elapsed)])
    yield _gauge("snapgraph_attempt", "The number of the current attempt (1, 2, … within this engine's run).",
                 ["graph"], [(graph, view.attempt)])
    yield _counter("snapgraph_recoveries_total", "Attempts started after a failed one.", ["graph"],
                   [(graph, view.recoveries)])
    yield _counter("snapgraph_epochs_completed_total", "Snapshot epochs completed (restorable) in this run.",
                   ["graph"], [(graph, view.completed_epochs)])
    completed = [epoch for epoch in view.epochs if epoch.status == "completed" and epoch.seconds is not None]
    if completed:
        last = completed[-1]
        seconds = last.seconds or 0.0
        yield _gauge("snapgraph_last_epoch_completed_timestamp_seconds",
                     "When the newest completed epoch completed (seconds since 1970).", ["graph"],
                     [(graph, last.started_at + seconds)])
        yield _gauge("snapgraph_last_epoch_duration_seconds", "How long the newest completed epoch took.",
                     ["graph"], [(graph, seconds)])
        yield _gauge("snapgraph_last_epoch_state_bytes", "State bytes the newest completed epoch persisted.",
                     ["graph"], [(graph, last.state_bytes)])
    buckets, total = epoch_histogram
    histogram = HistogramMetricFamily("snapgraph_epoch_duration_seconds",
                                      "Completed epochs by duration: from the epoch's start to its completion "
                                      "record.", labels=["graph"])
    histogram.add_metric(graph, buckets, total)
    yield histogram


def operator_metrics(view: RunView) -> Iterator[Metric]:
    """The per-operator and per-port families (run totals of the view: every attempt)."""
    operators = view.operators

    def each(value: Callable[[OperatorView], float]) -> list[tuple[list[str], float]]:
        return [([view.graph, op.group, op.name], value(op)) for op in operators]

    state = StateSetMetricFamily("snapgraph_operator_state",
                                 "What the operator is doing: one state is 1 (blocked: mostly waiting for room "
                                 "downstream; merged instances show the most telling state).",
                                 labels=list(OPERATOR_LABELS))
    for op in operators:
        state.add_metric([view.graph, op.group, op.name], {name: name == op.state for name in OPERATOR_STATES})
    yield state
    yield _gauge("snapgraph_operator_instances", "Running instances of the operator (group multiplicity).",
                 OPERATOR_LABELS, each(lambda op: op.instances))
    yield _counter("snapgraph_callbacks_total", "Script callbacks run (port, timer, prestart, response, "
                   "epoch_complete).", OPERATOR_LABELS, each(lambda op: op.run_callbacks))
    yield _counter("snapgraph_callback_seconds_total", "Seconds spent in script callbacks (all instances).",
                   OPERATOR_LABELS, each(lambda op: op.run_callback_seconds))
    yield _counter("snapgraph_send_seconds_total",
                   "Seconds spent handing messages to receivers: waiting for room in full channels "
                   "(back-pressure), plus encoding and writing to other groups.",
                   OPERATOR_LABELS, each(lambda op: op.run_send_seconds))
    yield _gauge("snapgraph_state_bytes", "Bytes of the operator's newest persisted state (0: stateless or none "
                 "yet in this attempt).", OPERATOR_LABELS, each(lambda op: op.state_bytes))
    callbacks = HistogramMetricFamily("snapgraph_callback_duration_seconds", "Script callbacks by duration.",
                                      labels=list(OPERATOR_LABELS))
    for op in operators:
        if op.run_callback_buckets:
            callbacks.add_metric([view.graph, op.group, op.name],
                                 _cumulative(CALLBACK_BUCKETS, op.run_callback_buckets), op.run_callback_seconds)
    yield callbacks

    inputs = [([view.graph, op.group, op.name, port], p) for op in operators for port, p in op.inputs.items()]
    outputs = [([view.graph, op.group, op.name, port], p) for op in operators for port, p in op.outputs.items()]
    yield _counter("snapgraph_messages_in_total", "Messages received on the input port (barriers not counted).",
                   PORT_LABELS, [(labels, p.run_messages) for labels, p in inputs])
    yield _counter("snapgraph_rows_in_total", "Table rows received on the input port.", PORT_LABELS,
                   [(labels, p.run_rows) for labels, p in inputs])
    yield _counter("snapgraph_bytes_in_total", "Encoded bytes received on the input port from other groups "
                   "(0 within a group).", PORT_LABELS, [(labels, p.run_bytes) for labels, p in inputs])
    yield _gauge("snapgraph_queued_messages", "Items waiting in the input port's channel now.", PORT_LABELS,
                 [(labels, p.queued) for labels, p in inputs])
    yield _counter("snapgraph_messages_out_total", "Messages published on the output port.", PORT_LABELS,
                   [(labels, p.run_messages) for labels, p in outputs])
    yield _counter("snapgraph_rows_out_total", "Table rows published on the output port.", PORT_LABELS,
                   [(labels, p.run_rows) for labels, p in outputs])
    yield _counter("snapgraph_bytes_out_total", "Encoded bytes sent from the output port to other groups "
                   "(0 within a group).", PORT_LABELS, [(labels, p.run_bytes) for labels, p in outputs])


def _counter(name: str, documentation: str, labels: Iterable[str],
             samples: Iterable[tuple[list[str], float]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, documentation: str, labels: Iterable[str],
           samples: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(values, value)
    return family


@dataclass
class MetricsServer:
    """The HTTP server of ``/metrics`` (a daemon thread of this process); :meth:`close` frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        address = self.server.server_address[0]
        host = address.decode() if isinstance(address, bytes) else str(address)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.server_port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(watcher: RunWatcher, host: str, port: int) -> MetricsServer:
    """Serve the watcher's run on ``host:port`` (0: a free port; see :attr:`MetricsServer.url`).

    Raises :class:`OSError` if the address cannot be bound (in use, not an address of this machine).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(watcher))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


__all__ = ["EPOCH_BUCKETS", "OPERATOR_STATES", "RUN_STATUSES", "EpochDurations", "MetricsServer", "RunCollector",
           "operator_metrics", "run_metrics", "serve_metrics"]
