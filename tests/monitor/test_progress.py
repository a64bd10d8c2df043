"""The live terminal progress of ``snapgraph run``, on a real pseudo-terminal and piped, with real graphs
whose operators log from their own group processes."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest

from conftest import snapgraph_cli, write_files
from snapgraph.model.loader import load_graph
from snapgraph.monitor.live import RunWatcher
from snapgraph.monitor.progress import render, summary

# Two groups (two OS processes with the default backend), each logging and printing.
GRAPH = """
name: watched
operators:
  src:
    group: a
    outputs: {out: int64}
    config: {total: 30}
    code: |
      i = 0
      def tick():
          global i
          if int(api.config.total) and i >= int(api.config.total):
              return -1
          i += 1
          api.outputs.out.publish(i)
          if i % 10 == 0:
              api.logger.info("source reached %d, a long line that must stay in one piece", i)
              print("printed by src", i)
          return 0.02
      api.add_timer(tick)
  sink:
    group: b
    inputs: {in: int64}
    code: |
      def on_input(msg_id, header, body):
          if body.get() % 10 == 0:
              api.logger.warning("sink got %d", body.get())
      api.set_port_callback("in", on_input)
connections:
  - src.out -> sink.in
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR = "\x1b[?25h"


def spawn(folder: Path, *args: str) -> pexpect.spawn:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160", LINES="40")
    return pexpect.spawn(sys.executable, ["-m", "snapgraph", "run", "g.yaml", *args], cwd=str(folder), env=env,
                         encoding="utf-8", timeout=60, dimensions=(40, 160))


def lines_of(screen: str) -> list[str]:
    """What the terminal shows line by line, without the display's escape sequences."""
    return [ANSI.sub("", line).strip() for line in re.split(r"\r\n|\n|\r", screen)]


def test_the_display_shows_operators_above_which_group_logs_stay_intact(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    child = spawn(tmp_path)
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before
    assert child.exitstatus == 0, screen
    shown = lines_of(screen)
    assert any(line.startswith("graph 'watched' · running") for line in shown)
    assert any(re.fullmatch(r"src\s+running\s+.*", line) for line in shown)
    assert any(re.fullmatch(r"sink\s+running\s+.*", line) for line in shown)
    for logged in ("[src] INFO: source reached 10, a long line that must stay in one piece",
                   "[src] INFO: source reached 30, a long line that must stay in one piece",
                   "[sink] WARNING: sink got 20", "printed by src 30"):
        assert logged in shown, f"{logged!r} is not a line of its own in {shown}"
    # Ends cleanly: the final state once, the cursor given back, then the final line below it.
    final = screen.rindex(SHOW_CURSOR)
    assert re.fullmatch(r"snapgraph: graph 'watched' completed after \S+s: .*",
                        lines_of(screen[final:])[0])
    assert re.search(r"src\s+done\s+0\s+30", ANSI.sub("", screen[:final]))
    assert SHOW_CURSOR not in screen[final + 1:]


def test_piped_nothing_of_the_display_appears_and_the_output_is_as_without_it(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    piped = snapgraph_cli("run", "g.yaml", cwd=tmp_path)
    plain = snapgraph_cli("run", "g.yaml", "--no-progress", cwd=tmp_path)
    assert piped.returncode == plain.returncode == 0
    assert "\x1b" not in piped.stderr and "msgs in" not in piped.stderr
    assert piped.stdout == plain.stdout == "printed by src 10\nprinted by src 20\nprinted by src 30\n"
    expected = ["[src] INFO: source reached 10, a long line that must stay in one piece",
                "[sink] WARNING: sink got 10"]
    for stderr in (piped.stderr, plain.stderr):
        lines = stderr.splitlines()
        assert all(line in lines for line in expected)
        assert re.fullmatch(r"snapgraph: graph 'watched' completed after \S+s: .*", lines[-1])
        assert len(lines) == 7  # three lines of each operator and the final one, nothing else


def test_progress_forces_the_display_when_piped(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    forced = snapgraph_cli("run", "g.yaml", "--progress", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    shown = lines_of(forced.stderr)
    assert any(re.fullmatch(r"src\s+done\s+0\s+30.*", line) for line in shown)
    assert "[sink] WARNING: sink got 30" in shown
    assert SHOW_CURSOR in forced.stderr
    assert lines_of(forced.stderr)[-2].startswith("snapgraph: graph 'watched' completed after")


def test_progress_and_json_logs_exclude_each_other(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    refused = snapgraph_cli("run", "g.yaml", "--progress", "--log-format", "json", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--progress and --log-format json exclude each other" in refused.stderr


@pytest.mark.parametrize("round_", range(4))
def test_sigint_under_a_terminal_stops_the_run_gracefully_and_closes_the_display(
        tmp_path: Path, round_: int) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH.replace("{total: 30}", "{total: 0}")})  # runs until stopped
    child = spawn(tmp_path)
    child.expect(r"src\s+(\x1b\[[0-9;]*m)?running")
    child.expect_exact("[src] INFO: source reached 10")
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before
    assert child.exitstatus == 0, screen  # docs/snapshots.md "Stopping: signals": a graceful stop exits 0
    final = screen.rindex(SHOW_CURSOR)
    assert lines_of(screen[final:])[0].startswith("snapgraph: graph 'watched' stopped after")
    assert "SIGINT received" in screen[final:]


def test_the_display_of_a_view_names_every_operator_and_the_run(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    watcher = RunWatcher(load_graph(tmp_path / "g.yaml"))
    view = watcher.view()
    assert summary(view) == "graph 'watched' · starting · attempt 0 · 0 epochs · elapsed 0 ms"
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(render(view))
    text = console.export_text()
    assert re.search(r"^src\s+loading\s+0\s+0\s+0\s+0\s+0%$", text, re.M), text
    assert re.search(r"^sink\s+loading", text, re.M)


def test_the_addresses_served_are_lines_of_their_own_above_the_display(tmp_path: Path) -> None:
    write_files(tmp_path, {"g.yaml": GRAPH})
    child = spawn(tmp_path, "--metrics-port", "0", "--ui-port", "0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    shown = lines_of(child.before)
    served = [line for line in shown if " at http://" in line]
    assert len(served) == 2, shown
    assert re.fullmatch(r"snapgraph: metrics at http://127\.0\.0\.1:\d+/metrics", served[0])
    assert re.fullmatch(r"snapgraph: monitor at http://127\.0\.0\.1:\d+/", served[1])
    assert shown.index(served[1]) < min(i for i, line in enumerate(shown) if line.startswith("graph 'watched'"))
