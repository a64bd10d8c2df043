"""The plans of ``snapgraph chaos``: seeded schedules of faults, kills and signals for one graph.

A :class:`Schedule` is a list of :class:`Step` s, a pure function of its seed and the graph's
:class:`GraphShape` (its operators, how many messages each received and sent, which keep state, the crash
points of its built-ins, its groups and whether they run as processes). The first step starts a fresh
run, every later one continues it with ``--resume``; once a step leaves the run completed, the steps after
it have nothing left to strike and the runner skips them (a recovered fault usually completes the run;
kills and stops leave it unfinished). Step kinds:

* ``fault``: ``SNAPGRAPH_FAULTS`` with one or two faults ``point:process:nth:action`` — a protocol point of
  :data:`~snapgraph.snapshot.faults.FAULT_POINTS` of one operator or of all (``*``), a crash point a
  built-in of the graph declares (:class:`~snapgraph.model.builtin_operator.CrashPoint`) of that operator,
  or a point the user names with ``--point`` (``*``); ``raise`` (an operator failure, recovered), ``exit``
  (the group process dies, or the engine with groups in one process) or ``kill`` (the engine dies, exit
  137); run with retries;
* ``kill-group``: SIGKILL to one group process (the i-th started; groups as processes only), recovered
  within the run;
* ``sigkill-engine``: SIGKILL to the engine, or to its whole process group;
* ``signal``: SIGTERM or SIGINT to the engine or its process group: a graceful stop to a final epoch;
* ``double-signal``: two signals 50 ms apart: the second forces the exit (130 / 143).

Signals and kills strike at a *timing*: ``early`` (``delay`` seconds after the engine started: while it
loads) or ``work`` (``delay``, a fraction, of the failure-free run's working time after every operator
loaded). Where a signal lands depends on timing, so a replay of a seed reruns the same plan, not
necessarily the same interleaving.

The nth of a fault is drawn by how often its point is reached in the failure-free run: below the messages
the operator received (``port_callback``, a built-in's per-input point) or sent (per-output point), at the
first or second epoch of an engine run (the protocol's epoch steps), below the failure-free run's epochs (a
built-in's per-epoch point), or 1 (a point reached once). A ``--point``'s frequency is not known: its nth is
drawn as an epoch's half the time and as a message's otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapgraph.model.builtin_operator import CrashPoint, CrashPointFrequency
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.graph import Graph
from snapgraph.snapshot.faults import FAULT_POINTS

KINDS = ("fault", "kill-group", "sigkill-engine", "signal", "double-signal")
KIND_WEIGHTS = {"fault": 40, "kill-group": 14, "sigkill-engine": 16, "signal": 20, "double-signal": 10}
ACTION_WEIGHTS = {"raise": 50, "exit": 25, "kill": 25}
EPOCH_POINTS = ("before_serialize", "after_persist", "epoch_complete")  # every operator, once an epoch
STATE_POINTS = ("after_serialize", "restore")  # stateful operators only
MAX_STEPS = 3
EPOCH_NTH = 2  # a fault at an epoch's step fires at the first or second epoch of an engine run
ANY = "*"


@dataclass(frozen=True)
class GraphShape:
    """What a plan needs to know of a graph, from the graph file and its failure-free run.

    ``messages_in`` / ``messages_out``: messages each operator received / sent in the failure-free run
    (the nth of a ``port_callback`` fault or of a per-message crash point is drawn below them: the same for
    every run of a deterministic graph); ``stateful``: operators with state in its snapshots; ``epochs``:
    epochs it completed (it depends on timing: only the nth of per-epoch crash points is drawn below it, from
    a draw of its own, so the rest of a plan does not depend on it); ``groups``: how many groups the graph
    has; ``crash_points``: the crash points of each built-in operator, with its config
    (:func:`crash_points_of_graph`); ``extra_points``: the ``--point`` names (scripts' ``fault_point(name)``),
    counted for ``*``.
    """

    operators: tuple[str, ...]
    messages_in: Mapping[str, int] = field(default_factory=dict)
    stateful: tuple[str, ...] = ()
    epochs: int = 1
    groups_as_processes: bool = True
    extra_points: tuple[str, ...] = ()
    messages_out: Mapping[str, int] = field(default_factory=dict)
    crash_points: Mapping[str, tuple[CrashPoint, ...]] = field(default_factory=dict)
    groups: int = 1

    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(name for name in self.operators if self.messages_in.get(name, 0) > 0)

    def reachable_crash_points(self) -> dict[str, list[tuple[str, CrashPoint]]]:
        """Each built-in crash point a fault can fire at, with the operators that reach it: a per-message
        point only of an operator that received (or sent) messages in the failure-free run."""
        reachable: dict[str, list[tuple[str, CrashPoint]]] = {}
        for operator, points in self.crash_points.items():
            for point in points:
                counts = {"input": self.messages_in, "output": self.messages_out}.get(point.per)
                if counts is None or counts.get(operator, 0) > 0:
                    reachable.setdefault(point.name, []).append((operator, point))
        return reachable


def crash_points_of_graph(graph: Graph) -> dict[str, tuple[CrashPoint, ...]]:
    """The crash points each built-in operator of ``graph`` reaches with its config (operators without any
    left out)."""
    found = {}
    for name, process in graph.processes.items():
        descriptor = BUILTINS.get(process.component)
        points = descriptor.crash_points_of(process.config) if descriptor is not None else ()
        if points:
            found[name] = points
    return found


@dataclass(frozen=True)
class Step:
    kind: str
    params: Mapping[str, Any]

    def label(self) -> str:
        p = self.params
        if self.kind == "fault":
            return f"fault({p['faults']})"
        if self.kind in ("signal", "double-signal"):
            return f"{self.kind}({p['signal']}->{p['target']},{timing_label(p)})"
        if self.kind == "sigkill-engine":
            return f"sigkill-engine({p['target']},{timing_label(p)})"
        if self.kind == "kill-group":
            target = p.get("group") or f"#{p['which']}"  # the group's name, once the kill named it
            return f"kill-group({target},{timing_label(p)})"
        return self.kind


@dataclass(frozen=True)
class Schedule:
    seed: int
    steps: tuple[Step, ...]

    def label(self) -> str:
        return " -> ".join(step.label() for step in self.steps)


def timing_label(params: Mapping[str, Any]) -> str:
    if params["timing"] == "early":
        return f"early+{params['delay']:.2f}s"
    return f"work@{params['delay']:.2f}"


def random_fault(rng: random.Random, shape: GraphShape, *, resumed: bool) -> str:
    """One ``point:process:nth:action`` item that can fire in this graph (``resumed``: the step continues a
    run, so ``restore`` is reached at its start)."""
    points = [p for p in FAULT_POINTS if p != "drain"]  # a drain is reached only when a stop comes
    if not resumed:
        points.remove("restore")
    if not shape.receivers:
        points.remove("port_callback")
    if not shape.stateful:
        points = [p for p in points if p not in STATE_POINTS]
    builtin = shape.reachable_crash_points()
    points += sorted(builtin)
    points += [p for p in shape.extra_points if p not in builtin and p not in points]
    point = rng.choice(points)
    if point == "port_callback":
        process = rng.choice([*shape.receivers, ANY])
        total = sum(shape.messages_in.values()) if process == ANY else shape.messages_in[process]
        nth = rng.randint(1, max(1, total))
    elif point in STATE_POINTS:
        process = rng.choice([*shape.stateful, ANY])
        nth = 1 if point == "restore" else rng.randint(1, EPOCH_NTH)
    elif point in EPOCH_POINTS:
        process = rng.choice([*shape.operators, ANY])
        nth = rng.randint(1, EPOCH_NTH)
    elif point == "before_complete":
        process, nth = ANY, rng.randint(1, EPOCH_NTH)  # the coordinator's step: counted for '*' only
    elif point in builtin:
        process, crash_point = rng.choice(builtin[point])
        nth = draw_nth(rng, shape, process, crash_point.per)
    else:  # a script's point: how often it is reached is not known; once an epoch or once a message
        process = ANY
        nth = draw_nth(rng, shape, ANY, "epoch" if rng.random() < 0.5 else "input")
    action = rng.choices(list(ACTION_WEIGHTS), weights=list(ACTION_WEIGHTS.values()))[0]
    return f"{point}:{process}:{nth}:{action}"


def draw_nth(rng: random.Random, shape: GraphShape, operator: str, per: CrashPointFrequency) -> int:
    """The nth arrival of ``operator`` (``*``: any operator) at a point reached ``per`` message received or
    sent, per epoch or once; the epoch's from a draw that does not depend on how many epochs there were."""
    if per == "once":
        return 1
    if per == "epoch":
        return 1 + int(rng.random() * shape.epochs)
    counts = shape.messages_in if per == "input" else shape.messages_out
    total = max(counts.values(), default=1) if operator == ANY else counts.get(operator, 0)
    return rng.randint(1, max(1, total))


def _strike_timing(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.15:
        return {"timing": "early", "delay": round(rng.uniform(0.05, 0.5), 3)}
    return {"timing": "work", "delay": round(rng.uniform(0.05, 0.9), 3)}


def make_schedule(seed: int, shape: GraphShape) -> Schedule:
    """The plan of one schedule: a pure function of ``seed`` and ``shape``."""
    rng = random.Random(f"snapgraph-chaos:{seed}")
    kinds = dict(KIND_WEIGHTS)
    if not shape.groups_as_processes:
        del kinds["kill-group"]
    steps: list[Step] = []
    for index in range(rng.randint(1, MAX_STEPS)):
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        if kind == "fault":
            count = 1 if rng.random() < 0.7 else 2
            faults = ",".join(random_fault(rng, shape, resumed=index > 0) for _ in range(count))
            steps.append(Step(kind, {"faults": faults}))
        elif kind in ("signal", "double-signal"):
            steps.append(Step(kind, {"signal": rng.choice(["SIGTERM", "SIGINT"]),
                                     "target": rng.choice(["engine", "group"]), **_strike_timing(rng)}))
        elif kind == "sigkill-engine":
            steps.append(Step(kind, {"target": "engine" if rng.random() < 0.7 else "group",
                                     **_strike_timing(rng)}))
        else:
            steps.append(Step(kind, {"which": rng.randrange(max(1, shape.groups)), "timing": "work",
                                     "delay": round(rng.uniform(0.05, 0.9), 3)}))
    return Schedule(seed, tuple(steps))
