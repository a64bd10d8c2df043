"""Runs ONE benchmark configuration in a fresh process and writes its result as JSON.

    bench/.venv/bin/python bench/worker.py SPEC.json RESULT.json

bench/run.py starts one worker per configuration and repetition, so imports, caches and memory do
not leak from one configuration into the next. The spec's ``kind`` selects what runs:

* ``plain``     (a) the pipeline's work as one plain Python loop
* ``snapgraph`` (b)/(c)/(d) graphs/pipeline.yaml through the Supervisor (as the CLI runs it)
* ``bytewax``   (e) bw_flow.py in one or two ``bytewax.run`` processes
* ``latency``   graphs/latency.yaml: p50/p99 generator -> sink at a low message rate
* ``snapsize``  graphs/state.yaml: snapshot duration and bytes against state size
* ``recovery``  graphs/recovery.yaml: failure -> first message after the restore
* ``profile``   (a) or (b) of W1 or W2 with GC time, CPU time per thread and optionally cProfile

Every result carries ``ok``; a wrong pipeline result (count/sum) is ``ok: false`` with ``error``.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRAPHS = HERE / "graphs"


# -- the expected result ------------------------------------------------------------------------
def expected(rows: int) -> tuple[int, int]:
    """(count, sum of y2) of the pipeline over ``rows`` rows; y depends on i mod 1000 only."""
    def part(n: int) -> tuple[int, int]:
        ys = [i * 7 % 1000 for i in range(n)]
        kept = [y for y in ys if y % 3]
        return len(kept), 2 * sum(kept)

    full, rest = divmod(rows, 1000)
    c_block, s_block = part(1000)
    c_rest, s_rest = part(rest)
    return full * c_block + c_rest, full * s_block + s_rest


def check(rows: int, count: int | None, total: int | None) -> str | None:
    want = expected(rows)
    if (count, total) != want:
        return f"WRONG RESULT for {rows} rows: count {count}, sum {total}; expected count {want[0]}, sum {want[1]}"
    return None


def reports(out_dir: str, role: str | None = None) -> list[dict[str, Any]]:
    found = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        if role is None or data.get("role") == role:
            found.append(data)
    return found


# -- (a) the floor --------------------------------------------------------------------------------
def run_plain(spec: dict[str, Any]) -> dict[str, Any]:
    n, b, rounds = spec["rows"], spec["batch"], spec["hash_rounds"]
    if spec.get("gc_threshold"):
        import gc

        gc.set_threshold(*(int(v) for v in str(spec["gc_threshold"]).split(",")))
    from ceiling import processing, rows_between  # the work of bench/graphs/*.py, as functions

    process = processing(rounds)
    count = total = 0
    t0 = time.monotonic()
    for start in range(0, n, b):
        stop = min(n, start + b)
        out = process(rows_between(start, stop))
        count += len(out)
        total += sum([r[3] for r in out])
    t1 = time.monotonic()
    return {"ok": True, "error": check(n, count, total), "pipeline_s": t1 - t0, "wall_s": t1 - t0,
            "count": count, "total": total, "processes": [{"pid": os.getpid(), "groups": ["-"]}], "os_processes": 1}


# -- snapgraph ------------------------------------------------------------------------------------
def run_options(in_process: bool | None, **kwargs: Any) -> tuple[Any, bool]:
    """RunOptions with in_process only if this snapgraph has the field (process groups)."""
    from snapgraph.runtime.engine import RunOptions

    supported = "in_process" in {f.name for f in dataclasses.fields(RunOptions)}
    if supported and in_process is not None:
        kwargs["in_process"] = in_process
    return RunOptions(**kwargs), supported


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def open_store_for(kind: str, tmp: str) -> Any:
    """A fresh snapshot store of ``kind`` (sqlite: a file in ``tmp``; postgres: a schema of its own)."""
    if kind == "sqlite":
        from snapgraph.snapshot.store import SQLiteStore
        return SQLiteStore(Path(tmp) / "store.db")
    from snapgraph.snapshot.store import open_store
    return open_store(f"{POSTGRES}?schema=bench_{os.getpid()}_{int(time.time() * 1000) % 10**9}")


def drop_store(store: Any) -> None:
    schema = getattr(store, "schema", None)
    store.close()
    if schema is not None:
        import psycopg
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def supervise(graph_file: Path, params: dict[str, Any], *, in_process: bool | None, snapshots: bool,
              store_path: Path | None = None, store: Any = None, period: float | None = 1.0, faults: str = "",
              max_retries: int | None = None, stop_after: float | None = None,
              one_group: bool = False, forward_output: bool = False) -> dict[str, Any]:
    import logging

    from snapgraph.model.loader import LoadOptions, load_graph
    from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
    from snapgraph.snapshot.faults import FaultPlan
    from snapgraph.snapshot.store import SQLiteStore

    graph = load_graph(graph_file, LoadOptions(params={k: str(v) for k, v in params.items()},
                                               snapshots=snapshots))
    if one_group:  # as if the graph declared no groups: every operator in the default group's process
        graph.groups.clear()
        for process in graph.processes.values():
            process.group = "default"
    extra = {"forward_output": True} if forward_output else {}  # as the CLI asks when a display is on
    options, supported = run_options(in_process, stdout=io.StringIO(), stop_after=stop_after,
                                     log_level=logging.WARNING, **extra)
    if store is None:
        store = SQLiteStore(store_path) if snapshots and store_path is not None else None
    said: list[str] = []
    supervisor = Supervisor(
        graph, options, RecoveryPolicy(max_retries=max_retries, retry_interval=0.0, retry_threshold=30.0),
        store=store, period=period if snapshots else None, faults=FaultPlan.parse(faults), say=said.append)
    t0 = time.monotonic()
    outcome = supervisor.run()
    t1 = time.monotonic()
    return {"outcome": outcome, "store": store, "wall_s": t1 - t0, "t_start": t0, "said": said,
            "in_process_supported": supported}


def processes_of(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_pid: dict[int, dict[str, Any]] = {}
    for rep in found:
        entry = by_pid.setdefault(rep["pid"], {"pid": rep["pid"], "groups": [], "maxrss_kb": 0})
        group = rep.get("group", rep["role"])
        if group not in entry["groups"]:
            entry["groups"].append(group)
        entry["maxrss_kb"] = max(entry["maxrss_kb"], rep.get("maxrss_kb", 0))
        if "thread_cpu_s" in rep:  # each report sees the threads alive when it was written; keep the latest
            entry["process_cpu_s"] = max(entry.get("process_cpu_s", 0.0), rep["process_cpu_s"])
            threads = entry.setdefault("thread_cpu_s", {})
            for name, cpu in rep["thread_cpu_s"].items():
                threads[name] = max(threads.get(name, 0.0), cpu)
    return list(by_pid.values())


DISPLAY_PARTS = ("watcher", "progress", "endpoints")


class Displays:
    """What watches a run, as ``snapgraph run --progress --metrics-port 0 --ui-port 0`` starts it, in parts
    (``parts``, of :data:`DISPLAY_PARTS`): ``watcher`` — one RunWatcher whose view is read four times a
    second, as the terminal table reads it, and group output forwarded to the engine; ``progress`` — the
    live terminal table itself (drawn into /dev/null as onto a terminal); ``endpoints`` — the Prometheus
    endpoint and the web monitor, with a scraper reading /metrics and the monitor's /api/run once a second
    as Prometheus and an open browser tab would. Every part includes the watcher."""

    def __init__(self, graph_file: Path, params: dict[str, Any], parts: tuple[str, ...] = DISPLAY_PARTS) -> None:
        import threading
        import urllib.request

        from rich.console import Console

        from snapgraph.instruments import install
        from snapgraph.model.loader import LoadOptions, load_graph
        from snapgraph.monitor.live import RunWatcher
        from snapgraph.monitor.metrics import serve_metrics
        from snapgraph.monitor.progress import REDRAW_EVERY, ProgressDisplay
        from snapgraph.monitor.web import LiveSource, MonitorServer

        unknown = set(parts) - set(DISPLAY_PARTS)
        if unknown:
            raise ValueError(f"unknown display parts {sorted(unknown)}")
        graph = load_graph(graph_file, LoadOptions(params={k: str(v) for k, v in params.items()}))
        self.watcher = RunWatcher(graph)
        install(self.watcher)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        self.display = None
        if "progress" in parts:
            from snapgraph.runtime import logs

            self.display = ProgressDisplay(self.watcher, Console(file=self._devnull, force_terminal=True, width=120))
            logs.set_destination(self.display)
            self.display.start()
        else:
            def read_view() -> None:
                while not self._stop.wait(REDRAW_EVERY):
                    self.watcher.view()

            self._threads.append(threading.Thread(target=read_view, daemon=True))
        self.metrics = self.monitor = None
        self.scrapes = 0
        if "endpoints" in parts:
            self.metrics = serve_metrics(self.watcher, "127.0.0.1", 0)
            self.monitor = MonitorServer(LiveSource(self.watcher, None), "127.0.0.1", 0).start()
            urls = (self.metrics.url, self.monitor.url + "api/run")

            def scrape() -> None:
                while not self._stop.wait(1.0):
                    for url in urls:
                        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - 127.0.0.1
                            answer.read()
                    self.scrapes += 1

            self._threads.append(threading.Thread(target=scrape, daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        from snapgraph.instruments import uninstall
        from snapgraph.runtime import logs

        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self.display is not None:
            self.display.close()
            logs.set_destination(None)
        if self.metrics is not None:
            self.metrics.close()
        if self.monitor is not None:
            self.monitor.close()
        uninstall(self.watcher)
        self._devnull.close()


def run_snapgraph(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="snapgraph-bench-", dir=spec.get("scratch")) as tmp:
        params = {"rows": spec["rows"], "batch": spec["batch"], "hash_rounds": spec["hash_rounds"],
                  "stateful": "true" if spec["snapshots"] else "false", "out_dir": tmp,
                  "gc_threshold": spec.get("gc_threshold", ""),
                  "proc_instances": spec.get("proc_instances", 1)}
        parts = spec.get("displays") or ()
        displays = Displays(GRAPHS / "pipeline.yaml", params, tuple(DISPLAY_PARTS if parts is True else parts)) \
            if parts else None
        try:
            run = supervise(GRAPHS / "pipeline.yaml", params, in_process=spec["in_process"],
                            snapshots=spec["snapshots"], store_path=Path(tmp) / "store.db",
                            one_group=spec.get("one_group", False), forward_output=displays is not None)
        finally:
            if displays is not None:
                displays.close()
        outcome = run["outcome"]
        found = reports(tmp)
        gen = [r for r in found if r["role"] == "gen"]
        sink = [r for r in found if r["role"] == "sink"]
        epochs = []
        if run["store"] is not None and outcome.run_id:
            epochs = [{"duration": e.duration, "bytes": e.total_bytes} for e in run["store"].epochs(outcome.run_id)]
        result: dict[str, Any] = {
            "ok": outcome.result.status == "completed", "wall_s": run["wall_s"],
            "in_process_supported": run["in_process_supported"], "epochs": epochs,
            "processes": processes_of(found), "os_processes": len({r["pid"] for r in found}),
            "status": outcome.result.status, "reason": outcome.result.reason,
            "scrapes": displays.scrapes if displays is not None else 0,
        }
        if not result["ok"]:
            result["error"] = f"graph did not complete: {outcome.result.status}: {outcome.result.reason}"
            return result
        return with_pipeline_result(result, gen, sink, spec["rows"])


def with_pipeline_result(result: dict[str, Any], gen: list[dict[str, Any]], sink: list[dict[str, Any]],
                         rows: int) -> dict[str, Any]:
    """Add the count, sum and pipeline time from the generator's and sink's reports (and check them)."""
    if len(gen) != 1 or len(sink) != 1:
        result["error"] = f"expected one gen and one sink report, got {len(gen)} and {len(sink)}"
        return result
    result.update(count=sink[0]["count"], total=sink[0]["total"],
                  pipeline_s=sink[0]["t_last"] - gen[0]["t_first"],
                  error=check(rows, sink[0]["count"], sink[0]["total"]))
    return result


# -- Bytewax --------------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_bytewax(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bytewax-bench-", dir=spec.get("scratch")) as tmp:
        env = dict(os.environ)
        env["BENCH_BW_SPEC"] = json.dumps({"rows": spec["rows"], "batch": spec["batch"],
                                           "hash_rounds": spec["hash_rounds"], "mode": spec["mode"],
                                           "out_dir": tmp})
        env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
        base = [sys.executable, "-m", "bytewax.run", "bw_flow:flow"]
        n = spec["processes"]
        if n == 1:
            argvs = [base]
        else:
            addresses = ";".join(f"127.0.0.1:{p}" for p in _free_ports(n))
            argvs = [base + ["-i", str(i), "-a", addresses] for i in range(n)]
        t0 = time.monotonic()
        procs = [subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for argv in argvs]
        errors = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=spec.get("timeout", 600))
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"bytewax process exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
        t1 = time.monotonic()
        found = reports(tmp)
        gen = [r for r in found if r["role"] == "gen"]
        sink = [r for r in found if r["role"] == "sink"]
        result: dict[str, Any] = {"ok": not errors, "wall_s": t1 - t0, "os_processes": n,
                                  "processes": [{"pid": r["pid"], "groups": [r["role"]], "maxrss_kb": r["maxrss_kb"]}
                                                for r in found]}
        if errors:
            result["error"] = "; ".join(errors)
            return result
        return with_pipeline_result(result, gen, sink, spec["rows"])


# -- latency, snapshot size, recovery -------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def run_latency(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="snapgraph-bench-", dir=spec.get("scratch")) as tmp:
        params = {"count": spec["count"], "rate": spec["rate"], "out_dir": tmp}
        run = supervise(GRAPHS / "latency.yaml", params, in_process=spec["in_process"], snapshots=False)
        sinks = reports(tmp, "lat_sink")
        lat = sinks[0]["latencies"] if sinks else []
        ok = run["outcome"].result.status == "completed" and len(lat) == spec["count"]
        return {"ok": ok, "error": None if ok else f"got {len(lat)} of {spec['count']} messages",
                "n": len(lat), "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
                "max_ms": max(lat) * 1e3 if lat else None, "wall_s": run["wall_s"],
                "in_process_supported": run["in_process_supported"],
                "pids": sorted({s["pid"] for s in reports(tmp)})}


def run_snapsize(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="snapgraph-bench-", dir=spec.get("scratch")) as tmp:
        store = open_store_for(spec.get("store", "sqlite"), tmp)
        try:
            run = supervise(GRAPHS / "state.yaml", {"size": spec["size"]}, in_process=spec.get("in_process", True),
                            snapshots=True, store=store, stop_after=spec["duration"])
            outcome = run["outcome"]
            epochs = store.epochs(outcome.run_id)
        finally:
            drop_store(store)
        durations = [e.duration for e in epochs]
        ok = outcome.result.status in ("completed", "stopped") and bool(epochs)
        return {"ok": ok, "error": None if ok else f"{outcome.result.status}: {outcome.result.reason}",
                "epochs": len(epochs), "durations_s": durations,
                "median_s": sorted(durations)[len(durations) // 2] if durations else None,
                "bytes": [e.total_bytes for e in epochs]}


def run_recovery(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="snapgraph-bench-", dir=spec.get("scratch")) as tmp:
        fault_at, total = spec.get("fault_at", 10), spec.get("total", 30)
        params = {"size": spec["size"], "interval": 0.02, "fault_at": fault_at, "total": total, "out_dir": tmp}
        run = supervise(GRAPHS / "recovery.yaml", params, in_process=spec["in_process"], snapshots=True,
                        store_path=Path(tmp) / "store.db", faults=f"port_callback:rec_sink:{fault_at}",
                        max_retries=3)
        outcome = run["outcome"]
        sinks = reports(tmp, "rec_sink")
        gens = reports(tmp, "rec_gen")
        failed = [s for s in sinks if not s["restored"]]
        restored = [s for s in sinks if s["restored"]]
        restored_gen = [g for g in gens if g["restored"]]
        result: dict[str, Any] = {"ok": False, "attempts": outcome.attempts, "restored_from": outcome.restored_from,
                                  "in_process_supported": run["in_process_supported"], "wall_s": run["wall_s"]}
        if outcome.result.status != "completed" or outcome.attempts != 2 or not failed or not restored \
                or outcome.restored_from[-1] is None:
            result["error"] = (f"expected one failure and a restore from a snapshot: {outcome.result.status} "
                               f"after {outcome.attempts} attempts, restored_from {outcome.restored_from}, "
                               f"{outcome.result.reason}; {run['said'][:2]}")
            return result
        t_fail = failed[0]["t_shutdown"]
        after = restored[0]
        result.update(
            ok=True,
            error=None if after["count"] == total else f"sink counted {after['count']} messages, expected {total}",
            recovery_s=after["t_first_message"] - t_fail,
            to_restore_callback_s=after["t_restore"] - t_fail,
            gen_restore_to_publish_s=(restored_gen[0]["t_first_publish"] - restored_gen[0]["t_restore"])
            if restored_gen else None,
            state_bytes=after["state_bytes"],
        )
        return result


# -- profile ------------------------------------------------------------------------------------
def run_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Where the time of one run goes, in this process: GC time per generation, CPU time per thread,
    and (mode "cprofile") cProfile of every thread, merged. ``spec["of"]`` is "plain" or "snapgraph"."""
    import cProfile
    import gc
    import pstats
    import threading

    gc_time, gc_count, gc_started = [0.0, 0.0, 0.0], [0, 0, 0], [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_time[info["generation"]] += time.perf_counter() - gc_started[0]
            gc_count[info["generation"]] += 1

    profiles: list[cProfile.Profile] = []
    thread_cpu: dict[str, float] = {}
    original_run = threading.Thread.run
    use_cprofile = spec.get("mode") == "cprofile"

    def measured_run(self: threading.Thread) -> None:
        profile = cProfile.Profile() if use_cprofile else None
        if profile is not None:
            profiles.append(profile)
            profile.enable()
        try:
            original_run(self)
        finally:
            if profile is not None:
                profile.disable()
            thread_cpu[self.name] = time.thread_time()

    spec = dict(spec, in_process=True, snapshots=False)
    gc.callbacks.append(on_gc)
    threading.Thread.run = measured_run  # type: ignore[method-assign]
    cpu0 = time.process_time()
    try:
        run = run_plain(spec) if spec.get("of") == "plain" else run_snapgraph(spec)
    finally:
        threading.Thread.run = original_run  # type: ignore[method-assign]
        gc.callbacks.remove(on_gc)
    result: dict[str, Any] = {"ok": bool(run.get("ok")) and not run.get("error"), "error": run.get("error"),
                              "pipeline_s": run.get("pipeline_s"), "process_cpu_s": time.process_time() - cpu0,
                              "gc_s": gc_time, "gc_count": gc_count, "thread_cpu_s": thread_cpu}
    if profiles:
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.strip_dirs().sort_stats("tottime").print_stats(spec.get("top", 25))
        result["cprofile"] = buf.getvalue()
    return result


KINDS = {"plain": run_plain, "snapgraph": run_snapgraph, "bytewax": run_bytewax, "latency": run_latency,
         "snapsize": run_snapsize, "recovery": run_recovery, "profile": run_profile}


def main() -> None:
    spec_file, result_file = sys.argv[1], sys.argv[2]
    with open(spec_file) as f:
        spec = json.load(f)
    try:
        result = KINDS[spec["kind"]](spec)
    except Exception as exc:  # noqa: BLE001 - reported to run.py, which fails loudly
        import traceback

        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["worker_pid"] = os.getpid()
    with open(result_file, "w") as f:
        json.dump(result, f, default=str)


if __name__ == "__main__":  # process groups may start children that import this module
    main()
