"""Configuration of one Raft node (:class:`Config`), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from raft.core.errors import ConfigError
from raft.core.readonly import ReadOnlyOption
from raft.core.types import NONE, NodeId


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the core needs to know up front. Times are in ticks of the driver's clock.

    ``voters``/``learners`` give the bootstrap membership; they are used only when storage
    holds none (no snapshot). Membership then evolves by CONF_CHANGE entries, which the driver
    applies (``apply_conf_change``) as it applies the log from index 1. Hence every node must
    be started with the same bootstrap ``voters``, including nodes added later (they replay
    the log from index 1 too, or receive a snapshot whose ConfState replaces it), and after a
    restart the storage's ConfState must reflect every conf change up to ``applied``.
    """

    id: NodeId
    voters: tuple[NodeId, ...] = ()
    election_timeout_ticks: int = 10
    """A follower that hears from no leader for a random time in ``[e, 2e)`` ticks starts an
    election (§5.2); a check-quorum leader steps down after ``e`` ticks without a quorum."""
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    """Thesis §9.6: ask whether an election could be won before disrupting the cluster by
    bumping the term."""
    check_quorum: bool = True
    """Leader steps down when it has not heard from a quorum within an election timeout;
    followers that hear from a live leader ignore (pre-)vote requests ("leader stickiness",
    thesis §4.2.3/§6.2)."""
    max_msg_bytes: int = 1 << 20
    """Upper bound on the entries (by ``Entry.size_bytes``) in one AppendEntries; one entry is
    always sent even if bigger."""
    max_inflight_msgs: int = 256
    """AppendEntries pipelined to a follower in replicate state before waiting for acks."""
    read_only: ReadOnlyOption = ReadOnlyOption.SAFE
    """SAFE: ReadIndex with a heartbeat round. LEASE_BASED: answer from the leader lease
    without a round; correct only if clock drift between nodes is bounded well below the
    election timeout (thesis §6.4.1), and only with ``check_quorum``."""
    applied: int = 0
    """Last index the state machine applied before this restart; committed entries are
    handed out from ``applied + 1``."""
    max_uncommitted_bytes: int = 0
    """Leader refuses proposals (ProposalDroppedError) while the payload bytes of its
    uncommitted entries exceed this; 0 means unlimited."""
    learners: tuple[NodeId, ...] = ()
    """Initial learners (additive field; see ``voters``)."""
    max_committed_bytes_per_ready: int = 1 << 22
    """Bound on ``Ready.committed_entries`` by size (at least one entry is always given)."""
    recovering: bool = False
    """Storage reported that this node lost, or cannot prove, entries it may have
    acknowledged (a cut torn or corrupt tail, ``raft repair``, a marked wiped directory).
    Protocol-aware recovery (docs/storage.md): such a node neither votes nor campaigns until
    it has appended, from a leader of a term at least its own, everything that leader held
    (an AppendEntries marked ``APPEND_TAIL``); it then emits a ``recovered`` event, after
    which the driver clears the durable marker once the Ready is persisted."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or self.id == NONE:
            raise ConfigError("id must be a non-empty string")
        if self.heartbeat_ticks <= 0:
            raise ConfigError(f"heartbeat_ticks must be > 0, got {self.heartbeat_ticks}")
        if self.election_timeout_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_timeout_ticks ({self.election_timeout_ticks}) must be greater "
                f"than heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_msg_bytes <= 0:
            raise ConfigError(f"max_msg_bytes must be > 0, got {self.max_msg_bytes}")
        if self.max_inflight_msgs <= 0:
            raise ConfigError(f"max_inflight_msgs must be > 0, got {self.max_inflight_msgs}")
        if self.applied < 0:
            raise ConfigError(f"applied must be >= 0, got {self.applied}")
        if self.max_uncommitted_bytes < 0:
            raise ConfigError(
                f"max_uncommitted_bytes must be >= 0, got {self.max_uncommitted_bytes}"
            )
        if self.max_committed_bytes_per_ready <= 0:
            raise ConfigError("max_committed_bytes_per_ready must be > 0")
        if not isinstance(self.read_only, ReadOnlyOption):
            raise ConfigError(f"read_only must be a ReadOnlyOption, got {self.read_only!r}")
        if self.read_only == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError("read_only=LEASE_BASED requires check_quorum=True")
        if set(self.voters) & set(self.learners):
            raise ConfigError("a node cannot be both in voters and learners")
        if any(not isinstance(v, str) or v == NONE for v in (*self.voters, *self.learners)):
            raise ConfigError("voters and learners must be non-empty strings")
