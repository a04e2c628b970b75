"""Quorum math: majority and joint (two-majority) configurations.

Pure functions over sets of node ids; no Raft state. A *majority* of ``n`` voters is
``n // 2 + 1`` of them (Raft §5.2). A *joint* configuration (thesis §4.3) needs a majority of
the incoming voters and, separately, a majority of the outgoing voters.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from raft.core.types import NodeId

INDEX_INFINITY = 1 << 63
"""What an empty majority config commits: it places no restriction, so a joint config whose
outgoing half is empty behaves like its incoming half alone (``min`` with this is a no-op)."""


class VoteResult(enum.Enum):
    PENDING = "pending"
    """Not decided yet: missing votes could still swing it either way."""
    LOST = "lost"
    WON = "won"


def majority_size(n_voters: int) -> int:
    """Smallest number of voters that forms a majority of ``n_voters`` (§5.2)."""
    assert n_voters >= 0, n_voters
    return n_voters // 2 + 1


def majority_committed_index(voters: Iterable[NodeId], match: Mapping[NodeId, int]) -> int:
    """Largest index acknowledged by a majority of ``voters`` (§5.3/§5.4: "a majority of
    match[i] >= N"). Voters absent from ``match`` count as having acknowledged 0.

    With ``srt`` the voters' match indexes sorted ascending and ``q`` the majority size,
    ``srt[n - q]`` is the answer: the ``q`` voters ``srt[n-q:]`` all have at least that index,
    and no larger index is held by ``q`` voters. An empty voter set returns
    :data:`INDEX_INFINITY` (see there)."""
    srt = sorted(match.get(v, 0) for v in set(voters))
    n = len(srt)
    if n == 0:
        return INDEX_INFINITY
    return srt[n - majority_size(n)]


def majority_vote_result(voters: Iterable[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Outcome of an election among ``voters`` given the ``votes`` received so far (True =
    granted). Votes from non-voters are ignored. An empty voter set wins (joint-config
    convenience, as for the committed index)."""
    vs = set(voters)
    if not vs:
        return VoteResult.WON
    granted = sum(1 for v in vs if votes.get(v) is True)
    missing = sum(1 for v in vs if v not in votes)
    q = majority_size(len(vs))
    if granted >= q:
        return VoteResult.WON
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


@dataclass(frozen=True, slots=True)
class JointConfig:
    """The voters of a configuration. ``outgoing`` is empty outside of a joint configuration;
    then every decision is the ``incoming`` majority's alone."""

    incoming: frozenset[NodeId] = frozenset()
    outgoing: frozenset[NodeId] = frozenset()

    def ids(self) -> frozenset[NodeId]:
        return self.incoming | self.outgoing

    def is_joint(self) -> bool:
        return bool(self.outgoing)

    def committed_index(self, match: Mapping[NodeId, int]) -> int:
        """Largest index acknowledged by a majority of *both* halves (thesis §4.3)."""
        return min(
            majority_committed_index(self.incoming, match),
            majority_committed_index(self.outgoing, match),
        )

    def vote_result(self, votes: Mapping[NodeId, bool]) -> VoteResult:
        """WON only if both halves won; LOST as soon as either half lost."""
        r1 = majority_vote_result(self.incoming, votes)
        r2 = majority_vote_result(self.outgoing, votes)
        if r1 == r2:
            return r1
        if VoteResult.LOST in (r1, r2):
            return VoteResult.LOST
        return VoteResult.PENDING
