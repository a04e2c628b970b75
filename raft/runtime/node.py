"""The node driver: one asyncio task that owns the Raft core, the storage and the state
machine, and turns their ``Ready`` output into disk writes, network sends and applies.

Guarantees (docs/runtime.md has the long form):

- Order per Ready (raft/core/types.py ``Ready``): send ``messages``; persist snapshot, entries
  and hard state with one sync when ``must_sync``; only then send ``persisted_messages``;
  apply committed entries; serve read states; ``advance``.
- Only the driver task touches the core and the storage. Network and client tasks put work in
  queues and wake the driver; everything queued since the last Ready goes into the next one, so
  many proposals share one fsync.
- A write is acknowledged only after its entry was applied (hence durable on a quorum).
- When the storage fails, the node stops taking part in Raft at once (it neither
  acknowledges nor campaigns, so the others elect a leader), answers writes ``not_leader``,
  and logs ``storage_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from raft.core import Config, RawNode, ReadOnlyOption
from raft.core.confchange import decode_conf_change
from raft.core.errors import NotLeaderError, ProposalDroppedError, RaftError
from raft.core.storage import LogStorage
from raft.core.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    CoreEvent,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from raft.machines import SnapshotView, load_machine, read_ops_of
from raft.machines.codec import CommandError
from raft.runtime import backend, metrics
from raft.runtime.config import ClusterConfig, FsyncMode, ReadMode
from raft.runtime.eventlog import EventLog, MessageIds, digest
from raft.runtime.members import (
    Book,
    MemberAddrs,
    MembersError,
    book_from_wire,
    book_of,
    book_to_wire,
    check_addresses_free,
    decode_context,
    encode_context,
)
from raft.runtime.protocol import (
    OP_MEMBER_ADD_LEARNER,
    OP_MEMBER_PROMOTE,
    OP_MEMBER_REMOVE,
)
from raft.runtime.sessions import Applier, decode_batch_results, encode_batch, encode_entry
from raft.runtime.snapstream import SPOOL_DIR
from raft.runtime.transport import PeerTransport
from raft.runtime.writer import DurableWriter
from raft.storage.disk import SyncTicket

log = logging.getLogger("raft.runtime")

HEARTBEAT_LOG_EVERY = 10
"""Record one in N heartbeat send/recv events (docs/formats.md allows sampling)."""
INBOX_MSGS_MAX = 65536
PROPOSALS_QUEUED_MAX = 65536
EVENTLOG_FLUSH_S = 0.2
SNAPSHOT_KEEP_ENTRIES = 1000
"""Entries kept after a snapshot so slightly lagging followers need no snapshot..."""
SNAPSHOT_KEEP_BYTES = 8 << 20
"""... but no more than this many bytes of entry data (an entry may pack 512 commands)."""
SNAPSHOT_BYTES_PER_ENTRY = 256
"""``snapshot_entries`` also bounds the entry bytes applied between snapshots, counted as
that many bytes per entry: a restart replays at most about ``snapshot_entries`` commands of
a typical size, however many of them each batched entry packs."""

BATCH_COMMANDS_MAX = 512
BATCH_BYTES_MAX = 1 << 20
READ_ROUNDS_MAX = 10000
SYNCS_IN_FLIGHT_MAX = 1
"""New proposals wait while this many syncs are in flight: they pile up and become one
batched entry (one message per follower, one sync) when the sync ends, as they did when the
driver awaited its fsync; acks, applies and reads are not held back meanwhile."""
SLOW_SYNC_S = 0.05
"""A WAL sync of at least this many seconds is logged as ``slow_sync``."""
LOOP_STALL_EVENT_SHARE = 0.5
"""A loop stall of at least this share of the election timeout is logged as ``loop_stall``."""
_HEARTBEATS = frozenset({MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP})
PROMOTE_LAG_ENTRIES_MAX = 64
"""A learner is caught up (and may be promoted) once its match index is within this many
entries of the leader's last index."""
ADMIN_POLL_S = 0.05
ADMIN_REPLY_MARGIN_S = 1.0
"""An admin operation stops waiting this long before its request's deadline, so the
client gets the node's own answer (naming what it waited for) rather than a bare timeout."""
_T = TypeVar("_T")


def _commits_conf_change(rd: Ready) -> bool:
    """Whether ``rd`` commits a configuration change: its commit index is then stored at
    once (not lazily), so a restart re-applies the change before the node campaigns and never
    runs on the configuration before it (docs/membership.md)."""
    return any(e.type is EntryType.CONF_CHANGE for e in rd.committed_entries)


def ticks_due(now: float, next_tick: float, tick_s: float, ticks_max: int) -> tuple[int, float]:
    """(ticks to run now, the next tick's time) when ``now >= next_tick``: one tick per
    elapsed period, so after a pause (SIGSTOP, a long GC, a slow disk) the core's timers
    advance by the time that really passed, as leases need. Bounded by ``ticks_max`` (an
    election timeout): more ticks change nothing but would burst; the schedule then restarts
    from ``now``."""
    due = int((now - next_tick) / tick_s) + 1
    if due > ticks_max:
        return ticks_max, now + tick_s
    return due, next_tick + due * tick_s


class NodeUnavailableError(Exception):
    """The node cannot serve the request (not the leader, storage failed, shutting down).
    ``leader`` is the node id believed to lead, or ``""``. ``definite`` is True when a write
    certainly did not and will not take effect (else its outcome is unknown)."""

    def __init__(self, reason: str, leader: str = "", definite: bool = True) -> None:
        super().__init__(reason)
        self.leader = leader
        self.definite = definite


class AdminRefusedError(Exception):
    """An admin operation was refused and had no effect; the message says why in one line
    ("another configuration change is in progress", "n7 is not a member", ...)."""


class ProposalLostError(NodeUnavailableError):
    """Another entry was committed at the proposal's index: it will never apply (Log
    Matching), so the client may safely retry elsewhere."""


@dataclass(slots=True)
class _Proposal:
    client_id: str
    seq: int
    command: bytes
    future: asyncio.Future[bytes]
    started: float
    key_hash: bytes = b""
    """SHA-256 of the client's session key (raft/runtime/sessions.py); empty: anonymous."""


@dataclass(slots=True)
class _InFlight:
    """Proposals sharing one entry at ``index``; ``batched`` when the entry is a batch."""

    term: int
    props: list[_Proposal]
    batched: bool


@dataclass(slots=True)
class _Read:
    future: asyncio.Future[None]
    index: int = -1


@dataclass(slots=True)
class _SnapshotJob:
    """A snapshot captured on the loop at ``index``, being serialised and written."""

    index: int
    conf: ConfState
    meta: SnapshotMeta | None
    """From the storage's ``snapshot_meta`` (disk); None: ``create_snapshot`` at the end."""
    view: SnapshotView
    compact_to: int
    started: float
    adopted: asyncio.Future[None]
    """Resolved once the driver adopted the snapshot (or gave it up)."""
    loop_s: float = 0.0
    """Time the job held the event loop (capture, adopt, compact)."""
    task: asyncio.Task[tuple[bytes, Snapshot | None]] | None = None
    """Serialises (and writes, on disk storage) in worker threads."""


@dataclass(slots=True)
class NodeState:
    """What /status shows; updated by the driver only."""

    term: int = 0
    vote: str = ""
    commit: int = 0
    applied: int = 0
    last_index: int = 0
    role: str = Role.FOLLOWER.value
    leader: str = ""
    storage_failed: str = ""
    conf: ConfState = field(default_factory=ConfState)
    conf_index: int = 0
    """Index of the entry (or snapshot) the configuration in effect comes from."""


class RaftNode:
    """One Raft node: core + storage + state machine + peer transport. ``start`` it inside
    a running event loop, feed it client work with ``propose`` / ``read_barrier``, ``stop``
    it once (flushes the event log and closes the storage). The client and HTTP ports are
    :mod:`raft.runtime.server`'s business."""

    def __init__(
        self,
        cfg: ClusterConfig,
        node_id: str,
        secret: bytes,
        rng: random.Random | None = None,
        join: bool = False,
    ) -> None:
        """``join``: with an empty data directory, start as a non-member that waits for a
        leader to add it (``raft serve --join``) instead of bootstrapping from cluster.yml's
        ``nodes:``; ignored once the storage holds anything."""
        if node_id not in cfg.nodes:
            raise ValueError(f"node {node_id!r} is not in {cfg.path or 'the cluster config'}")
        self.cfg = cfg
        self.id = node_id
        self.addrs = cfg.nodes[node_id]
        self.secret = secret
        self.read_mode = cfg.read_mode
        self.state = NodeState()
        self.metrics = metrics.Metrics()
        self._rng = rng or random.Random()
        self._tick_s = cfg.tick_ms / 1000.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._inbox: deque[tuple[str, Message]] = deque()
        self._props: deque[_Proposal] = deque()
        self._pending: dict[int, _InFlight] = {}
        self._read_queue: deque[_Read] = deque()
        self._reads: dict[bytes, list[_Read]] = {}
        self._ready_reads: list[_Read] = []
        self._read_counter = 0
        self._hb_counter = 0
        self._ids = MessageIds(node_id)
        self._driver: asyncio.Task[None] | None = None
        self._transport_stop: asyncio.Task[None] | None = None
        self._handoff_requested = False
        self.crashed = ""
        self.crash_event = asyncio.Event()
        """Set when the driver died of an unexpected exception (``crashed`` says which)."""
        self._flusher: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._storage_errors = backend.storage_failures()
        log_dir = cfg.node_log_dir(node_id)
        os.makedirs(log_dir, exist_ok=True)
        self.events = EventLog(
            os.path.join(log_dir, "events.jsonl"), node_id, lambda: self.state.term
        )
        self.machine = load_machine(cfg.machine)
        self.read_ops = read_ops_of(self.machine)
        self.applier = Applier(self.machine)
        self.data_dir = cfg.node_data_dir(node_id)
        self.storage: LogStorage
        self.storage, self.durable = backend.open_storage(self.data_dir, cfg.fsync)
        self._persist_in_thread = self.durable
        self._writer: DurableWriter | None = None
        """Asynchronous durable writes (fsync: always on disk storage); else every Ready's
        writes are done (and awaited) in place."""
        self._unsynced: deque[tuple[Ready, SyncTicket | None]] = deque()
        """Readies whose writes are in the WAL but not yet known durable, in order; a
        ``None`` ticket had nothing to sync but must wait for the ones before it."""
        self._synced_tickets = 0
        self._inbox_held = False
        self._applied_marks: deque[tuple[int, int]] = deque()
        """(index, entry bytes applied up to it since the last snapshot), one per apply."""
        self._applied_bytes = 0
        # -- membership (issue 11) --
        self.join = join
        self.book: Book = {}
        """Every member's addresses, as the configuration in effect carries them."""
        self._was_member = False
        self._admin_calls: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._conf_waiters: dict[int, tuple[int, asyncio.Future[ConfState]]] = {}
        self._snapshot_forced = False
        self._snapshot_job: _SnapshotJob | None = None
        """The snapshot being serialised and written (at most one)."""
        self._boot_snapshot: bytes | None = None
        self._boot()
        self.transport = PeerTransport(
            node_id,
            cfg.cluster,
            secret,
            {nid: a.peer for nid, a in self.book.items()},
            on_message=self._on_peer_message,
            on_unreachable=self._on_unreachable,
            on_refused=self._on_refused,
            on_snapshot_sent=self._on_snapshot_sent,
            on_peer_closed=self._on_peer_closed,
            # -- snapshot streams (issue 11): spooled in the data dir, chunk size from config
            snapshot_spool_dir=os.path.join(self.data_dir, SPOOL_DIR),
            snapshot_chunk_bytes=cfg.snapshot_chunk_bytes,
            on_stream_event=lambda **f: self.events.emit("snapshot_stream", **f),
        )
        self._sync_peers()

    # -- recovery --------------------------------------------------------------------------

    def _boot(self) -> None:
        hs, conf = self.storage.initial_state()
        snap = self.storage.snapshot()
        applied = 0
        if not snap.is_empty():
            self._boot_snapshot = snap.data  # restored by start(), off the loop
            try:  # but the address book is needed now (peers, bootstrap configuration)
                self.applier.restored_members = Applier.members_in(snap.data)
            except ValueError as exc:
                log.warning("snapshot at %d: %s", snap.meta.index, exc)
            applied = snap.meta.index
        voters = self._boot_members(hs, conf, snap.meta.index)
        core_cfg = Config(
            id=self.id,
            voters=voters,
            election_timeout_ticks=self.cfg.election_timeout_ticks,
            heartbeat_ticks=self.cfg.heartbeat_ticks,
            pre_vote=True,
            check_quorum=True,
            read_only=(
                ReadOnlyOption.LEASE_BASED
                if self.read_mode is ReadMode.LEASE
                else ReadOnlyOption.SAFE
            ),
            applied=applied,
            # -- recovery (issue 10 §1): storage says we may have lost acknowledged entries.
            recovering=bool(getattr(self.storage, "recovering", False)),
        )
        self.core = RawNode(core_cfg, self.storage, rng=self._rng)
        st = self.state
        st.term, st.vote, st.commit = hs.term, hs.vote, hs.commit
        self._latest_hs = hs
        st.applied = applied
        st.last_index = self.storage.last_index()
        st.conf = conf if conf.voters else ConfState(voters=frozenset(voters))
        st.conf_index = snap.meta.index
        self._was_member = self._is_member()
        last_term = self.storage.term(st.last_index)
        extra: dict[str, Any] = {}
        recovery = getattr(self.storage, "recovery", None)
        if recovery is not None:
            log.info("%s", recovery.summary())
            extra["recovery"] = recovery.as_fields()
        self.events.emit(
            "start",
            v=1,
            commit=st.commit,
            applied=applied,
            last_index=st.last_index,
            last_term=last_term,
            vote=st.vote,
            voters=sorted(st.conf.voters),
            **extra,
        )
        if not snap.is_empty():
            self.events.emit("snapshot", action="load", index=snap.meta.index, sterm=snap.meta.term)
        log.info(
            "node %s starting: term=%d commit=%d applied=%d last_index=%d storage=%s",
            self.id,
            st.term,
            st.commit,
            applied,
            st.last_index,
            "disk" if self.durable else "memory",
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._boot_snapshot is not None:
            data, self._boot_snapshot = self._boot_snapshot, None
            await asyncio.to_thread(self.applier.restore, data)
        await self.transport.start(self.addrs.bind(self.addrs.peer), advertise=self.addrs.peer)
        self.events.flush()  # the start line is on disk as soon as the node listens
        always = self.cfg.fsync is FsyncMode.ALWAYS
        if self.durable and always and hasattr(self.storage, "sync_begin"):
            self._writer = DurableWriter(self.id, asyncio.get_running_loop(), self._on_synced)
        self._driver = asyncio.create_task(self._drive(), name=f"driver-{self.id}")
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"eventlog-{self.id}")
        self._watchdog = asyncio.create_task(self._watch_loop(), name=f"watchdog-{self.id}")

    async def stop(self, reason: str = "signal") -> None:
        if self._stopping:
            await self._stopped.wait()
            return
        await self._hand_off_leadership()
        self._stopping = True
        self._wake.set()
        if self._driver is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._driver, 5.0)
        await self._finish_snapshot_job()
        await self.transport.stop()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.stop)
            if not self.state.storage_failed:
                with contextlib.suppress(*self._storage_errors):
                    self._take_synced()
        for task in (self._flusher, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_pending(NodeUnavailableError("node is shutting down", definite=False))
        with contextlib.suppress(*self._storage_errors):
            if not self.state.storage_failed:
                # The exact commit, for the restart: closing syncs it with the WAL.
                self.storage.set_hard_state(self._latest_hs)
            backend.close_storage(self.storage)
        self._fail_admin(NodeUnavailableError("node is shutting down", definite=False))
        self.events.emit("stop", reason=reason)
        self.events.close()
        log.info("node %s stopped: %s", self.id, reason)
        self._stopped.set()

    async def _hand_off_leadership(self) -> None:
        """A leader stopping cleanly first transfers leadership to its most up-to-date
        follower (thesis §3.10), so a planned restart costs no election timeout. Bounded by
        two election timeouts; a failed handoff just means a normal election."""
        if not self.is_leader() or self._driver is None or self._driver.done():
            return
        self._handoff_requested = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.cfg.election_timeout_ticks * self._tick_s
        while self.state.leader in ("", self.id) and loop.time() < deadline:
            await asyncio.sleep(self._tick_s / 5)
        log.info("%s handed leadership to %s", self.id, self.state.leader or "nobody yet")

    def _start_handoff(self) -> None:
        self._handoff_requested = False
        candidates = [
            (pr.match, nid)
            for nid, pr in self.core.status().progress
            if nid != self.id and not pr.is_learner and pr.recent_active
        ]
        if not candidates:
            return
        target = max(candidates)[1]
        try:
            self.core.transfer_leader(target)
        except RaftError as exc:
            log.info("leadership transfer to %s refused: %s", target, exc)

    async def _watch_loop(self) -> None:
        """Measures how long the event loop was held: wakes every tick and records how late
        it woke (``raft_loop_stall_seconds_max``). Anything that holds the loop for about an
        election timeout (a snapshot serialised in place, a huge restore) makes followers
        campaign or the leader step down; ``loop_stall`` events name when it happened."""
        loop = asyncio.get_running_loop()
        election_s = self.cfg.election_timeout_ticks * self._tick_s
        while True:
            due = loop.time() + self._tick_s
            await asyncio.sleep(self._tick_s)
            stall = loop.time() - due
            if stall > self.metrics.loop_stall_seconds_max:
                self.metrics.loop_stall_seconds_max = stall
            if stall >= LOOP_STALL_EVENT_SHARE * election_s:
                self.events.emit("loop_stall", ms=round(stall * 1000.0, 1))
                log.warning("%s: event loop stalled for %.0f ms", self.id, stall * 1000.0)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(EVENTLOG_FLUSH_S)
            self.events.flush_background()

    # -- client entry points (called from client tasks) ------------------------------------

    def is_leader(self) -> bool:
        return self.state.role == Role.LEADER.value and not self.state.storage_failed

    async def propose(
        self, client_id: str, seq: int, command: bytes, key_hash: bytes = b""
    ) -> bytes:
        """Replicate ``command`` (deduplicated by ``(client_id, seq)`` when client_id is
        set, for the holder of the session key whose hash is ``key_hash``; an empty
        client_id and command with a ``key_hash`` opens a session); the state machine's result
        once it was applied here. Commands queued together share one log entry. Raises
        NodeUnavailableError (not leader / storage failed / lost)."""
        if self.state.storage_failed or self._stopping:
            raise NodeUnavailableError("node cannot accept writes", self._leader_hint())
        if not self.is_leader():
            raise NodeUnavailableError("not leader", self.state.leader)
        if len(self._props) >= PROPOSALS_QUEUED_MAX:
            raise NodeUnavailableError("proposal queue full", self.state.leader)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._props.append(_Proposal(client_id, seq, command, fut, time.monotonic(), key_hash))
        self._wake.set()
        return await fut

    async def read_barrier(self) -> None:
        """Returns once a read served from the local state machine is linearizable (per
        the read mode: ReadIndex round, leader lease, or immediately for ``local``)."""
        if self._stopping or self.state.storage_failed:
            raise NodeUnavailableError("node cannot serve reads", self._leader_hint())
        if self.read_mode is ReadMode.LOCAL:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_queue.append(_Read(fut))
        self._wake.set()
        await fut

    def _leader_hint(self) -> str:
        return "" if self.state.leader == self.id else self.state.leader

    # -- peer callbacks --------------------------------------------------------------------

    def _on_peer_message(self, msg_id: str, msg: Message) -> None:
        if len(self._inbox) >= INBOX_MSGS_MAX:
            return  # overload: drop, Raft retries
        if msg.type is MessageType.APP and msg.index == 0 and msg.entries and self._no_conf():
            # -- membership: a node in no configuration (joining) cannot replay the log
            # from index 1 (it does not know the bootstrap voters); it waits for the
            # snapshot every member takes when it applies its first configuration change.
            return
        self._inbox.append((msg_id, msg))
        self._wake.set()

    def _push_local(self, t: MessageType, peer: str, reject: bool = False) -> None:
        """A transport report about ``peer``, queued for the driver in order with the
        messages received before it."""
        self._inbox.append(("", Message(type=t, sender=peer, to=self.id, reject=reject)))
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        self._push_local(MessageType.UNREACHABLE, peer)

    def _on_peer_closed(self, peer: str) -> None:
        """``peer`` closed its connection to us: if it is our leader, its process most likely
        died; the driver tells the core, which campaigns soon instead of after a whole
        election timeout (``RawNode.report_connection_lost``)."""
        self._push_local(MessageType.CONNECTION_LOST, peer)

    def _on_snapshot_sent(self, peer: str, ok: bool = True) -> None:
        """A snapshot stream to ``peer`` ended: installed there (ok) or given up."""
        self._push_local(MessageType.SNAP_STATUS, peer, reject=not ok)

    def _on_refused(self, peer: str, reason: str, detail: str) -> None:
        self.metrics.peer_refused_total += 1
        self.events.emit("peer_refused", peer=peer, reason=reason, detail=detail)
        log.warning("peer connection from/to %s refused: %s (%s)", peer, reason, detail)

    # -- the driver ------------------------------------------------------------------------

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._tick_s
        try:
            while not self._stopping and not self.state.storage_failed:
                timeout = next_tick - loop.time()
                can_write = self._tickets_in_flight() < SYNCS_IN_FLIGHT_MAX
                work = (self._inbox and (can_write or not self._inbox_held)) or (
                    self._props and can_write
                )
                if timeout > 0 and not (work or self._read_queue):
                    # The next tick sets the wake event itself: no task and no wait_for
                    # per pass (the driver waits once or more per write).
                    timer = loop.call_at(next_tick, self._wake.set)
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                self._wake.clear()
                if self._stopping:
                    break
                now = loop.time()
                self._take_synced()
                self._adopt_snapshot()  # a snapshot written off the loop (issue 11)
                self._inbox_held = False
                # Messages first, then the ticks: after a pause (a slow start, SIGSTOP, a
                # blocked loop) the inbox holds what arrived during it, the leader's
                # heartbeats or a quorum's answers; ticking first would time out on them.
                self._step_inbox()
                # -- begin: ticks by elapsed time (hardening; issue 10 "Also") --
                if now >= next_tick:
                    due, next_tick = ticks_due(
                        now, next_tick, self._tick_s, self.cfg.election_timeout_ticks
                    )
                    for _ in range(due):
                        self.core.tick()
                    await self._flush_if_due()
                # -- end: ticks by elapsed time --
                if self._tickets_in_flight() < SYNCS_IN_FLIGHT_MAX:
                    self._take_proposals()
                self._take_reads()
                if self._handoff_requested:
                    self._start_handoff()
                self._run_admin_calls()
                await self._handle_readies()
        except Exception as exc:
            # Fail-stop: a core in an unknown state must not go on voting or acknowledging.
            log.exception("driver of %s crashed", self.id)
            self.state.storage_failed = self.state.storage_failed or "driver crashed"
            self.crashed = f"{type(exc).__name__}: {exc}"
            self._fail_pending(NodeUnavailableError("node driver crashed", definite=False))
            self.crash_event.set()

    async def _flush_if_due(self) -> None:
        """``fsync: batch``: let the storage sync a quiet node's pending writes."""
        flush = getattr(self.storage, "flush_if_due", None)
        if self.cfg.fsync is not FsyncMode.BATCH or not callable(flush):
            return
        try:
            await asyncio.to_thread(flush)
        except self._storage_errors as exc:
            self._storage_failed(exc)

    def _step_inbox(self) -> None:
        hold = self._tickets_in_flight() >= SYNCS_IN_FLIGHT_MAX
        while self._inbox:
            if hold and self._inbox[0][1].type is MessageType.APP:
                # A follower batches the appends that arrive during its sync into one
                # write and one sync, as the leader batches proposals (order kept).
                self._inbox_held = True
                return
            msg_id, msg = self._inbox.popleft()
            if msg.type is MessageType.UNREACHABLE:
                with contextlib.suppress(RaftError):
                    self.core.report_unreachable(msg.sender)
                continue
            if msg.type is MessageType.SNAP_STATUS:
                with contextlib.suppress(RaftError):
                    self.core.report_snapshot(msg.sender, ok=not msg.reject)
                continue
            if msg.type is MessageType.CONNECTION_LOST:
                with contextlib.suppress(RaftError):
                    self.core.report_connection_lost(msg.sender)
                continue
            self.metrics.messages_received_total += 1
            if msg_id:
                self.events.emit(
                    "recv", **{"from": msg.sender, "msg": msg.type.value, "id": msg_id}
                )
            try:
                self.core.step(msg)
            except RaftError as exc:
                log.debug("step(%s from %s) refused: %s", msg.type.value, msg.sender, exc)

    def _take_proposals(self) -> None:
        """Everything queued since the last Ready goes into as few entries as possible
        (bounded by BATCH_COMMANDS_MAX / BATCH_BYTES_MAX), so it shares one fsync and one
        round of AppendEntries."""
        while self._props:
            batch: list[_Proposal] = []
            size = 0
            while self._props and len(batch) < BATCH_COMMANDS_MAX and size < BATCH_BYTES_MAX:
                p = self._props.popleft()
                if not p.future.done():
                    batch.append(p)
                    size += len(p.command) + 64
            if not batch:
                continue
            if len(batch) == 1:
                p = batch[0]
                data = encode_entry(p.client_id, p.seq, p.command, p.key_hash)
            else:
                data = encode_batch([(p.client_id, p.seq, p.command, p.key_hash) for p in batch])
            try:
                index, term = self.core.propose(data)
            except (NotLeaderError, ProposalDroppedError) as exc:
                self.metrics.proposals_failed_total += len(batch)
                hint = exc.leader_hint if isinstance(exc, NotLeaderError) else self.id
                for p in batch:
                    p.future.set_exception(NodeUnavailableError(f"refused: {exc}", hint))
                continue
            self.metrics.proposals_total += len(batch)
            self._pending[index] = _InFlight(term, batch, len(batch) > 1)

    def _take_reads(self) -> None:
        """One ReadIndex round for every read queued since the last one: each of them was
        invoked before the round started, so the index it returns serves them all."""
        batch = [r for r in self._read_queue if not r.future.done()]
        self._read_queue.clear()
        if not batch:
            return
        self._read_counter += 1
        ctx = f"{self._ids.prefix}r{self._read_counter}".encode()
        try:
            self.core.read_index(ctx)
        except RaftError as exc:
            for r in batch:
                r.future.set_exception(NodeUnavailableError(str(exc), self._leader_hint()))
            return
        self._reads[ctx] = batch
        if len(self._reads) > READ_ROUNDS_MAX:  # unanswered rounds (lost leader): forget
            for old in self._reads.pop(next(iter(self._reads))):
                if not old.future.done():
                    old.future.set_exception(NodeUnavailableError("read lost", ""))

    async def _handle_readies(self) -> None:
        while self.core.has_ready() and not self.state.storage_failed:
            rd = self.core.ready()
            await self._handle_ready(rd)

    async def _handle_ready(self, rd: Ready) -> None:
        st = self.state
        if rd.soft_state is not None:
            role, leader = rd.soft_state.role.value, rd.soft_state.leader
            if role != st.role or leader != st.leader:
                if role == Role.CANDIDATE.value and st.role != role:
                    self.metrics.elections_total += 1
                if st.role == Role.LEADER.value and role != st.role:
                    log.info("%s lost leadership (now %s)", self.id, role)
                    self._fail_reads_on_role_change()
                    self.transport.snapshots.abandon()  # snapshot streams (issue 11)
                st.role, st.leader = role, leader
                log.info("%s is %s (leader %s)", self.id, role, leader or "unknown")
        if rd.hard_state is not None:
            st.term = rd.hard_state.term
        fast = self._writer is not None and self._async_ok(rd)
        if fast:
            if not self._write_async(rd):
                return
        elif not await self._write_in_place(rd):
            return
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            await self._restore(rd.snapshot.data)
            st.applied = rd.snapshot.meta.index
            st.conf = rd.snapshot.meta.conf_state
            self._members_from_snapshot(rd.snapshot.meta.index)
            self.events.emit(
                "snapshot",
                action="install",
                index=rd.snapshot.meta.index,
                sterm=rd.snapshot.meta.term,
            )
        # Core events (commit among them) are logged before the entries are applied, so the
        # event log shows every apply after the commit that allowed it (docs/analysis.md,
        # "Applied within commit").
        for ev in rd.events:
            self._record(ev)
            if ev.ev == "recovered":
                # -- recovery: the Ready that caught us up was written in place (durable, see
                # _async_ok), so the marker may go.
                clear = getattr(self.storage, "clear_recovering", None)
                if clear is not None:
                    clear()
        if rd.committed_entries:
            self._apply(rd)
        for rs in rd.read_states:
            for r in self._reads.pop(rs.context, ()):
                r.index = rs.index
                self._ready_reads.append(r)
        self._serve_reads()
        if fast:
            self.core.advance_apply(rd)  # advance_append follows in _take_synced
        else:
            self.core.advance(rd)
        st.last_index = self.storage.last_index()
        self._maybe_snapshot()

    def _async_ok(self, rd: Ready) -> bool:
        """The fast path: send at once, write, let the writer sync. Not for a snapshot, a
        term/vote change or the end of recovery: those must be durable before any message
        that depends on them leaves (a vote, or an append of a new term) or before the
        recovery marker goes, so they take the path in place."""
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            return False
        if any(ev.ev == "recovered" for ev in rd.events):
            return False  # the marker is dropped only once what caught us up is durable
        hs = rd.hard_state
        return hs is None or (hs.term, hs.vote) == (self._latest_hs.term, self._latest_hs.vote)

    def _write_async(self, rd: Ready) -> bool:
        """Asynchronous durable writes: AppendEntries leave now, the entries go into the WAL
        (no sync), the writer thread syncs them together with whatever else is queued, and
        ``_take_synced`` then sends the acknowledgements and steps the leader's own ack.
        False if the storage failed."""
        assert self._writer is not None
        for m in rd.messages:
            self._send(m)
        ticket: SyncTicket | None = None
        if rd.entries or rd.hard_state is not None:
            s: Any = self.storage
            try:
                if rd.entries:
                    s.append(list(rd.entries))
                if rd.hard_state is not None:
                    self._latest_hs = rd.hard_state
                    s.set_hard_state(rd.hard_state)
                ticket = s.sync_begin(include_commit=_commits_conf_change(rd))
                if ticket is None and rd.must_sync and s.pending_sync():
                    s.sync()  # a directory to sync as well (practically never): in place
            except self._storage_errors as exc:
                self._storage_failed(exc)
                return False
        self._unsynced.append((rd, ticket))
        if ticket is not None:
            self._writer.submit(ticket)
        else:
            self._take_synced()
        return not self.state.storage_failed

    def _tickets_in_flight(self) -> int:
        return sum(1 for _, t in self._unsynced if t is not None) - self._synced_tickets

    def _on_synced(self, n: int, took: float) -> None:
        """On the loop: the writer made the next ``n`` tickets durable (a local message),
        with one sync that took ``took`` seconds."""
        self._synced_tickets += n
        self.metrics.fsyncs_total += 1  # one fdatasync for the n tickets
        if took >= SLOW_SYNC_S:
            # Every write of the node waited behind it: a latency spike's usual cause on a
            # shared disk, and nothing else in the log would show it.
            self.events.emit("slow_sync", ms=round(took * 1000.0, 1), tickets=n)
        self._wake.set()

    def _take_synced(self) -> None:
        """Readies now durable, in order: book them, send their acknowledgements, record
        their persist events, step the node's own after-persist messages."""
        while self._unsynced:
            rd, ticket = self._unsynced[0]
            if ticket is not None:
                if self._synced_tickets == 0:
                    return
                self._synced_tickets -= 1
            self._unsynced.popleft()
            if ticket is not None:
                try:
                    self.storage.sync_end(ticket)  # type: ignore[attr-defined]
                except self._storage_errors as exc:
                    self._storage_failed(exc)
                    return
            self._log_persist(rd)
            for m in rd.persisted_messages:
                self._send(m)
            self.core.advance_append(rd)

    async def _drain_writes(self) -> None:
        while self._unsynced and not self.state.storage_failed:
            await self._wake.wait()
            self._wake.clear()
            self._take_synced()
        self._wake.set()  # whatever else woke us is handled by the next pass

    async def _write_in_place(self, rd: Ready) -> bool:
        """The synchronous path: everything before is durable, then this Ready's writes,
        then its messages. False if the storage failed."""
        if self._unsynced:
            await self._drain_writes()
            if self.state.storage_failed:
                return False
        send_first = self._writer is None
        if send_first:
            for m in rd.messages:
                self._send(m)
        if (
            rd.entries
            or rd.hard_state is not None
            or (rd.snapshot is not None and not rd.snapshot.is_empty())
        ):
            try:
                if self._persist_in_thread:
                    await asyncio.to_thread(self._persist, rd)
                else:
                    self._persist(rd)
            except self._storage_errors as exc:
                self._storage_failed(exc)
                return False
        if not send_first:
            for m in rd.messages:
                self._send(m)
        self._log_persist(rd)
        for m in rd.persisted_messages:
            self._send(m)
        return True

    def _persist(self, rd: Ready) -> None:
        """Runs in a worker thread for disk storage; the driver awaits it, so the core and
        storage are never used concurrently."""
        s = self.storage
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            s.apply_snapshot(rd.snapshot)
        if rd.entries:
            s.append(list(rd.entries))
        conf_commit = False
        if rd.hard_state is not None:
            self._latest_hs = rd.hard_state
            # The storage writes it into the WAL: with the next entries, or alone when the
            # term or vote changed; a commit-only change alone only when due.
            s.set_hard_state(rd.hard_state)
            conf_commit = _commits_conf_change(rd)
        if conf_commit and hasattr(s, "flush"):
            s.flush(include_commit=True)  # a committed configuration change: stored now
            self.metrics.fsyncs_total += 1
        elif rd.must_sync:
            s.sync()  # the storage applies the fsync policy (always | batch | never)
            self.metrics.fsyncs_total += 1

    def _log_persist(self, rd: Ready) -> None:
        if rd.entries:
            self.events.emit(
                "persist",
                first=rd.entries[0].index,
                last=rd.entries[-1].index,
                entries=[[e.index, e.term, digest(e.data)] for e in rd.entries],
            )
        if rd.hard_state is not None:
            hs: HardState = rd.hard_state
            self.state.vote = hs.vote

    def _apply(self, rd: Ready) -> None:
        st = self.state
        applied_rows: list[list[Any]] = []
        now = time.monotonic()
        for e in rd.committed_entries:
            if e.index <= st.applied:
                continue
            if e.type is EntryType.CONF_CHANGE:
                self._apply_conf_entry(e)
                result = b""
            else:
                result = self.applier.apply(e.index, e.data)
            st.applied = e.index
            applied_rows.append([e.index, e.term, digest(e.data), digest(result)])
            inflight = self._pending.pop(e.index, None)
            if inflight is not None:
                self._resolve(inflight, e.term, result, now)
        st.commit = max(st.commit, rd.committed_entries[-1].index)
        self._applied_bytes += sum(len(e.data) for e in rd.committed_entries)
        self._applied_marks.append((st.applied, self._applied_bytes))
        self.metrics.applied_entries_total += len(applied_rows)
        if applied_rows:
            self.events.emit("apply", entries=applied_rows)

    def _resolve(self, inflight: _InFlight, term: int, result: bytes, now: float) -> None:
        if inflight.term != term:
            for p in inflight.props:
                if not p.future.done():
                    p.future.set_exception(ProposalLostError("entry replaced", self.state.leader))
            return
        results = [result]
        if inflight.batched:
            try:
                results = decode_batch_results(result)
            except (ValueError, CommandError):
                results = []
        if len(results) != len(inflight.props):  # the entry was not ours after all
            results = [result] * len(inflight.props)
        for p, r in zip(inflight.props, results, strict=True):
            if not p.future.done():
                p.future.set_result(r)
                self.metrics.commit_latency.observe(now - p.started)

    def _serve_reads(self) -> None:
        if not self._ready_reads:
            return
        keep: list[_Read] = []
        for r in self._ready_reads:
            if r.index <= self.state.applied:
                if not r.future.done():
                    r.future.set_result(None)
            else:
                keep.append(r)
        self._ready_reads = keep

    def _fail_reads_on_role_change(self) -> None:
        for r in (r for batch in self._reads.values() for r in batch):
            if not r.future.done():
                r.future.set_exception(NodeUnavailableError("leadership changed", ""))
        self._reads.clear()

    def _record(self, ev: CoreEvent) -> None:
        fields = dict(ev.fields)
        if ev.ev == "commit":
            self.state.commit = max(self.state.commit, int(fields.get("index", 0)))  # type: ignore[call-overload]
        self.events.emit(ev.ev, term=ev.term, **fields)

    def _send(self, m: Message) -> None:
        self.metrics.messages_sent_total += 1
        msg_id = ""
        if m.type in _HEARTBEATS:
            self._hb_counter += 1
            if self._hb_counter % HEARTBEAT_LOG_EVERY == 0:
                msg_id = self._ids.next()
        else:
            msg_id = self._ids.next()
        if msg_id:
            self.events.emit("send", to=m.to, msg=m.type.value, id=msg_id)
        self.transport.send(msg_id, m)

    # -- snapshots off the loop (issue 11) ------------------------------------------------

    def _maybe_snapshot(self, force: bool = False) -> None:
        """A snapshot once ``snapshot_entries`` were applied since the last one; at once when
        ``force`` or when the first configuration change was applied (then the log is also
        compacted past index 1: nobody needs cluster.yml's bootstrap voters to replay it,
        and a joining node always starts from a snapshot that carries the configuration and
        the address book). Serialised and written off the loop (``_start_snapshot``)."""
        self._adopt_snapshot()
        st = self.state
        snap_index = self.storage.snapshot().meta.index
        budget = self.cfg.snapshot_entries
        forced = force or self._snapshot_forced
        if self._snapshot_job is not None or (
            st.applied <= snap_index
            or (
                not forced
                and st.applied - snap_index < budget
                and self._applied_bytes < budget * SNAPSHOT_BYTES_PER_ENTRY
            )
        ):
            return
        self._start_snapshot()

    def _start_snapshot(self) -> _SnapshotJob | None:
        """Capture the state as of the applied index on the loop (a copy of the session
        table and the machine's :data:`~raft.machines.SnapshotView`: a dict copy for kv) and
        start the task that serialises and writes it in worker threads. At most one job
        runs; None when none could start (nothing new, or the storage refused)."""
        if self._snapshot_job is not None:
            return self._snapshot_job
        st = self.state
        started = time.perf_counter()
        budget = self.cfg.snapshot_entries
        meta: SnapshotMeta | None = None
        try:
            prepare = getattr(self.storage, "snapshot_meta", None)
            if callable(prepare):
                meta = prepare(st.applied, st.conf)
            elif st.applied <= self.storage.snapshot().meta.index:
                return None
        except self._storage_errors as exc:
            self._storage_failed(exc)
            return None
        except RaftError as exc:
            log.warning("snapshot at %d refused: %s", st.applied, exc)
            return None
        view = self.applier.snapshot_view(members=book_to_wire(self.book))
        compact_to = st.applied - min(SNAPSHOT_KEEP_ENTRIES, budget // 2)
        if self._snapshot_forced:  # the first configuration change: drop the bootstrap entry
            compact_to = max(compact_to, 1)
            self._snapshot_forced = False
        # Keep at most SNAPSHOT_KEEP_BYTES of entry data for lagging followers.
        for index, upto in self._applied_marks:
            if self._applied_bytes - upto <= SNAPSHOT_KEEP_BYTES:
                compact_to = max(compact_to, index)
                break
        self._applied_marks.clear()
        self._applied_bytes = 0
        loop = asyncio.get_running_loop()
        adopted: asyncio.Future[None] = loop.create_future()
        job = _SnapshotJob(st.applied, st.conf, meta, view, compact_to, started, adopted)
        job.task = loop.create_task(self._write_snapshot(job), name=f"snapshot-{job.index}")
        job.task.add_done_callback(lambda _: self._wake.set())  # the driver adopts it
        job.loop_s = time.perf_counter() - started
        self._snapshot_job = job
        return job

    async def _write_snapshot(self, job: _SnapshotJob) -> tuple[bytes, Snapshot | None]:
        """In worker threads: serialise the view; on disk storage also write the file
        durably. Touches no driver state: the driver adopts the result (``_adopt_snapshot``),
        so the storage is never used by the driver and this job at once."""
        data = await asyncio.to_thread(job.view)
        if job.meta is None:
            return data, None
        snap = Snapshot(meta=job.meta, data=data)
        await asyncio.to_thread(self.storage.write_snapshot_file, snap)  # type: ignore[attr-defined]
        return data, snap

    def _adopt_snapshot(self) -> None:
        """Driver: a finished job's snapshot becomes current, then the log is compacted up
        to what it covers (never before its file is durable); logs ``snapshot create``."""
        job = self._snapshot_job
        if job is None or job.task is None or not job.task.done():
            return
        self._snapshot_job = None
        resumed = time.perf_counter()
        try:
            data, snap = job.task.result()
            if self.state.storage_failed:
                return
            if snap is None:
                snap = self.storage.create_snapshot(job.index, job.conf, data)
            elif not self.storage.adopt_snapshot(snap):  # type: ignore[attr-defined]
                log.info("snapshot at %d superseded by an installed one", job.index)
                return
            if job.compact_to >= self.storage.first_index():
                self.storage.compact(job.compact_to)
        except self._storage_errors as exc:
            if not self.state.storage_failed:
                self._storage_failed(exc)
            return
        except RaftError as exc:
            log.warning("snapshot at %d failed: %s", job.index, exc)
            return
        except Exception:  # a custom machine's serialiser broke: no snapshot, node goes on
            log.exception("snapshot at %d failed", job.index)
            return
        finally:
            if not job.adopted.done():
                job.adopted.set_result(None)
        job.loop_s += time.perf_counter() - resumed
        self.events.emit(
            "snapshot",
            action="create",
            index=snap.meta.index,
            sterm=snap.meta.term,
            bytes=len(snap.data),
            ms=round((time.perf_counter() - job.started) * 1000.0, 1),
            loop_ms=round(job.loop_s * 1000.0, 1),
        )

    async def take_snapshot(self) -> int:
        """Take a snapshot of everything applied so far, now (``raft snapshot``), waiting
        for one already in flight first; the index the node's newest snapshot covers once it
        is durable and current (unchanged when nothing was applied since the last one).
        Raises NodeUnavailableError when the storage failed or the node is stopping."""
        while True:
            if self.state.storage_failed or self._stopping:
                raise NodeUnavailableError("node cannot take a snapshot", self._leader_hint())
            job = self._snapshot_job
            if job is None:
                if self.state.applied <= self.storage.snapshot().meta.index:
                    return self.storage.snapshot().meta.index
                job = self._start_snapshot()
                if job is None:
                    raise NodeUnavailableError("snapshot refused (see the node's log)")
                await asyncio.shield(job.adopted)
                if not (self.state.storage_failed or self._stopping):
                    return self.storage.snapshot().meta.index
            else:
                await asyncio.shield(job.adopted)

    async def _finish_snapshot_job(self) -> None:
        """At stop, the driver ended: a snapshot being written finishes (and is adopted)
        before the storage closes."""
        job = self._snapshot_job
        if job is not None and job.task is not None:
            with contextlib.suppress(Exception):
                await job.task
            self._adopt_snapshot()

    async def _restore(self, data: bytes) -> None:
        """Install a received snapshot's state: restore a fresh machine in a worker thread
        (the loop keeps serving heartbeats, transport and client tasks; reads see the old
        state until the swap), then swap it in. The driver awaits this, so nothing applies
        meanwhile."""
        fresh = Applier(load_machine(self.cfg.machine))
        await asyncio.to_thread(fresh.restore, data)
        fresh.duplicates = self.applier.duplicates
        self.applier, self.machine = fresh, fresh.machine

    def _storage_failed(self, exc: BaseException) -> None:
        st = self.state
        path = str(getattr(exc, "path", self.data_dir))
        st.storage_failed = f"{type(exc).__name__}: {exc}"
        self.events.emit("storage_error", what=st.storage_failed, path=path)
        self.events.flush()
        log.error("storage failed, leaving the cluster's work to the others: %s", exc)
        st.role, st.leader = Role.FOLLOWER.value, ""
        if self._snapshot_job is not None and not self._snapshot_job.adopted.done():
            self._snapshot_job.adopted.set_result(None)  # take_snapshot: raise, not wait
        self._fail_pending(NodeUnavailableError("storage failed", "", definite=False))
        self._transport_stop = asyncio.get_running_loop().create_task(self.transport.stop())

    def _fail_pending(self, exc: NodeUnavailableError) -> None:
        props = [p for f in self._pending.values() for p in f.props] + list(self._props)
        for p in props:
            if not p.future.done():
                p.future.set_exception(exc)
        self._pending.clear()
        self._props.clear()
        waiting = [r for batch in self._reads.values() for r in batch]
        for r in [*self._read_queue, *waiting, *self._ready_reads]:
            if not r.future.done():
                r.future.set_exception(exc)
        self._read_queue.clear()
        self._reads.clear()
        self._ready_reads.clear()

    # -- begin: membership and admin operations (issue 11; docs/membership.md) -------------

    def _boot_members(self, hs: HardState, conf: ConfState, snap_index: int) -> tuple[str, ...]:
        """The address book at start and the bootstrap voters for the core. The durable
        configuration wins: a snapshot's book (and its ConfState, which the core reads from
        the storage) over cluster.yml. A node started with ``join`` and an empty data
        directory is in no configuration: it waits for a leader to add it."""
        own = MemberAddrs.of(self.addrs)
        empty = snap_index == 0 and self.storage.last_index() == 0 and hs == HardState()
        joining = self.join and empty
        if joining:
            self.book = {self.id: own}
        else:
            self.book = book_of(self.cfg.nodes) if not self.join else {self.id: own}
            self._restore_book()
        if conf.voters or conf.learners or conf.voters_outgoing:
            members = conf.voters | conf.voters_outgoing | conf.learners | conf.learners_next
            self.book = {n: a for n, a in self.book.items() if n in members or n == self.id}
        return () if joining else tuple(sorted(self.cfg.nodes))

    def _restore_book(self) -> None:
        """Take the book the last restored snapshot carried, if it carried one."""
        raw = self.applier.restored_members
        if raw is None:
            return
        try:
            book = book_from_wire(raw, "snapshot address book")
        except MembersError as exc:
            log.warning("ignoring the snapshot's address book: %s", exc)
            return
        book[self.id] = MemberAddrs.of(self.addrs)  # where we listen is ours to say
        self.book = book

    def address_of(self, nid: str) -> MemberAddrs | None:
        """Where member ``nid`` listens, as the configuration says (cluster.yml's entry
        for a node the book does not know, unless this node was started with --join)."""
        a = self.book.get(nid)
        if a is None and not self.join and nid in self.cfg.nodes:
            a = MemberAddrs.of(self.cfg.nodes[nid])
        return a

    def _members(self) -> frozenset[str]:
        cs = self.state.conf
        return cs.voters | cs.voters_outgoing | cs.learners | cs.learners_next

    def _no_conf(self) -> bool:
        cs = self.state.conf
        return not (cs.voters or cs.learners or cs.voters_outgoing)

    def _is_member(self) -> bool:
        return self.id in self._members()

    def _apply_conf_entry(self, e: Entry) -> None:
        """Apply a committed configuration change: learn the addresses it carries, switch
        the core's configuration, follow it with the transport, answer the admin request
        that proposed it, and snapshot at once if the log still starts at index 1."""
        st = self.state
        cc = decode_conf_change(e.data)
        try:
            added = decode_context(cc.context)
        except MembersError as exc:
            log.warning("conf change at %d: %s", e.index, exc)
            added = {}
        added.pop(self.id, None)
        self.book.update(added)
        cs = self.core.apply_conf_change(cc)
        st.conf, st.conf_index = cs, e.index
        self.events.emit(
            "conf",
            index=e.index,
            voters=sorted(cs.voters),
            learners=sorted(cs.learners),
            voters_outgoing=sorted(cs.voters_outgoing),
        )
        self._sync_peers()
        waiter = self._conf_waiters.pop(e.index, None)
        if waiter is not None and not waiter[1].done():
            if waiter[0] == e.term:
                waiter[1].set_result(cs)
            else:
                waiter[1].set_exception(ProposalLostError("entry replaced", st.leader))
        if self.storage.snapshot().meta.index == 0:
            self._snapshot_forced = True

    def _members_from_snapshot(self, index: int) -> None:
        """An installed snapshot brings the configuration and the book with it."""
        self._restore_book()
        self.state.conf_index = index
        members = self._members()
        self.book = {n: a for n, a in self.book.items() if n in members or n == self.id}
        self._sync_peers()

    def _sync_peers(self) -> None:
        """The transport talks to the members of the configuration in effect, and to
        nobody else: a removed node's connections are refused, so it cannot disturb the
        cluster; a node removed itself stops talking to the others. One exception: the
        leader this node follows. A node that installs a snapshot older than the current
        configuration (one taken while the leader was out and re-added) does not find the
        leader among its members until it replays the entries that come after; refusing
        the leader's connections meant it never received them (seen in the lab: a wiped
        node re-added after such a snapshot stayed at match 0). Raft lets a server take
        appends from a leader outside the configuration it knows (thesis §4.1)."""
        members = self._members()
        if self.id in members:
            self._was_member = True
            self.transport.accept_unknown = False
            self.book = {n: a for n, a in self.book.items() if n in members or n == self.id}
            for nid in sorted(members - {self.id}):
                a = self.address_of(nid)
                if a is not None:
                    self.transport.add_peer(nid, a.peer)
            keep = members | {self.state.leader}
            for nid in set(self.transport.peers()) - keep:
                self.transport.remove_peer(nid)
            return
        if self._was_member:
            log.warning(
                "%s was removed from the configuration (index %d): idle from now",
                self.id,
                self.state.conf_index,
            )
            self.events.emit("removed", index=self.state.conf_index)
            for nid in list(self.transport.peers()):
                self.transport.remove_peer(nid)
            self._was_member = False
        self.transport.accept_unknown = True  # waits (again) for a leader to add it

    async def _in_driver(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the driver task (only it touches the core and the storage)."""
        if self._stopping or self.state.storage_failed or self._driver is None:
            raise NodeUnavailableError("node cannot serve admin operations", self._leader_hint())
        fut: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._admin_calls.append((fn, fut))
        self._wake.set()
        return await fut

    def _run_admin_calls(self) -> None:
        while self._admin_calls:
            fn, fut = self._admin_calls.popleft()
            if fut.done():
                continue
            try:
                fut.set_result(fn())
            except Exception as exc:  # handed to the caller, which names it
                fut.set_exception(exc)

    def _fail_admin(self, exc: Exception) -> None:
        futs = [f for _, f in self._admin_calls] + [f for _, f in self._conf_waiters.values()]
        for f in futs:
            if not f.done():
                f.set_exception(exc)
        self._admin_calls.clear()
        self._conf_waiters.clear()

    def _require_leader(self) -> None:
        if not self.is_leader():
            raise NodeUnavailableError("not leader", self._leader_hint())

    def _members_view(self) -> dict[str, Any]:
        """What ``raft member list`` prints (on the leader: with each member's match)."""
        cs = self.state.conf
        status = self.core.status()
        progress = dict(status.progress)
        rows: list[dict[str, Any]] = []
        for nid in sorted(self._members()):
            a = self.address_of(nid)
            pr = progress.get(nid)
            rows.append(
                {
                    "id": nid,
                    "role": "learner" if nid in cs.learners else "voter",
                    "peer": str(a.peer) if a is not None else None,
                    "client": str(a.client) if a is not None else None,
                    "http": str(a.http) if a is not None and a.http is not None else None,
                    "match": pr.match if pr is not None else None,
                    "lag": status.last_index - pr.match if pr is not None else None,
                }
            )
        return {
            "leader": self.state.leader,
            "joint": bool(cs.voters_outgoing),
            "voters": sorted(cs.voters),
            "voters_outgoing": sorted(cs.voters_outgoing),
            "learners": sorted(cs.learners | cs.learners_next),
            "members": rows,
            "index": self.state.conf_index,
            "last_index": status.last_index,
        }

    async def member_list(self) -> dict[str, Any]:
        def view() -> dict[str, Any]:
            self._require_leader()
            return self._members_view()

        return await self._in_driver(view)

    def _propose_change(
        self, op: str, nid: str, addrs: MemberAddrs | None
    ) -> asyncio.Future[ConfState]:
        """On the driver: check the change against the configuration in effect and propose
        it; the future resolves when its entry is applied here. One change at a time, and
        every change to the voters goes through a joint configuration (thesis §4.3)."""
        self._require_leader()
        cs = self.state.conf
        for index in [i for i in self._conf_waiters if i <= self.state.applied]:
            # Applied without resolving it: another entry took that index (leader change).
            _, lost = self._conf_waiters.pop(index)
            if not lost.done():
                lost.set_exception(ProposalLostError("entry replaced", self.state.leader))
        if self.core.raft.is_conf_change_pending() or cs.voters_outgoing or self._conf_waiters:
            what = (
                "a joint configuration is not left yet"
                if cs.voters_outgoing
                else ("a configuration change is not applied yet")
            )
            raise AdminRefusedError(f"another configuration change is in progress ({what})")
        members = self._members()
        single = ConfChangeSingle
        if op == OP_MEMBER_ADD_LEARNER:
            if nid in members:
                role = "learner" if nid in cs.learners else "voter"
                raise AdminRefusedError(f"{nid} is already a member ({role})")
            assert addrs is not None
            try:
                check_addresses_free(self.book, nid, addrs)
            except MembersError as exc:
                raise AdminRefusedError(str(exc)) from None
            cc = ConfChange(
                (single(ConfChangeType.ADD_LEARNER, nid),), context=encode_context({nid: addrs})
            )
        elif op == OP_MEMBER_PROMOTE:
            if nid not in members:
                raise AdminRefusedError(f"{nid} is not a member (add it as a learner first)")
            if nid not in cs.learners:
                raise AdminRefusedError(f"{nid} is already a voter")
            cc = ConfChange((single(ConfChangeType.ADD_NODE, nid),), joint=True)
        elif op == OP_MEMBER_REMOVE:
            if nid not in members:
                raise AdminRefusedError(f"{nid} is not a member")
            if cs.voters == frozenset({nid}):
                raise AdminRefusedError(f"{nid} is the only voter; it cannot be removed")
            joint = nid in cs.voters
            cc = ConfChange((single(ConfChangeType.REMOVE_NODE, nid),), joint=joint)
        else:  # pragma: no cover - the server only passes the three ops
            raise AdminRefusedError(f"unknown membership op {op!r}")
        try:
            index, term = self.core.propose_conf_change(cc)
        except NotLeaderError as exc:
            raise NodeUnavailableError("not leader", exc.leader_hint) from None
        except ProposalDroppedError as exc:
            raise AdminRefusedError(f"refused by the leader: {exc}") from None
        fut: asyncio.Future[ConfState] = asyncio.get_running_loop().create_future()
        self._conf_waiters[index] = (term, fut)
        log.info("%s proposed %s %s at index %d", self.id, op, nid, index)
        return fut

    def _catch_up(self, nid: str) -> tuple[int, int, bool]:
        """On the driver: (the learner's match, the leader's last index, caught up)."""
        self._require_leader()
        cs = self.state.conf
        if nid not in self._members():
            raise AdminRefusedError(f"{nid} is not a member (add it as a learner first)")
        if nid not in cs.learners:
            raise AdminRefusedError(f"{nid} is already a voter")
        status = self.core.status()
        pr = dict(status.progress).get(nid)
        if pr is None or pr.match == 0 or not pr.recent_active:
            return 0, status.last_index, False  # it acknowledged nothing yet, or went silent
        caught_up = status.last_index - pr.match <= PROMOTE_LAG_ENTRIES_MAX
        return pr.match, status.last_index, caught_up

    async def change_members(
        self, op: str, nid: str, addrs: MemberAddrs | None, timeout_s: float
    ) -> dict[str, Any]:
        """Add a learner, promote a learner (once it caught up) or remove a member; returns
        the configuration after the change (and after leaving the joint configuration)."""
        loop = asyncio.get_running_loop()
        budget = max(0.5, timeout_s - ADMIN_REPLY_MARGIN_S)
        deadline = loop.time() + budget
        if op == OP_MEMBER_PROMOTE:
            while True:
                match, last, caught_up = await self._in_driver(lambda: self._catch_up(nid))
                if caught_up:
                    break
                if loop.time() >= deadline:
                    raise AdminRefusedError(
                        f"{nid} is not caught up after {budget:.0f} s (match {match:,} of {last:,})"
                    )
                await asyncio.sleep(ADMIN_POLL_S)
        applied = await self._in_driver(lambda: self._propose_change(op, nid, addrs))
        try:
            await asyncio.wait_for(asyncio.shield(applied), max(0.1, deadline - loop.time()))
        except TimeoutError:
            raise NodeUnavailableError(
                f"the change was proposed but not applied within {budget:.0f} s; "
                "outcome unknown (see 'raft member list')",
                definite=False,
            ) from None
        while self.state.conf.voters_outgoing and loop.time() < deadline:
            await asyncio.sleep(ADMIN_POLL_S)  # the leader leaves the joint config by itself
        if self.is_leader():
            return await self._in_driver(self._members_view)
        view = self._members_view()  # e.g. a leader that removed itself
        view["stepped_down"] = self.id
        return view

    def _start_transfer(self, target: str) -> str:
        self._require_leader()
        cs = self.state.conf
        if not target:
            candidates = [
                (pr.match, nid)
                for nid, pr in self.core.status().progress
                if nid != self.id and nid in cs.voters and pr.recent_active
            ]
            if not candidates:
                raise AdminRefusedError("no other voter is reachable to take over")
            target = max(candidates)[1]
        elif target not in self._members():
            raise AdminRefusedError(f"{target} is not a member")
        elif target not in cs.voters:
            raise AdminRefusedError(f"{target} is not a voter (promote it first)")
        if target != self.id:
            self.core.transfer_leader(target)
        return target

    async def transfer_leader(self, target: str, timeout_s: float) -> dict[str, Any]:
        """Hand leadership to ``target`` (or the most up-to-date voter) and wait until it
        leads (thesis §3.10)."""
        loop = asyncio.get_running_loop()
        budget = max(0.5, timeout_s - ADMIN_REPLY_MARGIN_S)
        deadline = loop.time() + budget
        target = await self._in_driver(lambda: self._start_transfer(target))
        retry_at = loop.time() + 2 * self.cfg.election_timeout_ticks * self._tick_s
        while self.state.leader != target:
            now = self.state.leader or "unknown"
            if loop.time() >= deadline:
                raise AdminRefusedError(
                    f"leadership did not move to {target} within {budget:.0f} s (leader: {now})"
                )
            if self.state.leader not in ("", self.id):
                # The target's campaign lost (writes accepted after the transfer timed out
                # left its log behind) and another voter won: the caller may retry there.
                raise AdminRefusedError(f"leadership moved to {now} instead of {target}")
            if self.is_leader() and loop.time() >= retry_at:
                # The core abandons a transfer after an election timeout: ask again.
                await self._in_driver(lambda: self._start_transfer(target))
                retry_at = loop.time() + 2 * self.cfg.election_timeout_ticks * self._tick_s
            await asyncio.sleep(ADMIN_POLL_S)
        return {"leader": target, "term": self.state.term}

    async def snapshot_now(self) -> dict[str, Any]:
        """Take a snapshot of what this node applied, now (``raft snapshot``): serialised
        and written off the loop, answered once it is durable and current."""
        await self.take_snapshot()
        meta = self.storage.snapshot().meta
        return {"node": self.id, "index": meta.index, "term": meta.term}

    # -- end: membership and admin operations ------------------------------------------------

    # -- views -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        st = self.state
        return {
            "id": self.id,
            "role": st.role,
            "term": st.term,
            "leader": st.leader,
            "commit": st.commit,
            "applied": st.applied,
            "last_index": st.last_index,
            "cluster": self.cfg.cluster,
            "storage_failed": st.storage_failed,
            "durable": self.durable,
            "read_mode": self.read_mode.value,
            "voters": sorted(st.conf.voters),
            "learners": sorted(st.conf.learners | st.conf.learners_next),
            "voters_outgoing": sorted(st.conf.voters_outgoing),
            "joint": bool(st.conf.voters_outgoing),
            "conf_index": st.conf_index,
        }

    def metrics_text(self) -> str:
        st = self.state
        m, snaps, rx = self.metrics, self.transport.snapshots, self.transport.snapshot_receiver
        m.snapshot_stream_bytes_sent_total = snaps.bytes_sent
        m.snapshot_streams_resumed_total = snaps.resumed
        m.snapshot_stream_bytes_received_total = rx.bytes_received
        m.snapshot_streams_rejected_total = rx.rejected
        return metrics.render(
            self.metrics,
            self.id,
            self.cfg.cluster,
            st.term,
            st.role,
            st.commit,
            st.applied,
            st.last_index,
        )
