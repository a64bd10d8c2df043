"""snapgraph's benchmark suite: one entry point, everything measured side by side in one run.

    bench/setup.sh                                   # once: bench/.venv with bytewax, msgpack, pyarrow, psutil
    bench/.venv/bin/python bench/run.py              # full run (~5 min on 2 cores)
    bench/.venv/bin/python bench/run.py --quick      # smoke run (< 1 min)
    bench/.venv/bin/python bench/run.py --only W1,W2 --rows 1000000 --out results.json

Sections (``--only``, comma-separated): W1, W2 (throughput of the pipeline in configurations
a-e), gc (a what-if), ceiling (the best any engine could do in (c) on this machine, from measured
unit costs: bench/ceiling.py), encoding, snapshots, recovery, latency, monitor (W1 with each part of
the displays of a run on against all off). The web monitor's load time in a browser is
bench/web_load.py. Memory per process is sampled during W1/W2, and the operators report the CPU time
of every thread of their process.

The machine is shared and noisy, so every comparison is a **ratio measured in the same run**:
each configuration runs in a fresh subprocess (bench/worker.py), repetitions are interleaved
(round 1: a, b, c, ...; round 2: a, b, c, ...) and the median over the rounds is reported.
Throughput is rows / pipeline time, the time from the generator's first table to the sink's last
one (written by the operator scripts), so interpreter and engine start-up are not counted; the
wall time of each run is in the JSON output too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "worker.py"

try:
    import psutil
except ImportError:  # pragma: no cover - bench/setup.sh installs it
    psutil = None


# -- configurations ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    key: str
    label: str
    spec: dict[str, Any]
    row_fraction: float = 1.0  # bytewax row-by-row runs use fewer rows (rows/s is what is compared)


def pipeline_configs(bytewax: bool) -> list[Config]:
    configs = [
        Config("a", "(a) plain Python loop, 1 process", {"kind": "plain"}),
        Config("b", "(b) snapgraph, in_process=True", {"kind": "snapgraph", "in_process": True, "snapshots": False}),
        Config("b1", "(b1) snapgraph, no groups declared: 1 group process",
               {"kind": "snapgraph", "in_process": None, "snapshots": False, "one_group": True}),
        Config("c", "(c) snapgraph, 3 groups", {"kind": "snapgraph", "in_process": None, "snapshots": False}),
        Config("d", "(d) snapgraph, 3 groups + snapshots 1 s",
               {"kind": "snapgraph", "in_process": None, "snapshots": True}),
        Config("c2", "(c2) snapgraph, 3 groups, processing x2 (multiplicity)",
               {"kind": "snapgraph", "in_process": None, "snapshots": False, "proc_instances": 2}),
    ]
    if bytewax:
        configs += [
            Config("e-tab-1", "(e) bytewax, tables, 1 process", {"kind": "bytewax", "mode": "table", "processes": 1}),
            Config("e-tab-2", "(e) bytewax, tables, 2 processes", {"kind": "bytewax", "mode": "table", "processes": 2}),
            Config("e-row-1", "(e) bytewax, row by row, 1 process",
                   {"kind": "bytewax", "mode": "row", "processes": 1}, row_fraction=0.25),
            Config("e-row-2", "(e) bytewax, row by row, 2 processes",
                   {"kind": "bytewax", "mode": "row", "processes": 2}, row_fraction=0.25),
        ]
    return configs


# -- running one worker -----------------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Peak RSS of a process and all its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peaks: dict[int, dict[str, Any]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        if psutil is None:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    entry = self.peaks.get(proc.pid)
                    if entry is None:
                        cmd = " ".join(proc.cmdline()[1:4])
                        entry = self.peaks[proc.pid] = {"pid": proc.pid, "cmd": cmd, "peak_rss": 0,
                                                        "parent": proc.ppid()}
                    entry["peak_rss"] = max(entry["peak_rss"], rss)
                    times = proc.cpu_times()
                    entry["cpu_s"] = times.user + times.system
                except psutil.Error:
                    pass
            self._halt.wait(self.interval)

    def stop(self) -> list[dict[str, Any]]:
        self._halt.set()
        self.join(2)
        return list(self.peaks.values())


TIMEOUTS = {"plain": 300, "snapgraph": 300, "bytewax": 300, "latency": 120, "snapsize": 120, "recovery": 90,
            "profile": 300}
FAILURES: list[str] = []  # every failed run, printed at the end (exit code 1)


def run_worker(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    timeout = timeout or TIMEOUTS.get(spec["kind"], 300)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        # the worker's own temporary files go below tmp too, so they are removed even if it is killed
        spec_file.write_text(json.dumps(dict(spec, scratch=tmp)))
        # own session: a timed-out worker is killed together with its group processes
        proc = subprocess.Popen([sys.executable, str(WORKER), str(spec_file), str(result_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
        sampler = RssSampler(proc.pid)
        sampler.start()
        timed_out = False
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                proc.kill()
            output, _ = proc.communicate()
        rss = sampler.stop()
        text = output.decode(errors="replace")[-3000:]
        if timed_out:
            return {"ok": False, "error": f"TIMEOUT: no result after {timeout:g}s (worker and its children killed)",
                    "output": text}
        if not result_file.exists():
            return {"ok": False, "error": f"worker exited {proc.returncode} without a result", "output": text}
        result = json.loads(result_file.read_text())
        result["rss"] = rss
        result["output"] = text
        return result


def failed(what: str, result: dict[str, Any]) -> bool:
    """Report a failed or wrong run loudly (it is listed again at the end, exit code 1)."""
    if result.get("ok") and not result.get("error"):
        return False
    FAILURES.append(f"{what}: {result.get('error')}")
    print(f"\n*** {what} FAILED: {result.get('error')}", file=sys.stderr)
    for key in ("traceback", "output"):
        if result.get(key):
            print(result[key][-1500:], file=sys.stderr)
    sys.stderr.flush()
    return True


# -- sections -----------------------------------------------------------------------------------------
def run_pipelines(workloads: list[str], rows: int, rounds: int, hash_rounds: int, bytewax: bool) -> dict[str, Any]:
    configs = pipeline_configs(bytewax)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {w: {c.key: [] for c in configs} for w in workloads}
    for r in range(rounds):
        for workload in workloads:
            for config in configs:
                n = max(1000, int(rows * config.row_fraction))
                spec = dict(config.spec, rows=n, batch=1000, hash_rounds=0 if workload == "W1" else hash_rounds)
                t0 = time.monotonic()
                result = run_worker(spec)
                if failed(f"{workload} {config.label} (round {r + 1})", result):
                    continue
                result["rows"] = n
                result["rows_s"] = n / result["pipeline_s"]
                results[workload][config.key].append(result)
                print(f"  round {r + 1}/{rounds} {workload} {config.key:8} {n:>9} rows  "
                      f"{result['rows_s'] / 1e6:6.3f} M rows/s  (pipeline {result['pipeline_s']:.2f}s, "
                      f"run {time.monotonic() - t0:.1f}s)", flush=True)
    summary: dict[str, Any] = {}
    for workload in workloads:
        rows_out = []
        floor_runs = results[workload]["a"]
        floor = statistics.median(x["rows_s"] for x in floor_runs) if floor_runs else None
        for config in configs:
            runs = results[workload][config.key]
            if not runs:
                rows_out.append({"key": config.key, "label": config.label, "rows": None, "rows_s": None,
                                 "ratio_a": None, "all_rows_s": [], "wall_s": None, "processes": None, "rss": []})
                continue
            med = statistics.median(x["rows_s"] for x in runs)
            rows_out.append({
                "key": config.key, "label": config.label, "rows": runs[0]["rows"],
                "rows_s": med, "ratio_a": med / floor if floor else None, "all_rows_s": [x["rows_s"] for x in runs],
                "wall_s": statistics.median(x["wall_s"] for x in runs), "processes": runs[0].get("os_processes"),
                "in_process_supported": runs[0].get("in_process_supported"),
                "epochs": runs[0].get("epochs"),
                "rss": _rss_summary(runs[-1]),
                "threads": _thread_summary(runs[-1]),
            })
        summary[workload] = rows_out
    return summary


def _thread_summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """CPU seconds of every thread of the processes that ran operators (from the operators' own reports)."""
    return [{"groups": p.get("groups", []), "thread": name, "cpu_s": cpu}
            for p in result.get("processes", []) for name, cpu in (p.get("thread_cpu_s") or {}).items()]


def _rss_summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Peak RSS per process of the run, labelled with the groups each process hosted."""
    groups_by_pid = {p["pid"]: p.get("groups", []) for p in result.get("processes", [])}
    worker = result.get("worker_pid")
    out = []
    for entry in sorted(result.get("rss", []), key=lambda e: e["pid"]):
        groups = groups_by_pid.get(entry["pid"])
        if entry["pid"] == worker:
            role = "worker: runs the graph" if groups else "worker: graph driver"
        elif groups:
            role = "child: group process" if "bytewax" not in entry["cmd"] else "child: bytewax process"
        else:
            role = "child: " + entry["cmd"]
        out.append({"pid": entry["pid"], "role": role, "groups": groups, "peak_rss_mb": entry["peak_rss"] / 1e6,
                    "cpu_s": entry.get("cpu_s")})
    return out


def run_gc_experiment(workloads: list[str], rows: int, rounds: int, hash_rounds: int,
                      threshold: str) -> dict[str, Any]:
    """What-if: (a), (b), (c) with the default GC thresholds and with gc.set_threshold(threshold) in every
    process that runs operators (set by the scripts, so it reaches group processes too). Not a target."""
    configs = [(key + suffix, dict(spec, gc_threshold=gc))
               for key, spec in (("a", {"kind": "plain"}),
                                 ("b", {"kind": "snapgraph", "in_process": True, "snapshots": False}),
                                 ("c", {"kind": "snapgraph", "in_process": None, "snapshots": False}))
               for suffix, gc in (("", ""), ("+gc", threshold))]
    rates: dict[str, dict[str, list[float]]] = {w: {k: [] for k, _ in configs} for w in workloads}
    for r in range(rounds):
        for workload in workloads:
            for key, spec in configs:
                spec = dict(spec, rows=rows, batch=1000, hash_rounds=0 if workload == "W1" else hash_rounds)
                result = run_worker(spec)
                if failed(f"GC experiment {workload} {key} (round {r + 1})", result):
                    continue
                rates[workload][key].append(rows / result["pipeline_s"])
                print(f"  round {r + 1}/{rounds} {workload} {key:5} {rows / result['pipeline_s'] / 1e6:6.3f} M rows/s",
                      flush=True)
    out: dict[str, Any] = {"threshold": threshold, "workloads": {}}
    for workload in workloads:
        med = {k: statistics.median(v) if v else None for k, v in rates[workload].items()}
        out["workloads"][workload] = {"rows_s": med, "all": rates[workload]}
    return out


def run_script(what: str, script: str, args: list[str], echo: bool = False) -> dict[str, Any]:
    """Run a bench/ script that writes its results to ``--json FILE``; {} (and a FAILED entry) if it fails."""
    with tempfile.TemporaryDirectory(prefix="bench-script-") as tmp:
        out = Path(tmp) / "out.json"
        try:
            proc = subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)],
                                  capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            failed(what, {"error": "TIMEOUT after 300s"})
            return {}
        if proc.returncode != 0:
            failed(what, {"error": f"exit {proc.returncode}", "output": proc.stderr[-3000:]})
            return {}
        if echo:
            print(proc.stdout, end="", flush=True)
        return json.loads(out.read_text())


def run_encoding(quick: bool) -> dict[str, Any]:
    return run_script("encoding benchmark", "encoding.py",
                      ["--tables", "300" if quick else "2000", "--seconds", "0.2" if quick else "1.0"])


def run_ceiling(quick: bool, hash_rounds: int = 1) -> dict[str, Any]:
    """bench/ceiling.py: unit costs per table and the best (c) any engine could reach."""
    return run_script("ceiling model", "ceiling.py",
                      ["--hash-rounds", str(hash_rounds), "--tables", "100" if quick else "400"], echo=True)


SIZES = [("1 KB", 1_000), ("100 KB", 100_000), ("10 MB", 10_000_000), ("100 MB", 100_000_000)]


def run_snapshots(quick: bool) -> list[dict[str, Any]]:
    out = []
    for in_process in (True, None):
        where = "in_process=True" if in_process else "groups (default)"
        for label, size in SIZES[:3] if quick else SIZES:
            result = run_worker({"kind": "snapsize", "size": size, "duration": 2.3 if quick else 3.5,
                                 "in_process": in_process})
            if failed(f"snapshot size {where} {label}", result):
                out.append({"state": label, "size": size, "where": where, "error": result.get("error")})
                continue
            out.append({"state": label, "size": size, "where": where, "epochs": result["epochs"],
                        "median_ms": result["median_s"] * 1e3, "durations_ms": [d * 1e3 for d in result["durations_s"]],
                        "bytes": result["bytes"], "mb_s": size / result["median_s"] / 1e6})
            print(f"  snapshot {where:17} {label:7} median {result['median_s'] * 1e3:8.1f} ms over "
                  f"{result['epochs']} epochs, {result['bytes'][-1]} bytes", flush=True)
    return out


MONITOR_CONFIGS = {  # name -> the display parts of bench/worker.py's Displays (empty: all off)
    "off": (), "watcher": ("watcher",), "progress": ("progress",), "endpoints": ("endpoints",),
    "all": ("progress", "endpoints"),
}


def run_monitor(quick: bool, rows: int, rounds: int | None) -> dict[str, Any]:
    """W1 through three groups with snapshots every second, with every display off and with each part on
    (the live view read four times a second; the terminal table; /metrics and the web monitor, both
    scraped once a second; everything), interleaved round by round (the order rotates). Per round the
    ratio of each configuration to that round's all-off run; medians and ranges over the rounds."""
    rounds = rounds or (2 if quick else 5)
    base = {"kind": "snapgraph", "in_process": None, "snapshots": True, "rows": rows, "batch": 1000,
            "hash_rounds": 0}
    names = list(MONITOR_CONFIGS)
    per_round: list[dict[str, float]] = []
    for r in range(rounds):
        throughput: dict[str, float] = {}
        for name in names[r % len(names):] + names[:r % len(names)]:
            result = run_worker(dict(base, displays=list(MONITOR_CONFIGS[name])))
            if failed(f"monitor round {r + 1} {name}", result):
                continue
            throughput[name] = rows / result["pipeline_s"]
        if "off" not in throughput:
            continue
        per_round.append(throughput)
        print(f"  round {r + 1}/{rounds} W1 (d) M rows/s: " + " ".join(
            f"{name} {value / 1e6:.3f}" for name, value in throughput.items()), flush=True)
    ratios: dict[str, list[float]] = {name: [t[name] / t["off"] for t in per_round if name in t]
                                      for name in names[1:]}
    for name, values in ratios.items():
        if values:
            print(f"  {name:9} / off: median {statistics.median(values):.3f} "
                  f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} rounds)", flush=True)
    return {"rows": rows, "rounds": per_round, "ratios": ratios}


def run_stores(quick: bool) -> list[dict[str, Any]]:
    """The same snapshots into the SQLite and the PostgreSQL store, interleaved round by round."""
    sizes = [SIZES[1], SIZES[2]] if quick else [SIZES[1], SIZES[2], SIZES[3]]
    rounds = 1 if quick else 3
    medians: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):
        for in_process in (True, None):
            where = "in_process=True" if in_process else "groups (default)"
            for label, size in sizes:
                for store in ("sqlite", "postgres"):
                    result = run_worker({"kind": "snapsize", "size": size, "duration": 2.3 if quick else 3.5,
                                         "in_process": in_process, "store": store})
                    if failed(f"snapshot store {store} {where} {label}", result):
                        continue
                    medians.setdefault((where, label, store), []).append(result["median_s"])
    out = []
    for (where, label, store), values in medians.items():
        other = medians.get((where, label, "sqlite"))
        row = {"where": where, "state": label, "store": store, "median_ms": statistics.median(values) * 1e3,
               "rounds_ms": [v * 1e3 for v in values]}
        if other:
            row["vs_sqlite"] = statistics.median(values) / statistics.median(other)
        out.append(row)
        print(f"  {store:8} {where:17} {label:7} median {row['median_ms']:8.1f} ms "
              f"({' '.join(f'{v:.0f}' for v in row['rounds_ms'])})", flush=True)
    return out


def run_recovery(quick: bool) -> list[dict[str, Any]]:
    sizes = [SIZES[0], SIZES[2]] if quick else SIZES
    out = []
    for in_process in (True, None):
        where = "in_process=True" if in_process else "groups (default)"
        for label, size in sizes:
            reps = 1 if quick or size >= 100_000_000 else 3
            times, parts, errors = [], [], []
            restored_from = None
            for _ in range(reps):
                result = run_worker({"kind": "recovery", "size": size, "in_process": in_process})
                if failed(f"recovery {where} {label}", result):
                    errors.append(result.get("error"))
                    continue
                times.append(result["recovery_s"])
                parts.append(result["to_restore_callback_s"])
                restored_from = result["restored_from"][-1]
            row: dict[str, Any] = {"state": label, "size": size, "where": where, "reps": reps, "errors": errors,
                                   "all_ms": [t * 1e3 for t in times], "restored_from": restored_from}
            if times:
                row.update(recovery_ms=statistics.median(times) * 1e3, to_restore_ms=statistics.median(parts) * 1e3)
                print(f"  recovery {where:17} {label:7} {row['recovery_ms']:8.1f} ms "
                      f"(to restore callback {row['to_restore_ms']:.1f} ms)", flush=True)
            out.append(row)
    return out


def run_latency(quick: bool) -> list[dict[str, Any]]:
    out = []
    count = 200 if quick else 1000
    for in_process in (True, None):
        where = "in_process=True" if in_process else "groups (default)"
        result = run_worker({"kind": "latency", "count": count, "rate": 200, "in_process": in_process})
        if failed(f"latency {where}", result):
            out.append({"where": where, "error": result.get("error")})
            continue
        out.append({"where": where, "n": result["n"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
                    "max_ms": result["max_ms"], "processes": len(result.get("pids", []))})
        print(f"  latency {where:17} p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
              f"max {result['max_ms']:.3f} ms ({result['n']} msgs at 200/s)", flush=True)
    return out


def _pyspy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else None


def pyspy_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker under ``py-spy record --gil``: samples only the thread holding the GIL, so
    the shares say what each process's interpreter was busy with (idle and GIL waits excluded)."""
    exe = _pyspy()
    with tempfile.TemporaryDirectory(prefix="bench-spy-") as tmp:
        spec_file, result_file, raw = Path(tmp) / "spec.json", Path(tmp) / "result.json", Path(tmp) / "out.raw"
        spec_file.write_text(json.dumps(dict(spec, scratch=tmp)))
        argv = [exe, "record", "--gil", "--threads", "--subprocesses", "-r", "500", "--format", "raw",
                "-o", str(raw), "--", sys.executable, str(WORKER), str(spec_file), str(result_file)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp, check=False)
        if not raw.exists() or not result_file.exists():
            return {"error": f"py-spy failed (exit {proc.returncode}): {proc.stderr[-500:]}"}
        result = json.loads(result_file.read_text())
        groups_by_pid = {str(p["pid"]): ",".join(p.get("groups", [])) for p in result.get("processes", [])}
        worker_pid = str(result.get("worker_pid"))
        by_thread: dict[str, int] = {}
        leaf: dict[str, dict[str, int]] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            procs = [f for f in frames if f.startswith("process ")]
            pid = procs[-1].split(":", 1)[0].split()[-1] if procs else worker_pid
            threads = [f for f in frames if f.startswith("thread (")]
            tname = threads[-1].split(":", 1)[1].strip() if threads and ":" in threads[-1] else "(unnamed)"
            plabel = "worker" if pid == worker_pid else "child"
            if groups_by_pid.get(pid):
                plabel += f" [{groups_by_pid[pid]}]"
            code = [f for f in frames if not f.startswith(("process ", "thread ("))]
            if not code or any("importlib._bootstrap" in f or f.startswith("<module> ") for f in code):
                continue  # start-up: imports and script bodies are not the pipeline
            total += n
            key = f"{plabel} {tname}"
            by_thread[key] = by_thread.get(key, 0) + n
            per_thread = leaf.setdefault(key, {})  # type: ignore[arg-type]
            fn = _short(code[-1])
            per_thread[fn] = per_thread.get(fn, 0) + n
            for frame in set(code):
                if "snapgraph/" in frame or "/graphs/" in frame or "graphs/" in frame:
                    k = f"{tname} › {_short(frame)}"
                    inclusive[k] = inclusive.get(k, 0) + n
        total = total or 1

        def top(d: dict[str, int], k: int) -> list[tuple[str, float]]:
            return [(name, v / total) for name, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

        per_thread_top = {}
        for key, fns in leaf.items():
            n_thread = sum(fns.values())
            if n_thread >= 0.03 * total:
                per_thread_top[key] = [(fn, v / n_thread) for fn, v in sorted(fns.items(), key=lambda kv: -kv[1])[:8]]
        return {"samples": total, "pipeline_s": result.get("pipeline_s"), "threads": top(by_thread, 12),
                "per_thread": per_thread_top, "inclusive": top(inclusive, 30)}


def _short(frame: str) -> str:
    for marker in ("snapgraph/", "graphs/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            return f"{head.strip()} ({tail.rsplit('/', 1)[-1]}" if "/" in tail else frame
    return frame


def run_profile(rows: int, workload: str, hash_rounds: int) -> dict[str, Any]:
    """Where a workload's time goes: GC and thread CPU in (a) and (b), py-spy of (c), cProfile of (b)."""
    hash_rounds = 0 if workload == "W1" else hash_rounds
    base = {"kind": "profile", "rows": rows, "batch": 1000, "hash_rounds": hash_rounds, "top": 25}
    out: dict[str, Any] = {"rows": rows, "workload": workload, "gc": {"a": [], "b": []}}
    for _ in range(3):  # interleaved a, b, a, b, ...
        for key, of in (("a", "plain"), ("b", "snapgraph")):
            result = run_worker(dict(base, of=of))
            if failed(f"profile {key}", result):
                continue
            out["gc"][key].append({k: result[k] for k in ("pipeline_s", "process_cpu_s", "gc_s", "gc_count",
                                                          "thread_cpu_s")})
    prof = run_worker(dict(base, of="snapgraph", mode="cprofile"))
    out["cprofile"] = "" if failed("profile (cProfile)", prof) else prof.get("cprofile", "")
    if _pyspy() is not None:
        # (c) only: in (b) all dispatcher threads share one CPU and one GIL, and py-spy's per-thread
        # attribution there proved wrong against thread_time (above); per process it is usable.
        out["pyspy_c"] = pyspy_profile({"kind": "snapgraph", "rows": rows, "batch": 1000, "hash_rounds": hash_rounds,
                                        "in_process": None, "snapshots": False})
    return out


# -- targets -------------------------------------------------------------------------------------------
def targets(pipes: dict[str, Any], recovery: list[dict[str, Any]],
            monitor: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def rate(workload: str, key: str) -> tuple[bool, float | None]:
        for row in pipes.get(workload, []):
            if row["key"] == key:
                return True, row["rows_s"]
        return False, None

    def add(name: str, left: tuple[bool, float | None], right: tuple[bool, float | None], factor: float) -> None:
        if not (left[0] and right[0]):
            return  # not part of this run
        if left[1] is None or right[1] is None:
            found.append({"target": name, "measured": None, "needed": factor, "met": False})
            return
        found.append({"target": name, "measured": left[1] / right[1], "needed": factor,
                      "met": left[1] >= factor * right[1]})

    add("W1 (b) >= 0.9 x (a)", rate("W1", "b"), rate("W1", "a"), 0.9)
    add("W1 (c) >= 0.8 x (a)", rate("W1", "c"), rate("W1", "a"), 0.8)
    add("W2 (c) >= 1.5 x (b)", rate("W2", "c"), rate("W2", "b"), 1.5)
    for workload in ("W1", "W2"):
        add(f"{workload} (d) >= 0.95 x (c)", rate(workload, "d"), rate(workload, "c"), 0.95)
        add(f"{workload} (b) >= bytewax tables, 1 process", rate(workload, "b"), rate(workload, "e-tab-1"), 1.0)
        add(f"{workload} (c) >= bytewax tables, 2 processes", rate(workload, "c"), rate(workload, "e-tab-2"), 1.0)
        add(f"{workload} (d) >= bytewax tables, 2 processes", rate(workload, "d"), rate(workload, "e-tab-2"), 1.0)
    for row in recovery:
        if row["size"] <= 100_000:
            ms = row.get("recovery_ms")
            found.append({"target": f"recovery < 1 s, {row['state']} state, {row['where']}",
                          "measured": None if ms is None else ms / 1e3, "needed": 1.0,
                          "met": ms is not None and ms < 1000, "unit": "s"})
    watched = (monitor or {}).get("ratios", {}).get("all")
    if watched:
        median = statistics.median(watched)
        found.append({"target": "W1 (d) with every display on >= 0.97 x all off (median of rounds)",
                      "measured": median, "needed": 0.97, "met": median >= 0.97})
    return found


# -- output --------------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for name in ("snapgraph", "ormsgpack", "bytewax", "msgpack", "pyarrow", "psutil"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "?", False
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "python": platform.python_version(),
            "versions": versions, "commit": commit + ("+dirty src" if dirty else ""),
            "src_fingerprint": src_fingerprint(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def src_fingerprint() -> str:
    """A hash of snapgraph's sources: tells whether the engine changed while the benchmark ran."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "src" / "snapgraph").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ceiling_report(ceil: dict[str, Any], pipes: dict[str, Any]) -> str:
    """The unit costs, the ceiling of (c) on this machine and beyond, and how close (c) came to it."""
    out = ["\n### The ceiling of (c): one process per stage, zero engine overhead\n",
           "Unit costs in µs per 1000-row table, measured in one process pinned to one CPU with fresh objects "
           "(`bench/ceiling.py`). A stage process pays its operator's work plus, per hop, encoding with the wire "
           "codec, decoding back to row lists and freeing the rows; the plain loop pays only the work and one free.\n"]
    first = next(iter(ceil.values()))
    names = list(first["costs_us"])
    out.append(md_table(["workload", *names],
                        [[w, *(f"{c['costs_us'][n]:.0f}" for n in names)] for w, c in ceil.items()]))
    rows = []
    for workload, c in ceil.items():
        measured = {r["key"]: r["rows_s"] for r in pipes.get(workload, []) if r.get("rows_s")}
        reached = ""
        if measured.get("c") and measured.get("a"):
            ratio = measured["c"] / measured["a"]
            reached = f"{ratio:.2f} x (a) = {ratio / c['max_ratio_vs_plain']:.0%} of the ceiling"
        rows.append([workload, f"{c['plain_us']:.0f}",
                     ", ".join(f"{k} {v:.0f}" for k, v in c["stages_us"].items()),
                     f"{c['best_us']:.0f} ({c['bound']})", f"{c['max_ratio_vs_plain']:.2f}", reached or "-"])
    out.append("\n" + md_table(["workload", "plain loop µs", "stage processes µs", f"best µs on {first['cores']} cores",
                                "ceiling x (a)", "(c) measured"], rows))
    out.append("\nWhat-if: the same ceiling on more cores and with the processing stage as 1-3 instances "
               "(multiplicity), ratio against the plain loop:\n")
    what = []
    for workload, c in ceil.items():
        for w in c.get("what_if", []):
            what.append([workload, w["cores"], w["processing_instances"], f"{w['max_ratio_vs_plain']:.2f}", w["bound"]])
    out.append(md_table(["workload", "cores", "processing instances", "ceiling x (a)", "bound by"], what))
    return "\n".join(out)


def report(results: dict[str, Any]) -> str:
    out = []
    env = results["environment"]
    out.append(f"machine: {env['nproc']} cores, {env['cpu']}, {env['mem_gib']} GiB; Python {env['python']}; "
               f"snapgraph {env['versions']['snapgraph']} ({env['commit']}, sources {env['src_fingerprint']}); "
               f"bytewax {env['versions']['bytewax']}; {env['date']}")
    out.append(f"\nmode: {results['mode']}, rows {results['rows']}, {results['rounds']} interleaved round(s), "
               f"median; W2 = {results['hash_rounds']} sha256 round(s) per row")
    for workload, rows in results.get("pipelines", {}).items():
        out.append(f"\n### {workload}: throughput (median of {results['rounds']}), ratio against (a)\n")
        out.append(md_table(
            ["configuration", "rows", "M rows/s", "x (a)", "processes running operators", "runs (M rows/s)"],
            [[r["label"], f"{r['rows']:,}", f"{r['rows_s'] / 1e6:.3f}",
              f"{r['ratio_a']:.2f}" if r["ratio_a"] is not None else "-", r["processes"],
              " ".join(f"{x / 1e6:.2f}" for x in r["all_rows_s"])] if r["rows_s"] is not None
             else [r["label"], "-", "**FAILED**", "-", "-", ""] for r in rows]))
    if results.get("pipelines"):
        out.append("\n### Memory and CPU per OS process (W1, last round; sampled every 50 ms with psutil)\n")
        mem_rows = []
        for r in results["pipelines"].get("W1") or next(iter(results["pipelines"].values())):
            for p in r["rss"]:
                groups = ", ".join(p["groups"]) if p["groups"] else "-"
                cpu = f"{p['cpu_s']:.2f}" if p.get("cpu_s") is not None else "-"
                mem_rows.append([r["key"], p["role"][:60], groups, f"{p['peak_rss_mb']:.1f}", cpu])
        out.append(md_table(["config", "process", "groups / operators", "peak RSS MB", "CPU s (whole run)"],
                            mem_rows))
        out.append("\n### CPU per thread (W1, last round; read by the operators at shutdown, start-up included)\n")
        thread_rows = [[r["key"], ", ".join(t["groups"]), t["thread"], f"{t['cpu_s']:.3f}"]
                       for r in results["pipelines"].get("W1") or next(iter(results["pipelines"].values()))
                       for t in r.get("threads", []) if t["cpu_s"] >= 0.005]
        out.append(md_table(["config", "groups", "thread", "CPU s"], thread_rows))
    if results.get("gc"):
        gcx = results["gc"]
        out.append(f"\n### GC what-if: gc.set_threshold({gcx['threshold']}) in every process that runs operators\n")
        out.append("Not a target: the operator scripts set the thresholds at load (so they reach group processes "
                   "too). `a+gc` is the floor with the same GC settings as the engine; where the engine already "
                   "sets these thresholds itself, `b+gc`/`c+gc` equal `b`/`c`. Ratios against (a) with CPython's "
                   "default thresholds.\n")
        gc_rows = []
        for workload, data in gcx["workloads"].items():
            med = data["rows_s"]
            base = med.get("a")
            for key in ("a", "a+gc", "b", "b+gc", "c", "c+gc"):
                v = med.get(key)
                gc_rows.append([workload, key, "-" if v is None else f"{v / 1e6:.3f}",
                                "-" if v is None or not base else f"{v / base:.2f}"])
        out.append(md_table(["workload", "configuration", "M rows/s", "x (a)"], gc_rows))
    if results.get("encoding") and results["encoding"].get("codecs"):
        enc = results["encoding"]
        out.append("\n### Encoding a 1000-row (int, int, str) table\n")
        out.append(md_table(
            ["format", "bytes", "encode tables/s", "decode tables/s", "encode+decode µs", "M rows/s"],
            [[c["format"], f"{c['bytes']:,}", f"{c['encode_tables_s']:,.0f}", f"{c['decode_tables_s']:,.0f}",
              f"{c['roundtrip_us']:.0f}", f"{c['roundtrip_rows_s'] / 1e6:.2f}"] for c in enc["codecs"]]))
        out.append(f"\nEnd to end between two processes (pipe; building the same table alone: "
                   f"{enc['build_tables_s']:,.0f} tables/s):\n")
        out.append(md_table(
            ["format", "tables/s", "M rows/s", "MB/s on the pipe or in shm"],
            [[c["format"], f"{c['tables_s']:,.0f}", f"{c['rows_s'] / 1e6:.2f}", f"{c['mb_s']:.0f}"]
             for c in enc["end_to_end"]]))
    if results.get("snapshots"):
        out.append("\n### Snapshot duration against state size (one stateful operator, SQLite store)\n")
        out.append(md_table(
            ["where", "state", "epochs", "median ms", "all ms", "bytes per epoch", "MB/s"],
            [[s["where"], s["state"], s["epochs"], f"{s['median_ms']:.1f}",
              " ".join(f"{d:.0f}" for d in s["durations_ms"]), f"{s['bytes'][-1]:,}", f"{s['mb_s']:.0f}"]
             if "error" not in s else [s["where"], s["state"], "-", f"**FAILED**: {s['error']}", "", "", ""]
             for s in results["snapshots"]]))
    if results.get("stores"):
        out.append("\n### Snapshot duration by store (one stateful operator; medians of interleaved rounds)\n")
        out.append(md_table(
            ["where", "state", "store", "median ms", "rounds ms", "x SQLite"],
            [[s["where"], s["state"], s["store"], f"{s['median_ms']:.1f}", " ".join(f"{d:.0f}" for d in s["rounds_ms"]),
              f"{s['vs_sqlite']:.2f}" if "vs_sqlite" in s else "-"] for s in results["stores"]]))
    if results.get("monitor"):
        monitor = results["monitor"]
        out.append(f"\n### Watching a run: W1 (d), {monitor['rows']:,} rows, each display part on / all off "
                   "(interleaved rounds)\n")
        out.append(md_table(
            ["on", "median", "range", "per round"],
            [[name, f"{statistics.median(values):.3f}", f"{min(values):.3f}-{max(values):.3f}",
              " ".join(f"{v:.3f}" for v in values)] for name, values in monitor["ratios"].items() if values]))
    if results.get("recovery"):
        out.append("\n### Recovery: failure -> first message at the restored sink (retry_interval 0)\n")
        out.append(md_table(
            ["where", "state", "median ms", "runs ms", "failure -> restore() ms"],
            [[r["where"], r["state"],
              f"{r['recovery_ms']:.0f}" if r.get("recovery_ms") is not None else "**FAILED**",
              " ".join(f"{t:.0f}" for t in r["all_ms"]) + "".join(f" FAILED ({e})" for e in r.get("errors", [])),
              f"{r['to_restore_ms']:.0f}" if r.get("to_restore_ms") is not None else "-"]
             for r in results["recovery"]]))
    if results.get("latency"):
        out.append("\n### Latency generator -> sink at 200 messages/s\n")
        out.append(md_table(
            ["where", "messages", "OS processes", "p50 ms", "p99 ms", "max ms"],
            [[r["where"], r["n"], r["processes"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['max_ms']:.3f}"]
             if "error" not in r else [r["where"], "-", "-", f"**FAILED**: {r['error']}", "", ""]
             for r in results["latency"]]))
    if results.get("ceiling"):
        out.append(ceiling_report(results["ceiling"], results.get("pipelines", {})))
    if results.get("targets"):
        out.append("\n### Targets\n")
        out.append(md_table(
            ["target", "measured", "status"],
            [[t["target"],
              "-" if t["measured"] is None else f"{t['measured']:.2f}" + (" s" if t.get("unit") == "s" else " x"),
              "met" if t["met"] else ("**MISSED**" if t["measured"] is not None else "**FAILED** (no result)")]
             for t in results["targets"]]))
    if results.get("profile"):
        prof = results["profile"]
        out.append(f"\n### Profile of {prof.get('workload', 'W1')} ({prof['rows']:,} rows)\n")
        out.append("GC and CPU time in (a) and (b), median of 3 interleaved runs each (profiling runs, "
                   "gc.callbacks and thread_time):\n")
        gc_rows = []
        for key in ("a", "b"):
            runs = prof["gc"][key]
            def med(f: Any, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(f(r) for r in runs)

            threads = {}
            for r in runs:
                for name, v in r["thread_cpu_s"].items():
                    threads.setdefault(name, []).append(v)
            thread_text = ", ".join(f"{n} {statistics.median(v):.2f}" for n, v in sorted(threads.items())
                                    if n.startswith("op:")) or "-"
            gc_rows.append([key, f"{med(lambda r: r['pipeline_s']):.2f}", f"{med(lambda r: r['process_cpu_s']):.2f}",
                            f"{med(lambda r: sum(r['gc_s'])):.3f}",
                            " / ".join(f"{med(lambda r, g=g: r['gc_s'][g]):.3f}" for g in range(3)),
                            " / ".join(str(int(med(lambda r, g=g: r['gc_count'][g]))) for g in range(3)), thread_text])
        out.append(md_table(["config", "pipeline s", "process CPU s", "GC s", "GC s gen0/1/2", "collections gen0/1/2",
                             "CPU s per dispatcher thread"], gc_rows))
        spy = prof.get("pyspy_c")
        if spy and not spy.get("error"):
            out.append(f"\npy-spy --gil of (c), 3 groups ({spy['samples']} samples). Shares *within* each thread "
                       "(which functions hold its process's GIL); the shares *between* processes are not reliable "
                       "(compare the CPU seconds per process above):\n")
            spy_rows = []
            for thread, fns in spy["per_thread"].items():
                for i, (fn, v) in enumerate(fns):
                    spy_rows.append([thread if i == 0 else "", fn, f"{v:.0%}"])
            out.append(md_table(["process, thread", "function (file:line), self time", "share of the thread"],
                                spy_rows))
        out.append("\ncProfile of (b), all threads merged, by tottime (`acquire` = dispatchers waiting for "
                   "work or for room in a channel):\n\n```\n" + prof["cprofile"].strip() + "\n```")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="snapgraph benchmarks (see docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="fast smoke mode: small N, one round")
    parser.add_argument("--only", default="",
                        help="comma-separated sections: W1,W2,gc,ceiling,encoding,snapshots,stores,recovery,latency,"
                             "monitor (default: all)")
    parser.add_argument("--gc-threshold", default=None,
                        help="thresholds of the GC what-if section (default: the engine's "
                             "snapgraph.runtime.group.GC_THRESHOLDS, else 50000,20,20)")
    parser.add_argument("--rows", type=int, help="rows N for W1/W2 (default 2,000,000; quick 200,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--hash-rounds", type=int, default=1, help="sha256 rounds per row in W2 (default 1)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile the workload of a missed target (auto), always (W1 if none) or never")
    parser.add_argument("--no-bytewax", action="store_true", help="skip configuration (e)")
    parser.add_argument("--out", help="write all results as JSON here")
    parser.add_argument("--markdown", help="write the report (markdown) here as well")
    args = parser.parse_args()

    sections = {"W1", "W2", "GC", "CEILING", "ENCODING", "SNAPSHOTS", "STORES", "RECOVERY", "LATENCY", "MONITOR"}
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()} or sections
    unknown = only - sections
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from W1,W2,gc,ceiling,encoding,"
                     "snapshots,stores,recovery,latency,monitor")
    if args.gc_threshold is None:
        try:
            from snapgraph.runtime.group import GC_THRESHOLDS

            args.gc_threshold = ",".join(str(v) for v in GC_THRESHOLDS)
        except ImportError:
            args.gc_threshold = "50000,20,20"
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    bytewax = not args.no_bytewax
    if bytewax:
        try:
            import bytewax as _bw  # noqa: F401
        except ImportError:
            print("bytewax is not installed in this interpreter: run bench/setup.sh and use bench/.venv/bin/python "
                  "(or pass --no-bytewax)", file=sys.stderr)
            raise SystemExit(2) from None
    if psutil is None:
        print("note: psutil missing, no RSS sampling (run bench/setup.sh)", file=sys.stderr)

    started = time.monotonic()
    results: dict[str, Any] = {"environment": environment(), "mode": "quick" if args.quick else "full",
                               "rows": rows, "rounds": rounds, "hash_rounds": args.hash_rounds}

    def save() -> None:  # after every section, so a later failure loses nothing
        results["failures"] = list(FAILURES)
        results["elapsed_s"] = time.monotonic() - started
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    workloads = [w for w in ("W1", "W2") if w in only]
    if workloads:
        print(f"pipelines {', '.join(workloads)}: {rows:,} rows, {rounds} interleaved round(s)", flush=True)
        results["pipelines"] = run_pipelines(workloads, rows, rounds, args.hash_rounds, bytewax)
        save()
    if "MONITOR" in only:
        print(f"monitor: W1 (d) with the displays off and each part on, {rows:,} rows", flush=True)
        results["monitor"] = run_monitor(args.quick, rows, args.rounds)
        save()
    if "GC" in only:
        gc_workloads = [w for w in ("W1", "W2") if w in only] or ["W1", "W2"]
        print(f"what-if: GC thresholds {args.gc_threshold}", flush=True)
        results["gc"] = run_gc_experiment(gc_workloads, rows, rounds, args.hash_rounds, args.gc_threshold)
        save()
    if "CEILING" in only:
        print("ceiling of (c): unit costs per table", flush=True)
        results["ceiling"] = run_ceiling(args.quick, args.hash_rounds)
        save()
    for section, title, fn in (("ENCODING", "encoding micro-benchmark", run_encoding),
                               ("SNAPSHOTS", "snapshot duration against state size", run_snapshots),
                               ("STORES", "snapshot duration by store (SQLite, PostgreSQL)", run_stores),
                               ("RECOVERY", "recovery time against state size", run_recovery),
                               ("LATENCY", "latency at 200 messages/s", run_latency)):
        if section in only:
            print(title, flush=True)
            results[section.lower()] = fn(args.quick)
            save()
    results["targets"] = targets(results.get("pipelines", {}), results.get("recovery", []), results.get("monitor"))
    missed = [t for t in results["targets"] if not t["met"]]
    changed = src_fingerprint() != results["environment"]["src_fingerprint"]
    if changed:
        results["warning"] = ("snapgraph's sources changed while the benchmark ran: the results mix engine "
                              "versions; run it again on a quiet tree")
    # Profile the workload of the first missed throughput target (W1 when profiling is forced).
    profiled = next((t["target"][:2] for t in missed if t["target"][:2] in only), None)
    if args.profile == "always" or (args.profile == "auto" and profiled):
        workload = profiled or "W1"
        print(f"profiling {workload} (a), (b) and (c)", flush=True)
        results["profile"] = run_profile(min(rows, 1_000_000), workload, args.hash_rounds)
    save()
    text = report(results)
    if results.get("warning"):
        text = f"**WARNING: {results['warning']}**\n\n" + text
        print(f"\n*** WARNING: {results['warning']}", file=sys.stderr)
    if FAILURES:
        text += "\n\n### FAILED runs\n\n" + "\n".join(f"- {f}" for f in FAILURES)
    print("\n" + text)
    print(f"\n{len(results['targets']) - len(missed)} of {len(results['targets'])} targets met; "
          f"{len(FAILURES)} failed run(s); benchmark took {results['elapsed_s']:.0f}s")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if FAILURES:
        raise SystemExit(1)

if __name__ == "__main__":
    main()
