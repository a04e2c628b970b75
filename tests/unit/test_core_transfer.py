"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

from core_net import Network

from raft.core import MessageType, Role

MT = MessageType


def test_transfer_to_up_to_date_follower() -> None:
    """Thesis §3.10: the leader sends TIMEOUT_NOW; the target campaigns at once and wins,
    even against leader stickiness (check-quorum) and pre-vote."""
    net = Network(3, pre_vote=True, check_quorum=True)
    net.elect("n1")
    net.node("n1").transfer_leader("n2")
    net.stabilize()
    assert net.leaders() == ["n2"]
    assert net.node("n2").status().term == 2
    assert any(m.type == MT.TIMEOUT_NOW and m.to == "n2" for m in net.delivered)


def test_transfer_waits_until_target_catches_up() -> None:
    """Thesis §3.10 step 2: the leader first replicates its log to the target."""
    net = Network(3, pre_vote=True, check_quorum=True)
    net.elect("n1")
    net.isolate("n3")
    net.node("n1").propose(b"a")
    net.stabilize()
    net.heal()
    net.delivered.clear()
    net.node("n1").transfer_leader("n3")
    net.stabilize()
    assert net.leaders() == ["n3"]
    first_timeout = next(k for k, m in enumerate(net.delivered) if m.type == MT.TIMEOUT_NOW)
    assert any(m.type == MT.APP and m.to == "n3" for m in net.delivered[:first_timeout])
    assert net.applied_data("n3") == [b"a"]


def test_transfer_aborted_after_election_timeout() -> None:
    """Thesis §3.10: if the transfer does not complete within an election timeout, the
    leader aborts it and resumes accepting proposals."""
    net = Network(3, election_timeout_ticks=10)
    net.elect("n1")
    net.isolate("n3")
    net.node("n1").transfer_leader("n3")
    assert net.node("n1").status().lead_transferee == "n3"
    for _ in range(10):
        net.tick("n1")
        net.tick("n2")
        net.stabilize()
    st = net.node("n1").status()
    assert st.role == Role.LEADER and st.lead_transferee == ""
    net.node("n1").propose(b"ok")


def test_follower_forwards_transfer_request() -> None:
    """A transfer requested at a follower is forwarded to the leader, naming the target."""
    net = Network(3)
    net.elect("n1")
    net.node("n3").transfer_leader("n2")
    net.stabilize()
    assert net.leaders() == ["n2"]
    net.node("n3").transfer_leader("n3")
    net.stabilize()
    assert net.leaders() == ["n3"]
