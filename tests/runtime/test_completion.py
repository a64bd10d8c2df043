"""Completion detection (Mattern's four-counter method), wave by wave, without a graph."""

from __future__ import annotations

from snapgraph.runtime.completion import CompletionDetector, WorkCounts

IDLE_A = WorkCounts(pending=0, published=4, sent=3, received=0)
IDLE_B = WorkCounts(pending=0, published=0, sent=0, received=3)


def test_idle_only_when_a_second_wave_confirms_the_same_counts() -> None:
    detector = CompletionDetector()
    first = detector.wave([IDLE_A, IDLE_B])
    assert not first.idle and first.confirm and first.published == 4
    second = detector.wave([IDLE_A, IDLE_B])
    assert second.idle and not second.confirm


def test_a_message_still_travelling_is_not_idle() -> None:
    detector = CompletionDetector()
    in_flight = [IDLE_A, WorkCounts(0, 0, 0, received=2)]  # three sent, two arrived
    for _ in range(3):
        quiet = detector.wave(in_flight)
        assert not quiet.idle and not quiet.confirm


def test_work_that_came_and_went_between_two_waves_is_not_idle() -> None:
    """Both waves look idle, but the counts moved in between: a message was sent and processed."""
    detector = CompletionDetector()
    assert detector.wave([IDLE_A, IDLE_B]).confirm
    moved = [WorkCounts(0, 5, 4, 0), WorkCounts(0, 0, 0, 4)]
    quiet = detector.wave(moved)
    assert not quiet.idle and quiet.confirm  # confirm again with the new counts
    assert detector.wave(moved).idle


def test_pending_work_or_a_live_script_thread_is_not_idle() -> None:
    detector = CompletionDetector()
    for busy in (WorkCounts(1, 0, 0, 0), WorkCounts(0, 0, 0, 0, script_threads=True)):
        for _ in range(2):
            assert not detector.wave([busy]).idle


def test_an_unanswered_wave_starts_over() -> None:
    detector = CompletionDetector()
    assert detector.wave([IDLE_A, IDLE_B]).confirm
    assert not detector.unanswered().idle
    assert not detector.wave([IDLE_A, IDLE_B]).idle  # needs its own confirmation again
    assert detector.wave([IDLE_A, IDLE_B]).idle


def test_one_instance_in_one_process_is_idle_after_two_waves() -> None:
    detector = CompletionDetector()
    alone = [WorkCounts(0, 7, 0, 0)]
    assert [detector.wave(alone).idle for _ in range(2)] == [False, True]
