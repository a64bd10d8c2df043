"""The layout is the architecture: which package may import which, and no import cycles between modules.

Every ``import snapgraph...`` in the sources counts, wherever it stands (a function-level import is still
a dependency), except imports only for type checking (``if TYPE_CHECKING:``).

The tests mirror the sources: ``tests/<package path>/test_<module>.py`` tests ``src/snapgraph/<package
path>/<module>.py`` (see :func:`misplaced_tests` for the rule and its exceptions).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snapgraph"
TESTS = Path(__file__).resolve().parent

#: package -> the packages it may import (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "instruments": set(),
    "api": {"model"},
    "snapshot": {"model", "instruments"},
    "connectors": {"model", "api"},
    "runtime": {"model", "api", "snapshot", "instruments", "connectors"},
    "monitor": {"model", "snapshot", "instruments"},
    "chaos": {"model", "snapshot", "instruments"},
    "testing": {"model", "api", "snapshot", "instruments", "runtime", "connectors"},
    "cli": {"model", "api", "snapshot", "instruments", "runtime", "monitor", "connectors", "chaos"},
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


# -- the tests mirror the sources ------------------------------------------------------------------

#: Test files (paths under tests/) that are not about one module: behaviour suites that span a package
#: or the whole program, end to end. A file about one module is named after it instead.
BEHAVIOUR_SUITES = {
    "test_architecture.py",                  # this file: the layout of src/ and tests/
    "model/test_docs.py",                    # the examples of docs/graph-formats.md load
    "runtime/test_api_surface.py",           # the Gen2 ``api`` surface, on real graphs
    "runtime/test_dynamic_types.py",         # dynamic types across groups and on publish
    "runtime/test_exactly_once.py",          # exactly-once under a crash at every protocol step
    "runtime/test_gen2_compat.py",           # Gen2 behaviours migrating scripts rely on
    "runtime/test_long_callbacks.py",        # snapshots beside long callbacks (snapshotWhileBusy)
    "runtime/test_process_flow.py",          # message flow between group processes
    "runtime/test_public_samples.py",        # the public Gen2 operator samples, re-written
    "runtime/test_py3v2_examples.py",        # the examples of SAP's Python3 Operator V2 page
    "runtime/test_recovery_topologies.py",   # recovery in fan-in, fan-out, engine death
    "runtime/test_snapshot_validation.py",   # what snapshots demand of a graph, through the CLI
    "runtime/test_streams_and_flow.py",      # message flow, streams and the built-in operators
}

#: Folders under tests/ that mirror no package: the benchmarks' tests and data files.
NOT_MIRRORED = {"bench", "fixtures", "__pycache__"}


def _mirrored_dirs(tests: Path) -> Iterator[Path]:
    for path in sorted(tests.rglob("*")):
        parts = path.relative_to(tests).parts
        if path.is_dir() and not any(part in NOT_MIRRORED or part.startswith(".") for part in parts):
            yield path


def misplaced_tests(tests: Path, src: Path, suites: set[str]) -> list[str]:
    """What breaks the mirroring of ``src`` (the snapgraph package) by ``tests``.

    * Every folder ``tests/<p>`` is a package ``src/<p>/`` (with ``__init__.py``), or is named after a
      top-level module ``src/<p>.py`` (``tests/cli/`` for ``cli.py``, ``tests/testing/`` for
      ``testing.py``).
    * In a package's folder, every ``test_<name>.py`` is named after the package's module
      ``<name>.py`` or subpackage ``<name>/``, or is listed in ``suites``; in a module's folder every
      test file is ``test_<module>.py`` or ``test_<module>_<aspect>.py``.
    * Every entry of ``suites`` is a test file that exists and is not named after a module.

    So renaming or removing a module without its tests, or adding a test file named after nothing,
    fails here.
    """
    wrong: list[str] = []
    modules_dirs: dict[Path, str] = {}
    for folder in _mirrored_dirs(tests):
        rel = folder.relative_to(tests)
        if (src / rel / "__init__.py").is_file():
            continue
        if len(rel.parts) == 1 and (src / f"{rel.parts[0]}.py").is_file():
            modules_dirs[folder] = rel.parts[0]
        else:
            wrong.append(f"tests/{rel.as_posix()}/: no package src/snapgraph/{rel.as_posix()}/ "
                         f"and no module src/snapgraph/{rel.as_posix()}.py")
    folders = [tests, *_mirrored_dirs(tests)]
    for folder in folders:
        for test_file in sorted(folder.glob("test_*.py")):
            rel = test_file.relative_to(tests)
            name = test_file.stem.removeprefix("test_")
            if folder in modules_dirs:
                module = modules_dirs[folder]
                if name != module and not name.startswith(module + "_"):
                    wrong.append(f"tests/{rel.as_posix()}: in tests/{module}/ a test file is test_{module}.py "
                                 f"or test_{module}_<aspect>.py")
                continue
            package = src / rel.parent
            named_after_a_module = (package / f"{name}.py").is_file() or (package / name / "__init__.py").is_file()
            if not named_after_a_module and rel.as_posix() not in suites:
                wrong.append(f"tests/{rel.as_posix()}: no module src/snapgraph/{(rel.parent / name).as_posix()}.py; "
                             "name it after the module it tests or list it in BEHAVIOUR_SUITES")
    for suite in sorted(suites):
        path = tests / suite
        if not path.is_file():
            wrong.append(f"BEHAVIOUR_SUITES: tests/{suite} does not exist")
        elif (src / path.relative_to(tests).parent / f"{path.stem.removeprefix('test_')}.py").is_file():
            wrong.append(f"BEHAVIOUR_SUITES: tests/{suite} is named after a module; it is not a behaviour suite")
    return wrong


def test_the_tests_mirror_the_package_layout() -> None:
    assert misplaced_tests(TESTS, SRC, BEHAVIOUR_SUITES) == []


def test_the_mirroring_check_sees_tests_of_modules_that_do_not_exist(tmp_path: Path) -> None:
    """The check is not vacuous: a renamed module, a stray folder, a stale suite entry and a wrong name
    in a module's folder are each found; the real layout's kinds of files pass."""
    src, tests = tmp_path / "src", tmp_path / "tests"
    for name in ("pkg/__init__.py", "pkg/renamed.py", "pkg/sub/__init__.py", "pkg/sub/mod.py", "cli.py"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("")
    for name in ("pkg/test_renamed.py", "pkg/test_sub.py", "pkg/test_suite.py", "pkg/conftest.py",
                 "pkg/sub/test_mod.py", "pkg/sub/contract.py", "pkg/fixtures/x/test_data.py",
                 "cli/test_cli_run.py", "cli/test_cli.py", "bench/test_x.py", "test_layout.py"):
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    suites = {"pkg/test_suite.py", "test_layout.py"}
    assert misplaced_tests(tests, src, suites) == []
    (src / "pkg" / "renamed.py").rename(src / "pkg" / "new_name.py")
    (tests / "nothing").mkdir()
    (tests / "cli" / "test_run.py").write_text("")
    (tests / "pkg" / "test_suite.py").unlink()
    assert misplaced_tests(tests, src, suites) == [
        "tests/nothing/: no package src/snapgraph/nothing/ and no module src/snapgraph/nothing.py",
        "tests/cli/test_run.py: in tests/cli/ a test file is test_cli.py or test_cli_<aspect>.py",
        "tests/pkg/test_renamed.py: no module src/snapgraph/pkg/renamed.py; "
        "name it after the module it tests or list it in BEHAVIOUR_SUITES",
        "BEHAVIOUR_SUITES: tests/pkg/test_suite.py does not exist",
    ]
    assert misplaced_tests(tests, src, {"pkg/sub/test_mod.py"}) == [
        "tests/nothing/: no package src/snapgraph/nothing/ and no module src/snapgraph/nothing.py",
        "tests/test_layout.py: no module src/snapgraph/layout.py; "
        "name it after the module it tests or list it in BEHAVIOUR_SUITES",
        "tests/cli/test_run.py: in tests/cli/ a test file is test_cli.py or test_cli_<aspect>.py",
        "tests/pkg/test_renamed.py: no module src/snapgraph/pkg/renamed.py; "
        "name it after the module it tests or list it in BEHAVIOUR_SUITES",
        "BEHAVIOUR_SUITES: tests/pkg/sub/test_mod.py is named after a module; it is not a behaviour suite",
    ]
