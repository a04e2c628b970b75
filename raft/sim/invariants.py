"""Raft's safety properties (Raft paper Figure 3) checked incrementally, plus liveness after
faults heal.

The world reports what each node does as it happens: every append to a node's disk
(:meth:`SafetyChecker.on_append`), each node's term/role/commit after every step
(:meth:`SafetyChecker.on_state`) and every entry applied to a state machine
(:meth:`SafetyChecker.on_apply`). Each call costs time proportional to what changed, so the
checks run after every step of every simulated run. The properties are the ones of
:mod:`raft.invariants` (one :class:`~raft.invariants.Invariant` enum, one spelling, shared with
the event-log checker that judges lab and simulated runs from ``events.jsonl``). What is
checked here:

- **Election Safety**: at most one leader per term (ever, across all nodes).
- **Leader Append-Only**: a leader never overwrites or deletes entries of its own log.
- **Log Matching**: two entries with the same index and term hold the same command and are
  preceded by entries of the same term (so, by induction, the logs are identical up to
  there). Checked over every entry any node ever stored: Raft creates at most one entry per
  (index, term), so this holds across time, not just at one instant.
- **Leader Completeness**: an entry committed in term t is in the log of every leader of a
  term > t (checked when the leader is first seen; it only appends afterwards).
- **State Machine Safety**: no two nodes commit or apply different entries at one index;
  each node applies indexes in order, each exactly once per incarnation.
- **Commit monotonicity**: within one incarnation of a node the commit index never moves
  backwards.

"Committed in term t" is conservative: ``t`` is the term of the first node seen with a commit
index covering the entry; the node that commits first is the leader, so ``t`` is at least the
true commit term and the Leader Completeness check never fires on a correct run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raft.core.errors import CompactedError, UnavailableError
from raft.core.storage import LogReader
from raft.core.types import Entry, NodeId, Role, Snapshot
from raft.invariants import Invariant

__all__ = ["Invariant", "LivenessMonitor", "SafetyChecker", "Violation"]


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: Invariant
    node: NodeId
    detail: str

    def __str__(self) -> str:
        where = f" at {self.node}" if self.node else ""
        return f"{self.invariant.value}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class _Committed:
    entry_term: int
    commit_term: int
    node: NodeId


class SafetyChecker:
    """Accumulates what every node did and flags the first broken safety property."""

    def __init__(self) -> None:
        self._leader_of_term: dict[int, NodeId] = {}
        self._entries: dict[tuple[int, int], tuple[bytes, int | None, NodeId]] = {}
        self._committed: dict[int, _Committed] = {}
        self._commit_seen: dict[tuple[NodeId, int], int] = {}
        self._applied: dict[int, tuple[int, bytes, NodeId]] = {}
        self._next_apply: dict[tuple[NodeId, int], int] = {}
        self._completeness_checked: set[tuple[NodeId, int]] = set()
        self._votes: dict[tuple[int, NodeId], NodeId] = {}
        """(term, voter) -> the candidate its durable hard state voted for."""

    # -- statistics ----------------------------------------------------------------------
    @property
    def elections(self) -> int:
        """Terms that had a leader."""
        return len(self._leader_of_term)

    @property
    def commit_index(self) -> int:
        """Highest index known committed anywhere."""
        return max(self._committed, default=0)

    def leader_of(self, term: int) -> NodeId | None:
        return self._leader_of_term.get(term)

    # -- inputs --------------------------------------------------------------------------
    def on_append(
        self,
        node: NodeId,
        leader_term: int | None,
        entries: Sequence[Entry],
        prev_term: int | None,
        overwritten_from: int | None,
    ) -> Violation | None:
        """``node`` stores ``entries`` (consecutive indexes). ``leader_term`` is the term
        it leads, or None when it is not leader. ``prev_term`` is the term of the entry just
        before ``entries[0]`` in its log (None when compacted away). ``overwritten_from`` is
        the first index where a stored entry was replaced by one of another term or dropped,
        None when the append only added entries."""
        if leader_term is not None and overwritten_from is not None:
            return Violation(
                Invariant.LEADER_APPEND_ONLY,
                node,
                f"leader of term {leader_term} overwrote its own log from index {overwritten_from}",
            )
        prev = prev_term
        expect_index = entries[0].index if entries else 0
        for e in entries:
            if e.index != expect_index:
                return Violation(
                    Invariant.LOG_MATCHING,
                    node,
                    f"appended entries are not consecutive: {expect_index} then {e.index}",
                )
            expect_index += 1
            key = (e.index, e.term)
            seen = self._entries.get(key)
            if seen is None:
                self._entries[key] = (e.data, prev, node)
            else:
                data, seen_prev, other = seen
                if data != e.data:
                    return Violation(
                        Invariant.LOG_MATCHING,
                        node,
                        f"entry ({e.index}, term {e.term}) holds a different command than on "
                        f"{other}",
                    )
                if prev is not None and seen_prev is not None and prev != seen_prev:
                    return Violation(
                        Invariant.LOG_MATCHING,
                        node,
                        f"entry ({e.index}, term {e.term}) follows an entry of term {prev}, "
                        f"on {other} one of term {seen_prev}: the logs differ before it",
                    )
                if seen_prev is None and prev is not None:
                    self._entries[key] = (data, prev, other)
            prev = e.term
        return None

    def on_snapshot_installed(
        self, node: NodeId, leader_term: int | None, snap: Snapshot
    ) -> Violation | None:
        """``node`` replaced its log with ``snap`` (InstallSnapshot)."""
        if leader_term is not None:
            return Violation(
                Invariant.LEADER_APPEND_ONLY,
                node,
                f"leader of term {leader_term} replaced its log with a snapshot at "
                f"{snap.meta.index}",
            )
        known = self._committed.get(snap.meta.index)
        if known is not None and known.entry_term != snap.meta.term:
            return Violation(
                Invariant.STATE_MACHINE_SAFETY,
                node,
                f"snapshot at index {snap.meta.index} has term {snap.meta.term}, but "
                f"{known.node} committed term {known.entry_term} there",
            )
        return None

    def on_role(self, node: NodeId, term: int, role: Role) -> Violation | None:
        """The node's role changed (checked before it acts on it, e.g. appends as leader)."""
        if role is Role.LEADER:
            holder = self._leader_of_term.setdefault(term, node)
            if holder != node:
                return Violation(
                    Invariant.ELECTION_SAFETY,
                    node,
                    f"two leaders in term {term}: {holder} and {node}",
                )
        return None

    def on_state(
        self,
        node: NodeId,
        incarnation: int,
        term: int,
        role: Role,
        commit: int,
        log: LogReader,
    ) -> Violation | None:
        """The node's state after a step; ``log`` is its (persisted) log."""
        if role is Role.LEADER:
            v = self.on_role(node, term, role)
            if v is not None:
                return v
            key = (node, term)
            if key not in self._completeness_checked:
                self._completeness_checked.add(key)
                v = self._check_completeness(node, term, log)
                if v is not None:
                    return v
        inc = (node, incarnation)
        seen = self._commit_seen.get(inc)
        if seen is None:
            seen = 0
        elif commit < seen:
            return Violation(
                Invariant.COMMIT_MONOTONIC,
                node,
                f"commit index moved back from {seen} to {commit}",
            )
        if commit > seen:
            self._commit_seen[inc] = commit
            return self._check_commits(node, term, seen + 1, commit, log)
        return None

    def on_apply(self, node: NodeId, incarnation: int, entry: Entry) -> Violation | None:
        """``node`` applied ``entry`` to its state machine."""
        inc = (node, incarnation)
        want = self._next_apply.get(inc, 1)
        if entry.index != want:
            return Violation(
                Invariant.STATE_MACHINE_SAFETY,
                node,
                f"applied index {entry.index} when {want} was next (gap or repeat)",
            )
        self._next_apply[inc] = want + 1
        seen = self._applied.get(entry.index)
        if seen is None:
            self._applied[entry.index] = (entry.term, entry.data, node)
        elif seen[0] != entry.term or seen[1] != entry.data:
            return Violation(
                Invariant.STATE_MACHINE_SAFETY,
                node,
                f"applied ({entry.index}, term {entry.term}) but {seen[2]} applied "
                f"({entry.index}, term {seen[0]}) at that index",
            )
        return None

    def on_restart(self, node: NodeId, incarnation: int, applied: int) -> None:
        """``node`` came back as ``incarnation`` with its state machine at ``applied``."""
        self._next_apply[(node, incarnation)] = applied + 1

    def on_machine_restored(self, node: NodeId, incarnation: int, index: int) -> None:
        """``node``'s state machine was replaced by a snapshot taken at ``index``."""
        self._next_apply[(node, incarnation)] = index + 1

    # -- quorums in the configuration in effect (joint consensus) ------------------------
    def on_vote(self, voter: NodeId, term: int, candidate: NodeId) -> Violation | None:
        """``voter`` made its vote for ``candidate`` in ``term`` durable (one per term)."""
        seen = self._votes.setdefault((term, voter), candidate)
        if seen != candidate:
            return Violation(
                Invariant.ELECTION_SAFETY,
                voter,
                f"voted for {seen} and then for {candidate} in term {term}",
            )
        return None

    def on_elected(
        self, node: NodeId, term: int, halves: Sequence[frozenset[NodeId]]
    ) -> Violation | None:
        """``node`` became leader of ``term`` with voter sets ``halves`` (one, or two when
        joint): each half must have a majority of durable votes for it."""
        for half in halves:
            granted = sorted(v for v in half if self._votes.get((term, v)) == node)
            if half and len(granted) < len(half) // 2 + 1:
                return Violation(
                    Invariant.QUORUM,
                    node,
                    f"leader of term {term} with votes of {granted} only, not a majority "
                    f"of voters {sorted(half)} (config halves {[sorted(h) for h in halves]})",
                )
        return None

    @staticmethod
    def check_commit_quorum(
        node: NodeId,
        term: int,
        index: int,
        halves: Sequence[frozenset[NodeId]],
        holders: frozenset[NodeId],
    ) -> Violation | None:
        """Leader ``node`` of ``term`` committed ``index``, held (same entry) by
        ``holders``: each half of its configuration needs a majority of holders."""
        for half in halves:
            have = sorted(half & holders)
            if half and len(have) < len(half) // 2 + 1:
                return Violation(
                    Invariant.QUORUM,
                    node,
                    f"leader of term {term} committed index {index} held by {have} only, not "
                    f"a majority of voters {sorted(half)} (config halves "
                    f"{[sorted(h) for h in halves]})",
                )
        return None

    # -- checks --------------------------------------------------------------------------
    def _check_commits(
        self, node: NodeId, term: int, lo: int, hi: int, log: LogReader
    ) -> Violation | None:
        first = log.first_index()
        for i in range(max(lo, first), hi + 1):
            try:
                t = log.term(i)
            except UnavailableError:
                return Violation(
                    Invariant.STATE_MACHINE_SAFETY,
                    node,
                    f"commit index {hi} is past the last index {log.last_index()}",
                )
            except CompactedError:
                continue
            known = self._committed.get(i)
            if known is None:
                self._committed[i] = _Committed(entry_term=t, commit_term=term, node=node)
            elif known.entry_term != t:
                return Violation(
                    Invariant.STATE_MACHINE_SAFETY,
                    node,
                    f"index {i} committed with term {t}, but {known.node} committed term "
                    f"{known.entry_term} there",
                )
        return None

    def _check_completeness(self, node: NodeId, term: int, log: LogReader) -> Violation | None:
        first = log.first_index()
        last = log.last_index()
        for i, c in self._committed.items():
            if c.commit_term >= term or i < first:
                continue
            t = log.term(i) if i <= last else None
            if t != c.entry_term:
                have = "nothing" if t is None else f"term {t}"
                return Violation(
                    Invariant.LEADER_COMPLETENESS,
                    node,
                    f"leader of term {term} lacks entry ({i}, term {c.entry_term}) committed "
                    f"in term {c.commit_term} (it has {have} there)",
                )
        return None


class LivenessMonitor:
    """After every fault heals at ``healed_at``, a leader must appear and a proposal must
    commit, each within ``bound`` time units."""

    def __init__(self, healed_at: int, bound: int) -> None:
        self.healed_at = healed_at
        self.bound = bound
        self.leader_at: int | None = None
        self.commit_at: int | None = None

    @property
    def deadline(self) -> int:
        return self.healed_at + self.bound

    def leader_seen(self, now: int) -> None:
        if self.leader_at is None and now >= self.healed_at:
            self.leader_at = now

    def probe_committed(self, now: int) -> None:
        if self.commit_at is None and now >= self.healed_at:
            self.commit_at = now

    def check(self, now: int) -> Violation | None:
        """Called at or after the deadline."""
        if now < self.deadline:
            return None
        if self.leader_at is None:
            return Violation(
                Invariant.LIVENESS, "", f"no leader within {self.bound} units after heal"
            )
        if self.commit_at is None:
            return Violation(
                Invariant.LIVENESS,
                "",
                f"no proposal committed within {self.bound} units after heal",
            )
        return None
