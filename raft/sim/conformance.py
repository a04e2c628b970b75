"""Conformance checks: rules of the protocol itself, checked on every step of every node.

The five invariants (``invariants.py``) judge outcomes: two leaders, a lost commit. Many bugs
break the protocol long before an outcome goes wrong, or in ways a run rarely turns into
one. These checks look at one node's state just before and just after it handles a
message (the driver calls :meth:`Conformance.before_step` and :meth:`Conformance.after_step`
around ``RawNode.step``) and at what it acknowledges; each costs a few attribute reads:

- **ack-kept**: within a term a follower never loses an entry it acknowledged (its
  AppendEntries success response promised the leader it holds it durably; Figure 2
  step 3 only deletes *conflicting* entries, and the leader of that term sends none).
- **pre-vote-term**: a pre-candidate's term never changes (thesis §9.6: the pre-election
  asks about term + 1 without moving to it); becoming one does not change it either.
- **higher-term**: after a message with a higher term that the node must obey (any but
  vote requests it may ignore under leader stickiness and granted pre-vote answers, which
  are about a future term), the node's term is at least that term (§5.1).
- **stale-append**: no entry is appended (or truncated) from a message whose term is below
  the node's (§5.1: stale-term requests are rejected).

Snapshots of the state are taken from ``RawNode.raft`` directly; nothing here changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from raft.core import Message, MessageType, NodeId, RawNode, Role
from raft.core.errors import CompactedError, UnavailableError
from raft.sim.invariants import Invariant, Violation

MT = MessageType

_MUST_ADOPT = frozenset(
    {
        MT.APP,
        MT.APP_RESP,
        MT.HEARTBEAT,
        MT.HEARTBEAT_RESP,
        MT.SNAP,
        MT.VOTE_RESP,
        MT.TIMEOUT_NOW,
    }
)
"""Message types whose higher term a node must adopt whatever its configuration."""


@dataclass(frozen=True, slots=True)
class StepToken:
    """A node's state just before a step."""

    term: int
    role: Role
    last_index: int
    last_term: int


@dataclass(frozen=True, slots=True)
class _Ack:
    term: int
    index: int
    entry_term: int


class Conformance:
    """Per-node protocol checks; one instance per simulated run."""

    def __init__(self, check_quorum: bool) -> None:
        self._check_quorum = check_quorum
        self._acks: dict[NodeId, _Ack] = {}
        self.checks = 0

    @staticmethod
    def before_step(raw: RawNode) -> StepToken:
        r = raw.raft
        log = r.raft_log
        return StepToken(r.term, r.role, log.last_index(), log.last_term())

    def after_step(
        self, node: NodeId, raw: RawNode, m: Message, before: StepToken
    ) -> Violation | None:
        """``node`` just handled ``m`` (its state was ``before``)."""
        self.checks += 1
        r = raw.raft
        term = r.term
        if r.role is Role.PRE_CANDIDATE and term != before.term:
            return Violation(
                Invariant.CONFORMANCE,
                node,
                f"pre-vote-term: term moved {before.term} -> {term} while a pre-candidate "
                f"(on {m.type.value} from {m.sender or 'self'})",
            )
        if m.term > before.term and term < m.term and self._must_adopt(m):
            return Violation(
                Invariant.CONFORMANCE,
                node,
                f"higher-term: got {m.type.value} of term {m.term} from {m.sender} but stays "
                f"in term {term}",
            )
        if 0 < m.term < before.term:
            log = r.raft_log
            now = (log.last_index(), log.last_term())
            if now != (before.last_index, before.last_term):
                return Violation(
                    Invariant.CONFORMANCE,
                    node,
                    f"stale-append: {m.type.value} of term {m.term} from {m.sender} changed "
                    f"the log of a node in term {before.term}: last entry "
                    f"({before.last_index}, t{before.last_term}) -> ({now[0]}, t{now[1]})",
                )
        return None

    def _must_adopt(self, m: Message) -> bool:
        if m.type in _MUST_ADOPT:
            return True
        if m.type is MT.PRE_VOTE_RESP:
            return m.reject  # a grant carries the future term asked about
        if m.type is MT.VOTE:
            return not self._check_quorum  # may be ignored under leader stickiness
        return False

    def on_sent(self, node: NodeId, raw: RawNode, m: Message) -> None:
        """``node`` sent ``m`` after persisting (an acknowledgement it must keep)."""
        if m.type is not MT.APP_RESP or m.reject or m.index <= 0:
            return
        log = raw.raft.raft_log
        try:
            entry_term = log.term(m.index)
        except (CompactedError, UnavailableError):
            return
        prev = self._acks.get(node)
        if prev is None or prev.term != m.term or m.index >= prev.index:
            self._acks[node] = _Ack(m.term, m.index, entry_term)

    def check_acks(self, node: NodeId, raw: RawNode) -> Violation | None:
        """After ``node``'s step: in the term it acknowledged in, the entry is still there."""
        ack = self._acks.get(node)
        if ack is None:
            return None
        r = raw.raft
        if r.term != ack.term:
            del self._acks[node]
            return None
        try:
            have: int | None = r.raft_log.term(ack.index)
        except CompactedError:
            return None  # covered by a snapshot: committed, so kept
        except UnavailableError:
            have = None
        if have != ack.entry_term:
            shown = "nothing" if have is None else f"term {have}"
            return Violation(
                Invariant.CONFORMANCE,
                node,
                f"ack-kept: acknowledged entry ({ack.index}, t{ack.entry_term}) in term "
                f"{ack.term}, now holds {shown} there in the same term",
            )
        return None

    def forget(self, node: NodeId) -> None:
        """``node`` restarted: its acknowledgements are judged by the durability checks."""
        self._acks.pop(node, None)
