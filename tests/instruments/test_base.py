"""Unit tests for snapgraph.instruments.base: the instrument registry, filing by hook, dropping a failing instrument."""

from __future__ import annotations

import logging

import pytest

from snapgraph.instruments import HOOKS, Instrument, Instruments, current, installed


class Epochs(Instrument):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def epoch_started(self, epoch: str, final: bool) -> None:
        self.seen.append(epoch)


class Broken(Instrument):
    calls = 0

    def epoch_started(self, epoch: str, final: bool) -> None:
        Broken.calls += 1
        raise RuntimeError("broken instrument")

    def epoch_completed(self, epoch) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("never called: dropped at its first failure")


def test_every_hook_of_the_interface_is_listed() -> None:
    for name in ("attempt_started", "recovery", "attempt_failed", "attempt_ended", "operator_loaded",
                 "operator_failed", "epoch_started", "final_epoch", "barrier_injected", "barrier_aligned",
                 "state_serialized", "state_persisted", "epoch_acked", "epoch_completed", "drain_started",
                 "state_restored"):
        assert name in HOOKS
        getattr(Instrument(), name)  # a no-op on the base class


def test_an_empty_registry_listens_to_nothing() -> None:
    registry = Instruments()
    assert not registry
    assert not any(hook in registry for hook in HOOKS)
    registry.call("epoch_started", "e", False)  # harmless


def test_instruments_are_filed_under_the_hooks_they_override_only() -> None:
    epochs = Epochs()
    registry = Instruments([epochs])
    assert "epoch_started" in registry
    assert "epoch_completed" not in registry and "attempt_started" not in registry
    registry.call("epoch_started", "E1", False)
    assert epochs.seen == ["E1"]
    registry.remove(epochs)
    assert "epoch_started" not in registry and not registry


def test_a_failing_instrument_is_dropped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    good, bad = Epochs(), Broken()
    Broken.calls = 0
    registry = Instruments([bad, good])
    with caplog.at_level(logging.WARNING, logger="snapgraph.instruments"):
        registry.call("epoch_started", "E1", False)
        registry.call("epoch_started", "E2", False)
        registry.call("epoch_completed", object())
    assert Broken.calls == 1
    assert good.seen == ["E1", "E2"]  # the others still hear every event
    assert list(registry) == [good]
    warnings = [r for r in caplog.records if "removed" in r.getMessage()]
    assert len(warnings) == 1 and "epoch_started" in warnings[0].getMessage()


def test_installed_scopes_the_process_registry() -> None:
    epochs = Epochs()
    with installed(epochs) as registry:
        assert registry is current() and "epoch_started" in current()
    assert "epoch_started" not in current()
