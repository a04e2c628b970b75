"""CONNECTION_LOST: a follower whose leader closed its connection campaigns after a short
random delay instead of a whole election timeout (faster failover after a crash), and the
hint cannot disrupt a live leader (pre-vote, leader stickiness) or a lease read."""

from __future__ import annotations

import pytest
from core_net import Network

from raft.core import MessageType, ReadOnlyOption, Role

MT = MessageType
E = 10  # election timeout ticks


def _ticks_until_pre_vote(net: Network, nid: str, limit: int) -> int | None:
    """Tick ``nid`` alone (the leader is gone) until it sends a pre-vote; ``None`` if it did
    not within ``limit`` ticks."""
    for t in range(1, limit + 1):
        net.tick(nid)
        net.process_ready(nid)
        if any(m.type is MT.PRE_VOTE and m.sender == nid for m in net.inflight):
            return t
    return None


def _crash_leader(net: Network, leader: str) -> None:
    del net.boxes[leader]  # its messages are lost from now on (deliver drops them)
    net.inflight = [m for m in net.inflight if m.sender != leader]


@pytest.mark.parametrize("seed", range(20))
def test_a_follower_told_its_leader_closed_campaigns_within_half_an_election_timeout(
    seed: int,
) -> None:
    net = Network(3, seed=seed, election_timeout_ticks=E)
    net.elect("n1")
    _crash_leader(net, "n1")
    net.node("n2").report_connection_lost("n1")
    assert net.node("n2").status().leader == ""  # leader given up at once
    t = _ticks_until_pre_vote(net, "n2", E)
    assert t is not None and 1 <= t <= E // 2, t
    # The other follower, also told, grants it: a new leader without a whole timeout.
    net.node("n3").report_connection_lost("n1")
    net.stabilize()
    assert net.leaders() == ["n2"]


def test_without_the_hint_a_follower_waits_a_whole_election_timeout() -> None:
    """The baseline the hint improves on (and what happens after a partition, which closes
    no connection): no campaign before ``e`` ticks."""
    net = Network(3, seed=3, election_timeout_ticks=E)
    net.elect("n1")
    _crash_leader(net, "n1")
    t = _ticks_until_pre_vote(net, "n2", 2 * E)
    assert t is not None and E <= t < 2 * E, t


def test_a_live_leader_survives_a_follower_losing_its_connection() -> None:
    """The connection closed but the leader is alive: the other follower still hears from
    it and refuses the pre-vote (stickiness); the term never moves and the next heartbeat
    makes the hinted follower follow again."""
    net = Network(3, seed=5, election_timeout_ticks=E)
    net.elect("n1")
    term = net.node("n1").status().term
    net.node("n2").report_connection_lost("n1")
    for _ in range(3 * E):
        net.tick_all()
    assert net.leaders() == ["n1"]
    assert all(net.node(n).status().term == term for n in ("n1", "n2", "n3"))
    assert net.node("n2").status().leader == "n1"
    assert net.node("n2").status().role is Role.FOLLOWER


@pytest.mark.parametrize(
    ("cfg", "why"),
    [
        ({"pre_vote": False}, "without pre-vote an early election would bump a live term"),
        ({"read_only": ReadOnlyOption.LEASE_BASED}, "lease reads need the full lease"),
    ],
)
def test_the_hint_is_ignored_where_an_early_campaign_is_unsafe(
    cfg: dict[str, object], why: str
) -> None:
    net = Network(3, seed=2, election_timeout_ticks=E, **cfg)
    net.elect("n1")
    _crash_leader(net, "n1")
    net.node("n2").report_connection_lost("n1")
    assert net.node("n2").status().leader == "n1", why
    for _ in range(E - 1):
        net.tick("n2")
        net.process_ready("n2")
    assert not [m for m in net.inflight if m.sender == "n2" and m.type in (MT.VOTE, MT.PRE_VOTE)]


def test_the_hint_about_a_node_that_is_not_our_leader_changes_nothing() -> None:
    net = Network(3, seed=4, election_timeout_ticks=E)
    net.elect("n1")
    net.node("n2").report_connection_lost("n3")  # a follower's connection: irrelevant
    net.node("n1").report_connection_lost("n2")  # the leader is told of a follower
    assert net.node("n2").status().leader == "n1"
    assert net.node("n1").status().role is Role.LEADER
    assert not net.node("n2").has_ready() or not net.node("n2").ready().messages


def test_the_hint_is_reported_as_an_event() -> None:
    net = Network(3, seed=6, election_timeout_ticks=E)
    net.elect("n1")
    net.node("n2").report_connection_lost("n1")
    net.process_ready("n2")
    evs = [e for e in net.boxes["n2"].events if e.ev == "leader_lost"]
    assert len(evs) == 1 and dict(evs[0].fields)["leader"] == "n1"
