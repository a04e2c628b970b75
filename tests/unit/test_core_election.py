"""Leader election: Raft §5.2, §5.4.1; thesis §9.6 (pre-vote) and §6.2/§4.2.3 (check-quorum,
leader stickiness)."""

from __future__ import annotations

import random

import pytest
from core_net import Network

from raft.core import (
    Config,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Role,
)

MT = MessageType


def fresh(nid: str = "n1", voters: tuple[str, ...] = ("n1", "n2", "n3"), **kw: object) -> RawNode:
    return RawNode(Config(id=nid, voters=voters, **kw), MemoryStorage(), random.Random(7))  # type: ignore[arg-type]


def test_randomized_election_timeout_in_e_2e() -> None:
    """§5.2/§9.3: election timeouts are chosen randomly from [e, 2e) ticks."""
    seen = set()
    for seed in range(200):
        node = RawNode(
            Config(id="n1", voters=("n1", "n2", "n3"), election_timeout_ticks=10, pre_vote=False),
            MemoryStorage(),
            random.Random(seed),
        )
        ticks = 0
        while node.status().role == Role.FOLLOWER:
            node.tick()
            ticks += 1
            assert ticks < 20, "no election within 2e ticks"
        assert 10 <= ticks < 20
        seen.add(ticks)
    assert len(seen) > 5, "timeouts are not randomized"


def test_election_timeout_starts_election_with_term_bump_and_self_vote() -> None:
    """§5.2: on timeout a follower increments its term, votes for itself, requests votes."""
    node = fresh(pre_vote=False)
    for _ in range(20):
        node.tick()
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote="n1", commit=0)
    assert rd.must_sync
    votes = [m for m in rd.messages if m.type == MT.VOTE]
    assert sorted(m.to for m in votes) == ["n2", "n3"]
    assert all(m.term == 1 and m.index == 0 and m.log_term == 0 for m in votes)


def test_candidate_wins_with_majority_and_appends_noop() -> None:
    """§5.2 win with a majority; §8 / §5.4.2: the new leader appends an empty entry."""
    net = Network(3, pre_vote=False)
    net.elect("n1")
    assert net.log("n1") == [(1, 1, b"")]
    assert net.node("n2").status().leader == "n1"
    assert [e for e in net.boxes["n2"].applied] == [Entry(index=1, term=1)]


def test_vote_granted_at_most_once_per_term() -> None:
    """§5.2: each server votes for at most one candidate in a given term (first come)."""
    node = fresh("n3", pre_vote=False)
    node.step(Message(type=MT.VOTE, sender="n1", to="n3", term=1, index=0, log_term=0))
    node.step(Message(type=MT.VOTE, sender="n2", to="n3", term=1, index=0, log_term=0))
    rd = node.ready()
    resp = {m.to: m.reject for m in rd.persisted_messages}
    assert resp == {"n1": False, "n2": True}
    assert rd.hard_state is not None and rd.hard_state.vote == "n1"
    # A repeated request from the same candidate is granted again (idempotent).
    node.advance(rd)
    node.step(Message(type=MT.VOTE, sender="n1", to="n3", term=1, index=0, log_term=0))
    assert [m.reject for m in node.ready().persisted_messages] == [False]


def test_vote_survives_restart() -> None:
    """Figure 2: votedFor is persistent; after a restart the node still refuses others."""
    storage = MemoryStorage()
    cfg = Config(id="n3", voters=("n1", "n2", "n3"), pre_vote=False)
    node = RawNode(cfg, storage, random.Random(1))
    node.step(Message(type=MT.VOTE, sender="n1", to="n3", term=1))
    rd = node.ready()
    assert rd.hard_state is not None
    storage.set_hard_state(rd.hard_state)
    node2 = RawNode(cfg, storage, random.Random(1))
    node2.step(Message(type=MT.VOTE, sender="n2", to="n3", term=1))
    assert [m.reject for m in node2.ready().persisted_messages] == [True]


def test_vote_response_waits_for_persistence() -> None:
    """Figure 2 ("respond after persisting"): the grant is a persisted_message, in the same
    Ready as the hard state recording the vote, with must_sync."""
    node = fresh("n2", pre_vote=False)
    node.step(Message(type=MT.VOTE, sender="n1", to="n2", term=1))
    rd = node.ready()
    assert rd.messages == ()
    assert [m.type for m in rd.persisted_messages] == [MT.VOTE_RESP]
    assert rd.hard_state == HardState(term=1, vote="n1", commit=0)
    assert rd.must_sync
    assert ("vote", 1, (("candidate", "n1"), ("granted", True), ("pre", False))) in [
        (e.ev, e.term, e.fields) for e in rd.events
    ]


def _node_with_log(terms: list[int], nid: str = "n2") -> RawNode:
    storage = MemoryStorage()
    storage.append([Entry(index=i + 1, term=t) for i, t in enumerate(terms)])
    storage.set_hard_state(HardState(term=terms[-1] if terms else 0))
    cfg = Config(id=nid, voters=("n1", "n2", "n3"), pre_vote=False)
    return RawNode(cfg, storage, random.Random(1))


@pytest.mark.parametrize(
    ("cand_index", "cand_term", "granted"),
    [
        (3, 2, True),  # same last term, same length
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (1, 3, True),  # later last term wins even if shorter
        (5, 1, False),  # earlier last term loses even if longer
    ],
)
def test_vote_requires_up_to_date_log(cand_index: int, cand_term: int, granted: bool) -> None:
    """§5.4.1 election restriction: grant only if the candidate's log is at least as
    up-to-date (compare last terms, then lengths)."""
    node = _node_with_log([1, 2, 2])
    node.step(
        Message(type=MT.VOTE, sender="n1", to="n2", term=5, index=cand_index, log_term=cand_term)
    )
    rd = node.ready()
    assert [m.reject for m in rd.persisted_messages] == [not granted]
    assert rd.hard_state is not None and rd.hard_state.term == 5  # term adopted either way


def test_higher_term_makes_leader_step_down() -> None:
    """§5.1: a server that sees a higher term reverts to follower and adopts it."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.node("n1").step(Message(type=MT.APP_RESP, sender="n2", to="n1", term=7))
    st = net.node("n1").status()
    assert (st.role, st.term, st.vote) == (Role.FOLLOWER, 7, "")


def test_stale_term_messages_are_ignored() -> None:
    """§5.1: a request with a stale term is rejected (here: a vote for an old term)."""
    node = _node_with_log([1, 2, 2])
    node.step(Message(type=MT.VOTE, sender="n1", to="n2", term=1, index=9, log_term=9))
    rd = node.ready()
    assert not rd.persisted_messages and not rd.messages
    assert node.status().vote == ""


def test_candidate_steps_down_on_append_from_leader_of_same_term() -> None:
    """§5.2: a candidate that receives AppendEntries from a leader of its term (or later)
    recognises it and returns to follower."""
    node = fresh("n2", pre_vote=False)
    node.campaign()
    assert node.status().role == Role.CANDIDATE
    node.step(Message(type=MT.APP, sender="n3", to="n2", term=1, index=0, log_term=0))
    st = node.status()
    assert (st.role, st.leader, st.term) == (Role.FOLLOWER, "n3", 1)


def test_candidate_losing_election_returns_to_follower() -> None:
    """§5.2: with a majority of rejections the candidate gives up this term."""
    net = Network(3, pre_vote=False)
    net.node("n1").campaign()
    net.process_ready("n1")
    for nid in ("n2", "n3"):
        net.node("n1").step(Message(type=MT.VOTE_RESP, sender=nid, to="n1", term=1, reject=True))
    assert net.node("n1").status().role == Role.FOLLOWER


def test_self_vote_counts_only_after_persistence() -> None:
    """Figure 2: the candidate's own vote is durable before it counts: a single-node cluster
    becomes leader only in advance() of the Ready carrying the vote."""
    node = fresh("n1", voters=("n1",), pre_vote=False)
    node.campaign()
    assert node.status().role == Role.CANDIDATE
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == "n1"
    node.advance(rd)
    assert node.status().role == Role.LEADER


def test_split_vote_eventually_resolves() -> None:
    """§5.2: randomized timeouts make repeated split votes unlikely; a leader emerges."""
    net = Network(5, seed=4, pre_vote=False, check_quorum=False)
    for _ in range(200):
        net.tick_all(1)
        if net.leaders():
            break
    assert len(net.leaders()) == 1


def test_prevote_does_not_bump_term_when_it_cannot_win() -> None:
    """Thesis §9.6: a partitioned node stays in its term (pre-candidate) instead of
    incrementing it on every timeout, so it cannot disrupt the cluster when it returns."""
    net = Network(3, pre_vote=True)
    net.elect("n1")
    net.isolate("n3")
    for _ in range(5):
        net.tick("n3", 25)
        net.stabilize()
    st = net.node("n3").status()
    assert st.term == 1 and st.role == Role.PRE_CANDIDATE
    net.heal()
    net.tick_all(2)
    assert net.node("n1").status().role == Role.LEADER
    assert net.node("n1").status().term == 1


def test_prevote_is_refused_while_leader_is_live() -> None:
    """Thesis §9.6: a voter that heard from a leader within the election timeout does not
    grant a pre-vote (it ignores it); terms stay unchanged."""
    net = Network(3, pre_vote=True, check_quorum=False)
    net.elect("n1")
    net.node("n2").step(
        Message(type=MT.PRE_VOTE, sender="n3", to="n2", term=2, index=9, log_term=9)
    )
    assert not net.node("n2").ready().persisted_messages
    assert net.node("n2").status().term == 1


def test_prevote_granted_without_term_change() -> None:
    """Thesis §9.6: a granted pre-vote does not change the voter's term or vote."""
    node = fresh("n2")
    node.step(Message(type=MT.PRE_VOTE, sender="n1", to="n2", term=1, index=0, log_term=0))
    rd = node.ready()
    assert [(m.type, m.term, m.reject) for m in rd.persisted_messages] == [
        (MT.PRE_VOTE_RESP, 1, False)
    ]
    assert rd.hard_state is None
    assert node.status().term == 0 and node.status().vote == ""


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    """Thesis §6.2: a leader that hears from no quorum for an election timeout steps down."""
    net = Network(3, check_quorum=True, election_timeout_ticks=10)
    net.elect("n1")
    net.isolate("n1")
    for _ in range(10):
        net.tick("n1")
        net.stabilize()
    assert net.node("n1").status().role == Role.LEADER  # first round counts old responses
    for _ in range(10):
        net.tick("n1")
        net.stabilize()
    assert net.node("n1").status().role == Role.FOLLOWER


def test_check_quorum_leader_stays_with_quorum() -> None:
    """Thesis §6.2: with a quorum responding the leader keeps its role indefinitely."""
    net = Network(3, check_quorum=True, election_timeout_ticks=10)
    net.elect("n1")
    net.isolate("n3")
    for _ in range(50):
        net.tick("n1")
        net.tick("n2")
        net.stabilize()
    assert net.node("n1").status().role == Role.LEADER


def test_leader_stickiness_ignores_disruptive_vote() -> None:
    """Thesis §4.2.3: with check-quorum, followers that recently heard from the leader
    ignore a vote request with a higher term (term unchanged, no response)."""
    net = Network(3, pre_vote=False, check_quorum=True)
    net.elect("n1")
    net.node("n2").step(Message(type=MT.VOTE, sender="n3", to="n2", term=5, index=9, log_term=9))
    assert net.node("n2").status().term == 1
    assert not net.node("n2").ready().persisted_messages


def test_learner_never_campaigns() -> None:
    """Thesis §4.2.1: learners (non-voting members) never start elections."""
    node = RawNode(
        Config(id="n4", voters=("n1", "n2", "n3"), learners=("n4",), pre_vote=False),
        MemoryStorage(),
        random.Random(1),
    )
    for _ in range(100):
        node.tick()
    node.campaign()
    assert node.status().role == Role.FOLLOWER and node.status().term == 0


def test_role_events_report_transitions() -> None:
    """docs/formats.md: "role" events carry role and leader."""
    net = Network(3, pre_vote=True)
    net.elect("n1")
    roles = [dict(e.fields)["role"] for e in net.boxes["n1"].events if e.ev == "role"]
    assert roles == ["follower", "pre_candidate", "candidate", "leader"]
    leaders = [dict(e.fields)["leader"] for e in net.boxes["n2"].events if e.ev == "role"]
    assert leaders[-1] == "n1"


def test_granting_a_vote_resets_the_election_timer() -> None:
    """Figure 2 (Followers): the timer restarts when a vote is granted, so a voter does not
    immediately compete with the candidate it just voted for."""
    node = fresh("n2", pre_vote=False)
    for _ in range(9):  # just below the minimum timeout (10)
        node.tick()
    node.step(Message(type=MT.VOTE, sender="n1", to="n2", term=1))
    for _ in range(9):
        node.tick()
    assert node.status().role == Role.FOLLOWER and node.status().vote == "n1"


def test_candidate_starts_new_election_on_timeout() -> None:
    """Figure 2 (Candidates): if the election timeout elapses, start a new election with a
    higher term."""
    node = fresh("n1", pre_vote=False)
    node.campaign()
    assert node.status().term == 1
    for _ in range(20):  # at most 2e ticks
        node.tick()
    st = node.status()
    assert st.role == Role.CANDIDATE and st.term == 2 and st.vote == "n1"


def test_leader_sends_heartbeats_when_idle() -> None:
    """Figure 2 (Leaders): repeat empty AppendEntries (heartbeats) during idle periods to
    prevent election timeouts."""
    net = Network(3, heartbeat_ticks=2, election_timeout_ticks=10)
    net.elect("n1")
    net.delivered.clear()
    for _ in range(50):
        net.tick_all(1)
    beats = [m for m in net.delivered if m.type == MT.HEARTBEAT and m.to == "n2"]
    assert len(beats) == 25
    assert net.leaders() == ["n1"] and net.node("n1").status().term == 1
