"""Property tests for quorum math (majority and joint configurations, thesis §4.3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raft.core.quorum import (
    INDEX_INFINITY,
    JointConfig,
    VoteResult,
    majority_committed_index,
    majority_vote_result,
)

IDS = [f"n{i}" for i in range(1, 8)]
voters_st = st.sets(st.sampled_from(IDS), max_size=7)
match_st = st.dictionaries(st.sampled_from(IDS), st.integers(min_value=0, max_value=50))
votes_st = st.dictionaries(st.sampled_from(IDS), st.booleans())


@settings(deadline=None)
@given(voters_st, match_st)
def test_committed_index_is_sorted_median(voters: set[str], match: dict[str, int]) -> None:
    """The committed index is the largest N with a majority of match >= N (§5.3/§5.4)."""
    got = majority_committed_index(voters, match)
    if not voters:
        assert got == INDEX_INFINITY
        return
    q = len(voters) // 2 + 1
    by_definition = max(
        n for n in range(0, 52) if sum(1 for v in voters if match.get(v, 0) >= n) >= q
    )
    assert got == by_definition
    srt = sorted((match.get(v, 0) for v in voters), reverse=True)
    assert got == srt[q - 1]


@settings(deadline=None)
@given(voters_st, voters_st, match_st)
def test_joint_committed_is_min_of_both(a: set[str], b: set[str], match: dict[str, int]) -> None:
    jc = JointConfig(frozenset(a), frozenset(b))
    assert jc.committed_index(match) == min(
        majority_committed_index(a, match), majority_committed_index(b, match)
    )
    if not b:
        assert jc.committed_index(match) == majority_committed_index(a, match)


@settings(deadline=None)
@given(voters_st, votes_st)
def test_vote_result(voters: set[str], votes: dict[str, bool]) -> None:
    res = majority_vote_result(voters, votes)
    if not voters:
        assert res == VoteResult.WON
        return
    q = len(voters) // 2 + 1
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    if yes >= q:
        assert res == VoteResult.WON
    elif len(voters) - no < q:
        assert res == VoteResult.LOST
    else:
        assert res == VoteResult.PENDING
    # Monotonic: more granted votes never make the result worse.
    better = dict(votes)
    for v in voters:
        if v not in better:
            better[v] = True
    order = {VoteResult.LOST: 0, VoteResult.PENDING: 1, VoteResult.WON: 2}
    assert order[majority_vote_result(voters, better)] >= order[res]


@settings(deadline=None)
@given(voters_st, voters_st, votes_st)
def test_joint_vote_needs_both(a: set[str], b: set[str], votes: dict[str, bool]) -> None:
    r1, r2 = majority_vote_result(a, votes), majority_vote_result(b, votes)
    res = JointConfig(frozenset(a), frozenset(b)).vote_result(votes)
    if VoteResult.LOST in (r1, r2):
        assert res == VoteResult.LOST
    elif r1 == r2 == VoteResult.WON:
        assert res == VoteResult.WON
    else:
        assert res == VoteResult.PENDING


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=9))
def test_two_majorities_always_overlap(n: int) -> None:
    """§5.2's safety argument: any two majorities of the same voters intersect."""
    q = n // 2 + 1
    assert 2 * q > n
