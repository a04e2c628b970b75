"""Simulated clients: they issue register or kv operations through the node they believe
leads and record a Jepsen-style history (:class:`raft.lincheck.history.HistoryEvent`) with
virtual times, ready for :func:`raft.lincheck.check_history`.

How outcomes are decided, and why each is sound:

- A write or cas proposed at ``(index, term)`` completes ``ok`` (or ``fail`` for a cas whose
  expectation did not hold: the machine says so) when the node applies an entry at
  ``index`` with that term: it is our entry, committed. If the node applies another term at
  ``index``, our entry can never commit (committed entries are unique per index): ``fail``.
- A proposal refused up front (not leader, proposal dropped, node down) did not happen:
  ``fail``.
- A write whose node crashed, or that did not resolve within the timeout, has an unknown
  outcome: ``info``, and the process retires (a new process number takes its place).
- A read uses ReadIndex: it completes ``ok`` with the machine's value once the node has
  applied up to the read index; a read that times out or whose node crashed had no effect,
  so it completes ``fail``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raft.core.errors import NotLeaderError, ProposalDroppedError
from raft.core.types import Entry, NodeId, ReadState
from raft.lincheck.history import HistoryEvent
from raft.machines import codec


class Workload(enum.Enum):
    """What the clients do; each maps to a lincheck model and a machine."""

    REGISTER = "register"  # one cas-register (model "cas-register", machine "register")
    KV = "kv"  # a few keys, each a cas-register (model "kv", machine "kv")

    @property
    def model(self) -> str:
        return "cas-register" if self is Workload.REGISTER else "kv"


class ClientTarget(Protocol):
    """What clients need from the world (one node's client API)."""

    def can_serve(self, node: NodeId) -> bool:
        """The node is up and not paused."""
        ...

    def propose(self, node: NodeId, data: bytes) -> tuple[int, int]:
        """Propose at ``node``; raises NotLeaderError / ProposalDroppedError."""
        ...

    def read_index(self, node: NodeId, context: bytes) -> None: ...

    def applied_index(self, node: NodeId) -> int: ...

    def query(self, node: NodeId, request: bytes) -> bytes: ...

    def leader_hint(self) -> NodeId | None: ...

    def leader_seen_by(self, node: NodeId) -> NodeId | None:
        """Who ``node`` believes leads (maybe a deposed leader, or itself)."""
        ...


@dataclass(slots=True)
class _Pending:
    process: int
    f: str
    key: str | None
    value: Any
    node: NodeId
    deadline: int
    index: int = 0
    term: int = 0
    context: bytes = b""
    read_index: int = -1
    """For reads: -1 until the ReadState arrives, then the index to wait for."""


class ClientPool:
    """``processes`` concurrent clients, one outstanding operation each."""

    def __init__(
        self,
        rng: random.Random,
        workload: Workload,
        processes: int,
        nodes: Sequence[NodeId],
        ns_per_unit: int,
        timeout: int,
        keys: int = 3,
        *,
        open_loop: bool = False,
        sticky: bool = False,
        leader_bias: float = 0.9,
    ) -> None:
        self._rng = rng
        self.workload = workload
        self._nodes = list(nodes)
        self._ns = ns_per_unit
        self._timeout = timeout
        self._keys = [f"k{i}" for i in range(keys)] if workload is Workload.KV else [None]
        self._slots: list[int] = list(range(processes))
        """Process number currently behind each client slot (replaced after ``info``)."""
        self._next_process = processes
        self._open_loop = open_loop
        self._max_slots = 2 * processes
        """Open loop: a new client joins when all are busy, up to this many at once."""
        self._sticky = sticky
        self._leader_bias = leader_bias
        """Chance that an operation goes to the newest leader rather than a random node."""
        self._home: dict[int, NodeId] = {}
        """Sticky clients: the node each slot keeps using until it refuses (a client that
        trusts a deposed leader makes that leader grow a long suffix of its own)."""
        self._pending: dict[int, _Pending] = {}
        """Outstanding operation per slot."""
        self._next_value = 1
        self._next_ctx = 0
        self.history: list[HistoryEvent] = []
        self.on_event: Callable[[str], None] | None = None
        """Called with a one-line description of each history event (the world's trace)."""
        self.ok = 0
        self.failed = 0
        self.unknown = 0

    @property
    def invoked(self) -> int:
        return self.ok + self.failed + self.unknown + len(self._pending)

    # -- issuing -------------------------------------------------------------------------
    def issue(self, now: int, world: ClientTarget) -> None:
        """A random idle client invokes one operation (nothing when all are busy)."""
        idle = [s for s in range(len(self._slots)) if s not in self._pending]
        if not idle:
            if not self._open_loop or len(self._slots) >= self._max_slots:
                return
            # Open loop: requests keep arriving whether or not earlier ones completed.
            self._slots.append(self._next_process)
            self._next_process += 1
            idle = [len(self._slots) - 1]
        rng = self._rng
        slot = rng.choice(idle)
        process = self._slots[slot]
        key = rng.choice(self._keys)
        home = self._home.get(slot) if self._sticky else None
        if home is not None:
            node = home
        else:
            # Half the time the client asks a random node who leads, as a real client does:
            # a node cut off with a deposed leader points at it, so stale leaders get
            # requests (and stale reads, if they serve any).
            if rng.random() < 0.5:
                leader = world.leader_seen_by(rng.choice(self._nodes))
            else:
                leader = world.leader_hint()
            node = (
                leader
                if leader is not None and rng.random() < self._leader_bias
                else rng.choice(self._nodes)
            )
        roll = rng.random()
        value: Any
        if roll < 0.4:
            f, value, data = "read", None, b""
        elif roll < 0.75:
            v = self._fresh()
            f, value, data = "write", v, codec.encode_command("write", key, v)
        else:
            expect = rng.randint(0, self._next_value - 1) if self._next_value > 1 else 0
            v = self._fresh()
            expect_value = expect if expect > 0 else None
            f, value = "cas", [expect_value, v]
            data = codec.encode_command("cas", key, v, expect_value)
        self._record(process, "invoke", f, key, value, now, node)
        op = _Pending(process, f, key, value, node, deadline=now + self._timeout)
        if not world.can_serve(node):
            self._complete(slot, op, "fail", now, error="unavailable")
            return
        self._pending[slot] = op
        if f == "read":
            self._next_ctx += 1
            op.context = f"read:{self._next_ctx}".encode()
            try:
                world.read_index(node, op.context)
            except (NotLeaderError, ProposalDroppedError) as exc:
                self._complete(slot, op, "fail", now, error=type(exc).__name__)
            return
        try:
            op.index, op.term = world.propose(node, data)
        except (NotLeaderError, ProposalDroppedError) as exc:
            self._complete(slot, op, "fail", now, error=type(exc).__name__)

    def _fresh(self) -> int:
        v = self._next_value
        self._next_value += 1
        return v

    # -- completions ---------------------------------------------------------------------
    def on_applied(self, node: NodeId, entry: Entry, result: bytes, now: int) -> None:
        """``node`` applied ``entry`` with ``result``."""
        for slot, op in list(self._pending.items()):
            if op.f == "read" or op.node != node or op.index != entry.index:
                continue
            if op.term != entry.term:
                self._complete(slot, op, "fail", now, error="entry overwritten")
                continue
            res = codec.decode_result(result)
            if res.status is codec.ResultStatus.OK:
                self._complete(slot, op, "ok", now)
            else:
                self._complete(slot, op, "fail", now, error=res.error or res.status.value)

    def on_read_state(self, node: NodeId, rs: ReadState, now: int, world: ClientTarget) -> None:
        for op in self._pending.values():
            if op.f == "read" and op.node == node and op.context == rs.context:
                op.read_index = rs.index
        self.serve_reads(node, now, world)

    def serve_reads(self, node: NodeId, now: int, world: ClientTarget) -> None:
        """Answer reads at ``node`` whose read index it has applied."""
        applied = -1
        for slot, op in list(self._pending.items()):
            if op.f != "read" or op.node != node or op.read_index < 0:
                continue
            if applied < 0:
                applied = world.applied_index(node)
            if applied < op.read_index:
                continue
            request = codec.encode_command("read", op.key)
            res = codec.decode_result(world.query(node, request))
            if res.status is codec.ResultStatus.OK:
                op.value = res.value
                self._complete(slot, op, "ok", now)
            else:
                self._complete(slot, op, "fail", now, error=res.error)

    def on_node_down(self, node: NodeId, now: int) -> None:
        """``node`` crashed: its writes have unknown outcome, its reads did nothing."""
        for slot, op in list(self._pending.items()):
            if op.node == node:
                kind = "fail" if op.f == "read" or op.index == 0 else "info"
                self._complete(slot, op, kind, now, error="node crashed")

    def expire(self, now: int) -> None:
        """Time out operations past their deadline."""
        for slot, op in list(self._pending.items()):
            if now >= op.deadline:
                kind = "fail" if op.f == "read" else "info"
                self._complete(slot, op, kind, now, error="timeout")

    # -- history -------------------------------------------------------------------------
    def _complete(
        self, slot: int, op: _Pending, kind: str, now: int, error: str | None = None
    ) -> None:
        self._pending.pop(slot, None)
        if self._sticky:
            if kind == "ok":
                self._home[slot] = op.node
            elif kind == "info" or error in ("NotLeaderError", "unavailable", "node crashed"):
                self._home.pop(slot, None)
        value = op.value if kind != "fail" or op.f != "read" else None
        self._record(op.process, kind, op.f, op.key, value, now, op.node, error)
        if kind == "ok":
            self.ok += 1
        elif kind == "fail":
            self.failed += 1
        else:
            self.unknown += 1
            self._slots[slot] = self._next_process  # Jepsen: after info, a new process
            self._next_process += 1

    def _record(
        self,
        process: int,
        kind: str,
        f: str,
        key: str | None,
        value: Any,
        now: int,
        node: NodeId,
        error: str | None = None,
    ) -> None:
        if self.on_event is not None:
            what = f"{f} {key}" if key is not None else f
            shown = "" if value is None else f" {value}"
            why = f" ({error})" if error else ""
            self.on_event(f"client p{process} {kind} {what}{shown} at {node}{why}")
        self.history.append(
            HistoryEvent(
                process=process,
                type=kind,
                f=f,
                key=key,
                value=value,
                time=now * self._ns,
                node=node,
                error=error,
            )
        )
