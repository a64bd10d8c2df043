"""The instrument interface: hooks the engine calls at every protocol step and attempt event.

Modelled on trio's ``Instrument`` (trio/_abc.py, trio/_core/_instrumentation.py):

* :class:`Instrument` has one no-op method per event; a subclass overrides the ones it wants.
* :class:`Instruments` is the registry the engine calls through. It files each instrument under
  the hooks it actually overrides, so ``"epoch_started" in instruments`` is a dict lookup that
  is False when nobody listens, and the engine checks it before it builds any argument. With no
  instrument installed nothing else runs.
* A hook that raises gets its instrument removed from every hook, with one warning logged; the
  run goes on.

Hooks are called on the engine's threads (the watch loop, operator dispatchers) and must be
quick and must not block; copy what you need and hand it to a thread of your own. Per-message
work never calls a hook: counters go to :class:`~snapgraph.instruments.stats.OperatorStats`,
which :meth:`Attempt.stats` reads at any time.

Events and where they come from (``engine`` = the driver of the attempt, in the main process
whatever the backend; ``operator`` = the operator's dispatcher, so today only with the
in-process engine):

==========================  =========  ==========================================================
hook                        emitted    when
==========================  =========  ==========================================================
``attempt_started``         engine     an attempt starts (before the script bodies load)
``recovery``                engine     an attempt after a failed one starts (before attempt_started)
``operator_loaded``         engine     an operator's script body returned
``operator_failed``         engine     an operator failed (load, callback, protocol step, engine)
``epoch_started``           engine     the coordinator started an epoch (periodic or final)
``final_epoch``             engine     a drain starts a final epoch (after its epoch_started)
``barrier_injected``        engine     the epoch's barrier is handed to a source
``barrier_aligned``         operator   barrier E arrived on all inputs: the snapshot begins
``state_serialized``        operator   serialize(E) returned (stateful operators)
``state_persisted``         engine     the operator's state for E is in the store
``epoch_acked``             engine     an operator acknowledged E (state persisted, E forwarded)
``epoch_completed``         engine     E's completion record is written: E is restorable
``drain_started``           engine     the graph drains (timers stop) before its final epoch
``state_restored``          operator   restore(E, bytes) returned
``attempt_failed``          engine     the attempt ended failed (just before attempt_ended)
``attempt_ended``           engine     the attempt ended; with the final stats
==========================  =========  ==========================================================
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from snapgraph.instruments.stats import EpochStats, OperatorStats

if TYPE_CHECKING:
    from snapgraph.runtime.failures import OperatorFailure

logger = logging.getLogger("snapgraph.instruments")


@dataclass(frozen=True)
class Attempt:
    """One attempt of a run, as the hooks see it.

    ``run``: the run id in the snapshot store (None without snapshots); ``attempt``: 1, 2, … within
    the run; ``handle``: the graph handle of this attempt (unique); ``restored_from``: the epoch
    it restores (None: from scratch); ``backend``: the driver's class name. :meth:`stats` reads
    the live per-operator counters (copies), e.g. for a monitor that samples them.
    """

    run: str | None
    attempt: int
    graph: str
    handle: str
    restored_from: str | None = None
    backend: str = ""
    stats_reader: Callable[[], dict[str, OperatorStats]] = field(default=dict, compare=False, repr=False)
    epochs_reader: Callable[[], list[EpochStats]] = field(default=list, compare=False, repr=False)

    def stats(self) -> dict[str, OperatorStats]:
        return self.stats_reader()

    def epochs(self) -> list[EpochStats]:
        """The epochs of this attempt so far (completed and in flight)."""
        return self.epochs_reader()


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: status (completed, stopped, failed), reason, the failure if any,
    the final per-operator stats and epochs, and how long it ran (seconds)."""

    status: str
    reason: str
    failure: OperatorFailure | None
    stats: dict[str, OperatorStats]
    epochs: list[EpochStats]
    seconds: float


class Instrument:
    """Base class of instruments: every hook is a no-op; override the ones you need."""

    # -- attempts ------------------------------------------------------------------------------
    def attempt_started(self, attempt: Attempt) -> None:
        """An attempt starts (its groups are about to load)."""

    def recovery(self, attempt: Attempt, failure: OperatorFailure | None) -> None:
        """``attempt`` follows a failed attempt (``failure``: its failure) and restores ``attempt.restored_from``."""

    def attempt_failed(self, attempt: Attempt, failure: OperatorFailure | None) -> None:
        """The attempt ended failed (``attempt_ended`` follows)."""

    def attempt_ended(self, attempt: Attempt, outcome: Outcome) -> None:
        """The attempt ended; ``outcome`` holds its final stats."""

    # -- operators ----------------------------------------------------------------------------
    def operator_loaded(self, operator: str) -> None:
        """The operator's script body returned and its callbacks are registered."""

    def operator_failed(self, failure: OperatorFailure) -> None:
        """An operator failed (the first failure ends the attempt)."""

    # -- the snapshot protocol ----------------------------------------------------------------
    def epoch_started(self, epoch: str, final: bool) -> None:
        """The coordinator started ``epoch`` (``final``: a drain's final epoch)."""

    def final_epoch(self, epoch: str, number: int, sealed: bool) -> None:
        """A drain started its ``number``-th final epoch; ``sealed``: the last allowed one."""

    def barrier_injected(self, operator: str, epoch: str) -> None:
        """``epoch`` starts at the source ``operator``."""

    def barrier_aligned(self, operator: str, epoch: str, seconds: float) -> None:
        """Barrier ``epoch`` arrived on all of ``operator``'s inputs, ``seconds`` after the first."""

    def state_serialized(self, operator: str, epoch: str, nbytes: int, seconds: float) -> None:
        """``serialize(epoch)`` of ``operator`` returned ``nbytes`` bytes after ``seconds``."""

    def state_persisted(self, operator: str, epoch: str, nbytes: int, seconds: float) -> None:
        """``operator``'s state for ``epoch`` (``nbytes`` as stored) was persisted in ``seconds``."""

    def epoch_acked(self, operator: str, epoch: str, stateful: bool) -> None:
        """``operator`` acknowledged ``epoch``."""

    def epoch_completed(self, epoch: EpochStats) -> None:
        """The completion record of ``epoch.epoch`` is written: the epoch is restorable."""

    def drain_started(self, status: str, reason: str) -> None:
        """The graph drains before ending ``status`` (timers stop; a final epoch follows with snapshots)."""

    def state_restored(self, operator: str, epoch: str, nbytes: int) -> None:
        """``operator`` restored its state of ``epoch`` (``nbytes`` as stored)."""


HOOKS: tuple[str, ...] = tuple(name for name, value in vars(Instrument).items()
                               if callable(value) and not name.startswith("_"))


class Instruments:
    """The instruments of a run, filed by hook; what the engine calls.

    ``hook in instruments`` tells whether anyone listens to ``hook`` (check it before building
    the arguments); :meth:`call` runs the hook on each listener and drops a listener that raises.
    """

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, tuple[Instrument, ...]] = {}
        self._installed: list[Instrument] = []
        for instrument in instruments:
            self.add(instrument)

    def __contains__(self, hook: str) -> bool:
        return hook in self._hooks

    def __bool__(self) -> bool:
        return bool(self._installed)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(list(self._installed))

    def add(self, instrument: Instrument) -> None:
        with self._lock:
            if instrument in self._installed:
                return
            self._installed.append(instrument)
            for name in HOOKS:
                if getattr(type(instrument), name, None) is not getattr(Instrument, name):
                    self._hooks[name] = self._hooks.get(name, ()) + (instrument,)

    def remove(self, instrument: Instrument) -> None:
        with self._lock:
            if instrument not in self._installed:
                return
            self._installed.remove(instrument)
            for name, listeners in list(self._hooks.items()):
                kept = tuple(i for i in listeners if i is not instrument)
                if kept:
                    self._hooks[name] = kept
                else:
                    del self._hooks[name]

    def call(self, hook: str, *args: Any) -> None:
        for instrument in self._hooks.get(hook, ()):
            try:
                getattr(instrument, hook)(*args)
            except BaseException as exc:  # noqa: BLE001 - an instrument must not break the run
                if not isinstance(exc, Exception):
                    raise
                self.remove(instrument)
                logger.warning("instrument %r raised in %s and was removed: %s: %s",
                               instrument, hook, type(exc).__name__, exc, exc_info=True)


NO_INSTRUMENTS = Instruments()  # the shared empty registry: never add to it

_current = Instruments()  # what the engine of this process uses when given no registry


def current() -> Instruments:
    """The instruments installed in this process (what a driver uses when given none)."""
    return _current


def install(instrument: Instrument) -> None:
    _current.add(instrument)


def uninstall(instrument: Instrument) -> None:
    _current.remove(instrument)


@contextlib.contextmanager
def installed(*instruments: Instrument) -> Iterator[Instruments]:
    """Install ``instruments`` in this process for the duration of the block."""
    for instrument in instruments:
        install(instrument)
    try:
        yield _current
    finally:
        for instrument in instruments:
            uninstall(instrument)


__all__ = ["HOOKS", "NO_INSTRUMENTS", "Attempt", "Instrument", "Instruments", "Outcome", "current",
           "install", "installed", "uninstall"]
