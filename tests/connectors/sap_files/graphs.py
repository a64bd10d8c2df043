"""Graphs of SAP's file operators for the tests of this folder: a connection ``FILES`` on the folder
``root/``, partitioned source files, and graphs wired from operator configs."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from snapgraph.connectors.sap_files.paths import part_files

from ..file_helpers import PACE

FILES = {"connectionID": "FILES"}


def partitioned_source(folder: Path, writes: dict[str, int], *, complete: bool = True) -> bytes:
    """A partitioned file at ``folder``: for each uuid of ``writes`` that many parts ``part-<uuid>-<i>.bin``
    of distinct bytes, and ``_SUCCESS`` when ``complete``; returns the bytes of its parts in order."""
    folder.mkdir(parents=True)
    expected = b""
    for uuid, count in writes.items():
        for index in range(count):
            data = f"{uuid}:{index:03d};".encode() * 3
            (folder / f"part-{uuid}-{index}.bin").write_bytes(data)
            expected += data
    if complete:
        (folder / "_SUCCESS").write_bytes(b"")
    return expected


def sap_graph(folder: Path, operators: dict[str, dict[str, Any]], connections: list[str], *,
              period: float | None = None) -> Path:
    """graph.yaml of ``operators`` (a ``pace`` operator, if named, is the file helpers' pace script),
    conns.yaml with ``FILES`` on ``root/``; returns the graph's path."""
    if "pace" in operators:
        operators["pace"] = {"script": "pace.py", "inputs": {"input": "any"}, "outputs": {"output": "any"},
                             "delivery": {"deterministic": True}, **operators["pace"]}
        (folder / "pace.py").write_text(textwrap.dedent(PACE).lstrip())
    graph: dict[str, Any] = {"name": "sapfiles", "operators": operators, "connections": connections}
    if period is not None:
        graph["snapshots"] = {"period": period}
    (folder / "root").mkdir(exist_ok=True)
    (folder / "conns.yaml").write_text(yaml.safe_dump({"FILES": {
        "connectionType": "LOCAL_FILE_SYSTEM", "connectionProperties": {"rootPath": str(folder / "root")}}}))
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def read_back(folder: Path) -> bytes:
    """The bytes of the parts of the partitioned file ``folder``, in part order (as the consumer reads)."""
    return b"".join(part.read_bytes() for part in part_files(folder))


def taps(stdout: str, name: str = "tap") -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"[{name}]")]
