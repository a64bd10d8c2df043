"""One engine run: a ``snapgraph run`` subprocess in a session of its own, struck by signals and waited for.

:class:`EngineRun` starts the command with ``SNAPGRAPH_FAULTS`` set to the step's faults (and removed
otherwise), its standard error in a file of the run's folder, and sends signals to the engine or to its
whole process group. :meth:`EngineRun.wait` gives an :class:`EngineResult`: the exit code (None when the
engine hung past its time and was killed), standard error, how long it took, when signals were sent, and
the processes it left behind (killed once found, after a grace period).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from snapgraph.chaos.processes import left_behind
from snapgraph.snapshot.faults import ENV_VAR, KILL_EXIT_CODE

RUN_TIMEOUT = 150.0  # seconds one engine run may take before it counts as hung
SLOW_STOP = 8.0  # seconds from a stop signal to the engine's exit that count as a hung stop
LEFTOVER_GRACE = 10.0  # seconds processes of a finished engine may take to go away
LOAD_TIMEOUT = 60.0  # seconds to wait for the operators to load before a strike at "work" timing

_live: set[EngineRun] = set()  # started and not yet waited for: what an interrupted chaos must not leave running


@dataclass
class EngineResult:
    """What one engine run did, as seen from outside."""

    label: str
    args: list[str]
    faults: str | None
    returncode: int | None  # None: it hung and was killed
    stderr: str
    seconds: float
    sent: list[float] = field(default_factory=list)  # when signals went out, seconds after the start
    left: list[tuple[int, str]] = field(default_factory=list)  # processes it left behind (killed)

    @property
    def completed(self) -> bool:
        return self.returncode == 0 and "completed after" in self.stderr

    @property
    def stopped(self) -> bool:
        return self.returncode == 0 and "stopped after" in self.stderr

    @property
    def killed_by_fault(self) -> bool:
        return self.returncode == KILL_EXIT_CODE

    @property
    def fault_fired(self) -> bool:
        return "injected fault" in self.stderr

    @property
    def slow_stop(self) -> float | None:
        """Seconds from the first signal to the exit, when more than :data:`SLOW_STOP`."""
        if self.sent and self.seconds - self.sent[0] > SLOW_STOP:
            return self.seconds - self.sent[0]
        return None


def tail(text: str, lines: int = 4) -> str:
    """The last non-empty ``lines`` of ``text`` on one line (for reports)."""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-900:]


class EngineRun:
    """``args`` (a ``snapgraph run`` command) run in ``cwd``, in a session of its own.

    ``folder`` is the run's own folder (its files; processes naming it count as left behind);
    standard error goes to ``stderr_path``, standard output is appended to ``stdout_path``.
    """

    def __init__(self, label: str, args: list[str], *, cwd: Path, folder: Path, stderr_path: Path,
                 stdout_path: Path, faults: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.label = label
        self.args = args
        self.cwd = cwd
        self.folder = folder
        self.stderr_path = stderr_path
        self.stdout_path = stdout_path
        self.faults = faults
        self._env = dict(env if env is not None else os.environ)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self.sent: list[float] = []

    def start(self) -> EngineRun:
        env = {k: v for k, v in self._env.items() if k != ENV_VAR}
        env["PYTHONUNBUFFERED"] = "1"
        if self.faults:
            env[ENV_VAR] = self.faults
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "ab") as out:
            self._proc = subprocess.Popen(self.args, cwd=self.cwd, stdout=out, stderr=err, env=env,
                                          start_new_session=True)
        self._started = time.monotonic()
        _live.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the engine run was not started"
        return self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def send(self, signum: int, *, whole_group: bool) -> bool:
        """Send ``signum`` to the engine (or its process group); False if it had ended already."""
        if not self.running():
            return False
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if whole_group else os.kill)(self.pid, signum)
            self.sent.append(self.elapsed())
            return True
        return False

    def sleep_while_running(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` while the engine runs; whether it still runs."""
        end = time.monotonic() + seconds
        while self.running() and time.monotonic() < end:
            time.sleep(0.005)
        return self.running()

    def wait_until_loaded(self, events: Path, operators: int) -> bool:
        """Wait until the event log ``events`` (``run --events``) says ``operators`` operators loaded, or
        the engine ended (False) or :data:`LOAD_TIMEOUT` passed."""
        deadline = time.monotonic() + LOAD_TIMEOUT
        while self.running() and time.monotonic() < deadline:
            if loaded_operators(events) >= operators:
                return True
            time.sleep(0.01)
        return self.running()

    def wait(self, timeout: float = RUN_TIMEOUT) -> EngineResult:
        """Wait for the exit (a run still going after ``timeout`` seconds from its start is killed with
        its process group: ``returncode`` None), then collect what it left behind."""
        assert self._proc is not None, "the engine run was not started"
        try:
            self._proc.wait(timeout=max(1.0, timeout - self.elapsed()))
            code: int | None = self._proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self._proc.wait()
            code = None
        seconds = self.elapsed()
        _live.discard(self)
        left = collect_left_behind({self.pid}, self.folder)
        return EngineResult(self.label, self.args, self.faults, code,
                            self.stderr_path.read_text(errors="replace"), seconds, list(self.sent), left)


def kill_live_runs() -> int:
    """SIGKILL every engine run started and not yet waited for, with its process group (chaos itself was
    interrupted: its engines run in sessions of their own and did not get the signal); how many."""
    killed = 0
    for run in list(_live):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
            killed += 1
        if run._proc is not None:
            run._proc.wait()
        _live.discard(run)
    return killed


def loaded_operators(events: Path) -> int:
    """How many ``operator_loaded`` events the event log holds so far (0 if it does not exist yet)."""
    try:
        text = events.read_text(errors="replace")
    except OSError:
        return 0
    count = 0
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            count += json.loads(line).get("event") == "operator_loaded"
    return count


def collect_left_behind(sessions: set[int], folder: Path, grace: float = LEFTOVER_GRACE) -> list[tuple[int, str]]:
    """Processes of ``sessions`` (or naming ``folder``) still alive ``grace`` seconds from now: killed
    with SIGKILL, and returned (an empty list: nothing was left behind)."""
    deadline = time.monotonic() + grace
    while True:
        left = left_behind(sessions, folder)
        if not left:
            return []
        if time.monotonic() > deadline:
            for pid, _ in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return left
        time.sleep(0.05)
