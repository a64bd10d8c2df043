"""Folders for the file connector tests: source files, graphs of the reader and the writers, runs under the
supervisor and through the command line, and what a target folder holds."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import yaml

from snapgraph.runtime.supervisor import SupervisedResult
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.testing import run_with_faults

# A stateless, deterministic operator between reader and writer that takes `delay` seconds per message, so
# that a run lasts long enough for several snapshot epochs.
PACE = """
import time

def on_input(msg_id, header, body):
    time.sleep(api.config.delay)
    api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


def source_rows(files: int, rows: int) -> list[list[str]]:
    """The rows of ``make_csv_source(files, rows)``, in reading order (CSV values are strings)."""
    return [[str(f * rows + r), f"name{f}.{r}", str((f * rows + r) * 7 % 100)]
            for f in range(files) for r in range(rows)]


def make_csv_source(folder: Path, files: int, rows: int, start_file: int = 0) -> None:
    """``files`` CSV files ``f<NN>.csv`` of ``rows`` rows (id, name, amount) each, with a header line."""
    folder.mkdir(exist_ok=True)
    everything = source_rows(start_file + files, rows)
    for f in range(start_file, start_file + files):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", "name", "amount"])
        writer.writerows(everything[f * rows:(f + 1) * rows])
        (folder / f"f{f:02d}.csv").write_text(text.getvalue())


def write_graph(folder: Path, *, reader: dict[str, Any] | None = None, writer: dict[str, Any] | None = None,
                delay: float = 0.0, period: float | None = None, groups: bool = True,
                writer_component: str = "file-writer", name: str = "filegraph") -> Path:
    """graph.yaml: file-reader over ``in/`` -> (a pace operator when ``delay``) -> a writer (file-writer into
    ``out/`` by default); with ``groups``, the writer runs in a group (an OS process) of its own."""
    operators: dict[str, Any] = {
        "reader": {"component": "file-reader",
                   "config": {"folder": "in", "format": "csv", "batch": 5, **(reader or {})}},
        "writer": {"component": writer_component,
                   "config": {"folder": "out", "format": "csv", **(writer or {})}
                   if writer_component == "file-writer" else dict(writer or {})},
    }
    inport = "input" if writer_component == "file-writer" else "file"
    connections = [f"reader.output -> writer.{inport}"]
    if delay:
        operators["pace"] = {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                             "config": {"delay": delay}}
        connections = ["reader.output -> pace.input", f"pace.output -> writer.{inport}"]
        (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    if groups:
        # the pace operator shares the reader's group, so the reader cannot run far ahead of it
        operators["reader"]["group"] = "source"
        operators["writer"]["group"] = "sink"
        if delay:
            operators["pace"]["group"] = "source"
    graph: dict[str, Any] = {"name": name, "operators": operators, "connections": connections}
    if period is not None:
        graph["snapshots"] = {"period": period}
    (folder / "out").mkdir(exist_ok=True)
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def run_supervised(folder: Path, graph: Path, faults: str = "", *, period: float | None = 0.02,
                   in_process: bool = True, max_retries: int = 6,
                   connections: Path | None = None) -> tuple[SupervisedResult, FaultPlan]:
    """Run ``graph`` under the supervisor, in ``folder`` (relative folders of the config are under it), with
    snapshots every ``period`` seconds (None: none) and ``faults``; returns the outcome and the fault plan."""
    run = run_with_faults(graph, faults, period=period, max_retries=max_retries, connections=connections,
                          in_process=in_process, store=folder / f"store-{uuid.uuid4().hex[:6]}.db", cwd=folder)
    return run.outcome, run.plan


def cli(folder: Path, *args: str, faults: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``snapgraph run graph.yaml --no-progress ARGS`` in ``folder`` (its store: ./.snapgraph)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SNAPGRAPH_FAULTS": faults}
    return subprocess.run([sys.executable, "-m", "snapgraph", "run", "graph.yaml", "--no-progress", *args],
                          cwd=folder, capture_output=True, text=True, timeout=timeout, env=env)


def parts(folder: Path) -> list[str]:
    """The names of the files in ``folder``, temporary ones included, sorted."""
    return sorted(entry.name for entry in folder.iterdir())


def written_rows(folder: Path, fmt: str = "csv") -> list[list[Any]]:
    """Every row of the part files in ``folder``, in part order (each CSV part has a header line)."""
    rows: list[list[Any]] = []
    for name in parts(folder):
        if name.startswith("."):
            continue
        path = folder / name
        if fmt == "csv":
            rows += list(csv.reader(io.StringIO(path.read_text())))[1:]
        elif fmt == "jsonl":
            rows += [list(json.loads(line).values()) for line in path.read_text().splitlines()]
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            rows += [list(row.values()) for row in table.to_pylist()]
    return rows
