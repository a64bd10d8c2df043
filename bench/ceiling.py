"""The ceiling of configuration (c): the best ANY engine could do with these three stages as processes.

    bench/.venv/bin/python bench/ceiling.py [--cores N] [--hash-rounds R] [--json OUT]

A Gen2 script receives ``body`` as a list of row lists, so every process that runs an operator must
hold its rows as Python objects: a row crossing a process boundary is encoded once, decoded
(allocated) once more, and freed on both sides. This module measures, in one process and pinned to
one CPU, the unit price of each piece of work per 1000-row table, with freshly built objects every
time (nothing is cached between repetitions):

* the operators' own work: generating the rows, processing them (W1 or W2), summing in the sink;
* for each hop: encoding with snapgraph's own wire codec (``runtime.codec.pack_rows``), decoding back to row lists, and
  freeing the decoded rows — the work a process boundary adds and the plain loop never does.

From these it computes, for one process per stage on ``cores`` CPUs with *zero* engine overhead and
perfect scheduling, the time per table ``max(sum of all stages / cores, slowest stage)`` and thus
the highest ratio against (a) and (b) that such a pipeline can reach. If a target lies above that
ceiling, no engine can meet it on this machine with this graph shape; the report says so.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from snapgraph.runtime.codec import pack_rows, unpack_rows
from snapgraph.runtime.group import GC_THRESHOLDS

ROWS = 1000


def rows_between(start: int, stop: int) -> list[list[Any]]:
    """The generator's rows [i, i*7 % 1000, "row<i>"] for i in [start, stop) (as bench/graphs/gen.py)."""
    return [[i, i * 7 % 1000, f"row{i}"] for i in range(start, stop)]


def _gen(seed: int) -> list[list[Any]]:
    base = 1_000_000 + seed * ROWS
    return rows_between(base, base + ROWS)


def processing(rounds: int) -> Callable[[list[list[Any]]], list[list[Any]]]:
    """The pipeline's processing of one table (W1: rounds 0; W2: sha256 rounds per kept row)."""
    sha256 = hashlib.sha256

    def heavy(z: str) -> int:
        d = z.encode()
        for _ in range(rounds):
            d = sha256(d).digest()
        return d[0]

    if rounds == 0:
        return lambda rows: [[x, y, z, 2 * y] for x, y, z in rows if y % 3]
    if rounds == 1:
        return lambda rows: [[x, y, z, 2 * y, sha256(z.encode()).digest()[0]] for x, y, z in rows if y % 3]
    return lambda rows: [[x, y, z, 2 * y, heavy(z)] for x, y, z in rows if y % 3]


def _sink(rows: list[list[Any]]) -> int:
    return sum([r[3] for r in rows])


def _per_table(step: Callable[[int], Callable[[], Any]], tables: int, repeats: int) -> float:
    """Median over ``repeats`` of the seconds per call of the timed part of ``step(i)``.

    ``step(i)`` prepares its inputs untimed and returns the call to time, so each call works on
    fresh objects, as in a pipeline.
    """
    results = []
    for _ in range(repeats):
        calls = [step(i) for i in range(tables)]
        t0 = time.perf_counter()
        for call in calls:
            call()
        results.append((time.perf_counter() - t0) / tables)
        del calls
    return statistics.median(results)


def unit_costs(hash_rounds: int, tables: int = 400, repeats: int = 5) -> dict[str, float]:
    """Microseconds per 1000-row table of every piece of work (see the module docstring)."""
    proc = processing(hash_rounds)
    inputs = [_gen(i) for i in range(tables)]
    outputs = [proc(rows) for rows in inputs]
    enc_in = [pack_rows(rows) for rows in inputs]
    enc_out = [pack_rows(rows) for rows in outputs]

    def freeing(make: Callable[[int], list[list[Any]]]) -> float:
        """Seconds per table to free rows just built (warm in the cache, as in the plain loop)."""
        results = []
        for _ in range(repeats):
            spent = 0.0
            for i in range(tables):
                holder = [make(i)]
                t0 = time.perf_counter()
                holder.clear()  # dropping the last reference frees every row
                spent += time.perf_counter() - t0
            results.append(spent / tables)
        return statistics.median(results)

    costs = {
        "generate": _per_table(lambda i: lambda: _gen(i), tables, repeats),
        "process": _per_table(lambda i: lambda: proc(inputs[i]), tables, repeats),
        "sink": _per_table(lambda i: lambda: _sink(outputs[i]), tables, repeats),
        "free input rows": freeing(_gen),
        "free output rows": freeing(lambda i: proc(inputs[i])),
        "encode input": _per_table(lambda i: lambda: pack_rows(inputs[i]), tables, repeats),
        "decode input": _per_table(lambda i: lambda: unpack_rows(enc_in[i]), tables, repeats),
        "encode output": _per_table(lambda i: lambda: pack_rows(outputs[i]), tables, repeats),
        "decode output": _per_table(lambda i: lambda: unpack_rows(enc_out[i]), tables, repeats),
    }
    return {k: v * 1e6 for k, v in costs.items()}


def ceiling(costs: dict[str, float], cores: int, processing_instances: int = 1) -> dict[str, Any]:
    """Per-table time of the plain loop, and the best of the stage processes on ``cores`` CPUs.

    ``processing_instances`` > 1 splits the processing stage over that many processes (multiplicity,
    messages round-robin), each doing its share of the tables.
    """
    plain = costs["generate"] + costs["process"] + costs["sink"] + costs["free input rows"] + costs["free output rows"]
    processing_us = (costs["decode input"] + costs["process"] + costs["free input rows"]
                     + costs["encode output"] + costs["free output rows"])
    if processing_instances == 1:
        processing_stages = {"processing": processing_us}
    else:
        processing_stages = {f"processing #{i}": processing_us / processing_instances
                             for i in range(processing_instances)}
    stages = {
        "generator": costs["generate"] + costs["encode input"] + costs["free input rows"],
        **processing_stages,
        "sink": costs["decode output"] + costs["sink"] + costs["free output rows"],
    }
    total = sum(stages.values())
    slowest = max(stages.values())
    best = max(total / cores, slowest)
    return {"cores": cores, "processing_instances": processing_instances, "plain_us": plain,
            "stages_us": stages, "total_us": total, "best_us": best,
            "bound": "cores" if total / cores >= slowest else "slowest stage",
            "max_ratio_vs_plain": plain / best, "boundary_us": total - plain}


def what_ifs(costs: dict[str, float], cores: int) -> list[dict[str, Any]]:
    """The ceiling on this machine's cores and on more, with 1-3 processing instances."""
    return [ceiling(costs, n, k) for n in sorted({cores, 4, 8}) for k in (1, 2, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--hash-rounds", type=int, default=1, help="W2's sha256 rounds per row (W1 is 0)")
    parser.add_argument("--tables", type=int, default=400)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    out = {}
    for workload, rounds in (("W1", 0), ("W2", args.hash_rounds)):
        costs = unit_costs(rounds, args.tables)
        out[workload] = {"costs_us": costs, **ceiling(costs, args.cores), "what_if": what_ifs(costs, args.cores)}
        c = out[workload]
        print(f"{workload}: plain loop {c['plain_us']:.0f} us/table; stages "
              + ", ".join(f"{k} {v:.0f}" for k, v in c["stages_us"].items())
              + f"; best on {args.cores} cores {c['best_us']:.0f} us ({c['bound']}) = "
              f"{c['max_ratio_vs_plain']:.2f} x the plain loop", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
