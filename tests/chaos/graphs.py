"""Small graphs for the chaos tests: a replayable SQL reader over SQLite, a paced deterministic operator and
a SQL writer (append: a plain INSERT writer; upsert: idempotent by key), with the setup and check commands a
user would write for them."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

SETUP = """
import sqlite3
import sys

rows = int(sys.argv[1])
conn = sqlite3.connect("data.db")
conn.execute("DROP TABLE IF EXISTS src")
conn.execute("DROP TABLE IF EXISTS dst")
conn.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, name TEXT, amount INTEGER)")
conn.execute("CREATE TABLE dst (id INTEGER {key}, name TEXT, amount INTEGER)")
conn.executemany("INSERT INTO src VALUES (?, ?, ?)", [(i, f"name{{i}}", i * 7 % 100) for i in range(rows)])
conn.commit()
"""

CHECK = """
import sqlite3

conn = sqlite3.connect("data.db")
print(conn.execute("SELECT count(*), count(DISTINCT id), sum(amount) FROM dst").fetchone())
"""

PACE = """
import time

def on_input(msg_id, header, body):
    time.sleep(api.config.delay)
    api.outputs.output.publish(body.get(), header)

api.set_port_callback("input", on_input)
"""


@dataclass(frozen=True)
class SqlCopy:
    """The graph and its files in ``folder``; the commands run with ``folder`` as the working directory."""

    folder: Path
    graph: Path
    connections: Path
    rows: int
    run_args: tuple[str, ...] = ()  # what the graph needs on the command line besides --connections

    @property
    def setup(self) -> str:
        return f"{sys.executable} setup.py {self.rows}"

    @property
    def check(self) -> str:
        return f"{sys.executable} check.py"


def write_sql_copy(folder: Path, *, mode: str = "append", rows: int = 1500, delay: float = 0.01,
                   groups: bool = True) -> SqlCopy:
    """reader (sql-reader over src, pages of 10 rows) -> pace (``delay`` s a message) -> writer (sql-writer
    into dst in ``mode``); snapshots every second. ``groups``: reader and pace in group ``source``, the
    writer in ``sink`` (OS processes of their own)."""
    writer_config = {"connection": {"connectionID": "DB"}, "table": "dst", "mode": mode}
    if mode == "upsert":
        writer_config["key"] = "id"
    operators = {
        "reader": {"component": "sql-reader",
                   "config": {"connection": {"connectionID": "DB"}, "table": "src", "key": "id", "batch": 10}},
        "pace": {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                 "config": {"delay": delay}, "delivery": {"deterministic": True}},
        "writer": {"component": "sql-writer", "config": writer_config},
    }
    if groups:
        operators["reader"]["group"] = operators["pace"]["group"] = "source"
        operators["writer"]["group"] = "sink"
    graph = {"name": f"sql-{mode}", "operators": operators,
             "connections": ["reader.output -> pace.input", "pace.output -> writer.input"],
             "snapshots": {"period": 1}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.yaml").write_text(yaml.safe_dump(graph, sort_keys=False))
    (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    key = "PRIMARY KEY" if mode == "upsert" else ""
    (folder / "setup.py").write_text(textwrap.dedent(SETUP).lstrip().replace("{key}", key).replace("{{i}}", "{i}"))
    (folder / "check.py").write_text(textwrap.dedent(CHECK).lstrip())
    connections = folder / "connections.yaml"
    connections.write_text(yaml.safe_dump({"DB": {"connectionType": "SQLITE",
                                                  "connectionProperties": {"path": "data.db"}}}))
    return SqlCopy(folder, folder / "graph.yaml", connections, rows)


def write_sql_copy_json(folder: Path, *, mode: str = "append", rows: int = 1500, delay: float = 0.01) -> SqlCopy:
    """The graph of :func:`write_sql_copy` (with its groups) as a DI graph.json: the same processes, the
    pace script inline, delivery declared in ``metadata.snapgraph``; snapshots from ``--snapshot-period 1``."""
    copy = write_sql_copy(folder, mode=mode, rows=rows, delay=delay)
    spec = yaml.safe_load(copy.graph.read_text())
    copy.graph.unlink()
    components = {"sql-reader": "snapgraph.sql.reader", "sql-writer": "snapgraph.sql.writer"}
    processes: dict[str, object] = {}
    for name, operator in spec["operators"].items():
        if "component" in operator:
            processes[name] = {"component": components[operator["component"]],
                               "metadata": {"config": operator["config"]}}
        else:
            processes[name] = {"component": "com.sap.system.python3Operator.v2", "metadata": {
                "config": {"script": (folder / operator["script"]).read_text(), **operator["config"]},
                "inports": [{"name": port, "type": "*"} for port in operator["inputs"]],
                "outports": [{"name": port, "type": "*"} for port in operator["outputs"]],
                "snapgraph": {"delivery": operator["delivery"]}}}
    connections = []
    for line in spec["connections"]:
        source, target = (end.strip().rsplit(".", 1) for end in line.split("->"))
        connections.append({"src": {"process": source[0], "port": source[1]},
                            "tgt": {"process": target[0], "port": target[1]}})
    groups = [{"name": "source", "nodes": ["reader", "pace"]}, {"name": "sink", "nodes": ["writer"]}]
    graph = folder / "graph.json"
    graph.write_text(json.dumps({"description": spec["name"], "processes": processes, "connections": connections,
                                 "groups": groups}, indent=2))
    return SqlCopy(folder, graph, copy.connections, rows, run_args=("--snapshot-period", "1"))
