"""A refused vote does not restart the election timer (Figure 2: the timer restarts on
hearing from the current leader or on granting a vote). Found by the simulator (issue 11):
without pre-vote, a node whose log is too stale to ever win kept bumping the term, every
bump restarted the timers of the nodes that could win, and no leader was elected."""

from __future__ import annotations

from core_net import Network

from raft.core import Message, MessageType, Role

MT = MessageType


def _stale_vote(to: str, term: int) -> Message:
    return Message(type=MT.VOTE, to=to, sender="n2", term=term, index=0, log_term=0)


def _cluster_with_an_entry() -> Network:
    """n1 leads three nodes without pre-vote or check-quorum; everyone holds one entry."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.node("n1").propose(b"a")
    net.stabilize()
    return net


def test_refused_vote_adopts_the_term_but_keeps_the_timer() -> None:
    net = _cluster_with_an_entry()
    n3 = net.node("n3")
    net.tick("n3", 5)
    n3.step(_stale_vote("n3", n3.raft.term + 3))
    assert n3.raft.term == 4 and n3.raft.vote == ""
    assert n3.raft.election_elapsed == 5


def test_up_to_date_node_campaigns_despite_a_hopeless_disruptor() -> None:
    net = _cluster_with_an_entry()
    n3 = net.node("n3")
    for _ in range(5):
        net.tick("n3", 9)  # just under the minimum election timeout (10)
        if n3.raft.role is Role.CANDIDATE:
            break
        n3.step(_stale_vote("n3", n3.raft.term + 1))
    assert n3.raft.role is Role.CANDIDATE


def test_granted_vote_still_restarts_the_timer() -> None:
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    n3 = net.node("n3")
    net.tick("n3", 5)
    last = n3.raft.raft_log.last_index()
    term = n3.raft.raft_log.last_term()
    n3.step(Message(type=MT.VOTE, to="n3", sender="n2", term=9, index=last, log_term=term))
    assert n3.raft.vote == "n2" and n3.raft.election_elapsed == 0
