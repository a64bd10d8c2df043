"""Counters of a running graph: one typed, picklable record per operator and per port.

Every operator keeps an :class:`OperatorStats` that its dispatcher updates on
the hot path with plain integer and float additions (no lock, no allocation):
the dispatcher is the only writer, and a reader takes a :meth:`~OperatorStats.copy`
that may be a message behind, never wrong in kind. Records are cumulative
over one attempt. Records of several instances of one operator (a group with
multiplicity, or reports from several group processes) combine with
:func:`merge`; :func:`merge_into` folds a batch of reports into a table keyed
by operator name.

Units are base units (seconds, bytes), so a Prometheus exporter can publish
them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

# Upper bounds (seconds) of the callback-duration buckets an operator counts: fixed, so that records of
# every instance and every process add up bucket by bucket. From 10 µs (a callback that forwards a
# message) to 10 s (a callback that blocks on a service); slower callbacks land in the last, open bucket.
CALLBACK_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)


def empty_callback_buckets() -> list[int]:
    """Empty bucket counts: one per bound of :data:`CALLBACK_BUCKETS`, then one for slower callbacks."""
    return [0] * (len(CALLBACK_BUCKETS) + 1)


@dataclass(slots=True)
class PortStats:
    """One port of one operator.

    * ``messages``: messages received (input port) or published (output port); barriers are not counted;
    * ``rows``: the rows of the tables among them (other bodies count no rows);
    * ``bytes``: encoded bytes to or from other groups (the transport counts them; 0 within a group);
    * ``callback_seconds`` (input ports): time in this port's callback;
    * ``send_seconds`` (output ports): time spent handing messages to the receivers: waiting for room
      in a full channel (back-pressure), plus, for receivers in other groups, encoding and writing;
    * ``queued`` (input ports): items waiting in the port's channel when the copy was taken (a gauge).
    """

    messages: int = 0
    rows: int = 0
    bytes: int = 0
    callback_seconds: float = 0.0
    send_seconds: float = 0.0
    queued: int = 0

    def copy(self) -> PortStats:
        return PortStats(self.messages, self.rows, self.bytes, self.callback_seconds, self.send_seconds, self.queued)

    def merged(self, other: PortStats) -> PortStats:
        return PortStats(self.messages + other.messages, self.rows + other.rows, self.bytes + other.bytes,
                         self.callback_seconds + other.callback_seconds, self.send_seconds + other.send_seconds,
                         self.queued + other.queued)


# What an operator can be doing, most telling first (merging instances keeps the first that any has):
# its script body or restore runs (loading), it waits for barrier E on its other inputs (aligning), it
# serializes and persists its state (snapshotting), it runs callbacks or waits for input (running), its
# shutdown callback runs (shutdown), it ended (done).
STATES = ("snapshotting", "aligning", "loading", "running", "shutdown", "done")
_RANK = {state: rank for rank, state in enumerate(STATES)}


@dataclass(slots=True)
class OperatorStats:
    """What one operator (or, merged, all instances of it) did in the current attempt.

    ``callbacks`` / ``callback_seconds`` cover every script callback (port, timer, prestart,
    response, epoch_complete); the per-port split of port callbacks is in ``inputs``.
    ``callback_buckets``: how many of those callbacks took at most each bound of
    :data:`CALLBACK_BUCKETS` and more than the bound before it (the last entry: slower than every
    bound); per bucket, not cumulative, so instances merge by adding (a histogram's distribution,
    which the two totals alone cannot give).
    The snapshot fields: ``snapshots`` epochs snapshotted, ``state_bytes`` the size of the
    newest persisted state (``last_epoch``'s; 0 for stateless operators), ``state_bytes_total``
    over all epochs, ``alignment_seconds`` / ``serialize_seconds`` / ``persist_seconds`` in total
    and ``last_…`` for ``last_epoch`` (alignment: first barrier of the epoch to the last).
    ``instances``: how many records were merged into this one. ``state``: what the operator is
    doing, one of :data:`STATES` (set by its own thread at each change; merged: the most telling).
    """

    operator: str
    group: str = ""
    inputs: dict[str, PortStats] = field(default_factory=dict)
    outputs: dict[str, PortStats] = field(default_factory=dict)
    callbacks: int = 0
    callback_seconds: float = 0.0
    callback_buckets: list[int] = field(default_factory=empty_callback_buckets)
    snapshots: int = 0
    last_epoch: str | None = None
    state_bytes: int = 0
    state_bytes_total: int = 0
    alignment_seconds: float = 0.0
    serialize_seconds: float = 0.0
    persist_seconds: float = 0.0
    last_alignment_seconds: float = 0.0
    last_serialize_seconds: float = 0.0
    last_persist_seconds: float = 0.0
    instances: int = 1
    state: str = "loading"

    @classmethod
    def for_ports(cls, operator: str, inports: Iterable[str], outports: Iterable[str],
                  group: str = "") -> OperatorStats:
        return cls(operator, group, {p: PortStats() for p in inports}, {p: PortStats() for p in outports})

    # -- totals over the ports -------------------------------------------------------------------
    @property
    def messages_in(self) -> int:
        return sum(p.messages for p in self.inputs.values())

    @property
    def messages_out(self) -> int:
        return sum(p.messages for p in self.outputs.values())

    @property
    def rows_in(self) -> int:
        return sum(p.rows for p in self.inputs.values())

    @property
    def rows_out(self) -> int:
        return sum(p.rows for p in self.outputs.values())

    @property
    def send_seconds(self) -> float:
        return sum(p.send_seconds for p in self.outputs.values())

    def copy(self) -> OperatorStats:
        """A consistent-enough copy to read or send while the dispatcher goes on counting."""
        out = OperatorStats(**{f.name: getattr(self, f.name) for f in _SCALAR_FIELDS})
        out.inputs = {name: port.copy() for name, port in list(self.inputs.items())}
        out.outputs = {name: port.copy() for name, port in list(self.outputs.items())}
        out.callback_buckets = list(self.callback_buckets)
        return out

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able data (what the event log writes)."""
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in _SCALAR_FIELDS}
        data["inputs"] = {name: _port_dict(p) for name, p in self.inputs.items()}
        data["outputs"] = {name: _port_dict(p) for name, p in self.outputs.items()}
        data["callback_buckets"] = list(self.callback_buckets)
        return data


_SCALAR_FIELDS = tuple(f for f in fields(OperatorStats) if f.name not in ("inputs", "outputs", "callback_buckets"))
_PORT_FIELDS = tuple(f.name for f in fields(PortStats))


def _port_dict(port: PortStats) -> dict[str, object]:
    return {name: getattr(port, name) for name in _PORT_FIELDS}


def _merge_ports(a: dict[str, PortStats], b: dict[str, PortStats]) -> dict[str, PortStats]:
    out = {name: port.copy() for name, port in a.items()}
    for name, port in b.items():
        out[name] = out[name].merged(port) if name in out else port.copy()
    return out


def merge(a: OperatorStats, b: OperatorStats) -> OperatorStats:
    """Two records of the same operator (two instances of it) as one.

    Counters and times add up. The snapshot of the newer ``last_epoch`` wins; for the same epoch
    the states of the instances add up (each persisted its own) and the ``last_…`` times are the
    slowest instance's (the epoch waited for it).
    """
    if a.operator != b.operator:
        raise ValueError(f"cannot merge the stats of {a.operator!r} and {b.operator!r}")
    out = OperatorStats(
        a.operator, a.group or b.group, _merge_ports(a.inputs, b.inputs), _merge_ports(a.outputs, b.outputs),
        callbacks=a.callbacks + b.callbacks,
        callback_seconds=a.callback_seconds + b.callback_seconds,
        callback_buckets=[x + y for x, y in zip(a.callback_buckets, b.callback_buckets, strict=True)],
        snapshots=max(a.snapshots, b.snapshots),
        state_bytes_total=a.state_bytes_total + b.state_bytes_total,
        alignment_seconds=a.alignment_seconds + b.alignment_seconds,
        serialize_seconds=a.serialize_seconds + b.serialize_seconds,
        persist_seconds=a.persist_seconds + b.persist_seconds,
        instances=a.instances + b.instances,
        state=min(a.state, b.state, key=lambda state: _RANK.get(state, -1)),
    )
    newer_a, newer_b = (a.last_epoch or "") >= (b.last_epoch or ""), (b.last_epoch or "") >= (a.last_epoch or "")
    out.last_epoch = a.last_epoch if newer_a else b.last_epoch
    out.state_bytes = (a.state_bytes if newer_a else 0) + (b.state_bytes if newer_b else 0)
    for name in ("last_alignment_seconds", "last_serialize_seconds", "last_persist_seconds"):
        setattr(out, name, max(getattr(a, name) if newer_a else 0.0, getattr(b, name) if newer_b else 0.0))
    return out


def merge_into(table: dict[str, OperatorStats], reports: Iterable[OperatorStats]) -> dict[str, OperatorStats]:
    """Fold ``reports`` into ``table`` (operator name -> record), merging records of the same operator."""
    for report in reports:
        seen = table.get(report.operator)
        table[report.operator] = report.copy() if seen is None else merge(seen, report)
    return table


@dataclass(slots=True)
class EpochStats:
    """One epoch as the coordinator saw it (times from the driver's clocks).

    ``started_at``: wall-clock time (seconds since 1970) the epoch started; ``seconds``: from its
    start to its completion record; ``acks`` operators acknowledged it, ``stateful`` of them
    persisted ``state_bytes`` in all. ``final``: taken by a drain; ``sealed``: the run's last.
    """

    epoch: str
    started_at: float
    final: bool = False
    sealed: bool = False
    seconds: float | None = None  # None while in flight
    acks: int = 0
    stateful: int = 0
    state_bytes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


__all__ = ["CALLBACK_BUCKETS", "STATES", "EpochStats", "OperatorStats", "PortStats", "merge", "merge_into"]
