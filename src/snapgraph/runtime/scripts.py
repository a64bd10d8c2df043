"""Loading operator scripts: compile with a real filename, run the body once.

Inline scripts get their source registered with :mod:`linecache`, so a
traceback from a script shows the offending line whether the script lives in
a file or inside graph.json. Each script body runs as a module of its own
(``snapgraph_operator_<process>``, registered in ``sys.modules``), so what
needs a class's module to exist works in scripts as it does in any module:
dataclasses, enums, and pickling instances of script-defined classes into
snapshot state.

Besides ``api``, a script starts with the few modules that SAP's published
examples use without importing them (:data:`PRELOADED_NAMES`); a script that
binds one of those names itself (an import, an assignment) gets its own.

``from hdbcli import dbapi`` finds snapgraph's HANA stand-in
(:mod:`snapgraph.connectors.hdbcli_compat`) when SAP's own driver is not
installed; each script's managed connections are registered for it as the
script loads, and forgotten with the run's modules.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import linecache
import pickle
import re
import sys
import threading
import traceback
import types
from pathlib import Path
from typing import Any

from snapgraph.connectors import hdbcli_compat
from snapgraph.model.graph import ScriptSource

_ENGINE_DIR = str(Path(__file__).resolve().parents[1])
SCRIPT_MODULE_PREFIX = "snapgraph_operator_"

# Names SAP's examples use unimported: pickle (State Management, Examples: Operator States),
# BytesIO (Python3 Operator V2 binary examples), io and threading (the Modeler's older template).
PRELOADED_NAMES: dict[str, Any] = {"pickle": pickle, "io": io, "BytesIO": io.BytesIO, "threading": threading}


def prepare_imports(graph_folder: Path, operator_dirs: list[Path]) -> None:
    """Make the modules a graph's scripts import importable.

    * ``operators.<dotted operator id>.<module>``: helper modules of custom
      operators. DI puts the parent of ``.../python3/operators`` on
      ``sys.path``; here ``operators`` is a namespace package spanning every
      ``--operators`` folder.
    * plain ``import name`` of a module beside the graph file (handy for
      hand-written YAML graphs that share a helper between scripts).
    * ``from hdbcli import dbapi``: the stand-in's folder goes at the END of
      ``sys.path``, and only when no ``hdbcli`` is importable, so SAP's real
      driver, when installed, always wins.
    """
    folder = str(Path(graph_folder).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    package = sys.modules.get("operators")
    paths = [str(Path(d).resolve()) for d in operator_dirs]
    if package is None or not hasattr(package, "__path__"):
        package = types.ModuleType("operators")
        package.__path__ = []
        sys.modules["operators"] = package
    for path in paths:
        if path not in package.__path__:
            package.__path__.append(path)
    if hdbcli_compat.IMPORT_FOLDER not in sys.path and importlib.util.find_spec("hdbcli") is None:
        sys.path.append(hdbcli_compat.IMPORT_FOLDER)


def forget_script_modules(graph_folder: Path, before: set[str]) -> None:
    """Drop the script and helper modules of a run, so the next attempt or run starts afresh.

    Only modules that were not loaded before the run (``before``) go, and only
    the operators' script modules, helpers (``operators.*``), modules from
    the graph's folder and the hdbcli stand-in's: a failed attempt's globals
    (connections, say) must not stay reachable. The stand-in's folder leaves
    ``sys.path`` and it forgets the run's managed connections.
    """
    folder = str(Path(graph_folder).resolve())
    for added in (folder, hdbcli_compat.IMPORT_FOLDER):
        if added in sys.path:
            sys.path.remove(added)
    hdbcli_compat.forget_connections()
    for name, module in list(sys.modules.items()):
        if name in before or name == "__main__":
            continue
        file = getattr(module, "__file__", None)
        origin = str(Path(file).resolve()) if file else ""
        stand_in = name.partition(".")[0] == "hdbcli" and origin.startswith(hdbcli_compat.IMPORT_FOLDER + "/")
        if name.startswith(("operators.", SCRIPT_MODULE_PREFIX)) or stand_in or (
                origin and origin.startswith(folder + "/")):
            del sys.modules[name]


def script_module_name(process: str) -> str:
    """The module a process's script runs as: an identifier, since pickle imports it by name."""
    safe = re.sub(r"\W", "_", process)
    if safe != process:  # "stage.1" and "stage_1" must not share a module
        safe += "_" + hashlib.sha1(process.encode()).hexdigest()[:8]
    return SCRIPT_MODULE_PREFIX + safe


def run_script(source: ScriptSource, process: str, injected: dict[str, Any]) -> types.ModuleType:
    """Compile and run the script body of ``process`` as its module, with the preloaded names and
    ``injected`` ones (``api``) as its globals."""
    text = source.compilable()
    if not Path(source.filename).is_file():
        linecache.cache[source.filename] = (len(text), None, text.splitlines(True), source.filename)
    code = compile(text, source.filename, "exec")
    module = types.ModuleType(script_module_name(process))
    module.__file__ = source.filename
    module.__dict__.update(PRELOADED_NAMES)
    module.__dict__.update(injected)
    config = getattr(injected.get("api"), "config", None)
    if config is not None:  # the operator's managed connections, for `from hdbcli import dbapi`
        hdbcli_compat.register_connections(getattr(config, name) for name in dir(config))
    sys.modules[module.__name__] = module
    exec(code, module.__dict__)  # noqa: S102 - running the user's operator script is the point
    return module


def format_script_error(exc: BaseException) -> str:
    """A traceback that shows the script's frames and leaves out the engine's own."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_ENGINE_DIR)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def script_line(exc: BaseException) -> str | None:
    """``file:line`` of the innermost script frame of ``exc``, for one-line messages."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_ENGINE_DIR)]
    if not frames:
        return None
    return f"{frames[-1].filename}:{frames[-1].lineno}"
