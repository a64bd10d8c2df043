"""The W1/W2 pipeline as a Bytewax dataflow (bytewax 0.21 API).

Run by bench/worker.py as ``python -m bytewax.run bw_flow:flow`` (one process) or as two
cooperating ``bytewax.run`` processes (``-i 0/1 -a host:port;host:port``). The spec comes in the
environment variable BENCH_BW_SPEC (JSON: rows, batch, hash_rounds, mode "row"|"table", out_dir).

Same shape as the snapgraph graph: one stateful source partition (its offset is its state) emits
N rows [i, i*7 % 1000, "row<i>"], B per next_batch; ``redistribute`` spreads the items over the
workers; the stateless processing step keeps y % 3 != 0 and adds y2 = 2*y (W2: plus sha256
rounds); one stateful sink partition counts rows and sums y2. mode "row": every row is one
Bytewax item; mode "table": every B-row list is one item (as snapgraph's api.Table).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

SPEC = json.loads(os.environ.get("BENCH_BW_SPEC", "{}") or "{}")
N = int(SPEC.get("rows", 10_000))
B = int(SPEC.get("batch", 1000))
ROUNDS = int(SPEC.get("hash_rounds", 0))
MODE = SPEC.get("mode", "table")
OUT = SPEC.get("out_dir", ".")
sha256 = hashlib.sha256


def _report(role: str, **data: object) -> None:
    data.update(role=role, pid=os.getpid(), maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    with open(os.path.join(OUT, f"{role}-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump(data, f)


class _GenPartition(StatefulSourcePartition):
    def __init__(self, offset: int | None) -> None:
        self.offset = offset or 0
        self.t_first: float | None = None

    def next_batch(self) -> list:
        if self.t_first is None:
            self.t_first = time.monotonic()
        start = self.offset
        if start >= N:
            raise StopIteration()
        stop = min(N, start + B)
        rows = [[i, i * 7 % 1000, f"row{i}"] for i in range(start, stop)]
        self.offset = stop
        return rows if MODE == "row" else [rows]

    def snapshot(self) -> int:
        return self.offset

    def close(self) -> None:
        _report("gen", t_first=self.t_first, offset=self.offset)


class GenSource(FixedPartitionedSource):
    def list_parts(self) -> list[str]:
        return ["gen"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _GenPartition:
        return _GenPartition(resume_state)


class _SinkPartition(StatefulSinkPartition):
    def __init__(self, state: tuple[int, int] | None) -> None:
        self.count, self.total = state or (0, 0)
        self.t_last: float | None = None

    def write_batch(self, values: list) -> None:
        if MODE == "row":
            self.count += len(values)
            self.total += sum([r[3] for r in values])
        else:
            for rows in values:
                self.count += len(rows)
                self.total += sum([r[3] for r in rows])
        self.t_last = time.monotonic()

    def snapshot(self) -> tuple[int, int]:
        return (self.count, self.total)

    def close(self) -> None:
        _report("sink", count=self.count, total=self.total, t_last=self.t_last)


class CountSink(FixedPartitionedSink):
    def list_parts(self) -> list[str]:
        return ["sink"]

    def build_part(self, step_id: str, for_part: str, resume_state: tuple[int, int] | None) -> _SinkPartition:
        return _SinkPartition(resume_state)


def _heavy(z: str) -> int:
    d = z.encode()
    for _ in range(ROUNDS):
        d = sha256(d).digest()
    return d[0]


def process_row(row: list) -> tuple[str, list] | None:
    x, y, z = row
    if not y % 3:
        return None
    if ROUNDS == 0:
        return ("k", [x, y, z, 2 * y])
    if ROUNDS == 1:
        return ("k", [x, y, z, 2 * y, sha256(z.encode()).digest()[0]])
    return ("k", [x, y, z, 2 * y, _heavy(z)])


def process_table(rows: list) -> tuple[str, list]:
    if ROUNDS == 0:
        out = [[x, y, z, 2 * y] for x, y, z in rows if y % 3]
    elif ROUNDS == 1:
        out = [[x, y, z, 2 * y, sha256(z.encode()).digest()[0]] for x, y, z in rows if y % 3]
    else:
        out = [[x, y, z, 2 * y, _heavy(z)] for x, y, z in rows if y % 3]
    return ("k", out)


def build() -> Dataflow:
    flow = Dataflow("bench_pipeline")
    stream = op.input("gen", flow, GenSource())
    stream = op.redistribute("spread", stream)
    if MODE == "row":
        keyed = op.filter_map("proc", stream, process_row)
    else:
        keyed = op.map("proc", stream, process_table)
    op.output("sink", keyed, CountSink())
    return flow


flow = build()
