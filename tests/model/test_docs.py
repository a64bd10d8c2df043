"""The examples in docs/graph-formats.md must load."""

from __future__ import annotations

import re
from pathlib import Path

from snapgraph.model.loader import LoadOptions, load_graph

DOC = Path(__file__).resolve().parents[2] / "docs" / "graph-formats.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_full_yaml_example_loads(files) -> None:
    graph_text = blocks("yaml")[0]
    vtype_text = blocks("json")[0]
    files("demo/gen.py", "def gen():\n    pass\n\napi.set_prestart(gen)\n")
    files("demo/vtypes/demo.orders.vtype", vtype_text)
    conns = files("conns.yaml", blocks("yaml")[-1])
    path = files("demo/graph.yaml", graph_text)
    graph = load_graph(path, LoadOptions(params={"table": "orders"}, connections_file=conns))
    assert graph.name == "orders-demo"
    assert graph.processes["gen"].config["rows"] == 1000
    assert graph.processes["writer"].config["db"]["connectionProperties"]["host"] == "localhost"
    assert graph.settings.period == 5
    assert graph.settings.max_retries == 3
