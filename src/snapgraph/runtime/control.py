"""The driver ↔ group control protocol: every message, defined once.

A driver (:class:`snapgraph.runtime.remote.RemoteEngine`) and a group instance
it hosts through a transport (:func:`snapgraph.runtime.transport.serve_group`)
exchange only these small, picklable, frozen messages over the instance's
control channel. Data never travels here: messages between operators go on
the links the transport connects.

Each side dispatches with a ``match`` whose last case fails loudly
(:class:`UnknownControlMessage`): a message one side sends and the other does
not know is a bug of the engine, and must never be ignored silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from snapgraph.instruments.stats import OperatorStats
from snapgraph.runtime.completion import WorkCounts
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.snapshot.faults import Fault


class UnknownControlMessage(TypeError):
    """A control message the receiving side does not know (a bug of the engine, not of a script)."""

    def __init__(self, side: str, message: Any) -> None:
        super().__init__(f"{side} received an unknown control message: {message!r} "
                         f"(of type {type(message).__qualname__})")
        self.message = message


# -- driver → group -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Go:
    """Let every operator run: restore, prestart, then its event loop."""


@dataclass(frozen=True)
class TakeSnapshot:
    """Start epoch ``epoch`` at source operator ``source`` (it emits the barrier)."""

    source: str
    epoch: str


@dataclass(frozen=True)
class EpochComplete:
    """Epoch ``epoch`` is complete: run ``epoch_complete`` everywhere (``sealed``: its output is discarded)."""

    epoch: str
    sealed: bool


@dataclass(frozen=True)
class DropTimers:
    """The graph drains: stop every timer."""


@dataclass(frozen=True)
class Probe:
    """Report pending work (a wave of the completion probe, number ``seq``); ``with_stats``: and the
    operators' counters (asked only while an instrument listens)."""

    seq: int
    with_stats: bool = False


@dataclass(frozen=True)
class Stop:
    """Stop every operator after its current callback; answer with :class:`Done`."""


# -- group → driver -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """Every script body ran; the operators whose scripts failed to load."""

    failures: list[OperatorFailure]


@dataclass(frozen=True)
class Failed:
    """An operator failed (the attempt fails)."""

    failure: OperatorFailure


@dataclass(frozen=True)
class ShutdownFailed:
    """A shutdown callback raised."""

    failure: OperatorFailure


@dataclass(frozen=True)
class Terminate:
    """A Graph Terminator fired (operator ``by``)."""

    by: str


@dataclass(frozen=True)
class State:
    """The serialized state of operator ``process`` for epoch ``epoch``, to persist."""

    process: str
    epoch: str
    data: bytes


@dataclass(frozen=True)
class StateSaved:
    """The group wrote the state of ``process`` for ``epoch`` into the shared store itself
    (``size`` bytes, in ``seconds``): only this handle travels to the driver."""

    process: str
    epoch: str
    size: int
    seconds: float


@dataclass(frozen=True)
class Ack:
    """Operator ``process`` finished its part of epoch ``epoch``."""

    process: str
    epoch: str
    stateful: bool


@dataclass(frozen=True)
class ProbeAnswer:
    """The answer to :class:`Probe` ``seq``: the instance's pending work."""

    seq: int
    work: WorkCounts
    stats: list[OperatorStats] | None = None  # the operators' counters, if the probe asked for them


@dataclass(frozen=True)
class Stdout:
    """Terminal/Wiretap output of the group."""

    text: str


@dataclass(frozen=True)
class OperatorLog:
    """One line an operator logged with ``api.logger``, sent instead of written while the run forwards
    its output (:attr:`RunOptions.forward_output`): the driver's display or JSON log places it."""

    operator: str
    level: str  # the logging level's name: DEBUG, INFO, WARNING, ERROR, CRITICAL
    message: str  # the formatted message, with the traceback of a logged exception
    time: float  # seconds since 1970, when it was logged


@dataclass(frozen=True)
class Stderr:
    """What a group process wrote to its standard error while the run forwards its output."""

    text: str


@dataclass(frozen=True)
class FaultFired:
    """An injected fault fired in the group: it must not fire again in this run."""

    fault: Fault


@dataclass(frozen=True)
class KillEngine:
    """A ``kill`` fault fired: the whole engine dies at once."""

    message: str


@dataclass(frozen=True)
class Done:
    """The group stopped; the operators that did not stop in time, and the operators' final counters."""

    stuck: list[str]
    stats: list[OperatorStats] = field(default_factory=list)


ToGroup = Go | TakeSnapshot | EpochComplete | DropTimers | Probe | Stop
ToDriver = (Loaded | Failed | ShutdownFailed | Terminate | State | StateSaved | Ack | ProbeAnswer
            | Stdout | OperatorLog | Stderr | FaultFired | KillEngine | Done)

__all__ = [
    "Ack", "Done", "DropTimers", "EpochComplete", "Failed", "FaultFired", "Go", "KillEngine", "Loaded",
    "OperatorLog", "Probe", "ProbeAnswer", "ShutdownFailed", "State", "StateSaved", "Stderr", "Stdout", "Stop",
    "TakeSnapshot", "Terminate", "ToDriver", "ToGroup", "UnknownControlMessage",
]
