"""The Raft algorithm (Ongaro & Ousterhout 2014; Ongaro's thesis 2014), as a deterministic
state machine.

One entry point, :meth:`Raft.step`, takes every input: peer messages and local ones (tick
timers arrive as HUP/BEAT/CHECK_QUORUM). The role decides which ``_step_*``/``_tick_*``
function handles it; a role change swaps them. Output is only accumulated (``msgs``,
``msgs_after_append``, ``read_states``, ``events``, and the log's unstable part); the
:class:`raft.core.rawnode.RawNode` hands it to the driver in a ``Ready``.

Persistence rule (Figure 2, "respond to RPCs only after updating stable storage"): messages
that promise something durable (vote grants, append acknowledgements) go to
``msgs_after_append`` and are sent only after the Ready's hard state and entries are
persisted. The leader counts its own log towards a quorum the same way: its self
acknowledgement is stepped after persistence (see RawNode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import random
from collections.abc import Callable

from raft.core.confchange import (
    apply_conf_change,
    decode_conf_change,
    encode_conf_change,
    is_leave_joint,
)
from raft.core.config import Config
from raft.core.errors import (
    CompactedError,
    ConfChangeError,
    NotLeaderError,
    ProposalDroppedError,
)
from raft.core.log import RaftLog
from raft.core.progress import Inflights, Progress, ProgressState, ProgressTracker
from raft.core.quorum import VoteResult
from raft.core.readonly import ReadOnly, ReadOnlyOption
from raft.core.storage import LogReader
from raft.core.types import (
    NONE,
    ConfChange,
    ConfState,
    CoreEvent,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Role,
    Snapshot,
)

CAMPAIGN_TRANSFER = b"transfer"
"""Context of a VOTE sent on TIMEOUT_NOW: voters skip the leader-stickiness check for it
(thesis §3.10: the old leader asked for this election)."""

APPEND_TAIL = b"tail"
"""Context of an AppendEntries whose entries reach the leader's last index. A recovering
follower (``Config.recovering``) that accepts one holds everything that leader held, hence
every entry it may have acknowledged before its loss (docs/storage.md), and may vote again."""

SNAPSHOT_TIMEOUT_ELECTIONS = 4
"""A snapshot neither acknowledged by the follower nor reported by the driver within this
many election timeouts is presumed lost, and the follower is probed again."""

MT = MessageType


class CampaignType(enum.Enum):
    PRE_ELECTION = "pre_election"
    ELECTION = "election"
    TRANSFER = "transfer"


def _payload_bytes(entries: list[Entry] | tuple[Entry, ...]) -> int:
    return sum(len(e.data) for e in entries)


def _vote_resp_type(t: MessageType) -> MessageType:
    if t == MT.VOTE:
        return MT.VOTE_RESP
    if t == MT.PRE_VOTE:
        return MT.PRE_VOTE_RESP
    raise AssertionError(f"not a vote message type: {t}")


class Raft:
    """One node's Raft state. Not thread-safe; the driver serialises calls.

    ``log_class`` lets a test harness swap in a :class:`RaftLog` subclass that breaks one
    rule on purpose (``maybe_commit``, ``find_conflict``, ``maybe_append``).
    """

    log_class: type[RaftLog] = RaftLog

    def __init__(self, cfg: Config, storage: LogReader, rng: random.Random) -> None:
        self.id: NodeId = cfg.id
        self.cfg = cfg
        self.rng = rng
        self.raft_log = self.log_class(storage, cfg.max_committed_bytes_per_ready)
        self.term = 0
        self.vote: NodeId = NONE
        self.lead: NodeId = NONE
        self.role = Role.FOLLOWER
        self.lead_transferee: NodeId = NONE
        self.pending_conf_index = 0
        """Leader: index of the latest conf change proposed; none may be proposed while
        ``pending_conf_index > applied`` (one change at a time, thesis §4.1)."""
        self.uncommitted_bytes = 0
        self.election_elapsed = 0
        """Follower/candidate: ticks since the last valid leader contact or election start.
        Leader: ticks since the last check-quorum round."""
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = cfg.election_timeout_ticks
        self.trk = ProgressTracker(max_inflight=cfg.max_inflight_msgs)
        self.read_only = ReadOnly(cfg.read_only)
        self.pending_read_index_messages: list[Message] = []
        self.bcast_pending = False
        """Leader: new entries or a new commit index still to be broadcast. Proposals and
        commit advances within one Ready are coalesced into one AppendEntries per follower
        (up to ``max_msg_bytes``), sent by :meth:`flush_broadcast` when the Ready is built."""
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.events: list[CoreEvent] = []
        self.is_learner = False
        self._tick: Callable[[], None] = self._tick_election
        self._step_role: Callable[[Message], None] = self._step_follower
        self._reported_role: tuple[Role, NodeId] | None = None
        self._reported_commit = 0
        self.recovering = cfg.recovering
        """Protocol-aware recovery: this node may have lost entries it acknowledged, so it
        neither votes nor campaigns until a leader brought it to that leader's tail."""

        hs, cs = storage.initial_state()
        if not (cs.voters or cs.learners or cs.voters_outgoing):
            cs = ConfState(voters=frozenset(cfg.voters), learners=frozenset(cfg.learners))
        self.trk.set_config(cs, self.raft_log.last_index() + 1)
        self.is_learner = self.id in self.trk.progress and self.trk.progress[self.id].is_learner
        if hs != HardState():
            self._load_state(hs)
        if cfg.applied > self.raft_log.applied:
            # Entries up to ``applied`` are in the state machine already (a snapshot may
            # cover more; never go below it).
            self.raft_log.applied_to(min(cfg.applied, self.raft_log.committed))
        self._reported_commit = self.raft_log.committed
        if self.recovering and self.trk.is_singleton() and self.id in self.trk.voters.ids():
            # The only voter: nobody holds what it lost, and waiting would stop it for good.
            self.recovering = False
            self._event("recovered", index=self.raft_log.last_index(), leader=self.id)
        self.become_follower(self.term, NONE)
        self._post_step()

    # -- public entry points -------------------------------------------------------------
    def step(self, m: Message) -> None:
        """Feed one message. Raises NotLeaderError/ProposalDroppedError for refused local
        proposals; everything else is handled or (if stale/irrelevant) ignored."""
        try:
            self._step(m)
        finally:
            self._post_step()

    def tick(self) -> None:
        """One logical clock tick."""
        try:
            self._tick()
        finally:
            self._post_step()

    def _connection_lost(self, nid: NodeId) -> None:
        """CONNECTION_LOST: the driver saw the connection from ``nid`` close (EOF or reset):
        its process most likely died, since a live leader keeps its connections open. A
        follower of ``nid`` gives up its leader and campaigns after a short random delay (1
        to e/2 ticks) instead of waiting out the whole election timeout: failure detection
        drops from ``[e, 2e)`` ticks to that delay.

        Safe by construction (elections never depend on timing for safety); for liveness it
        relies on pre-vote: if ``nid`` is in fact alive (a connection reset for another
        reason), the other followers still hear from it and refuse the pre-vote, and its
        next heartbeat makes this node a follower again at the same term. So the hint is
        ignored without ``pre_vote``, and with ``LEASE_BASED`` reads, whose safety needs
        every follower to keep its lease for the whole election timeout."""
        if (
            self.role != Role.FOLLOWER
            or nid == NONE
            or self.lead != nid
            or not self.cfg.pre_vote
            or self.cfg.read_only == ReadOnlyOption.LEASE_BASED
            or not self._promotable()
        ):
            return
        delay = 1 + self.rng.randrange(max(1, self.cfg.election_timeout_ticks // 2))
        self.lead = NONE
        self.election_elapsed = max(self.election_elapsed, self.randomized_election_timeout - delay)
        self._event("leader_lost", leader=nid, campaign_in_ticks=delay)

    # -- output helpers ------------------------------------------------------------------
    def _event(self, ev: str, **fields: object) -> None:
        self.events.append(CoreEvent(ev=ev, term=self.term, fields=tuple(fields.items())))

    def _post_step(self) -> None:
        """Report what changed during this input as events, in a fixed order."""
        for frm in self.raft_log.truncations:
            self._event("truncate", **{"from": frm})
        self.raft_log.truncations.clear()
        now = (self.role, self.lead)
        if now != self._reported_role:
            self._reported_role = now
            self._event("role", role=self.role.value, leader=self.lead)
        c = self.raft_log.committed
        if c > self._reported_commit:
            self._reported_commit = c
            self._event("commit", index=c, eterm=self.raft_log.zero_term(c))

    def _send(self, m: Message) -> None:
        """Queue ``m`` from this node. Vote requests/responses carry their own term (PRE_VOTE
        uses the future term); others get ours, except forwarded local requests
        (READ_INDEX/TRANSFER_LEADER), which stay term 0 like local messages. Messages that
        promise durability wait in ``msgs_after_append``."""
        assert m.to != NONE, m
        if m.type in (MT.VOTE, MT.PRE_VOTE, MT.VOTE_RESP, MT.PRE_VOTE_RESP):
            assert m.term != 0, f"term should be set when sending {m.type}"
            term = m.term
        elif m.type in (MT.READ_INDEX, MT.TRANSFER_LEADER):
            term = 0
        else:
            term = self.term
        # Field-by-field copy: dataclasses.replace is several times slower on this hot path.
        # A forwarded TRANSFER_LEADER names the transferee as its sender; keep it.
        sender = m.sender if m.type == MT.TRANSFER_LEADER else self.id
        m = Message(
            type=m.type,
            to=m.to,
            sender=sender,
            term=term,
            log_term=m.log_term,
            index=m.index,
            entries=m.entries,
            commit=m.commit,
            reject=m.reject,
            reject_hint=m.reject_hint,
            context=m.context,
            snapshot=m.snapshot,
        )
        if m.type in (MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP):
            self.msgs_after_append.append(m)
        else:
            assert m.to != self.id, f"{m.type} to self"
            self.msgs.append(m)

    # -- state transitions ---------------------------------------------------------------
    def _load_state(self, hs: HardState) -> None:
        # A commit below the snapshot index is merely stale (a crash between persisting a
        # snapshot and the hard state): the snapshot is committed by definition. A commit
        # past the last index means committed entries were lost: refuse to run on that.
        assert hs.commit <= self.raft_log.last_index(), (
            f"hard state commit {hs.commit} is past the last index "
            f"{self.raft_log.last_index()} (log truncated or lost?)"
        )
        self.raft_log.committed = max(self.raft_log.committed, hs.commit)
        self.term = hs.term
        self.vote = hs.vote

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _reset_randomized_election_timeout(self) -> None:
        e = self.cfg.election_timeout_ticks
        self.randomized_election_timeout = e + self.rng.randrange(e)  # in [e, 2e)

    def _reset(self, term: int) -> None:
        if self.term != term:
            assert term > self.term, (term, self.term)
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = NONE
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        for pr in self.trk.progress.values():
            learner = pr.is_learner
            pr.match = 0
            pr.next = last + 1
            pr.inflights = Inflights(self.cfg.max_inflight_msgs)
            pr.state = ProgressState.PROBE
            pr.pending_snapshot = 0
            pr.probe_sent = False
            pr.recent_active = False
            pr.sent_commit = 0
            pr.snapshot_elapsed_ticks = 0
            pr.recovering = False
            pr.is_learner = learner
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.read_only = ReadOnly(self.cfg.read_only)
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: NodeId) -> None:
        self._step_role = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        """Thesis §9.6: neither the term nor the vote changes in the pre-election."""
        assert self.role != Role.LEADER, "invalid transition [leader -> pre-candidate]"
        self._step_role = self._step_candidate
        self.trk.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        """§5.2: increment currentTerm, vote for self (persisted before it counts)."""
        assert self.role != Role.LEADER, "invalid transition [leader -> candidate]"
        self._step_role = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        """§5.2 won; §8/thesis §6.4: append an empty no-op so entries of earlier terms (and
        reads) can commit in this term."""
        assert self.role != Role.FOLLOWER, "invalid transition [follower -> leader]"
        self._step_role = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.role = Role.LEADER
        me = self.trk.progress[self.id]
        # Our own match is what is durable; later appends are acknowledged after persistence.
        me.match = self.raft_log.unstable.offset - 1
        me.next = max(me.next, me.match + 1)
        me.become_replicate()
        me.recent_active = True
        # Conservatively assume an unapplied conf change may be in the log.
        self.pending_conf_index = self.raft_log.last_index()
        self._append_entries([Entry(index=0, term=0)])
        self.uncommitted_bytes = 0

    # -- ticks ---------------------------------------------------------------------------
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._step(Message(type=MT.HUP, sender=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        limit = SNAPSHOT_TIMEOUT_ELECTIONS * self.cfg.election_timeout_ticks
        for pr in self.trk.progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_elapsed_ticks += 1
                if pr.snapshot_elapsed_ticks >= limit:
                    # Neither acknowledged nor reported: assume it was lost and retry.
                    pr.pending_snapshot = 0
                    pr.become_probe()
        if self.election_elapsed >= self.cfg.election_timeout_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                self._step(Message(type=MT.CHECK_QUORUM, sender=self.id))
            # Thesis §3.10: abort a transfer that did not finish in an election timeout.
            if self.role == Role.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE
            if self.role == Role.LEADER and not self._in_own_config():
                self.become_follower(self.term, NONE)  # removed: its handoff had its time
                return
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._step(Message(type=MT.BEAT, sender=self.id))

    def _in_own_config(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner

    def _most_up_to_date_voter(self) -> NodeId | None:
        """The voter (not this node) with the highest match index, lowest id on a tie."""
        best: tuple[int, str] | None = None
        for nid in sorted(self.trk.voters.ids()):
            if nid == self.id:
                continue
            match = self.trk.progress[nid].match
            if best is None or match > best[0]:
                best = (match, nid)
        return None if best is None else best[1]

    def _promotable(self) -> bool:
        """Whether this node may campaign: a voter, not waiting to install a snapshot."""
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None
            and not pr.is_learner
            and not self.recovering
            and not self.raft_log.has_next_or_in_progress_snapshot()
        )

    # -- elections -----------------------------------------------------------------------
    def _has_unapplied_conf_changes(self) -> bool:
        if self.raft_log.applied >= self.raft_log.committed:
            return False
        lo, hi = self.raft_log.applied + 1, self.raft_log.committed + 1
        while lo < hi:
            ents = self.raft_log.slice(lo, hi, self.cfg.max_committed_bytes_per_ready)
            if any(e.type == EntryType.CONF_CHANGE for e in ents):
                return True
            lo += len(ents)
        return False

    def _hup(self, t: CampaignType) -> None:
        if self.role == Role.LEADER:
            return
        if not self._promotable():
            return
        if self._has_unapplied_conf_changes():
            # The configuration we would campaign in may be stale; wait for it to apply.
            return
        self._campaign(t)

    def _campaign(self, t: CampaignType) -> None:
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT.VOTE, self.term
        ctx = CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for nid in self.trk.voter_ids():
            if nid == self.id:
                # Our own vote counts once it is persisted (it travels with the Ready).
                self._send(Message(type=_vote_resp_type(vote_type), to=self.id, term=term))
                continue
            self._send(
                Message(
                    type=vote_type,
                    to=nid,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=ctx,
                )
            )

    def _poll(self, nid: NodeId, granted: bool) -> VoteResult:
        self.trk.record_vote(nid, granted)
        return self.trk.tally_votes()[2]

    # -- the single dispatcher -----------------------------------------------------------
    def _step(self, m: Message) -> None:
        if m.type is MT.CONNECTION_LOST:
            self._connection_lost(m.sender)
            return
        if m.term == 0:
            pass  # local message (or a forwarded READ_INDEX/TRANSFER_LEADER)
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.lead != NONE and self.election_elapsed < self.cfg.election_timeout_ticks
                )
                # Leader stickiness: we heard from a leader within the minimum election
                # timeout, so ignore the request and keep our term. For votes this is
                # check-quorum's lease (thesis §4.2.3); for pre-votes it is part of the
                # pre-vote rule itself (thesis §9.6, condition 2).
                sticky = self.cfg.check_quorum or m.type == MT.PRE_VOTE
                if not force and sticky and in_lease:
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change our term in response to a pre-vote (thesis §9.6)
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # the future term we asked about; handled when the pre-vote is won
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.sender)  # §5.1: a newer leader
            elif m.type == MT.VOTE and not self.raft_log.is_up_to_date(m.index, m.log_term):
                # §5.1: adopt the term, but a vote we will refuse does not restart our
                # election timer (Figure 2 restarts it on granting a vote only). Otherwise a
                # candidate that can never win (stale log, no pre-vote) keeps resetting the
                # timers of the nodes that could, and no leader is ever elected.
                elapsed = self.election_elapsed
                self.become_follower(m.term, NONE)
                self.election_elapsed = elapsed
            else:
                self.become_follower(m.term, NONE)  # §5.1: step down on a higher term
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (
                MT.HEARTBEAT,
                MT.APP,
            ):
                # A stale leader that was partitioned away cannot learn our term from
                # vote requests (pre-vote/stickiness suppress them), so tell it directly.
                self._send(Message(type=MT.APP_RESP, to=m.sender))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(type=MT.PRE_VOTE_RESP, to=m.sender, term=self.term, reject=True))
                self._event("vote", candidate=m.sender, granted=False, pre=True)
            return  # §5.1: ignore stale-term requests otherwise

        if m.type == MT.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.cfg.pre_vote else CampaignType.ELECTION)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _handle_vote_request(self, m: Message) -> None:
        """§5.2 one vote per term (first come first served; a repeat request from the same
        candidate is granted again), §5.4.1 only for an up-to-date log. A pre-vote for a
        future term is granted without recording a vote (thesis §9.6)."""
        pre = m.type == MT.PRE_VOTE
        # A recovering node may have lost entries it acknowledged: its up-to-date check
        # could elect a leader missing committed entries (docs/storage.md), so it abstains.
        can_vote = not self.recovering and (
            self.vote == m.sender
            or (self.vote == NONE and self.lead == NONE)
            or (pre and m.term > self.term)
        )
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self._send(Message(type=_vote_resp_type(m.type), to=m.sender, term=m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.sender
            self._event("vote", candidate=m.sender, granted=True, pre=pre)
        elif self.term == 0:
            # A recovering node that lost even its term (a marked wiped directory) has no
            # term to reject with; the candidate's timeout settles it.
            self._event("vote", candidate=m.sender, granted=False, pre=pre)
        else:
            self._send(
                Message(type=_vote_resp_type(m.type), to=m.sender, term=self.term, reject=True)
            )
            self._event("vote", candidate=m.sender, granted=False, pre=pre)

    # -- follower ------------------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROPOSE:
            raise NotLeaderError(self.lead)
        if t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead == NONE:
                raise NotLeaderError(NONE)
            self._send(dataclasses.replace(m, to=self.lead))
        elif t == MT.TIMEOUT_NOW:
            # Thesis §3.10: the leader asks us to start an election at once (no pre-vote).
            self._hup(CampaignType.TRANSFER)
        elif t == MT.READ_INDEX:
            if self.lead == NONE:
                if m.sender in (NONE, self.id):
                    raise NotLeaderError(NONE)
                return
            self._send(dataclasses.replace(m, to=self.lead, sender=self.id))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, context=m.context))

    # -- candidate (and pre-candidate) ---------------------------------------------------
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if t in (MT.PROPOSE, MT.READ_INDEX) and m.sender in (NONE, self.id):
            raise NotLeaderError(NONE)
        if t == MT.APP:
            self.become_follower(m.term, m.sender)  # §5.2: a leader of our term exists
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.become_follower(m.term, m.sender)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.become_follower(m.term, m.sender)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self._poll(m.sender, not m.reject)
            if res == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif res == VoteResult.LOST:
                # A pre-vote rejection with a higher term was handled by _step already.
                self.become_follower(self.term, NONE)
        elif t == MT.TRANSFER_LEADER:
            raise NotLeaderError(NONE)

    # -- follower-side handlers ----------------------------------------------------------
    def _handle_append_entries(self, m: Message) -> None:
        """Figure 2 AppendEntries receiver implementation."""
        if m.index < self.raft_log.committed:
            # Already committed here, so it matches (Log Matching); tell the leader.
            self._send(Message(type=MT.APP_RESP, to=m.sender, index=self.raft_log.committed))
            return
        last_new = self.raft_log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(type=MT.APP_RESP, to=m.sender, index=last_new))
            if self.recovering and m.context == APPEND_TAIL:
                # Our log now matches this leader's whole log (term >= ours): every entry
                # we may have acknowledged before the loss is back (docs/storage.md).
                self.recovering = False
                self._event("recovered", index=last_new, leader=m.sender)
            return
        # Step 2 failed: reject with a hint so the leader can skip a whole term at a time.
        hint_index = min(m.index, self.raft_log.last_index())
        hint_index, hint_term = self.raft_log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            Message(
                type=MT.APP_RESP,
                to=m.sender,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader sends min(its commit, our match), which our log is known to hold.
        last = self.raft_log.last_index()
        self.raft_log.commit_to(min(m.commit, last))
        # ``m.commit`` is at most what we acknowledged: holding less means we lost entries
        # (torn tail, repair, wiped directory). Say so, with our last index, so the leader
        # stops counting on its old match and probes us; a recovering node also asks for an
        # append that reaches the leader's tail (issue 10 §2).
        lost = self.recovering or last < m.commit
        self._send(
            Message(type=MT.HEARTBEAT_RESP, to=m.sender, context=m.context, index=last, reject=lost)
        )

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None, "SNAP without a snapshot"
        if self._restore(m.snapshot):
            self._send(Message(type=MT.APP_RESP, to=m.sender, index=self.raft_log.last_index()))
        else:
            self._send(Message(type=MT.APP_RESP, to=m.sender, index=self.raft_log.committed))

    def _restore(self, s: Snapshot) -> bool:
        """Install a leader's snapshot (thesis §5.3 InstallSnapshot). Returns False when it
        is not needed (we have committed that far, or hold its last entry already)."""
        if s.meta.index <= self.raft_log.committed:
            return False
        if self.role != Role.FOLLOWER:
            # Only followers receive snapshots from a leader of their term; be defensive.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = s.meta.conf_state
        # Unlike etcd we do not refuse a snapshot whose config lacks us: node ids may be
        # reused, so a node re-added after the snapshot must still install it and then
        # learn its re-addition from the log (refusing would make the leader resend the
        # snapshot forever). Nothing here assumes we are a member.
        if self.raft_log.match_term(s.meta.index, s.meta.term):
            # We already have the snapshot's last entry: just fast-forward commit.
            self.raft_log.commit_to(s.meta.index)
            return False
        self.raft_log.restore(s)
        self.trk = ProgressTracker(max_inflight=self.cfg.max_inflight_msgs)
        self._switch_to_config(cs)
        return True

    # -- leader --------------------------------------------------------------------------
    def _append_entries(self, entries: list[Entry]) -> None:
        """Leader: stamp and append ``entries`` (Leader Append-Only: never overwrite)."""
        li = self.raft_log.last_index()
        stamped = [
            Entry(index=li + 1 + k, term=self.term, data=e.data, type=e.type)
            for k, e in enumerate(entries)
        ]
        size = _payload_bytes(stamped)
        limit = self.cfg.max_uncommitted_bytes
        if limit > 0 and self.uncommitted_bytes > 0 and self.uncommitted_bytes + size > limit:
            raise ProposalDroppedError(
                f"uncommitted entries hold {self.uncommitted_bytes} bytes "
                f"(limit {limit}); retry later"
            )
        self.uncommitted_bytes += size
        new_last = self.raft_log.append(stamped)
        assert new_last == li + len(stamped), (new_last, li, len(stamped))

    def reduce_uncommitted_bytes(self, n: int) -> None:
        self.uncommitted_bytes = max(0, self.uncommitted_bytes - n)

    def _maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.zero_term(self.raft_log.committed) == self.term

    def _bcast_append(self) -> None:
        for nid in sorted(self.trk.progress):
            if nid != self.id:
                self._send_append(nid)

    def flush_broadcast(self) -> None:
        """Send what :attr:`bcast_pending` announced: to every follower the entries it lacks
        and, if it has not been sent the current commit index yet, an (empty) append
        carrying it."""
        if not self.bcast_pending:
            return
        self.bcast_pending = False
        if self.role != Role.LEADER:
            return
        committed = self.raft_log.committed
        for nid in sorted(self.trk.progress):
            if nid == self.id:
                continue
            pr = self.trk.progress[nid]
            if not self._maybe_send_append(nid, send_if_empty=pr.sent_commit < committed):
                continue
            # More than max_msg_bytes pending: pipeline further appends while the inflight
            # window allows (replicate state; a probe sends one and pauses).
            for _ in range(self.cfg.max_inflight_msgs):
                if not self._maybe_send_append(nid, send_if_empty=False):
                    break

    def _bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_ctx()
        for nid in sorted(self.trk.progress):
            if nid != self.id:
                pr = self.trk.progress[nid]
                commit = min(pr.match, self.raft_log.committed)
                self._send(Message(type=MT.HEARTBEAT, to=nid, commit=commit, context=ctx))

    def _send_append(self, to: NodeId) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: NodeId, send_if_empty: bool) -> bool:
        """§5.3: send ``to`` the entries from its ``next``, preceded by (prevLogIndex,
        prevLogTerm) = (next - 1, its term). Falls back to a snapshot when that part of the
        log is compacted. Returns whether a message was sent."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.raft_log.term(prev_index)
            ents: list[Entry] = []
            if pr.state != ProgressState.REPLICATE or not pr.inflights.full():
                ents = self.raft_log.entries(pr.next, self.cfg.max_msg_bytes)
        except CompactedError:
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        if ents:
            assert ents[0].index == prev_index + 1, (ents[0].index, prev_index)
        tail = pr.recovering and prev_index + len(ents) == self.raft_log.last_index()
        self._send(
            Message(
                type=MT.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=self.raft_log.committed,
                context=APPEND_TAIL if tail else b"",
            )
        )
        pr.sent_entries(prev_index + len(ents), len(ents))
        pr.sent_commit = max(pr.sent_commit, self.raft_log.committed)
        return True

    def _maybe_send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down; do not ship a snapshot into the void
        snap = self.raft_log.snapshot()
        assert not snap.is_empty(), "need a non-empty snapshot for a compacted log"
        pr.become_snapshot(snap.meta.index)
        self._send(Message(type=MT.SNAP, to=to, snapshot=snap))
        return True

    def _send_timeout_now(self, to: NodeId) -> None:
        self._send(Message(type=MT.TIMEOUT_NOW, to=to))
        if self.role == Role.LEADER and not self._in_own_config():
            # A removed leader's handoff is done: the transferee campaigns now; leading on
            # (lease reads, heartbeats) past that point could only be stale.
            self.become_follower(self.term, NONE)

    def _response_to_read_index(self, req: Message, read_index: int) -> None:
        if req.sender in (NONE, self.id):
            self.read_states.append(ReadState(index=read_index, context=req.context))
        else:
            self._send(
                Message(
                    type=MT.READ_INDEX_RESP, to=req.sender, index=read_index, context=req.context
                )
            )

    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.LEASE_BASED and self._lease_is_fresh():
            self._response_to_read_index(m, self.raft_log.committed)
            return
        # Thesis §6.4 step 2-3: confirm leadership with a heartbeat round.
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _lease_is_fresh(self) -> bool:
        """Thesis §6.4.1: a quorum answered messages sent in this check-quorum round, less
        than half an election timeout ago, so none of them votes for another leader before
        its own election timeout runs out (given bounded clock drift and message delay).
        Not "check-quorum has not deposed us": a leader keeps its role up to two timeouts
        after its last contact (the check looks back a whole round) while followers may
        elect another after one; a lease that long serves stale reads. Outside the fresh
        window a lease read falls back to a heartbeat round."""
        return (
            self.trk.quorum_active()
            and self.election_elapsed < self.cfg.election_timeout_ticks // 2
        )

    def _release_pending_read_index_messages(self) -> None:
        if not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            if not self.trk.quorum_active():
                self.become_follower(self.term, NONE)  # thesis §6.2: we lost the quorum
                return
            for nid, peer in self.trk.progress.items():
                if nid != self.id:
                    peer.recent_active = False
            return
        if t == MT.PROPOSE:
            self._leader_propose(m)
            return
        if t == MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.trk.progress.get(m.sender)
        if pr is None:
            return  # not (or no longer) a member
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()  # let a stuck window make progress
            pr.recovering = m.reject
            if m.reject and m.index < pr.match:
                self._follower_lost_entries(pr, m.sender, m.index)
            if pr.match < self.raft_log.last_index() or m.reject:
                self._send_append(m.sender)
            if not m.context:
                return
            acks = self.read_only.recv_ack(m.sender, m.context)
            if acks is None or self.trk.voters.vote_result(acks) != VoteResult.WON:
                return
            for rs in self.read_only.advance(m.context):
                self._response_to_read_index(rs.req, rs.index)
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0  # failed: probe from match again
            pr.become_probe()
            # Wait for a heartbeat response (or the follower's ack) before the next append.
            pr.probe_sent = True
        elif t == MT.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            elif pr.state == ProgressState.SNAPSHOT:
                # The snapshot may not have made it either: retry once reachable again.
                pr.pending_snapshot = 0
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._leader_transfer(m.sender, pr)

    def _leader_propose(self, m: Message) -> None:
        assert m.entries, "PROPOSE without entries"
        if self.id not in self.trk.progress:
            raise ProposalDroppedError("this leader was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        pending_conf = self.pending_conf_index
        for k, e in enumerate(m.entries):
            if e.type != EntryType.CONF_CHANGE:
                continue
            cc = decode_conf_change(e.data)
            already_joint = self.trk.voters.is_joint()
            leave = is_leave_joint(cc)
            if pending_conf > self.raft_log.applied:
                raise ProposalDroppedError(
                    f"a configuration change at {pending_conf} is not applied yet"
                )
            if already_joint and not leave:
                raise ProposalDroppedError("must leave the joint configuration first")
            if not already_joint and leave:
                raise ProposalDroppedError("not in a joint configuration; nothing to leave")
            pending_conf = self.raft_log.last_index() + k + 1
        self._append_entries(list(m.entries))
        self.pending_conf_index = pending_conf
        self.bcast_pending = True  # sent with the next Ready, batched with other proposals

    def _leader_read_index(self, m: Message) -> None:
        if self.trk.is_singleton():
            self._response_to_read_index(m, self.raft_log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Thesis §6.4 step 1: our commit index is only known current once an entry of
            # this term is committed (the no-op); hold reads until then.
            self.pending_read_index_messages.append(m)
            return
        self._send_read_index_response(m)

    def _follower_lost_entries(self, pr: Progress, nid: NodeId, hint: int) -> None:
        """The follower holds less than ``pr.match`` (it lost a synced tail, was repaired or
        wiped): forget what it acknowledged, so it no longer counts toward a commit quorum
        for those entries, and probe it from ``hint`` (issue 10 §2). ``match`` never
        decreasing would leave it behind for as long as this leader lives."""
        self._event("follower_lost", peer=nid, match=pr.match, hint=hint)
        pr.match = 0
        pr.become_probe()
        pr.next = max(1, min(hint, self.raft_log.last_index()) + 1)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject and m.index <= pr.match:
            # A correct follower never rejects a prevLogIndex it acknowledged, unless it
            # lost entries (or the rejection is a stale duplicate; probing again is cheap).
            self._follower_lost_entries(pr, m.sender, m.reject_hint)
            self._send_append(m.sender)
            return
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Fast backtracking: skip every entry of ours whose term is above the
                # follower's term at the hint, they cannot match.
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.sender)
            return
        if m.index > self.raft_log.last_index():
            return  # acknowledges entries we never sent: not from a correct peer; ignore
        if not pr.maybe_update(m.index) and not (
            pr.match == m.index and pr.state == ProgressState.PROBE
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # The follower caught up past the snapshot (or our log): replicate from here.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
        # The window may have opened (or the commit index moved): the next Ready sends this
        # follower what it lacks and everyone the new commit index, coalesced per Ready.
        self.bcast_pending = True
        if m.sender == self.lead_transferee and pr.match == self.raft_log.last_index():
            self._send_timeout_now(m.sender)

    def _leader_transfer(self, transferee: NodeId, pr: Progress) -> None:
        """Thesis §3.10: stop accepting proposals, bring the transferee up to date, then
        tell it to campaign at once (TIMEOUT_NOW)."""
        if pr.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    # -- membership ----------------------------------------------------------------------
    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed ConfChange entry's change (the driver calls this when applying
        the entry). Raises ConfChangeError if it does not apply to the current config.
        Reports its events like :meth:`step`: a new quorum can commit at once, and the
        commit must be reported before the entries it releases are applied (the lab's
        ``applied_within_commit`` invariant saw a leader apply an index it had not yet
        reported committed)."""
        try:
            new_cs = apply_conf_change(self.trk.conf_state(), cc)
            return self._switch_to_config(new_cs)
        finally:
            self._post_step()

    def _switch_to_config(self, cs: ConfState) -> ConfState:
        self.trk.set_config(cs, self.raft_log.last_index() + 1)
        pr = self.trk.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.role == Role.LEADER:
            # Thesis §4.2.2: a leader removed (or demoted) steps down once the change applies.
            # The others apply it only when they learn it committed, which this leader may not
            # have told them yet: still in the joint configuration, they may need this node's
            # vote while it holds the longest log and no longer campaigns (simulator, 3 nodes,
            # seed 1443: no leader ever). So it first hands leadership to the most up-to-date
            # voter (thesis §3.10), which commits the change in its own term; it steps down
            # once it sent TIMEOUT_NOW, or after an election timeout (_tick_heartbeat).
            target = self._most_up_to_date_voter()
            if target is None:
                self.become_follower(self.term, NONE)
                return cs
            self.lead_transferee = NONE
            self._leader_transfer(target, self.trk.progress[target])
            return cs
        if self.role != Role.LEADER or not cs.voters:
            return cs
        # The quorum changed: something may commit now, and new members need entries.
        self._maybe_commit()
        self.bcast_pending = True
        if self.lead_transferee != NONE and self.lead_transferee not in self.trk.voters.ids():
            self.lead_transferee = NONE
        return cs

    def applied_to(self, index: int, applied_bytes: int) -> None:
        """The driver applied entries up to ``index`` (RawNode.advance)."""
        old = self.raft_log.applied
        new = max(index, old)
        self.raft_log.applied_to(new)
        self.reduce_uncommitted_bytes(applied_bytes)
        if (
            self.trk.auto_leave
            and new >= self.pending_conf_index
            and self.role == Role.LEADER
            and self.trk.voters.is_joint()
        ):
            # Thesis §4.3: once C_old,new is applied, propose C_new (leave joint).
            data = encode_conf_change(ConfChange())
            # Refused only while a transfer is in progress; the next applied_to retries.
            with contextlib.suppress(ProposalDroppedError, ConfChangeError):
                self._step(
                    Message(
                        type=MT.PROPOSE,
                        sender=self.id,
                        entries=(Entry(index=0, term=0, data=data, type=EntryType.CONF_CHANGE),),
                    )
                )

    def is_conf_change_pending(self) -> bool:
        return self.pending_conf_index > self.raft_log.applied
