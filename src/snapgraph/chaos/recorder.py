"""``--compare-sinks``: a copy of the graph in which a tap records what reaches each writer.

For every writer of the graph (an operator :func:`~snapgraph.model.guarantees.writer_kind` calls one) and
each of its connected input ports, the copy gets a *tap*: a Gen2 script operator in the writer's group,
connected to the same outputs as that port, so every message sent to the writer is also sent to the tap
(the tap declares ``writer: none``: it changes no guarantee). The tap writes two records into a folder of
its own:

* ``deliveries``: one line per message it received, in every attempt, appended as it arrives (a kill of the
  engine loses nothing already written: the kernel keeps the file);
* ``committed/<epoch>``: the messages of each *completed* epoch, by the protocol of a transactional file
  writer: at ``serialize(E)`` the messages since the previous barrier go to ``staged/E``; ``epoch_complete(E)``
  moves every staged epoch up to E to ``committed/`` (a rename: atomic, and a no-op the second time);
  ``restore(E)`` drops staged epochs after E (they never completed and are replayed) and commits those up
  to E (the failed attempt may have died before its ``epoch_complete``); an attempt that starts without a
  restore drops everything staged (nothing had completed).

A line is ``<sha256 of repr(body)> <rows>``: the message body (a table's rows), not its header. What a
writer *does* with its inputs is its kind (docs/guarantees.md), so :func:`effect` reads the records by it:
a transactional writer writes the completed epochs, in order; an idempotent writer ends with the distinct
messages it was ever given; a plain writer writes every delivery, replays included. The copy is written
beside the original under a hidden name (scripts, helper modules and vtypes resolve from the graph's
folder) and removed after the run; YAML graphs and graph.json files alike.
"""

from __future__ import annotations

import collections
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from snapgraph.model.delivery import WriterKind
from snapgraph.model.gen2_json import SNAPGRAPH_METADATA
from snapgraph.model.graph import PYTHON3_V2, Graph
from snapgraph.model.guarantees import writer_kind
from snapgraph.model.loader import JSON_SUFFIXES

TAP_PREFIX = "chaos_tap_"

TAP_SCRIPT = '''\
# snapgraph chaos: records what reaches one writer input (snapgraph/chaos/recorder.py).
import hashlib
import os

folder = api.config.folder
staged = os.path.join(folder, "staged")
committed = os.path.join(folder, "committed")
for path in (staged, committed):
    os.makedirs(path, exist_ok=True)
pending = []
restored = False

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))


def describe(value):
    body = value.body if isinstance(getattr(value, "body", None), list) else value
    rows = len(body) if isinstance(body, list) else 1
    return hashlib.sha256(repr(body).encode()).hexdigest() + " " + str(rows)


def on_input(msg_id, header, body):
    line = describe(body.get())
    pending.append(line)
    fd = os.open(os.path.join(folder, "deliveries"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


def serialize(epoch):
    path = os.path.join(staged, epoch)
    with open(path + ".part", "w") as out:
        out.write("".join(line + "\\n" for line in pending))
    os.replace(path + ".part", path)
    pending.clear()
    return b"tap"


def commit(upto):
    for name in sorted(os.listdir(staged)):
        if not name.endswith(".part") and name <= upto:
            os.replace(os.path.join(staged, name), os.path.join(committed, name))


def restore(epoch, state):
    global restored
    restored = True
    pending.clear()
    for name in os.listdir(staged):
        if name.endswith(".part") or name > epoch:
            os.remove(os.path.join(staged, name))
    commit(epoch)


def prestart():
    if not restored:
        for name in os.listdir(staged):
            os.remove(os.path.join(staged, name))


api.set_port_callback("input", on_input)
api.set_serialize_callback(serialize)
api.set_restore_callback(restore)
api.set_epoch_complete_callback(commit)
api.set_prestart(prestart)
'''


class RecorderError(Exception):
    """The graph cannot be taped (exit 2)."""


@dataclass(frozen=True)
class Tap:
    """The tap of one writer input: its operator name in the copy and its folder's name."""

    name: str
    writer: str
    port: str
    kind: WriterKind | None
    sources: tuple[str, ...]  # the outputs feeding the port, "process.port"

    @property
    def label(self) -> str:
        return f"{self.writer}.{self.port}"


def taps_for(graph: Graph) -> list[Tap]:
    """One tap per connected input port of every writer, in the graph's order."""
    taps = []
    used = set(graph.processes)
    for process in graph.processes.values():
        kind = writer_kind(graph, process)
        if kind is None:
            continue
        for port in process.inports:
            sources = tuple(str(c.src) for c in graph.connections_to(process.name) if c.tgt.port == port)
            if not sources:
                continue
            name = TAP_PREFIX + re.sub(r"\W", "_", f"{process.name}_{port}")
            while name in used:
                name += "_"
            used.add(name)
            taps.append(Tap(name, process.name, port, kind, sources))
    return taps


def taped_copy(graph_file: Path, taps: list[Tap], folder: Path) -> Path:
    """Write the graph with its taps beside ``graph_file`` under a hidden name of its own (so that its
    scripts, vtypes and helper modules resolve as for the original; the caller removes it) and the taps'
    record folders (``records/<tap>``) in ``folder``; the path of the copy. A YAML graph gets operators with
    ``code:``, a graph.json processes of ``com.sap.system.python3Operator.v2`` with the script inline, their
    delivery declared in ``metadata.snapgraph``; each tap joins its writer's group."""
    text = graph_file.read_text(encoding="utf-8")
    as_json = graph_file.suffix.lower() in JSON_SUFFIXES
    data = json.loads(text) if as_json else yaml.safe_load(text)
    for tap in taps:
        records = folder / "records" / tap.name
        records.mkdir(parents=True, exist_ok=True)
        (_add_json_tap if as_json else _add_yaml_tap)(data, tap, str(records))
    copy = graph_file.parent / f".{graph_file.stem}.chaos-{uuid.uuid4().hex[:8]}{graph_file.suffix}"
    copy.write_text(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False,
                                                                                allow_unicode=True),
                    encoding="utf-8")
    return copy


_TAP_DELIVERY = {"writer": "none", "deterministic": True}


def _add_yaml_tap(data: dict[str, Any], tap: Tap, records: str) -> None:
    operators: dict[str, Any] = data["operators"]
    spec: dict[str, Any] = {"code": TAP_SCRIPT, "inputs": {"input": "any"}, "config": {"folder": records},
                            "delivery": dict(_TAP_DELIVERY)}
    writer_spec = operators.get(tap.writer)
    if isinstance(writer_spec, dict) and "group" in writer_spec:
        spec["group"] = writer_spec["group"]
    for group in (data.get("groups") or {}).values():
        if isinstance(group, dict) and tap.writer in (group.get("nodes") or []):
            group["nodes"].append(tap.name)
    operators[tap.name] = spec
    data.setdefault("connections", []).extend(f"{source} -> {tap.name}.input" for source in tap.sources)


def _add_json_tap(data: dict[str, Any], tap: Tap, records: str) -> None:
    data["processes"][tap.name] = {
        "component": PYTHON3_V2,
        "metadata": {"label": f"chaos tap of {tap.label}", "config": {"script": TAP_SCRIPT, "folder": records},
                     "inports": [{"name": "input", "type": "*"}],
                     SNAPGRAPH_METADATA: {"delivery": dict(_TAP_DELIVERY)}}}
    for group in data.get("groups") or []:
        if isinstance(group, dict) and tap.writer in (group.get("nodes") or []):
            group["nodes"].append(tap.name)
    connections = data.setdefault("connections", [])
    for source in tap.sources:
        process, port = source.rsplit(".", 1)
        connections.append({"src": {"process": process, "port": port}, "tgt": {"process": tap.name, "port": "input"}})


@dataclass(frozen=True)
class Recording:
    """What one tap wrote: every delivery, and the messages of the completed epochs in epoch order."""

    deliveries: tuple[str, ...]
    committed: tuple[str, ...]


def read_recording(folder: Path) -> Recording:
    deliveries_file = folder / "deliveries"
    deliveries = deliveries_file.read_text().splitlines() if deliveries_file.exists() else []
    committed: list[str] = []
    committed_dir = folder / "committed"
    if committed_dir.is_dir():
        for epoch in sorted(committed_dir.iterdir()):
            committed += epoch.read_text().splitlines()
    return Recording(tuple(deliveries), tuple(committed))


def effect(recording: Recording, kind: WriterKind | None) -> tuple[str, ...]:
    """What a writer of ``kind`` made of what reached it: a transactional writer (or one of unknown kind)
    the completed epochs in order, an idempotent writer the distinct messages ever delivered (sorted), a
    plain writer every delivery (sorted: a replay writes again)."""
    if kind is WriterKind.IDEMPOTENT:
        return tuple(sorted(set(recording.deliveries)))
    if kind is WriterKind.PLAIN:
        return tuple(sorted(recording.deliveries))
    return recording.committed


def describe_difference(expected: tuple[str, ...], actual: tuple[str, ...]) -> str:
    """How ``actual`` differs from ``expected``: messages (and rows) extra, missing, or the order."""
    want, have = collections.Counter(expected), collections.Counter(actual)
    extra, missing = have - want, want - have

    def rows(counter: collections.Counter[str]) -> int:
        return sum(int(line.rsplit(" ", 1)[-1]) * n for line, n in counter.items())

    if not extra and not missing:
        first = next(i for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if a != b)
        return f"the same {len(expected)} messages in another order (from message {first + 1})"
    parts = []
    if extra:
        again = sum(n for line, n in extra.items() if line in want)
        parts.append(f"{sum(extra.values())} messages ({rows(extra)} rows) more than the failure-free run"
                     + (f", {again} of them delivered again after a replay" if again else ""))
    if missing:
        parts.append(f"{sum(missing.values())} messages ({rows(missing)} rows) missing")
    return "; ".join(parts)
