"""Exceptions raised by the core. Local mistakes (the caller asked something impossible) are
kept apart from conditions the caller must handle (not the leader, log compacted)."""

from __future__ import annotations

from raft.core.types import NodeId


class RaftError(Exception):
    """Base class of everything the core raises."""


class NotLeaderError(RaftError):
    """A proposal or read reached a node that is not the leader. ``leader_hint`` is the node
    this one believes leads (empty when it knows of none); clients should retry there."""

    def __init__(self, leader_hint: NodeId) -> None:
        super().__init__(f"not leader (leader hint: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class ProposalDroppedError(RaftError):
    """The proposal was refused for a reason other than leadership: a leadership transfer in
    progress, the uncommitted-bytes limit reached, or a configuration change already
    pending."""


class CompactedError(RaftError):
    """The requested index is covered by a snapshot and no longer available as an entry."""


class UnavailableError(RaftError):
    """The requested index is past the last index of the log."""


class SnapshotOutOfDateError(RaftError):
    """A snapshot older than the one already held was offered."""


class ConfigError(RaftError):
    """A :class:`raft.core.Config` value is invalid; the message names the field."""


class ConfChangeError(RaftError):
    """A membership change cannot be applied to the current configuration (for example a
    second voter change without a joint configuration, or leaving a joint configuration that
    is not joint); the message says which rule it broke."""
