"""Observing a running graph: the instrument interface, per-operator counters and the event log.

* :mod:`snapgraph.instruments.base`: :class:`Instrument` (a no-op hook per protocol step, attempt
  event and operator lifecycle event) and the :class:`Instruments` registry the engine calls;
* :mod:`snapgraph.instruments.stats`: :class:`OperatorStats` / :class:`PortStats` /
  :class:`EpochStats`, the typed, picklable counters, and :func:`merge`;
* :mod:`snapgraph.instruments.eventlog`: :class:`EventLog`, one JSON object per event.
"""

from snapgraph.instruments.base import (
    HOOKS,
    NO_INSTRUMENTS,
    Attempt,
    Instrument,
    Instruments,
    Outcome,
    current,
    install,
    installed,
    uninstall,
)
from snapgraph.instruments.eventlog import EventLog
from snapgraph.instruments.stats import EpochStats, OperatorStats, PortStats, merge, merge_into

__all__ = ["HOOKS", "NO_INSTRUMENTS", "Attempt", "EpochStats", "EventLog", "Instrument", "Instruments",
           "OperatorStats", "Outcome", "PortStats", "current", "install", "installed", "merge", "merge_into",
           "uninstall"]
