"""Snapshots and InstallSnapshot (thesis §5.1-§5.3): a leader sends its snapshot to a
follower that needs compacted entries; the follower restores it."""

from __future__ import annotations

import random

from core_net import Network

from raft.core import (
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Snapshot,
    SnapshotMeta,
)
from raft.core.progress import ProgressState

MT = MessageType


def lagging_cluster() -> Network:
    net = Network(3, pre_vote=False)
    net.elect("n1")
    net.isolate("n3")
    for k in range(5):
        net.node("n1").propose(f"v{k}".encode())
    net.stabilize()
    assert net.compact("n1") == 6
    net.heal()
    return net


def test_leader_sends_snapshot_for_compacted_entries() -> None:
    """Thesis §5.3: when nextIndex is compacted, send InstallSnapshot instead."""
    net = lagging_cluster()
    net.tick("n1")
    net.stabilize()
    snaps = [m for m in net.delivered if m.type == MT.SNAP]
    assert len(snaps) == 1 and snaps[0].to == "n3"
    assert snaps[0].snapshot is not None and snaps[0].snapshot.meta.index == 6
    assert net.applied_data("n3") == [f"v{k}".encode() for k in range(5)]
    assert net.node("n3").status().commit == 6
    net.node("n1").propose(b"after")
    net.stabilize()
    assert net.applied_data("n3")[-1] == b"after"


def test_follower_snapshot_ready_and_state() -> None:
    """The follower hands the snapshot to the driver in Ready.snapshot (with must_sync) and
    acknowledges after persisting it."""
    storage = MemoryStorage()
    node = RawNode(Config(id="n2", voters=("n1", "n2", "n3")), storage, random.Random(1))
    cs = ConfState(voters=frozenset({"n1", "n2", "n3"}))
    snap = Snapshot(SnapshotMeta(index=10, term=3, conf_state=cs), b"state")
    node.step(Message(type=MT.SNAP, sender="n1", to="n2", term=3, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot == snap and rd.must_sync
    assert [(m.type, m.index) for m in rd.persisted_messages] == [(MT.APP_RESP, 10)]
    assert rd.committed_entries == ()
    storage.apply_snapshot(rd.snapshot)
    assert rd.hard_state is not None
    storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    st = node.status()
    assert (st.commit, st.applied, st.last_index) == (10, 10, 10)


def test_snapshot_older_than_commit_is_ignored() -> None:
    """A snapshot not beyond our commit index carries nothing new: reply with commit."""
    storage = MemoryStorage()
    storage.append([Entry(index=i, term=1) for i in range(1, 6)])
    storage.set_hard_state(HardState(term=1, commit=5))
    node = RawNode(Config(id="n2", voters=("n1", "n2", "n3")), storage, random.Random(1))
    cs = ConfState(voters=frozenset({"n1", "n2", "n3"}))
    snap = Snapshot(SnapshotMeta(index=4, term=1, conf_state=cs), b"")
    node.step(Message(type=MT.SNAP, sender="n1", to="n2", term=1, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot is None
    assert [m.index for m in rd.persisted_messages] == [5]


def test_snapshot_matching_our_log_only_fast_forwards_commit() -> None:
    """If we hold the snapshot's last entry, keep the log and just advance commit."""
    storage = MemoryStorage()
    storage.append([Entry(index=i, term=1) for i in range(1, 6)])
    storage.set_hard_state(HardState(term=1, commit=2))
    node = RawNode(Config(id="n2", voters=("n1", "n2", "n3")), storage, random.Random(1))
    cs = ConfState(voters=frozenset({"n1", "n2", "n3"}))
    snap = Snapshot(SnapshotMeta(index=4, term=1, conf_state=cs), b"")
    node.step(Message(type=MT.SNAP, sender="n1", to="n2", term=1, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot is None
    assert node.status().commit == 4 and node.status().last_index == 5


def test_failed_snapshot_report_returns_to_probe() -> None:
    """report_snapshot(ok=False) takes the follower out of snapshot state so the leader
    retries; until a report, nothing else is sent to it."""
    net = lagging_cluster()
    net.drop = lambda m: m.type == MT.SNAP  # the transport fails (core_net reports it)
    net.tick("n1")
    for _ in range(5):
        net.process_ready("n1")
        net.deliver()
        net.process_ready("n3")
        net.deliver()
    ((_, pr),) = [p for p in net.node("n1").status().progress if p[0] == "n3"]
    assert pr.state == ProgressState.PROBE
    net.heal()
    net.tick("n1")
    net.stabilize()
    assert net.node("n3").status().commit == 6


def test_restart_from_snapshot() -> None:
    """A node restarts from its storage's snapshot: commit/applied start there."""
    net = Network(3)
    net.elect("n1")
    for k in range(3):
        net.node("n1").propose(f"v{k}".encode())
    net.stabilize()
    net.compact("n2")
    net.restart("n2")
    st = net.node("n2").status()
    assert st.commit >= 4 and st.applied == 4
    net.node("n1").propose(b"more")
    net.stabilize()
    assert net.applied_data("n2") == [b"v0", b"v1", b"v2", b"more"]


def test_restart_with_applied_hands_out_only_later_entries() -> None:
    """Config.applied: after a restart, committed entries start at applied + 1; an applied
    index below the snapshot is harmless (the snapshot covers it)."""
    net = Network(1)
    net.elect("n1")
    for k in range(4):
        net.node("n1").propose(f"v{k}".encode())
    net.stabilize()
    storage = net.boxes["n1"].storage
    cfg = Config(id="n1", voters=("n1",), applied=3)
    node = RawNode(cfg, storage, random.Random(1))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [4, 5]
    net.compact("n1")
    node = RawNode(Config(id="n1", voters=("n1",), applied=2), storage, random.Random(1))
    assert node.status().applied == 5 and not node.ready().committed_entries


def test_unreported_lost_snapshot_is_retried_after_timeout() -> None:
    """A driver that never reports a lost snapshot does not stall the follower forever:
    after four election timeouts the leader probes again and resends."""
    net = lagging_cluster()
    lost: list[Message] = []

    def drop_snap(m: Message) -> bool:
        if m.type == MT.SNAP and not lost:
            lost.append(m)
            return True
        return False

    net.drop = drop_snap
    net.tick("n1")
    # Deliver by hand (core_net would report the loss; a careless driver does not).
    for _ in range(10):
        msgs, net.inflight = net.inflight, []
        for m in msgs:
            if not drop_snap(m) and m.to in net.boxes:
                net.node(m.to).step(m)
        for nid in net.ids:
            net.process_ready(nid)
    assert lost
    ((_, pr),) = [p for p in net.node("n1").status().progress if p[0] == "n3"]
    assert pr.state == ProgressState.SNAPSHOT
    net.heal()
    for _ in range(4 * 10 + 2):
        net.tick("n1")
        net.tick("n2")
        net.tick("n3")
        net.stabilize()
    assert net.node("n3").status().commit >= 6
