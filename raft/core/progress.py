"""What a leader knows about each follower (thesis §3.5 nextIndex/matchIndex) and the flow
control around it, plus the tracker holding every peer's progress and the voting config.

A follower's progress is in one of three states:

- PROBE: the leader does not know where the follower's log diverges; it sends at most one
  AppendEntries per heartbeat interval and backs ``next`` off on rejection.
- REPLICATE: the follower is known to match up to ``match``; the leader streams entries
  optimistically (``next`` advances on send), bounded by the :class:`Inflights` window.
- SNAPSHOT: the follower needs entries the leader has compacted; a snapshot is in flight and
  nothing else is sent until the driver reports its fate (``report_snapshot``).

Invariant: ``0 <= match < next``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from raft.core.quorum import JointConfig, VoteResult
from raft.core.types import ConfState, NodeId


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Sliding window of AppendEntries sent but not yet acknowledged, named by the last index
    each carried. Indexes are added in increasing order; an acknowledgement of index ``i``
    frees every message whose last index is ``<= i``."""

    __slots__ = ("_capacity", "_indexes")

    def __init__(self, capacity: int) -> None:
        assert capacity > 0, capacity
        self._capacity = capacity
        self._indexes: deque[int] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._indexes)

    def full(self) -> bool:
        return len(self._indexes) >= self._capacity

    def add(self, last_index: int) -> None:
        assert not self.full(), "cannot add into a full inflights window"
        assert not self._indexes or self._indexes[-1] < last_index, (self._indexes, last_index)
        self._indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every in-flight message whose last index is ``<= index``."""
        while self._indexes and self._indexes[0] <= index:
            self._indexes.popleft()

    def free_first_one(self) -> None:
        if self._indexes:
            self._indexes.popleft()

    def reset(self) -> None:
        self._indexes.clear()


@dataclass(slots=True)
class Progress:
    """A leader's view of one peer (the leader has one for itself too)."""

    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    pending_snapshot: int = 0
    """In SNAPSHOT state: index of the snapshot sent; 0 otherwise."""
    recent_active: bool = False
    """Heard from since the last check-quorum round (§ thesis 6.2 / check-quorum)."""
    probe_sent: bool = False
    """In PROBE state: an AppendEntries is in flight, so hold further ones until a reply or
    the next heartbeat response."""
    is_learner: bool = False
    sent_commit: int = 0
    """Highest commit index sent to this peer in an append (to skip redundant ones)."""
    snapshot_elapsed_ticks: int = 0
    """In SNAPSHOT state: leader ticks since the snapshot was sent (a fallback timeout for
    drivers that never report a lost snapshot)."""
    recovering: bool = False
    """The peer said (a rejecting heartbeat response) it lost entries or is recovering
    (docs/storage.md): appends that reach our last index are marked ``APPEND_TAIL`` so it
    learns when it holds everything we hold."""

    def __post_init__(self) -> None:
        assert 0 <= self.match < self.next, (self.match, self.next)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Back to probing. Coming from SNAPSHOT, resume right after the snapshot sent (the
        follower has it, or will say otherwise)."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged entries up to ``n``. Returns whether ``match`` grew
        (acknowledgements can arrive late or duplicated; they never move ``match`` back)."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        """REPLICATE: entries up to ``n`` were sent; assume they will arrive."""
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an AppendEntries whose prevLogIndex was ``rejected`` and
        suggests ``match_hint`` (§5.3 "decrement nextIndex and retry", with the fast
        backtracking hint). Returns False when the rejection is stale (ignored)."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know the follower matches past it
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not a reply to the probe we have out
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, n_entries: int) -> None:
        """Bookkeeping after an AppendEntries ending at ``last_index`` went out."""
        if self.state == ProgressState.REPLICATE:
            if n_entries > 0:
                self.optimistic_update(last_index)
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True
        else:
            raise AssertionError(f"sending entries in state {self.state}")

    def is_paused(self) -> bool:
        """Whether the leader must hold AppendEntries to this peer for now."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True


@dataclass(slots=True)
class ProgressTracker:
    """Membership (voters as a joint config, learners) and per-peer progress and votes.

    Invariants (checked by :meth:`check`): every member has a progress entry and nothing
    else does; learners and voters are disjoint; ``learners_next`` are outgoing voters that
    become learners when the joint config is left.
    """

    max_inflight: int
    voters: JointConfig = field(default_factory=JointConfig)
    learners: frozenset[NodeId] = frozenset()
    learners_next: frozenset[NodeId] = frozenset()
    auto_leave: bool = False
    progress: dict[NodeId, Progress] = field(default_factory=dict)
    votes: dict[NodeId, bool] = field(default_factory=dict)

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=self.voters.incoming,
            learners=self.learners,
            voters_outgoing=self.voters.outgoing,
            learners_next=self.learners_next,
            auto_leave=self.auto_leave,
        )

    def members(self) -> frozenset[NodeId]:
        return self.voters.ids() | self.learners | self.learners_next

    def check(self) -> None:
        assert not (self.learners & self.voters.ids()), "learner is also a voter"
        assert self.learners_next <= self.voters.outgoing, "learners_next not outgoing voters"
        assert not (self.learners_next & self.voters.incoming), "learners_next in incoming"
        assert set(self.progress) == self.members(), (set(self.progress), self.members())
        for nid, pr in self.progress.items():
            assert pr.is_learner == (nid in self.learners or nid in self.learners_next)

    def set_config(self, cs: ConfState, next_index: int) -> None:
        """Switch to membership ``cs``. New members start probing at ``next_index`` (the
        leader's last index + 1) and count as recently active (they get a full election
        timeout before check-quorum judges them); removed members are forgotten."""
        self.voters = JointConfig(frozenset(cs.voters), frozenset(cs.voters_outgoing))
        self.learners = frozenset(cs.learners)
        self.learners_next = frozenset(cs.learners_next)
        self.auto_leave = cs.auto_leave
        members = self.members()
        for nid in list(self.progress):
            if nid not in members:
                del self.progress[nid]
        for nid in sorted(members):
            learner = nid in self.learners or nid in self.learners_next
            pr = self.progress.get(nid)
            if pr is None:
                pr = Progress(
                    match=0,
                    next=max(next_index, 1),
                    inflights=Inflights(self.max_inflight),
                    recent_active=True,
                )
                self.progress[nid] = pr
            pr.is_learner = learner
        self.check()

    def is_singleton(self) -> bool:
        """One voter and no joint config: decisions need nobody else."""
        return len(self.voters.incoming) == 1 and not self.voters.outgoing

    def committed(self) -> int:
        """Largest index acknowledged by a quorum of voters (learners do not count)."""
        match = {nid: pr.match for nid, pr in self.progress.items() if not pr.is_learner}
        return self.voters.committed_index(match)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, nid: NodeId, granted: bool) -> None:
        """The first answer of each peer in an election counts; repeats are ignored."""
        self.votes.setdefault(nid, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for nid, g in self.votes.items() if g and nid in self.voters.ids())
        rejected = sum(1 for nid, g in self.votes.items() if not g and nid in self.voters.ids())
        return granted, rejected, self.voters.vote_result(self.votes)

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was heard from recently (check-quorum, thesis §6.2)."""
        active = {
            nid: pr.recent_active
            for nid, pr in self.progress.items()
            if not pr.is_learner and nid in self.voters.ids()
        }
        return self.voters.vote_result(active) == VoteResult.WON

    def voter_ids(self) -> list[NodeId]:
        return sorted(self.voters.ids())
