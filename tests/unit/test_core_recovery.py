"""Protocol-aware recovery in the core (issue 10 §1 and §2, docs/storage.md).

A follower that lost entries it had acknowledged (a cut torn tail, ``raft repair``, a wiped
directory) must (§2) be noticed by the leader and brought back without a busy loop, and
(§1) when storage reports the loss (``Config.recovering``) it must not vote until a leader
brought it to that leader's tail, so a stale node cannot win with its help and overwrite
committed entries.
"""

from __future__ import annotations

import random

from core_net import Network, decode_applied

from raft.core import Config, HardState, MemoryStorage, Message, MessageType, RawNode, Role

MT = MessageType


def _lose_tail(net: Network, nid: str, keep: int, *, recovering: bool) -> None:
    """Crash ``nid`` and restart it from a storage holding only entries ``1..keep`` (its
    term and vote kept, its commit clamped), as a cut tail or a repair leaves it."""
    box = net.boxes[nid]
    old = box.storage
    hs, _ = old.initial_state()
    fresh = MemoryStorage()
    if keep:
        fresh.append(old.entries(1, keep + 1))
    fresh.set_hard_state(HardState(term=hs.term, vote=hs.vote, commit=min(hs.commit, keep)))
    box.storage = fresh
    extra = {"recovering": True} if recovering else {}
    cfg = Config(id=nid, voters=tuple(net.ids), **extra)  # type: ignore[arg-type]
    box.node = RawNode(cfg, fresh, random.Random(99))
    box.applied = decode_applied(b"")


def _put(net: Network, leader: str, n: int) -> None:
    for i in range(n):
        net.node(leader).propose(f"x{i}".encode())
        net.stabilize()


def test_leader_brings_back_an_idle_follower_that_lost_entries() -> None:
    """Wiped or cut without the storage noticing: heartbeats alone must reveal the loss
    (the follower holds less than the commit index the leader sends it)."""
    net = Network(3)
    net.elect("n1")
    _put(net, "n1", 10)
    _lose_tail(net, "n2", 0, recovering=False)  # a wiped data directory
    before = len(net.delivered)
    net.tick_all(5)
    assert net.log("n2") == net.log("n1")
    assert any(e.ev == "follower_lost" for e in net.boxes["n1"].events)
    # Heartbeats plus one catch-up round, not a storm of appends and replies.
    assert len(net.delivered) - before < 60


def test_rejection_below_match_resets_progress_instead_of_looping() -> None:
    """While the leader keeps writing, the follower rejects every append past its cut
    tail; rejections at or below ``match`` used to be dropped as stale forever."""
    net = Network(3)
    net.elect("n1")
    _put(net, "n1", 10)
    _lose_tail(net, "n2", 4, recovering=False)
    _put(net, "n1", 3)
    net.tick_all(3)
    assert net.log("n2") == net.log("n1")
    pr = dict(net.node("n1").status().progress)["n2"]
    assert pr.match == net.node("n1").status().last_index


def test_recovering_follower_refuses_to_elect_a_stale_node() -> None:
    """§1 in miniature: n3 is cut off while n1 and n2 commit x0..x9; n2 loses them and
    restarts recovering; n1 dies. n3 (stale) must not win with n2's vote, and once n1 is
    back every committed entry is on every node."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n3")
    _put(net, "n1", 10)
    committed = net.node("n1").status().commit
    assert committed >= 11
    _lose_tail(net, "n2", 1, recovering=True)
    net.isolate("n1")  # n1 is down
    for _ in range(6):
        net.node("n3").campaign()
        net.stabilize()
        net.tick_all(3)
    assert net.node("n3").status().role != Role.LEADER
    assert net.node("n2").status().role != Role.LEADER
    assert net.node("n2").status().recovering
    net.heal()  # n1 is back
    net.tick_all(40)
    leaders = net.leaders()
    assert len(leaders) == 1
    for nid in net.ids:
        assert net.log(nid)[:committed] == net.log("n1")[:committed], nid
    assert not net.node("n2").status().recovering
    assert any(e.ev == "recovered" for e in net.boxes["n2"].events)


def test_recovering_follower_recovers_from_the_same_term_leader() -> None:
    """The leader of the node's own term holds every entry the node acknowledged: one
    append reaching its tail ends the recovery, with no election needed."""
    net = Network(3)
    net.elect("n1")
    _put(net, "n1", 5)
    term = net.node("n1").status().term
    _lose_tail(net, "n2", 2, recovering=True)
    net.tick_all(3)
    st = net.node("n2").status()
    assert not st.recovering
    assert st.term == term
    assert net.log("n2") == net.log("n1")
    # Once recovered it votes again: n1 gone, n2 and n3 elect a leader.
    net.isolate("n1")
    net.tick_all(40)
    assert [nid for nid in net.leaders() if nid != "n1"]


def test_recovering_node_abstains_from_votes_and_pre_votes() -> None:
    storage = MemoryStorage()
    storage.set_hard_state(HardState(term=4, vote="n1"))
    cfg = Config(id="n2", voters=("n1", "n2", "n3"), recovering=True)
    node = RawNode(cfg, storage, random.Random(1))
    for t in (MT.PRE_VOTE, MT.VOTE):
        node.step(Message(type=t, to="n2", sender="n3", term=5, index=100, log_term=4))
    rd = node.ready()
    resps = [m for m in (*rd.messages, *rd.persisted_messages) if m.to == "n3"]
    assert resps
    assert all(m.reject for m in resps)
    node.advance(rd)
    for _ in range(100):
        node.tick()
    assert node.status().role == Role.FOLLOWER


def test_single_voter_does_not_wait_for_a_leader_that_cannot_exist() -> None:
    node = RawNode(
        Config(id="n1", voters=("n1",), recovering=True), MemoryStorage(), random.Random(1)
    )
    assert not node.status().recovering
    rd = node.ready()
    assert any(e.ev == "recovered" for e in rd.events)
