"""The values that flow into and out of the Raft core.

Everything here is a frozen, slotted dataclass or an enum: the core never mutates what it
received and never hands out something the driver could change behind its back.

Index arithmetic used throughout the core: log indexes start at 1; index 0 with term 0 is the
empty log's sentinel. A snapshot with meta ``(index=i, term=t)`` stands in for entries
``1..i``, so after it the first index in the log is ``i + 1``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str
"""Nodes are named by short strings (``"n1"``); the empty string means "nobody"."""

NONE: NodeId = ""


class EntryType(enum.Enum):
    NORMAL = "normal"
    """Client command (``data`` is opaque to Raft) or, with empty data, a leader's no-op."""
    CONF_CHANGE = "conf_change"
    """Membership change; ``data`` is an encoded :class:`ConfChange`."""


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    data: bytes = b""
    type: EntryType = EntryType.NORMAL

    def size_bytes(self) -> int:
        """Approximate wire size, used for batch limits (``max_msg_bytes``)."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent (§5.1, Figure 2
    "Persistent state on all servers"; commit is persisted too so a restart applies faster)."""

    term: int = 0
    vote: NodeId = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """Cluster membership. ``voters_outgoing`` is non-empty only during a joint configuration
    (Raft thesis §4.3): decisions then need a majority of both ``voters`` and
    ``voters_outgoing``."""

    voters: frozenset[NodeId] = frozenset()
    learners: frozenset[NodeId] = frozenset()
    voters_outgoing: frozenset[NodeId] = frozenset()
    learners_next: frozenset[NodeId] = frozenset()
    auto_leave: bool = False


class ConfChangeType(enum.Enum):
    ADD_NODE = "add_node"
    ADD_LEARNER = "add_learner"
    REMOVE_NODE = "remove_node"


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node: NodeId


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One or more changes applied together. More than one change, or ``joint=True``, goes
    through a joint configuration; an empty ``changes`` tuple leaves a joint configuration."""

    changes: tuple[ConfChangeSingle, ...] = ()
    joint: bool = False
    auto_leave: bool = True
    context: str = ""
    """Opaque to the core, carried in the entry for the driver (the runtime puts the new
    members' addresses here, so every node learns them from the log)."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.meta.index == 0


class MessageType(enum.Enum):
    # Local messages: never sent on the wire; the driver (or RawNode helpers) feed them to step.
    HUP = "hup"  # start an election (pre-vote first when enabled)
    BEAT = "beat"  # leader: send heartbeats now
    PROPOSE = "propose"  # entries to append (leader) or refuse/forward (others)
    READ_INDEX = "read_index"  # linearizable read request; ``context`` identifies it
    TRANSFER_LEADER = "transfer_leader"  # ``sender`` is the transferee
    CHECK_QUORUM = "check_quorum"  # leader: step down unless a quorum was heard from
    UNREACHABLE = "unreachable"  # driver reports ``sender`` could not be reached
    SNAP_STATUS = "snap_status"  # driver reports snapshot to ``sender`` done (``reject``=failed)
    CONNECTION_LOST = "connection_lost"  # driver saw ``sender`` close its connection to us
    # Peer messages.
    APP = "app"
    APP_RESP = "app_resp"
    VOTE = "vote"
    VOTE_RESP = "vote_resp"
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESP = "pre_vote_resp"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESP = "heartbeat_resp"
    SNAP = "snap"
    TIMEOUT_NOW = "timeout_now"
    READ_INDEX_RESP = "read_index_resp"

    def is_local(self) -> bool:
        return self in _LOCAL

    def is_response(self) -> bool:
        return self in _RESPONSES


_LOCAL = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.PROPOSE,
        MessageType.TRANSFER_LEADER,
        MessageType.CHECK_QUORUM,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CONNECTION_LOST,
    }
)
# READ_INDEX is local when it comes from the node's own driver and a peer message when a
# follower forwards it to the leader; it is therefore in neither set.
_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    """A Raft message. Field meaning by type:

    - APP: ``index``/``log_term`` are the entry preceding ``entries`` (prevLogIndex/Term),
      ``commit`` is the leader's commit index.
    - APP_RESP: accept -> ``index`` is the last index now matching the leader; reject ->
      ``index`` is the rejected prevLogIndex, ``reject_hint`` the index and ``log_term`` the
      term the follower suggests to retry from (fast backtracking, thesis §5.3 / etcd).
    - VOTE/PRE_VOTE: ``index``/``log_term`` are the candidate's last entry. For PRE_VOTE,
      ``term`` is the term the candidate would campaign for.
    - HEARTBEAT: ``commit`` is min(leader commit, follower match); ``context`` carries a
      ReadIndex round id.
    - READ_INDEX / READ_INDEX_RESP: ``context`` identifies the request, ``index`` is the read
      index in the response.
    - SNAP: ``snapshot`` is set.
    """

    type: MessageType
    to: NodeId = NONE
    sender: NodeId = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver may want to show; not persisted."""

    leader: NodeId = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex request is answered: once ``applied >= index`` the driver may serve the
    read identified by ``context`` from its state machine (thesis §6.4)."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class CoreEvent:
    """Something the core did that the node event log should record (role change, vote cast,
    commit advance, truncation, ...). ``fields`` holds JSON-ready values. The core only
    reports; the driver stamps time and writes (see docs/formats.md)."""

    ev: str
    term: int
    fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Ready:
    """Work the driver must do, in this order, then hand the Ready back to ``advance``:

    1. Send ``messages`` (may go out at once, in parallel with step 2).
    2. Persist ``snapshot`` (if any), then append ``entries`` (truncating any stored entries at
       index >= entries[0].index first), then write ``hard_state`` (if any). Make them durable
       (fsync) when ``must_sync`` is true.
    3. Only then send ``persisted_messages`` (vote grants, append acknowledgements: they
       promise something that must survive a crash, Figure 2 "respond after persisting").
    4. Apply ``committed_entries`` to the state machine, in order; install ``snapshot`` into
       the state machine first when one is set.
    5. Serve ``read_states`` once the applied index reaches each one's index.
    6. Record ``events`` in the node event log.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    messages: tuple[Message, ...] = ()
    persisted_messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    events: tuple[CoreEvent, ...] = ()
    must_sync: bool = False
    """True when ``entries``, a snapshot, the term or the vote changed, or when
    ``committed_entries`` hold a configuration change (its commit must survive a crash:
    a node restarted below it would use the previous configuration). A commit index that
    moved over ordinary entries alone may be written lazily."""
