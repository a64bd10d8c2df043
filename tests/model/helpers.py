"""Helpers for the graph-model tests: build small graph files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def write(root: Path, relative: str, content: Any) -> Path:
    """Write ``content`` (text, dedented; or JSON-able data) to ``root/relative``."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    else:
        path.write_text(json.dumps(content, indent=2), encoding="utf-8")
    return path


def py_process(script: str = "api.set_prestart(lambda: None)\n", *,
               inports: list[dict] | None = None, outports: list[dict] | None = None,
               **config: Any) -> dict:
    """A graph.json python3Operator.v2 process with an inline script."""
    metadata: dict[str, Any] = {"generation": 2, "config": {"script": script, **config}}
    if inports:
        metadata["additionalinports"] = inports
    if outports:
        metadata["additionaloutports"] = outports
    return {"component": "com.sap.system.python3Operator.v2", "metadata": metadata}


def port(name: str, type_: str = "scalar", vtype: str | None = "com.sap.core.string") -> dict:
    spec = {"name": name, "type": type_}
    if vtype is not None:
        spec["vtype-ID"] = vtype
    return spec


def conn(src: str, tgt: str) -> dict:
    sp, so = src.split(".")
    tp, to = tgt.split(".")
    return {"src": {"process": sp, "port": so}, "tgt": {"process": tp, "port": to}}


def graph_json(processes: dict, connections: list | None = None, **extra: Any) -> dict:
    return {"processes": processes, "connections": connections or [], "groups": [],
            "metadata": {"generation": 2}, **extra}
