"""Crash injection at named steps of the snapshot protocol, for tests.

A plan is a comma-separated list of ``point:process:nth[:action]`` items, read
from the ``SNAPGRAPH_FAULTS`` environment variable (or built in tests):

* ``point``: a protocol step (see :data:`FAULT_POINTS`) or any name a test
  script passes to :func:`fault_point`;
* ``process``: the operator it applies to, or ``*``;
* ``nth``: fire on the nth time the step is reached (1-based);
* ``action``: ``raise`` (default; an operator failure, so recovery runs),
  ``exit`` (the process running the step dies at once: a group process when
  groups run as processes — a group death the engine recovers from — or the
  engine itself in ``--in-process`` mode), or ``kill`` (the whole engine dies
  at once, like ``kill -9``, wherever the step runs; exit code 137).

Each fault fires once per run, so the recovery that follows can be compared
with a failure-free run (a ``restore`` fault fires in the first recovery, for
example). In one process, counts go on across attempts; a group process
starts counting afresh, with the faults that already fired left out.
"""

from __future__ import annotations

import os
import posix
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

FAULT_POINTS = (
    "port_callback",       # before a port callback runs (a crash inside the callback)
    "before_serialize",    # barrier aligned, before serialize(epoch)
    "after_serialize",     # serialize returned, bytes not yet persisted
    "after_persist",       # state persisted, barrier not yet forwarded
    "before_complete",     # all operators persisted, completion record not yet written
    "epoch_complete",      # inside epoch_complete, before the script's callback
    "restore",             # before restore(epoch, bytes) runs
    "drain",               # the graph begins to drain (a stop, a Graph Terminator): before timers stop
)
ENV_VAR = "SNAPGRAPH_FAULTS"
KILL_EXIT_CODE = 137
ACTIONS = ("raise", "exit", "kill")


class InjectedFault(Exception):
    """The failure a ``raise`` fault produces."""


@dataclass(frozen=True)
class Fault:
    point: str
    process: str
    nth: int
    action: str = "raise"

    def __str__(self) -> str:
        """The fault as ``SNAPGRAPH_FAULTS`` writes it: ``point:process:nth:action``."""
        return f"{self.point}:{self.process}:{self.nth}:{self.action}"


class FaultPlan:
    """Counts arrivals at each (point, process) and fires the planned faults."""

    def __init__(self, faults: list[Fault] | None = None, on_fire: Callable[[Fault], None] | None = None,
                 kill_engine: Callable[[str], None] | None = None) -> None:
        self.faults = list(faults or [])
        self._on_fire = on_fire  # a group process tells the parent, so later attempts skip the fault
        self._kill_engine = kill_engine  # a group process asks the parent to die
        self._counts: dict[tuple[str, str], int] = {}
        self._fired: set[Fault] = set()
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        faults = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            parts = item.split(":")
            if len(parts) not in (3, 4) or not parts[2].isdigit() or int(parts[2]) < 1:
                raise ValueError(f"bad fault {item!r}: expected point:process:nth[:raise|exit|kill]")
            action = parts[3] if len(parts) == 4 else "raise"
            if action not in ACTIONS:
                raise ValueError(f"bad fault action {action!r} in {item!r}: expected raise, exit or kill")
            faults.append(Fault(parts[0], parts[1], int(parts[2]), action))
        return cls(faults)

    @classmethod
    def from_env(cls) -> FaultPlan:
        return cls.parse(os.environ.get(ENV_VAR, ""))

    def hit(self, point: str, process: str) -> None:
        """Count an arrival of ``process`` at ``point``; fire a planned fault whose count it reaches.

        A ``*`` fault counts the arrivals of all processes together. Each fault fires once.
        """
        if not self.faults:
            return
        with self._lock:
            counts = {}
            for who in {process, "*"}:
                key = (point, who)
                counts[who] = self._counts[key] = self._counts.get(key, 0) + 1
            due = [f for f in self.faults
                   if f.point == point and f.process in counts and counts[f.process] == f.nth
                   and f not in self._fired]
            self._fired.update(due)
        for fault in due:
            if self._on_fire is not None:
                self._on_fire(fault)
            if fault.action == "raise":
                raise InjectedFault(f"injected fault at {point} of {process!r} (hit {counts[fault.process]})")
            where = "engine" if fault.action == "kill" or self._kill_engine is None else "group process"
            message = f"snapgraph: injected fault: {where} killed at {point} of {process!r}"
            if fault.action == "kill" and self._kill_engine is not None:
                self._kill_engine(message)
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            posix._exit(KILL_EXIT_CODE)  # not os._exit: scripts' calls of that fail their operator

    def mark_fired(self, fault: Fault) -> None:
        """A fault fired elsewhere (in a group process): it must not fire again in this run."""
        with self._lock:
            self._fired.add(fault)

    def remaining(self) -> list[Fault]:
        """The faults that have not fired yet (what a new group process still plans)."""
        with self._lock:
            return [f for f in self.faults if f not in self._fired]


_active = FaultPlan()


def set_active_plan(plan: FaultPlan) -> None:
    global _active
    _active = plan


def fault_point(name: str, process: str = "*") -> None:
    """A crash point a test script can place anywhere (e.g. between a write and its WAL record)."""
    _active.hit(name, process)
