"""The layout is the architecture: which package may import which, and no import cycles between modules.

Every ``import snapgraph...`` in the sources counts, wherever it stands (a function-level import is still
a dependency), except imports only for type checking (``if TYPE_CHECKING:``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snapgraph"

#: package -> the packages it may import (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "instruments": set(),
    "api": {"model"},
    "snapshot": {"model", "instruments"},
    "runtime": {"model", "api", "snapshot", "instruments"},
    "testing": {"model", "api", "snapshot", "instruments", "runtime"},
    "cli": {"model", "api", "snapshot", "instruments", "runtime"},
    "__main__": {"cli"},
    "__init__": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path) -> Iterator[str]:
    """The snapgraph modules ``path`` imports (resolved to modules, not names inside them)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("snapgraph"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("snapgraph"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield candidate if candidate in MODULES else node.module


MODULES = {module_name(p) for p in SRC.rglob("*.py")}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        source = module_name(path)
        mine = package_of(source)
        assert mine in ALLOWED, f"{source}: a package the architecture test does not know; add it to ALLOWED"
        for target in imports(path):
            theirs = package_of(target)
            if theirs not in (mine, "__init__") and theirs not in ALLOWED[mine]:
                wrong.append(f"{source} imports {target}")
    assert wrong == []


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        source = module_name(path)
        graph[source] = {t for t in imports(path) if t in MODULES and t != source}
    # a package's __init__ re-exporting its modules is not a cycle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The scan is not vacuous: it finds imports, resolves modules and skips TYPE_CHECKING blocks."""
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nimport snapgraph.cli\n"
                      "from snapgraph.snapshot import store\n"
                      "if TYPE_CHECKING:\n    from snapgraph.runtime import engine\n"
                      "def f():\n    from snapgraph.model.graph import Graph\n")
    assert sorted(imports(sample)) == ["snapgraph.cli", "snapgraph.model.graph", "snapgraph.snapshot.store"]
