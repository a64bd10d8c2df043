"""EpochClock: ISO-8601 UTC ids with milliseconds whose string order is creation order."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from snapgraph.snapshot.protocol import EpochClock

SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse(epoch: str) -> datetime:
    return datetime.strptime(epoch, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_ids_are_iso_8601_utc_with_milliseconds() -> None:
    before = datetime.now(UTC)
    epoch = EpochClock().next()
    after = datetime.now(UTC)
    assert SHAPE.match(epoch), epoch
    assert len(epoch) == len("2026-11-30T11:33:40.928Z")
    stamp = parse(epoch)
    # UTC, not local time: the id lies between two UTC readings taken around it (ms resolution)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp <= after


def test_ids_strictly_increase_over_many_rapid_calls() -> None:
    clock = EpochClock()
    ids = [clock.next() for _ in range(5000)]
    assert all(SHAPE.match(e) for e in ids)
    assert all(a < b for a, b in zip(ids, ids[1:]))
    # string order equals time order, and ids are at least a millisecond apart
    stamps = [parse(e) for e in ids]
    assert all(b - a >= timedelta(milliseconds=1) for a, b in zip(stamps, stamps[1:]))


def test_two_clocks_are_independent_but_each_is_monotonic() -> None:
    a, b = EpochClock(), EpochClock()
    ids_a = [a.next() for _ in range(200)]
    ids_b = [b.next() for _ in range(200)]
    assert ids_a == sorted(set(ids_a))
    assert ids_b == sorted(set(ids_b))


@pytest.mark.parametrize("after, expected_first", [
    ("2999-12-31T23:59:59.998Z", ["2999-12-31T23:59:59.999Z", "3000-01-01T00:00:00.000Z",
                                  "3000-01-01T00:00:00.001Z"]),
    ("2100-06-15T12:00:00.000Z", ["2100-06-15T12:00:00.001Z", "2100-06-15T12:00:00.002Z",
                                  "2100-06-15T12:00:00.003Z"]),
])
def test_ids_follow_an_after_epoch_in_the_future(after: str, expected_first: list[str]) -> None:
    clock = EpochClock(after=after)
    ids = [clock.next() for _ in range(3)]
    assert ids == expected_first
    assert all(e > after for e in ids)


def test_ids_after_a_past_epoch_are_current_time() -> None:
    after = "2001-01-01T00:00:00.000Z"
    clock = EpochClock(after=after)
    epoch = clock.next()
    assert epoch > after
    assert parse(epoch).year >= 2024


def test_after_an_epoch_made_by_another_clock_just_now() -> None:
    """A restored run's clock continues after the restored epoch, even within the same millisecond."""
    first = EpochClock()
    last = [first.next() for _ in range(50)][-1]
    resumed = EpochClock(after=last)
    ids = [resumed.next() for _ in range(50)]
    assert ids[0] > last
    assert all(a < b for a, b in zip(ids, ids[1:]))
