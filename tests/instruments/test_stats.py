"""Unit tests for snapgraph.instruments.stats: the stats record, copying, pickling and merging."""

from __future__ import annotations

import pickle

import pytest

from snapgraph.instruments import OperatorStats, PortStats, merge, merge_into


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
                                            "send_seconds": 0.0, "queued": 0}}


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


def test_merged_instances_show_the_most_telling_state() -> None:
    from snapgraph.instruments.stats import OperatorStats, merge

    def with_state(state: str) -> OperatorStats:
        return OperatorStats("op", state=state)

    assert merge(with_state("running"), with_state("aligning")).state == "aligning"
    assert merge(with_state("snapshotting"), with_state("aligning")).state == "snapshotting"
    assert merge(with_state("done"), with_state("running")).state == "running"  # one instance still works
    assert merge(with_state("loading"), with_state("done")).state == "loading"


def test_callback_buckets_are_copied_and_merged_bucket_by_bucket() -> None:
    from snapgraph.instruments.stats import CALLBACK_BUCKETS

    a, b = stats(), stats()
    assert len(a.callback_buckets) == len(CALLBACK_BUCKETS) + 1
    a.callback_buckets[0], a.callback_buckets[-1], b.callback_buckets[-1] = 2, 1, 4
    c = a.copy()
    c.callback_buckets[0] += 1
    assert a.callback_buckets[0] == 2  # the copy has a list of its own
    merged = merge(a, b)
    assert merged.callback_buckets[0] == 2 and merged.callback_buckets[-1] == 5
    assert pickle.loads(pickle.dumps(a)).callback_buckets == a.callback_buckets
    assert a.as_dict()["callback_buckets"] == a.callback_buckets
