"""The README's five-minute tour, every command exactly as the README prints it.

The commands run from a scratch folder that holds what the repository root holds for them (``.venv`` and
``examples`` as links), so the tour's store (``./.snapgraph``) lands there. The command the README tells
you to stop with Ctrl-C gets a SIGINT once its first epoch is complete.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

from snapgraph.snapshot.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]


def tour_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shlex.split(command), cwd=cwd, capture_output=True, text=True, timeout=120)


def completed_epochs(store: Path) -> int:
    if not store.exists():
        return 0
    opened = SQLiteStore(store, create=False)
    try:
        return sum(len(opened.epochs(r.run_id)) for r in opened.runs())
    finally:
        opened.close()


def test_the_tour_runs_as_printed(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    validate, run_it, listing, resume = tour_commands()
    assert "press Ctrl-C" in (ROOT / "README.md").read_text().split(run_it, 1)[1].splitlines()[0]

    checked = run(validate, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "examples/tour.yaml: ok (2 operators, 1 connection)"

    engine = subprocess.Popen(shlex.split(run_it), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    store = tmp_path / ".snapgraph" / "snapshots.db"
    deadline = time.monotonic() + 60
    while completed_epochs(store) == 0 and engine.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    engine.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    assert re.search(r"graph 'tour' stopped after .*SIGINT received; final epoch \S+ complete; resume with "
                     r"--resume", err), err

    listed = run(listing, tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[1:3] == ["tour", "stopped"], listed.stdout

    resumed = run(resume, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"resuming run \S+ \(stopped\) from epoch \S+ \(state of 2 operators\)", resumed.stderr), \
        resumed.stderr
    assert "[total] INFO: done for now: 200 rows, total 20100" in resumed.stderr
    assert "graph 'tour' completed" in resumed.stderr
