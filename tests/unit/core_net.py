"""A tiny in-memory network of RawNodes for the core's unit tests (not raft.sim).

Each node has a MemoryStorage and a state machine that is just the list of applied entries.
``process_ready`` does exactly what Ready's docstring asks, in that order, and ``deliver``
steps queued messages into their recipients, dropping those a filter rejects. Every loop is
bounded: ``stabilize`` raises if the cluster does not go quiet.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raft.core import (
    Config,
    ConfState,
    CoreEvent,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    ReadState,
    Role,
    decode_conf_change,
)

DropFilter = Callable[[Message], bool]


def encode_applied(applied: list[Entry]) -> bytes:
    """Snapshot of the in-test state machine: the applied entries themselves."""
    return json.dumps([[e.index, e.term, e.data.hex(), e.type.value] for e in applied]).encode()


def decode_applied(data: bytes) -> list[Entry]:
    if not data:
        return []
    return [
        Entry(index=i, term=t, data=bytes.fromhex(d), type=EntryType(ty))
        for i, t, d, ty in json.loads(data)
    ]


@dataclass
class NodeBox:
    node: RawNode
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    events: list[CoreEvent] = field(default_factory=list)
    conf_states: list[ConfState] = field(default_factory=list)
    persisted_before_send: list[tuple[int, str]] = field(default_factory=list)


class Network:
    def __init__(self, n: int = 3, *, seed: int = 1, **cfg: object) -> None:
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.cfg = cfg
        self.seed = seed
        self.boxes: dict[str, NodeBox] = {}
        for i, nid in enumerate(self.ids):
            self.boxes[nid] = self._make(nid, tuple(self.ids), i)
        self.inflight: list[Message] = []
        self.drop: DropFilter | None = None
        self.delivered: list[Message] = []

    def _make(self, nid: str, voters: tuple[str, ...], salt: int) -> NodeBox:
        storage = MemoryStorage()
        c = Config(id=nid, voters=voters, **self.cfg)  # type: ignore[arg-type]
        return NodeBox(RawNode(c, storage, random.Random(self.seed * 1000 + salt)), storage)

    def add_node(self, nid: str, voters: tuple[str, ...] = ()) -> None:
        """A fresh node that joins later (its config comes from the leader's snapshot or
        log; ``voters`` only seeds it)."""
        self.boxes[nid] = self._make(nid, voters, len(self.boxes))

    def compact(self, nid: str) -> int:
        """Driver-side compaction: snapshot the state machine at its applied index and
        drop the log up to there. Returns the snapshot index (0 if nothing to do)."""
        box = self.boxes[nid]
        st = box.node.status()
        if st.applied <= box.storage.snapshot().meta.index:
            return 0
        box.storage.create_snapshot(st.applied, st.conf_state, encode_applied(box.applied))
        box.storage.compact(st.applied)
        return st.applied

    def restart(self, nid: str) -> None:
        """Crash and restart ``nid`` from its storage (MemoryStorage loses nothing)."""
        box = self.boxes[nid]
        c = Config(id=nid, voters=tuple(self.ids), **self.cfg)  # type: ignore[arg-type]
        # The in-test state machine is rebuilt from the log, so start with applied = 0.
        box.node = RawNode(c, box.storage, random.Random(self.seed * 7919))
        box.applied = decode_applied(box.storage.snapshot().data)

    def node(self, nid: str) -> RawNode:
        return self.boxes[nid].node

    # -- driver --------------------------------------------------------------------------
    def process_ready(self, nid: str) -> bool:
        box = self.boxes[nid]
        node = box.node
        if not node.has_ready():
            return False
        rd = node.ready()
        self.inflight.extend(rd.messages)
        if rd.snapshot is not None:
            box.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            box.storage.append(list(rd.entries))
        if rd.hard_state is not None:
            box.storage.set_hard_state(rd.hard_state)
        box.storage.sync()
        for m in rd.persisted_messages:
            box.persisted_before_send.append((box.storage.last_index(), m.type.value))
        self.inflight.extend(rd.persisted_messages)
        if rd.snapshot is not None:
            box.applied = decode_applied(rd.snapshot.data)
        for e in rd.committed_entries:
            box.applied.append(e)
            if e.type == EntryType.CONF_CHANGE:
                box.conf_states.append(node.apply_conf_change(decode_conf_change(e.data)))
        box.read_states.extend(rd.read_states)
        box.events.extend(rd.events)
        node.advance(rd)
        return True

    def deliver(self) -> int:
        msgs, self.inflight = self.inflight, []
        n = 0
        for m in msgs:
            lost = m.to not in self.boxes or (self.drop is not None and self.drop(m))
            if not lost:
                self.delivered.append(m)
                self.boxes[m.to].node.step(m)
                n += 1
            if m.type == MessageType.SNAP and m.sender in self.boxes:
                # Like a real transport, tell the sender how the snapshot fared.
                self.boxes[m.sender].node.report_snapshot(m.to, ok=not lost)
        return n

    def stabilize(self, max_rounds: int = 500) -> None:
        for _ in range(max_rounds):
            busy = False
            for nid in list(self.boxes):
                busy |= self.process_ready(nid)
            busy |= self.deliver() > 0
            if not busy and not self.inflight:
                return
        raise AssertionError(f"network did not stabilize within {max_rounds} rounds")

    def tick(self, nid: str, n: int = 1) -> None:
        for _ in range(n):
            self.boxes[nid].node.tick()

    def tick_all(self, n: int = 1, stabilize: bool = True) -> None:
        for _ in range(n):
            for nid in list(self.boxes):
                self.boxes[nid].node.tick()
            if stabilize:
                self.stabilize()

    def elect(self, nid: str) -> None:
        self.node(nid).campaign()
        self.stabilize()
        assert self.node(nid).status().role == Role.LEADER, self.node(nid).status()

    # -- partitions ----------------------------------------------------------------------
    def isolate(self, *nids: str) -> None:
        group = set(nids)
        self.drop = lambda m: (m.sender in group) != (m.to in group)

    def cut(self, a: str, b: str) -> None:
        self.drop = lambda m: {m.sender, m.to} == {a, b}

    def heal(self) -> None:
        self.drop = None

    # -- inspection ----------------------------------------------------------------------
    def leaders(self) -> list[str]:
        return [nid for nid, b in self.boxes.items() if b.node.status().role == Role.LEADER]

    def log(self, nid: str) -> list[tuple[int, int, bytes]]:
        st = self.boxes[nid].storage
        ents = st.entries(st.first_index(), st.last_index() + 1)
        return [(e.index, e.term, e.data) for e in ents]

    def applied_data(self, nid: str) -> list[bytes]:
        return [e.data for e in self.boxes[nid].applied if e.data and e.type == EntryType.NORMAL]
