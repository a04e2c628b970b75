"""The driver-facing API of the core: feed inputs, collect :class:`Ready`, call ``advance``.

Protocol (single-threaded): after any input, ``if node.has_ready(): rd = node.ready()``; do
what ``Ready``'s docstring says (send, persist, send the persisted-only messages, apply); then
``node.advance(rd)``. Inputs may be fed between ``ready`` and ``advance``; a second
``ready`` before ``advance`` returns only what is new.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from raft.core.confchange import encode_conf_change
from raft.core.config import Config
from raft.core.errors import ProposalDroppedError
from raft.core.progress import ProgressState
from raft.core.raft import Raft
from raft.core.storage import LogReader
from raft.core.types import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
    SoftState,
)

MT = MessageType


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """A leader's view of one peer, for display."""

    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight: int


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's Raft state. ``progress`` is filled on the leader only."""

    id: NodeId
    term: int
    vote: NodeId
    commit: int
    applied: int
    leader: NodeId
    role: Role
    last_index: int
    progress: tuple[tuple[NodeId, ProgressStatus], ...] = ()
    conf_state: ConfState = field(default_factory=ConfState)
    """Current membership (additive field)."""
    lead_transferee: NodeId = NONE
    """Leadership transfer target in progress, if any (additive field)."""
    recovering: bool = False
    """Protocol-aware recovery in progress: no vote until caught up (``Config.recovering``)."""


class RawNode:
    """A Raft node without I/O. See the module docstring for the protocol.

    ``raft_class`` is the algorithm class instantiated; a test harness may subclass RawNode
    with a :class:`Raft` subclass (e.g. one whose ``log_class`` breaks a rule on purpose).
    """

    raft_class: type[Raft] = Raft

    def __init__(self, config: Config, storage: LogReader, rng: random.Random) -> None:
        self.raft = self.raft_class(config, storage, rng)
        self._prev_soft = SoftState(leader=self.raft.lead, role=self.raft.role)
        self._prev_hard = self.raft.hard_state()
        self._after_persist: deque[tuple[Ready, list[Message]]] = deque()
        """Per Ready handed out and not yet advanced: the node's own messages that may be
        stepped only once that Ready's writes are durable (its vote, the leader's append
        acknowledgement), in the order the Readies were handed out."""

    # -- inputs --------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the logical clock by one tick (elections, heartbeats, check-quorum)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with a pre-vote first when enabled)."""
        self.raft.step(Message(type=MT.HUP, sender=self.raft.id))

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` as a new entry; returns its (index, term). It is committed once
        ``committed_entries`` carries it (the term tells whether it survived). Raises
        NotLeaderError(leader_hint) on a non-leader, ProposalDroppedError during a transfer
        or over ``max_uncommitted_bytes``."""
        if not isinstance(data, bytes):
            raise TypeError(f"proposal data must be bytes, got {type(data).__name__}")
        return self._propose(Entry(index=0, term=0, data=data))

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        """Propose a membership change; apply it with :meth:`apply_conf_change` when its
        entry is committed. Raises ProposalDroppedError while another change is pending
        (one at a time) or when it does not fit the joint state."""
        e = Entry(index=0, term=0, data=encode_conf_change(cc), type=EntryType.CONF_CHANGE)
        return self._propose(e)

    def _propose(self, e: Entry) -> tuple[int, int]:
        self.raft.step(Message(type=MT.PROPOSE, sender=self.raft.id, entries=(e,)))
        if self.raft.role != Role.LEADER:  # pragma: no cover - step raises first
            raise ProposalDroppedError("leadership lost while proposing")
        return self.raft.raft_log.last_index(), self.raft.term

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read identified by ``context``; answered later as a
        ``ReadState`` in ``Ready.read_states`` (thesis §6.4). Raises NotLeaderError when no
        leader is known."""
        self.raft.step(Message(type=MT.READ_INDEX, context=context))

    def transfer_leader(self, transferee: NodeId) -> None:
        """Ask the leader to hand leadership to ``transferee`` (thesis §3.10); a follower
        forwards the request to its leader. Raises NotLeaderError when no leader is known.
        Progress shows in ``status().lead_transferee``; the transfer is abandoned after an
        election timeout."""
        self.raft.step(Message(type=MT.TRANSFER_LEADER, sender=transferee))

    def step(self, msg: Message) -> None:
        """Feed a message from a peer (or a local one)."""
        self.raft.step(msg)

    def report_unreachable(self, nid: NodeId) -> None:
        """The driver failed to send to ``nid``; the leader stops pipelining to it."""
        self.raft.step(Message(type=MT.UNREACHABLE, sender=nid))

    def report_connection_lost(self, nid: NodeId) -> None:
        """The driver saw ``nid`` close its connection to us (EOF or reset), a sign its
        process died. If ``nid`` is our leader we campaign after a short random delay
        instead of a whole election timeout (``Raft._connection_lost`` says when the hint
        is ignored)."""
        self.raft.step(Message(type=MT.CONNECTION_LOST, sender=nid))

    def report_snapshot(self, nid: NodeId, ok: bool) -> None:
        """The snapshot sent to ``nid`` was delivered (``ok``) or failed. Drivers should
        report every SNAP message they were given: until then (or until the follower
        acknowledges it) the leader sends that follower nothing else. As a fallback, a
        snapshot neither acknowledged nor reported within four election timeouts, or a
        ``report_unreachable`` meanwhile, counts as lost."""
        self.raft.step(Message(type=MT.SNAP_STATUS, sender=nid, reject=not ok))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed CONF_CHANGE entry's change; returns the new membership, which
        the driver records with its next snapshot."""
        return self.raft.apply_conf_change(cc)

    # -- output --------------------------------------------------------------------------
    def _soft(self) -> SoftState:
        return SoftState(leader=self.raft.lead, role=self.raft.role)

    def has_ready(self) -> bool:
        r = self.raft
        r.flush_broadcast()  # coalesced appends become messages now (see Raft.bcast_pending)
        hs = r.hard_state()
        return bool(
            self._soft() != self._prev_soft
            or hs != self._prev_hard
            or r.raft_log.unstable.next_snapshot() is not None
            or r.msgs
            or r.msgs_after_append
            or r.raft_log.has_next_unstable_ents()
            or r.raft_log.has_next_committed_ents()
            or r.read_states
            or r.events
        )

    def ready(self) -> Ready:
        """Collect the work accumulated since the last ``ready``; see :class:`Ready`."""
        r = self.raft
        r.flush_broadcast()
        log = r.raft_log
        soft = self._soft()
        hs = r.hard_state()
        entries = tuple(log.next_unstable_ents())
        snap = log.unstable.next_snapshot()
        committed = tuple(log.next_committed_ents())
        persisted: list[Message] = []
        steps: list[Message] = []
        for m in r.msgs_after_append:
            if m.to == r.id:
                steps.append(m)
            else:
                persisted.append(m)
        if entries and r.role == Role.LEADER:
            # The leader counts its own log towards a quorum once it is durable, like any
            # follower's: with asynchronous writes its match moves only on this ack.
            steps.append(
                Message(
                    type=MT.APP_RESP,
                    to=r.id,
                    sender=r.id,
                    term=r.term,
                    index=entries[-1].index,
                )
            )
        hs_changed = hs != self._prev_hard
        must_sync = bool(
            entries
            or snap is not None
            or (hs_changed and (hs.term != self._prev_hard.term or hs.vote != self._prev_hard.vote))
            # A configuration change's commit must survive a crash (§4.2 / §4.3): a node
            # that restarted with a commit index below it went back to the previous
            # configuration, which may need a member already powered off (a removed
            # leader); if every member of the new configuration did, no election could
            # succeed (simulator, 3 nodes, seed 188: no leader after heal).
            or any(e.type is EntryType.CONF_CHANGE for e in committed)
        )
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hs if hs_changed else None,
            entries=entries,
            snapshot=snap,
            messages=tuple(r.msgs),
            persisted_messages=tuple(persisted),
            committed_entries=committed,
            read_states=tuple(r.read_states),
            events=tuple(r.events),
            must_sync=must_sync,
        )
        # Accept: all of it is the driver's now.
        r.msgs = []
        r.msgs_after_append = []
        r.read_states = []
        r.events = []
        log.unstable.accept_in_progress()
        if committed:
            log.accept_applying(committed[-1].index)
        self._prev_soft = soft
        self._prev_hard = hs
        self._after_persist.append((rd, steps))
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver did everything ``rd`` asked: entries/snapshot/hard state are durable,
        committed entries applied. Steps the node's own after-persistence messages (its vote
        and, as leader, its append acknowledgement), those of earlier Readies not advanced
        yet included."""
        self._stable(rd)
        self.advance_apply(rd)
        self._step_after_persist(rd)

    def advance_apply(self, rd: Ready) -> None:
        """Asynchronous writes, half one: ``rd``'s committed entries were applied (its writes
        may still be in flight). Call :meth:`advance_append` once they are durable."""
        if rd.committed_entries:
            applied_bytes = sum(len(e.data) for e in rd.committed_entries)
            self.raft.applied_to(rd.committed_entries[-1].index, applied_bytes)

    def advance_append(self, rd: Ready) -> None:
        """Asynchronous writes, half two: ``rd``'s snapshot, entries and hard state (and those
        of every Ready handed out before it) are durable. Marks them stable and steps the
        node's own after-persistence messages, so a leader's own log counts towards the
        commit quorum only from here, like a follower's acknowledged one. Readies must be
        reported durable in the order they were handed out (a FIFO writer does that)."""
        self._stable(rd)
        self._step_after_persist(rd)

    def _stable(self, rd: Ready) -> None:
        r = self.raft
        if rd.snapshot is not None:
            r.raft_log.stable_snap_to(rd.snapshot.meta.index)
            r.raft_log.applied_snap(rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            r.raft_log.stable_to(last.index, last.term)

    def _step_after_persist(self, rd: Ready) -> None:
        steps: list[Message] = []
        while self._after_persist:
            done, more = self._after_persist.popleft()
            steps.extend(more)
            if done is rd:
                break
        for m in steps:
            self.raft.step(m)

    def status(self) -> Status:
        r = self.raft
        progress: tuple[tuple[NodeId, ProgressStatus], ...] = ()
        if r.role == Role.LEADER:
            progress = tuple(
                (
                    nid,
                    ProgressStatus(
                        match=pr.match,
                        next=pr.next,
                        state=pr.state,
                        is_learner=pr.is_learner,
                        recent_active=pr.recent_active,
                        inflight=len(pr.inflights),
                    ),
                )
                for nid, pr in sorted(r.trk.progress.items())
            )
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.raft_log.committed,
            applied=r.raft_log.applied,
            leader=r.lead,
            role=r.role,
            last_index=r.raft_log.last_index(),
            progress=progress,
            conf_state=r.trk.conf_state(),
            lead_transferee=r.lead_transferee,
            recovering=r.recovering,
        )


__all__ = ["ProgressStatus", "RawNode", "Status"]
