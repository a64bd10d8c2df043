"""The instrument registry and the stats record: filing by hook, dropping a failing instrument, merging."""

from __future__ import annotations

import logging
import pickle

import pytest

from snapgraph.instruments import (
    HOOKS,
    Instrument,
    Instruments,
    OperatorStats,
    PortStats,
    current,
    installed,
    merge,
    merge_into,
)


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


def stats(operator: str = "op", epoch: str | None = "E1", state: int = 10, rows: int = 5) -> OperatorStats:
    s = OperatorStats.for_ports(operator, ["in"], ["out"], group="g")
    s.inputs["in"].messages, s.inputs["in"].rows, s.inputs["in"].callback_seconds = 2, rows, 0.5
    s.outputs["out"].messages, s.outputs["out"].rows = 1, rows
    s.callbacks, s.callback_seconds = 3, 0.75
    s.snapshots, s.last_epoch, s.state_bytes, s.state_bytes_total = 1, epoch, state, state
    s.last_serialize_seconds = s.serialize_seconds = 0.1
    return s


def test_stats_are_picklable_and_copies_are_independent() -> None:
    s = stats()
    assert pickle.loads(pickle.dumps(s)) == s
    c = s.copy()
    assert c == s
    c.inputs["in"].messages += 1
    assert s.inputs["in"].messages == 2
    assert s.messages_in == 2 and s.rows_out == 5
    assert s.as_dict()["inputs"] == {"in": {"messages": 2, "rows": 5, "bytes": 0, "callback_seconds": 0.5,
                                            "send_seconds": 0.0}}


def test_merging_two_instances_of_an_operator() -> None:
    a, b = stats(rows=5, state=10), stats(rows=7, state=20)
    b.last_serialize_seconds = 0.3
    m = merge(a, b)
    assert m.inputs["in"] == PortStats(4, 12, 0, 1.0, 0.0)
    assert m.callbacks == 6 and m.instances == 2
    assert m.state_bytes == 30  # the same epoch: both instances' states
    assert m.last_serialize_seconds == 0.3  # the slowest instance
    newer = stats(epoch="E2", state=7)
    assert merge(a, newer).state_bytes == 7 and merge(newer, a).last_epoch == "E2"
    with pytest.raises(ValueError):
        merge(a, stats("other"))


def test_merge_into_a_table() -> None:
    table = merge_into({}, [stats("x"), stats("y"), stats("x")])
    assert set(table) == {"x", "y"}
    assert table["x"].instances == 2 and table["y"].instances == 1
