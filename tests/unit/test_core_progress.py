"""Follower progress and the inflights window."""

from __future__ import annotations

import pytest

from raft.core.progress import Inflights, Progress, ProgressState


def pr(match: int = 0, next_: int = 1, cap: int = 3) -> Progress:
    return Progress(match=match, next=next_, inflights=Inflights(cap))


def test_inflights_window() -> None:
    w = Inflights(3)
    for i in (5, 7, 9):
        w.add(i)
    assert w.full()
    w.free_le(7)
    assert len(w) == 1 and not w.full()
    with pytest.raises(AssertionError):
        w.add(8)  # must increase


def test_replicate_sends_optimistically_and_pauses_on_full_window() -> None:
    p = pr(5, 6)
    p.become_replicate()
    p.sent_entries(8, 3)
    p.sent_entries(9, 1)
    p.sent_entries(12, 3)
    assert p.next == 13 and p.is_paused()
    assert p.maybe_update(9)
    p.inflights.free_le(9)
    assert not p.is_paused() and p.match == 9


def test_probe_pauses_after_one_message() -> None:
    p = pr(0, 5)
    assert not p.is_paused()
    p.sent_entries(7, 2)
    assert p.is_paused() and p.next == 5  # probe does not move next optimistically


def test_maybe_decr_to_ignores_stale_rejections() -> None:
    p = pr(0, 10)
    assert not p.maybe_decr_to(5, 3)  # not our outstanding probe (next - 1 == 9)
    assert p.maybe_decr_to(9, 3) and p.next == 4
    r = pr(5, 6)
    r.become_replicate()
    assert not r.maybe_decr_to(4, 0)  # below match: stale
    assert r.maybe_decr_to(7, 0) and r.next == 6


def test_snapshot_state_resumes_after_pending_snapshot() -> None:
    p = pr(2, 3)
    p.become_snapshot(10)
    assert p.is_paused() and p.state == ProgressState.SNAPSHOT
    p.become_probe()
    assert p.next == 11


def test_match_never_decreases() -> None:
    p = pr(5, 6)
    assert not p.maybe_update(3)
    assert p.match == 5
