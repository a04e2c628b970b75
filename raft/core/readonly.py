"""Bookkeeping for linearizable reads without a log entry (ReadIndex, thesis §6.4).

A leader that receives a read records its commit index as the read index, then broadcasts a
heartbeat carrying the request's context. Once a quorum acknowledges that heartbeat the
leader knows it was still the leader when the read arrived, so the read (and every read
queued before it) may be served once the state machine has applied the read index.

Contexts identify requests and must be unique among the reads in flight (clients prefix them
with their node id and a counter); a duplicate context is dropped while the first is pending.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from raft.core.types import Message, NodeId


class ReadOnlyOption(enum.Enum):
    SAFE = "safe"
    """ReadIndex with a heartbeat round per batch of reads: safe under any clock behaviour."""
    LEASE_BASED = "lease_based"
    """Serve reads at the leader's commit index without a heartbeat round, trusting the
    leader lease given by check-quorum. Safe only if clocks drift by less than the election
    timeout between nodes (thesis §6.4.1); needs ``check_quorum=True``."""


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: dict[NodeId, bool] = field(default_factory=dict)


class ReadOnly:
    """Pending ReadIndex requests of a leader, in arrival order."""

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, req: Message) -> None:
        """Record ``req`` (a READ_INDEX message) with read index ``index``."""
        ctx = req.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=req, index=index)
        self.queue.append(ctx)

    def recv_ack(self, nid: NodeId, ctx: bytes) -> dict[NodeId, bool] | None:
        """A heartbeat response carrying ``ctx`` came from ``nid``; returns the acks so far,
        or None if no such request is pending."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[nid] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """The request ``ctx`` is confirmed: it and every request queued before it (their
        heartbeat round was overtaken by this one) are returned and forgotten."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx)
        done_ctxs = self.queue[: i + 1]
        self.queue = self.queue[i + 1 :]
        return [self.pending.pop(c) for c in done_ctxs]

    def last_pending_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
