"""Proposals (client requests, §5.3/§8) and their refusals."""

from __future__ import annotations

import pytest
from core_net import Network

from raft.core import NotLeaderError, ProposalDroppedError, Role


def test_follower_refuses_with_leader_hint() -> None:
    """§8: clients talk to the leader; a follower redirects with what it knows."""
    net = Network(3)
    net.elect("n1")
    with pytest.raises(NotLeaderError) as ei:
        net.node("n2").propose(b"x")
    assert ei.value.leader_hint == "n1"


def test_node_without_leader_refuses_with_empty_hint() -> None:
    net = Network(3)
    with pytest.raises(NotLeaderError) as ei:
        net.node("n2").propose(b"x")
    assert ei.value.leader_hint == ""
    net.node("n1").campaign()  # candidate (pre-candidate): still no leader
    with pytest.raises(NotLeaderError):
        net.node("n1").propose(b"x")


def test_proposal_dropped_during_leadership_transfer() -> None:
    """Thesis §3.10: the leader stops accepting client requests during a transfer."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n3")
    net.node("n1").transfer_leader("n3")
    with pytest.raises(ProposalDroppedError):
        net.node("n1").propose(b"x")


def test_uncommitted_bytes_limit() -> None:
    """max_uncommitted_bytes bounds a leader's uncommitted payload; once entries commit
    (and are applied) proposals are accepted again."""
    net = Network(3, max_uncommitted_bytes=100)
    net.elect("n1")
    net.isolate("n1")
    leader = net.node("n1")
    leader.propose(b"x" * 60)
    leader.propose(b"x" * 40)
    with pytest.raises(ProposalDroppedError):
        leader.propose(b"x")
    net.heal()
    net.stabilize()
    net.tick("n1")
    net.stabilize()
    assert leader.propose(b"y" * 60)[0] == 4
    # A single proposal bigger than the limit is accepted when nothing is uncommitted.
    net.stabilize()
    assert leader.propose(b"z" * 500)[0] == 5


def test_propose_requires_bytes() -> None:
    net = Network(1)
    net.elect("n1")
    with pytest.raises(TypeError):
        net.node("n1").propose("text")  # type: ignore[arg-type]
    assert net.node("n1").status().role == Role.LEADER
