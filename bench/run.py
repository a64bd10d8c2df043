"""snapgraph's benchmark suite: one entry point, everything measured side by side in one run.

    bench/setup.sh                                   # once: bench/.venv with bytewax, msgpack, pyarrow, psutil
    bench/.venv/bin/python bench/run.py              # full run (~10 min on 2 cores)
    bench/.venv/bin/python bench/run.py --quick      # smoke run (< 1 min)
    bench/.venv/bin/python bench/run.py --only W1,W2 --rows 1000000 --out results.json

Sections (``--only``, comma-separated): W1, W2 (throughput of the pipeline in configurations
a-e), encoding, snapshots, recovery, latency. Memory per process is sampled during W1/W2.

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
        Config("c", "(c) snapgraph, 3 groups", {"kind": "snapgraph", "in_process": None, "snapshots": False}),
        Config("d", "(d) snapgraph, 3 groups + snapshots 1 s",
               {"kind": "snapgraph", "in_process": None, "snapshots": True}),
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


def run_worker(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.Popen([sys.executable, str(WORKER), str(spec_file), str(result_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp)
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        rss = sampler.stop()
        if not result_file.exists():
            return {"ok": False, "error": f"worker exited {proc.returncode} without a result",
                    "output": output.decode(errors="replace")[-3000:]}
        result = json.loads(result_file.read_text())
        result["rss"] = rss
        result["output"] = output.decode(errors="replace")[-3000:]
        return result


def fail_loudly(what: str, result: dict[str, Any]) -> None:
    print(f"\n*** {what} FAILED: {result.get('error')}", file=sys.stderr)
    for key in ("traceback", "output"):
        if result.get(key):
            print(result[key], file=sys.stderr)
    raise SystemExit(1)


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
                if not result.get("ok") or result.get("error"):
                    fail_loudly(f"{workload} {config.label} (round {r + 1})", result)
                result["rows"] = n
                result["rows_s"] = n / result["pipeline_s"]
                results[workload][config.key].append(result)
                print(f"  round {r + 1}/{rounds} {workload} {config.key:8} {n:>9} rows  "
                      f"{result['rows_s'] / 1e6:6.3f} M rows/s  (pipeline {result['pipeline_s']:.2f}s, "
                      f"run {time.monotonic() - t0:.1f}s)", flush=True)
    summary: dict[str, Any] = {}
    for workload in workloads:
        rows_out = []
        floor = statistics.median(x["rows_s"] for x in results[workload]["a"])
        for config in configs:
            runs = results[workload][config.key]
            med = statistics.median(x["rows_s"] for x in runs)
            wall = statistics.median(x["wall_s"] for x in runs)
            rows_out.append({
                "key": config.key, "label": config.label, "rows": runs[0]["rows"],
                "rows_s": med, "ratio_a": med / floor, "all_rows_s": [x["rows_s"] for x in runs],
                "wall_s": wall, "processes": runs[0].get("os_processes"),
                "in_process_supported": runs[0].get("in_process_supported"),
                "epochs": runs[0].get("epochs"),
                "rss": _rss_summary(runs[-1]),
            })
        summary[workload] = rows_out
    return summary


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


def run_encoding(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-enc-") as tmp:
        out = Path(tmp) / "enc.json"
        args = ["--tables", "300" if quick else "2000", "--seconds", "0.2" if quick else "1.0", "--json", str(out)]
        proc = subprocess.run([sys.executable, str(HERE / "encoding.py"), *args], capture_output=True, text=True)
        if proc.returncode != 0:
            fail_loudly("encoding benchmark", {"error": f"exit {proc.returncode}", "output": proc.stderr[-3000:]})
        return json.loads(out.read_text())


SIZES = [("1 KB", 1_000), ("100 KB", 100_000), ("10 MB", 10_000_000), ("100 MB", 100_000_000)]


def run_snapshots(quick: bool) -> list[dict[str, Any]]:
    out = []
    for label, size in SIZES[:3] if quick else SIZES:
        result = run_worker({"kind": "snapsize", "size": size, "duration": 2.3 if quick else 3.5})
        if not result.get("ok") or result.get("error"):
            fail_loudly(f"snapshot size {label}", result)
        out.append({"state": label, "size": size, "epochs": result["epochs"], "median_ms": result["median_s"] * 1e3,
                    "durations_ms": [d * 1e3 for d in result["durations_s"]], "bytes": result["bytes"],
                    "mb_s": size / result["median_s"] / 1e6})
        print(f"  snapshot {label:7} median {result['median_s'] * 1e3:8.1f} ms over {result['epochs']} epochs, "
              f"{result['bytes'][-1]} bytes", flush=True)
    return out


def run_recovery(quick: bool) -> list[dict[str, Any]]:
    sizes = [SIZES[0], SIZES[2]] if quick else SIZES
    out = []
    for in_process in (True, None):
        for label, size in sizes:
            reps = 1 if quick or size >= 100_000_000 else 3
            times, parts = [], []
            for _ in range(reps):
                result = run_worker({"kind": "recovery", "size": size, "in_process": in_process})
                if not result.get("ok") or result.get("error"):
                    fail_loudly(f"recovery {label}", result)
                times.append(result["recovery_s"])
                parts.append(result["to_restore_callback_s"])
            where = "in_process=True" if in_process else "groups (default)"
            out.append({"state": label, "size": size, "where": where, "reps": reps,
                        "recovery_ms": statistics.median(times) * 1e3, "all_ms": [t * 1e3 for t in times],
                        "to_restore_ms": statistics.median(parts) * 1e3,
                        "restored_from": result["restored_from"][-1]})
            print(f"  recovery {where:17} {label:7} {statistics.median(times) * 1e3:8.1f} ms "
                  f"(to restore callback {statistics.median(parts) * 1e3:.1f} ms)", flush=True)
    return out


def run_latency(quick: bool) -> list[dict[str, Any]]:
    out = []
    count = 200 if quick else 1000
    for in_process in (True, None):
        result = run_worker({"kind": "latency", "count": count, "rate": 200, "in_process": in_process})
        if not result.get("ok") or result.get("error"):
            fail_loudly("latency", result)
        where = "in_process=True" if in_process else "groups (default)"
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
        spec_file.write_text(json.dumps(spec))
        argv = [exe, "record", "--gil", "--threads", "--subprocesses", "-r", "500", "--format", "raw",
                "-o", str(raw), "--", sys.executable, str(WORKER), str(spec_file), str(result_file)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp)
        if not raw.exists() or not result_file.exists():
            return {"error": f"py-spy failed (exit {proc.returncode}): {proc.stderr[-500:]}"}
        result = json.loads(result_file.read_text())
        groups_by_pid = {str(p["pid"]): ",".join(p.get("groups", [])) for p in result.get("processes", [])}
        worker_pid = str(result.get("worker_pid"))
        by_thread: dict[str, int] = {}
        leaf: dict[str, int] = {}
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
            leaf_key = f"{tname} | {_short(code[-1])}"
            leaf[leaf_key] = leaf.get(leaf_key, 0) + n
            for frame in set(code):
                if "snapgraph/" in frame or "/graphs/" in frame or "graphs/" in frame:
                    k = f"{tname} | {_short(frame)}"
                    inclusive[k] = inclusive.get(k, 0) + n
        total = total or 1

        def top(d: dict[str, int], k: int) -> list[tuple[str, float]]:
            return [(name, v / total) for name, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

        return {"samples": total, "pipeline_s": result.get("pipeline_s"), "threads": top(by_thread, 12),
                "leaf": top(leaf, 25), "inclusive": top(inclusive, 30)}


def _short(frame: str) -> str:
    for marker in ("snapgraph/", "graphs/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            return f"{head.strip()} ({tail.rsplit('/', 1)[-1]}" if "/" in tail else frame
    return frame


def run_profile(rows: int) -> dict[str, Any]:
    """Where W1's time goes: GC and thread CPU in (a) and (b), py-spy of (b) and (c), cProfile of (b)."""
    base = {"kind": "profile", "rows": rows, "batch": 1000, "hash_rounds": 0, "top": 25}
    out: dict[str, Any] = {"rows": rows, "gc": {"a": [], "b": []}}
    for _ in range(3):  # interleaved a, b, a, b, ...
        for key, of in (("a", "plain"), ("b", "snapgraph")):
            result = run_worker(dict(base, of=of))
            if not result.get("ok"):
                fail_loudly(f"profile {key}", result)
            out["gc"][key].append({k: result[k] for k in ("pipeline_s", "process_cpu_s", "gc_s", "gc_count",
                                                          "thread_cpu_s")})
    prof = run_worker(dict(base, of="snapgraph", mode="cprofile"))
    if not prof.get("ok"):
        fail_loudly("profile (cProfile)", prof)
    out["cprofile"] = prof.get("cprofile", "")
    if _pyspy() is not None:
        out["pyspy_b"] = pyspy_profile({"kind": "snapgraph", "rows": rows, "batch": 1000, "hash_rounds": 0,
                                        "in_process": True, "snapshots": False})
        out["pyspy_c"] = pyspy_profile({"kind": "snapgraph", "rows": rows, "batch": 1000, "hash_rounds": 0,
                                        "in_process": None, "snapshots": False})
    return out


# -- targets -------------------------------------------------------------------------------------------
def targets(pipes: dict[str, Any], recovery: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []

    def rate(workload: str, key: str) -> float | None:
        for row in pipes.get(workload, []):
            if row["key"] == key:
                return row["rows_s"]
        return None

    def add(name: str, left: float | None, right: float | None, factor: float) -> None:
        if left is None or right is None:
            return
        found.append({"target": name, "measured": left / right, "needed": factor, "met": left >= factor * right})

    add("W1 (b) >= 0.9 x (a)", rate("W1", "b"), rate("W1", "a"), 0.9)
    add("W1 (c) >= 0.8 x (a)", rate("W1", "c"), rate("W1", "a"), 0.8)
    add("W2 (c) >= 1.5 x (b)", rate("W2", "c"), rate("W2", "b"), 1.5)
    for workload in ("W1", "W2"):
        add(f"{workload} (d) >= 0.95 x (c)", rate(workload, "d"), rate(workload, "c"), 0.95)
        add(f"{workload} (b) >= bytewax tables 1 process", rate(workload, "b"), rate(workload, "e-tab-1"), 1.0)
        add(f"{workload} (c) >= bytewax tables 2 processes", rate(workload, "c"), rate(workload, "e-tab-2"), 1.0)
        add(f"{workload} (d) >= bytewax tables 2 processes", rate(workload, "d"), rate(workload, "e-tab-2"), 1.0)
    for row in recovery:
        if row["size"] <= 100_000:
            ms = row["recovery_ms"]
            found.append({"target": f"recovery < 1 s, {row['state']} state, {row['where']}",
                          "measured": ms / 1e3, "needed": 1.0, "met": ms < 1000, "unit": "s"})
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
    for name in ("snapgraph", "bytewax", "msgpack", "pyarrow", "psutil"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "?", False
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "python": platform.python_version(),
            "versions": versions, "commit": commit + ("+dirty src" if dirty else ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    out = []
    env = results["environment"]
    out.append(f"machine: {env['nproc']} cores, {env['cpu']}, {env['mem_gib']} GiB; Python {env['python']}; "
               f"snapgraph {env['versions']['snapgraph']} ({env['commit']}); bytewax {env['versions']['bytewax']}")
    out.append(f"mode: {results['mode']}, rows {results['rows']}, {results['rounds']} interleaved round(s), "
               f"median; W2 = {results['hash_rounds']} sha256 round(s) per row")
    for workload, rows in results.get("pipelines", {}).items():
        out.append(f"\n### {workload}: throughput (median of {results['rounds']}), ratio against (a)\n")
        out.append(md_table(
            ["configuration", "rows", "M rows/s", "x (a)", "OS processes", "runs (M rows/s)"],
            [[r["label"], f"{r['rows']:,}", f"{r['rows_s'] / 1e6:.3f}", f"{r['ratio_a']:.2f}", r["processes"],
              " ".join(f"{x / 1e6:.2f}" for x in r["all_rows_s"])] for r in rows]))
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
    if results.get("encoding"):
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
            ["state", "epochs", "median ms", "all ms", "bytes per epoch", "MB/s"],
            [[s["state"], s["epochs"], f"{s['median_ms']:.1f}", " ".join(f"{d:.0f}" for d in s["durations_ms"]),
              f"{s['bytes'][-1]:,}", f"{s['mb_s']:.0f}"] for s in results["snapshots"]]))
    if results.get("recovery"):
        out.append("\n### Recovery: failure -> first message at the restored sink (retry_interval 0)\n")
        out.append(md_table(
            ["where", "state", "median ms", "runs ms", "failure -> restore() ms"],
            [[r["where"], r["state"], f"{r['recovery_ms']:.0f}", " ".join(f"{t:.0f}" for t in r["all_ms"]),
              f"{r['to_restore_ms']:.0f}"] for r in results["recovery"]]))
    if results.get("latency"):
        out.append("\n### Latency generator -> sink at 200 messages/s\n")
        out.append(md_table(
            ["where", "messages", "OS processes", "p50 ms", "p99 ms", "max ms"],
            [[r["where"], r["n"], r["processes"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['max_ms']:.3f}"]
             for r in results["latency"]]))
    if results.get("targets"):
        out.append("\n### Targets\n")
        out.append(md_table(
            ["target", "measured", "status"],
            [[t["target"], f"{t['measured']:.2f}" + (" s" if t.get("unit") == "s" else " x"),
              "met" if t["met"] else "**MISSED**"] for t in results["targets"]]))
    if results.get("profile"):
        prof = results["profile"]
        out.append(f"\n### Profile of W1 ({prof['rows']:,} rows)\n")
        out.append("GC and CPU time in (a) and (b), median of 3 interleaved runs each (profiling runs, "
                   "gc.callbacks and thread_time):\n")
        gc_rows = []
        for key in ("a", "b"):
            runs = prof["gc"][key]
            med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
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
        for key, title in (("pyspy_b", "(b) in_process=True"), ("pyspy_c", "(c) 3 groups")):
            spy = prof.get(key)
            if not spy or spy.get("error"):
                continue
            out.append(f"\npy-spy --gil of {title}: share of GIL-holding samples ({spy['samples']} samples)"
                       " per process and thread:\n")
            out.append(md_table(["process / thread", "share"], [[k, f"{v:.1%}"] for k, v in spy["threads"]]))
            out.append("\nTop functions by self time:\n")
            out.append(md_table(["thread | function (file:line)", "share"], [[k, f"{v:.1%}"] for k, v in spy["leaf"][:15]]))
            out.append("\nsnapgraph and script functions, inclusive (anywhere on the stack):\n")
            out.append(md_table(["thread | function (file:line)", "share"],
                                [[k, f"{v:.1%}"] for k, v in spy["inclusive"][:20]]))
        out.append("\ncProfile of (b), all threads merged, by tottime (`acquire` = dispatchers waiting for "
                   "work or for room in a channel):\n\n```\n" + prof["cprofile"].strip() + "\n```")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="snapgraph benchmarks (see docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="fast smoke mode: small N, one round")
    parser.add_argument("--only", default="", help="comma-separated: W1,W2,encoding,snapshots,recovery,latency")
    parser.add_argument("--rows", type=int, help="rows N for W1/W2 (default 2,000,000; quick 200,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--hash-rounds", type=int, default=1, help="sha256 rounds per row in W2 (default 1)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile W1 (b) when a target is missed (auto), always or never")
    parser.add_argument("--no-bytewax", action="store_true", help="skip configuration (e)")
    parser.add_argument("--out", help="write all results as JSON here")
    parser.add_argument("--markdown", help="write the report (markdown) here as well")
    args = parser.parse_args()

    sections = {"W1", "W2", "ENCODING", "SNAPSHOTS", "RECOVERY", "LATENCY"}
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()} or sections
    unknown = only - sections
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from W1,W2,encoding,snapshots,"
                     "recovery,latency")
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    bytewax = not args.no_bytewax
    if bytewax:
        try:
            import bytewax as _bw  # noqa: F401
        except ImportError:
            print("bytewax is not installed in this interpreter: run bench/setup.sh and use bench/.venv/bin/python "
                  "(or pass --no-bytewax)", file=sys.stderr)
            raise SystemExit(2)
    if psutil is None:
        print("note: psutil missing, no RSS sampling (run bench/setup.sh)", file=sys.stderr)

    started = time.monotonic()
    results: dict[str, Any] = {"environment": environment(), "mode": "quick" if args.quick else "full",
                               "rows": rows, "rounds": rounds, "hash_rounds": args.hash_rounds}
    workloads = [w for w in ("W1", "W2") if w in only]
    if workloads:
        print(f"pipelines {', '.join(workloads)}: {rows:,} rows, {rounds} interleaved round(s)", flush=True)
        results["pipelines"] = run_pipelines(workloads, rows, rounds, args.hash_rounds, bytewax)
    if "ENCODING" in only:
        print("encoding micro-benchmark", flush=True)
        results["encoding"] = run_encoding(args.quick)
    if "SNAPSHOTS" in only:
        print("snapshot duration against state size", flush=True)
        results["snapshots"] = run_snapshots(args.quick)
    if "RECOVERY" in only:
        print("recovery time against state size", flush=True)
        results["recovery"] = run_recovery(args.quick)
    if "LATENCY" in only:
        print("latency at 200 messages/s", flush=True)
        results["latency"] = run_latency(args.quick)
    results["targets"] = targets(results.get("pipelines", {}), results.get("recovery", []))
    missed = [t for t in results["targets"] if not t["met"]]
    if args.profile == "always" or (args.profile == "auto" and missed and "W1" in only):
        print("profiling W1 (b)", flush=True)
        results["profile"] = run_profile(min(rows, 1_000_000))
    results["elapsed_s"] = time.monotonic() - started
    text = report(results)
    print("\n" + text)
    print(f"\n{len(results['targets']) - len(missed)} of {len(results['targets'])} targets met; "
          f"benchmark took {results['elapsed_s']:.0f}s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
