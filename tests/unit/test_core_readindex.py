"""Linearizable reads without log entries: ReadIndex and lease reads (thesis §6.4)."""

from __future__ import annotations

from core_net import Network

from raft.core import MessageType, NotLeaderError, ReadOnlyOption, ReadState

MT = MessageType


def test_read_index_after_heartbeat_quorum() -> None:
    """Thesis §6.4 steps 1-3: record the commit index, confirm leadership with a heartbeat
    round, then release the read at that index."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose(b"a")
    net.stabilize()
    net.delivered.clear()
    net.node("n1").read_index(b"r1")
    net.process_ready("n1")
    assert net.boxes["n1"].read_states == []  # not before the round
    net.stabilize()
    assert net.boxes["n1"].read_states == [ReadState(index=2, context=b"r1")]
    hbs = [m for m in net.delivered if m.type == MT.HEARTBEAT]
    assert {m.context for m in hbs} == {b"r1"}


def test_read_index_not_answered_without_quorum() -> None:
    """A leader cut off from the majority cannot confirm leadership: no ReadState."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    net.node("n1").read_index(b"r")
    net.stabilize()
    assert net.boxes["n1"].read_states == []


def test_read_index_deferred_until_current_term_commit() -> None:
    """Thesis §6.4 step 1: until its no-op commits, a new leader's commit index may be
    stale, so it holds reads and answers them once an entry of its term commits."""
    net = Network(3, pre_vote=False)
    net.node("n1").campaign()
    net.process_ready("n1")
    net.deliver()
    net.process_ready("n2")
    net.process_ready("n3")
    net.deliver()  # n1 becomes leader; its no-op is not committed
    assert net.node("n1").status().commit == 0
    net.node("n1").read_index(b"early")
    net.process_ready("n1")
    assert not [m for m in net.inflight if m.type == MT.HEARTBEAT]
    net.stabilize()
    assert net.boxes["n1"].read_states == [ReadState(index=1, context=b"early")]


def test_follower_read_index_is_forwarded() -> None:
    """A follower forwards READ_INDEX to the leader and gets the index back as a
    READ_INDEX_RESP, which becomes its ReadState."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose(b"a")
    net.stabilize()
    net.delivered.clear()
    net.node("n3").read_index(b"f")
    net.stabilize()
    assert net.boxes["n3"].read_states == [ReadState(index=2, context=b"f")]
    assert [m.type for m in net.delivered if m.to == "n3" and m.type == MT.READ_INDEX_RESP]


def test_follower_without_leader_refuses_read() -> None:
    net = Network(3)
    try:
        net.node("n2").read_index(b"x")
    except NotLeaderError as e:
        assert e.leader_hint == ""
    else:  # pragma: no cover - the assertion below documents the failure
        raise AssertionError("read_index without a leader must raise NotLeaderError")


def test_single_node_answers_immediately() -> None:
    """A one-voter cluster needs no heartbeat round."""
    net = Network(1)
    net.elect("n1")
    net.stabilize()
    net.node("n1").read_index(b"solo")
    net.process_ready("n1")
    assert net.boxes["n1"].read_states == [ReadState(index=1, context=b"solo")]


def test_lease_based_read_answers_without_round() -> None:
    """Thesis §6.4.1: with a lease (check-quorum, bounded clock drift) the leader answers
    at its commit index without a heartbeat round."""
    net = Network(3, read_only=ReadOnlyOption.LEASE_BASED, check_quorum=True)
    net.elect("n1")
    net.isolate("n1")  # even cut off: the lease is trusted until check-quorum expires it
    net.node("n1").read_index(b"lease")
    net.process_ready("n1")
    assert net.boxes["n1"].read_states == [ReadState(index=1, context=b"lease")]


def test_batched_reads_released_together() -> None:
    """A heartbeat round confirms every read queued before it."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    net.node("n1").read_index(b"a")
    net.node("n1").read_index(b"b")
    net.stabilize()
    net.heal()
    net.node("n1").read_index(b"c")
    net.stabilize()
    assert [rs.context for rs in net.boxes["n1"].read_states] == [b"a", b"b", b"c"]


def test_lease_read_past_half_a_timeout_confirms_with_a_round() -> None:
    """Found by the simulator (issue 11): check-quorum deposes a cut-off leader only up to
    two election timeouts after its last contact, while its followers may elect another
    after one, so "still leader" is no lease. Past half an election timeout into a
    check-quorum round the leader confirms a lease read with a heartbeat round."""
    net = Network(3, read_only=ReadOnlyOption.LEASE_BASED, check_quorum=True)
    net.elect("n1")
    net.isolate("n1")
    net.tick("n1", 6)  # election timeout 10: the lease is no longer fresh
    net.node("n1").read_index(b"old")
    net.stabilize()
    assert net.boxes["n1"].read_states == []  # not answered on a stale lease
    net.heal()
    net.tick("n1")  # the next heartbeat carries the pending read's context
    net.stabilize()
    assert net.boxes["n1"].read_states == [ReadState(index=1, context=b"old")]
