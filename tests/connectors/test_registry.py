"""The connectors' registry: snapgraph without its optional extras still imports and runs every graph that
does not need them, and a graph that does is refused with the line to install them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_files

# Imports of the optional extras' drivers fail in the child, as in an environment without them.
BLOCKER = '''
import sys
BLOCKED = {"nats", "pyarrow", "psycopg", "pymysql", "pandas"}

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, Blocked())
'''

GRAPH = """
name: plain
operators:
  gen:
    outputs: {out: int64}
    code: |
      def tick():
          api.outputs.out.publish(7)
          return -1
      api.add_timer(tick)
  show: {component: terminal}
connections:
  - gen.out -> show.in
"""

NATS_GRAPH = """
name: queue
operators:
  source:
    component: nats-source
    config: {url: "nats://127.0.0.1:4222", stream: nothing}
  show: {component: terminal}
connections:
  - source.output -> show.in
"""


def without_extras(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(folder) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=60, env=env)


# The modules that are the optional extras' own connectors: only these may need their driver.
NEEDS_AN_EXTRA = {"snapgraph.connectors.nats"}


def test_every_module_imports_without_the_optional_extras(tmp_path: Path) -> None:
    done = without_extras(tmp_path, "-c", "import pkgutil, importlib, snapgraph\n"
                          f"skip = {sorted(NEEDS_AN_EXTRA | {'snapgraph.__main__'})!r}  # __main__ runs the CLI\n"
                          "for m in pkgutil.walk_packages(snapgraph.__path__, 'snapgraph.'):\n"
                          "    if m.name not in skip:\n"
                          "        importlib.import_module(m.name)\n"
                          "print('all imported')\n"
                          "import nats\n")
    assert done.stdout == "all imported\n", done.stderr
    assert done.stderr.rstrip().endswith("ImportError: No module named 'nats' (blocked by the test)"), \
        done.stderr  # the blocker works


def test_a_graph_that_needs_no_extra_runs_and_one_that_does_is_refused_naming_it(tmp_path: Path) -> None:
    write_files(tmp_path, {"plain.yaml": GRAPH, "queue.yaml": NATS_GRAPH})
    plain = without_extras(tmp_path, "-m", "snapgraph", "run", "plain.yaml")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == "7\n"
    queue = without_extras(tmp_path, "-m", "snapgraph", "run", "queue.yaml")
    assert queue.returncode == 2, queue.stderr
    assert "operator 'source' (snapgraph.nats.source) needs the nats-py driver, which is not installed: " \
           "pip install 'snapgraph[nats]'" in queue.stderr
