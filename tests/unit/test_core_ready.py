"""The Ready/advance contract (raft/core/types.py Ready docstring)."""

from __future__ import annotations

import random

from core_net import Network

from raft.core import Config, EntryType, MemoryStorage, MessageType, RawNode, Ready, Role
from raft.core.types import ConfChange, ConfChangeSingle, ConfChangeType

MT = MessageType


def test_no_ready_when_idle() -> None:
    net = Network(3)
    net.elect("n1")
    net.stabilize()
    for nid in net.ids:
        assert not net.node(nid).has_ready()


def test_leader_messages_go_out_before_persistence() -> None:
    """A leader may send AppendEntries in parallel with writing the same entries (thesis
    §10.2.1); they are in ``messages``, the entries in ``entries``."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose(b"x")
    rd = net.node("n1").ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert {m.to for m in rd.messages if m.type == MT.APP} == {"n2", "n3"}
    assert rd.persisted_messages == ()
    assert rd.must_sync


def test_leader_counts_itself_only_after_advance() -> None:
    """The leader's own match index moves only when advance says its entries are durable."""
    net = Network(3)
    net.elect("n1")
    leader = net.node("n1")
    leader.propose(b"x")
    rd = leader.ready()
    ((_, me),) = [p for p in leader.status().progress if p[0] == "n1"]
    assert me.match == 1
    net.boxes["n1"].storage.append(list(rd.entries))
    leader.advance(rd)
    ((_, me),) = [p for p in leader.status().progress if p[0] == "n1"]
    assert me.match == 2


def test_must_sync_only_for_term_vote_or_entries() -> None:
    """must_sync is needed when term, vote or entries change; a commit-only hard state
    change may be written lazily."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose(b"x")
    net.process_ready("n1")
    net.deliver()
    net.process_ready("n2")
    net.process_ready("n3")
    net.deliver()
    rd = net.node("n1").ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert not rd.entries and not rd.must_sync


def test_must_sync_when_a_configuration_change_commits() -> None:
    """A commit that hands out a configuration change must be durable (§4.2/§4.3): a node
    that restarted with its commit index below the change went back to the old
    configuration, which may need a member already powered off. In the simulator (3 nodes,
    seed 188) the leader was replaced, both remaining voters crashed with the commit of the
    new configuration not synced, the removed leader was powered off, and no one could be
    elected again. The commit alone is still written lazily for ordinary entries."""
    net = Network(3)
    net.elect("n1")
    cc = ConfChange(changes=(ConfChangeSingle(ConfChangeType.ADD_LEARNER, "n4"),))
    net.node("n1").propose_conf_change(cc)
    net.process_ready("n1")
    net.deliver()
    net.process_ready("n2")
    net.process_ready("n3")
    net.deliver()
    rd = net.node("n1").ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert [e.type for e in rd.committed_entries] == [EntryType.CONF_CHANGE]
    assert not rd.entries and rd.must_sync
    net.inflight.extend(rd.messages)  # the commit index, on its way to the followers
    net.node("n1").advance(rd)
    net.node("n1").apply_conf_change(cc)
    net.deliver()
    for nid in ("n2", "n3"):  # so does each follower's commit of it
        rd = net.node(nid).ready()
        assert [e.type for e in rd.committed_entries] == [EntryType.CONF_CHANGE]
        assert not rd.entries and rd.must_sync


def test_committed_entries_bounded_per_ready() -> None:
    """committed_entries is bounded by max_committed_bytes_per_ready (>= one entry)."""
    net = Network(1, max_committed_bytes_per_ready=100)
    net.elect("n1")
    for k in range(10):
        net.node("n1").propose(bytes([65 + k]) * 40)  # 56 bytes each
    sizes = []
    for _ in range(30):
        if not net.node("n1").has_ready():
            break
        rd = net.node("n1").ready()
        net.boxes["n1"].storage.append(list(rd.entries))
        if rd.hard_state:
            net.boxes["n1"].storage.set_hard_state(rd.hard_state)
        if rd.committed_entries:
            sizes.append(len(rd.committed_entries))
            assert (
                sum(e.size_bytes() for e in rd.committed_entries) <= 100
                or len(rd.committed_entries) == 1
            )
        net.node("n1").advance(rd)
    assert sum(sizes) == 10 and max(sizes) == 1


def test_second_ready_before_advance_returns_only_new_work() -> None:
    """Entries handed out once are not handed out again before advance."""
    cfg = Config(id="n1", voters=("n1",), pre_vote=False)
    storage = MemoryStorage()
    node = RawNode(cfg, storage, random.Random(1))

    def persist(rd: Ready) -> None:
        storage.append(list(rd.entries))
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)

    node.campaign()
    rd1 = node.ready()
    persist(rd1)
    node.advance(rd1)
    assert node.status().role == Role.LEADER
    rd2 = node.ready()  # leader's no-op
    assert [e.type for e in rd2.entries] == [EntryType.NORMAL]
    node.propose(b"x")
    rd3 = node.ready()  # rd2 not advanced yet
    assert [e.data for e in rd3.entries] == [b"x"]
    persist(rd2)
    persist(rd3)
    node.advance(rd2)
    node.advance(rd3)
    rd4 = node.ready()
    assert not rd4.entries
    assert [e.data for e in rd4.committed_entries] == [b"", b"x"]


def test_events_have_documented_names_and_fields() -> None:
    """docs/formats.md event kinds emitted by the core: role, vote, commit, truncate."""
    net = Network(3, pre_vote=False)
    net.elect("n1")
    net.node("n1").propose(b"x")
    net.stabilize()
    evs = [e for nid in net.ids for e in net.boxes[nid].events]
    kinds = {e.ev for e in evs}
    assert {"role", "vote", "commit"} <= kinds
    for e in evs:
        f = dict(e.fields)
        if e.ev == "role":
            assert set(f) == {"role", "leader"}
        elif e.ev == "vote":
            assert set(f) == {"candidate", "granted", "pre"}
        elif e.ev == "commit":
            assert set(f) == {"index", "eterm"}
    commits = [dict(e.fields) for e in net.boxes["n2"].events if e.ev == "commit"]
    assert commits[-1] == {"index": 2, "eterm": 1}
    indexes = [int(str(c["index"])) for c in commits]
    assert indexes == sorted(indexes)


def test_leader_own_durable_ack_completes_the_quorum() -> None:
    """Asynchronous writes (``advance_apply`` at once, ``advance_append`` once durable): the
    leader's own ack counts towards the quorum like a follower's, and only for what is
    durable, in the order the Readies were handed out."""
    net = Network(3)
    net.elect("n1")
    net.stabilize()
    leader = net.node("n1")
    commit0 = leader.status().commit
    leader.propose(b"x")
    rd1 = leader.ready()
    net.boxes["n1"].storage.append(list(rd1.entries))
    leader.advance_apply(rd1)
    leader.propose(b"y")
    rd2 = leader.ready()  # handed out while rd1 is still being synced
    net.boxes["n1"].storage.append(list(rd2.entries))
    leader.advance_apply(rd2)
    assert leader.status().commit == commit0  # nobody has acknowledged anything durable
    leader.advance_append(rd1)  # rd1 durable: the leader's ack for x, and only for x
    ((_, me),) = [p for p in leader.status().progress if p[0] == "n1"]
    assert me.match == commit0 + 1
    assert leader.status().commit == commit0  # 1 of 3
    follower = net.node("n2")
    for m in rd1.messages + rd2.messages:
        if m.type == MT.APP and m.to == "n2":
            follower.step(m)
    frd = follower.ready()
    net.boxes["n2"].storage.append(list(frd.entries))
    follower.advance(frd)
    for m in frd.persisted_messages:
        leader.step(m)
    assert leader.status().commit == commit0 + 1  # x: n1 (durable) + n2; y: n2 only
    leader.advance_append(rd2)
    assert leader.status().commit == commit0 + 2
