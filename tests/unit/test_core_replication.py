"""Log replication and commitment: Raft §5.3, §5.4.2, Figure 2 (AppendEntries), and the
flow control of etcd-raft (probe/replicate, inflights, batching)."""

from __future__ import annotations

import random

from core_net import Network

from raft.core import (
    Config,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Ready,
    Role,
)
from raft.core.progress import ProgressState

MT = MessageType


STORAGE: dict[int, MemoryStorage] = {}


def follower_with_log(terms: list[int], commit: int = 0, term: int | None = None) -> RawNode:
    storage = MemoryStorage()
    storage.append(
        [Entry(index=i + 1, term=t, data=f"e{i + 1}".encode()) for i, t in enumerate(terms)]
    )
    storage.set_hard_state(HardState(term=term or (terms[-1] if terms else 0), commit=commit))
    cfg = Config(id="n2", voters=("n1", "n2", "n3"), pre_vote=False)
    node = RawNode(cfg, storage, random.Random(1))
    STORAGE[id(node)] = storage
    return node


def persist(node: RawNode, rd: Ready) -> None:
    """Do what the driver must before advance: write entries and hard state."""
    storage = STORAGE[id(node)]
    if rd.entries:
        storage.append(list(rd.entries))
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    node.advance(rd)


def app(
    term: int, prev: int, prev_term: int, ents: list[tuple[int, int]], commit: int = 0
) -> Message:
    return Message(
        type=MT.APP,
        sender="n1",
        to="n2",
        term=term,
        index=prev,
        log_term=prev_term,
        commit=commit,
        entries=tuple(Entry(index=i, term=t, data=f"new{i}".encode()) for i, t in ents),
    )


def ready_and_persist(node: RawNode) -> list[Message]:
    rd = node.ready()
    persist(node, rd)
    return list(rd.persisted_messages) + list(rd.messages)


def test_append_rejected_when_prev_entry_missing() -> None:
    """Figure 2 AppendEntries step 2: reply false if the log has no entry at prevLogIndex
    whose term matches prevLogTerm."""
    node = follower_with_log([1, 1])
    node.step(app(2, 3, 2, [(4, 2)]))
    (resp,) = ready_and_persist(node)
    assert resp.type == MT.APP_RESP and resp.reject and resp.index == 3
    assert node.status().last_index == 2


def test_append_rejected_on_prev_term_mismatch_with_hint() -> None:
    """§5.3 optimisation: the rejection names a hint (index, term) so the leader can skip
    all conflicting entries of a term in one round trip."""
    node = follower_with_log([1, 1, 2, 2, 2])
    node.step(app(4, 5, 3, [(6, 3)]))
    (resp,) = ready_and_persist(node)
    assert resp.reject and resp.index == 5
    # Largest index <= 5 whose term is <= 3: index 5 (term 2).
    assert (resp.reject_hint, resp.log_term) == (5, 2)


def test_conflicting_suffix_is_truncated() -> None:
    """Figure 2 AppendEntries step 3: an existing entry that conflicts with a new one (same
    index, different term) is deleted together with all that follow it."""
    node = follower_with_log([1, 1, 1, 1])
    node.step(app(2, 2, 1, [(3, 2)]))
    rd = node.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(3, 2)]
    assert [(e.ev, dict(e.fields)) for e in rd.events if e.ev == "truncate"] == [
        ("truncate", {"from": 3})
    ]
    assert [m.index for m in rd.persisted_messages] == [3]
    persist(node, rd)
    assert node.status().last_index == 3
    assert [e.term for e in STORAGE[id(node)].entries(1, 4)] == [1, 1, 2]


def test_matching_entries_are_not_truncated() -> None:
    """Figure 2 AppendEntries step 3-4: entries already present with the same term are
    kept, even when a (delayed, shorter) AppendEntries covers only part of them."""
    node = follower_with_log([1, 1, 1, 1])
    node.step(app(1, 1, 1, [(2, 1)]))
    rd = node.ready()
    assert rd.entries == ()
    assert not [e for e in rd.events if e.ev == "truncate"]
    assert [m.index for m in rd.persisted_messages] == [2]
    assert node.status().last_index == 4


def test_follower_commit_is_min_of_leader_commit_and_last_new_entry() -> None:
    """Figure 2 AppendEntries step 5: commitIndex = min(leaderCommit, index of last new
    entry); it never moves backwards."""
    node = follower_with_log([1, 1, 1, 1, 1])
    node.step(app(1, 1, 1, [(2, 1)], commit=5))
    assert node.status().commit == 2
    node.step(app(1, 4, 1, [(5, 1)], commit=5))
    assert node.status().commit == 5
    node.step(app(1, 1, 1, [], commit=3))
    assert node.status().commit == 5


def test_append_below_commit_is_acknowledged_with_commit() -> None:
    """An AppendEntries whose prev index is below our commit index is stale; the entries up
    to commit match (Log Matching), so reply with our commit index."""
    node = follower_with_log([1, 1, 1], commit=3)
    node.step(app(1, 1, 1, [(2, 1)]))
    (resp,) = ready_and_persist(node)
    assert not resp.reject and resp.index == 3


def test_append_responses_wait_for_persistence() -> None:
    """Figure 2: acknowledgements promise durability, so they are persisted_messages and the
    Ready carries the entries with must_sync."""
    node = follower_with_log([1])
    node.step(app(1, 1, 1, [(2, 1)]))
    rd = node.ready()
    assert rd.messages == ()
    assert [m.type for m in rd.persisted_messages] == [MT.APP_RESP]
    assert rd.must_sync and [e.index for e in rd.entries] == [2]


def test_leader_only_commits_current_term_entries_by_counting() -> None:
    """§5.4.2 (Figure 8): a leader of term 3 holding entry 2 of term 1 does not commit it
    when a majority acknowledges index 2; it commits once its own term-3 entry is on a
    majority, and then entry 2 with it."""
    storage = MemoryStorage()
    storage.append([Entry(index=1, term=1), Entry(index=2, term=1, data=b"old")])
    storage.set_hard_state(HardState(term=2, commit=1))
    node = RawNode(
        Config(id="n1", voters=("n1", "n2", "n3"), pre_vote=False), storage, random.Random(1)
    )
    STORAGE[id(node)] = storage
    node.campaign()
    persist(node, node.ready())
    node.step(Message(type=MT.VOTE_RESP, sender="n2", to="n1", term=3))
    assert node.status().role == Role.LEADER
    persist(node, node.ready())  # the no-op 3/3 is durable on n1 (self-ack)
    node.step(Message(type=MT.APP_RESP, sender="n2", to="n1", term=3, index=2))
    assert node.status().commit == 1  # index 2 is on n1+n2, but it is a term-1 entry
    node.step(Message(type=MT.APP_RESP, sender="n2", to="n1", term=3, index=3))
    assert node.status().commit == 3


def test_maybe_commit_refuses_previous_term_entry() -> None:
    """§5.4.2: the RaftLog.maybe_commit rule in isolation."""
    from raft.core.log import RaftLog

    storage = MemoryStorage()
    storage.append([Entry(index=1, term=1), Entry(index=2, term=2), Entry(index=3, term=3)])
    log = RaftLog(storage)
    assert not log.maybe_commit(2, 3)  # majority has 2, but it is from term 2
    assert log.committed == 0
    assert log.maybe_commit(3, 3)
    assert log.committed == 3
    assert not log.maybe_commit(2, 3)  # never backwards
    assert log.committed == 3


def test_figure8_old_term_entry_commits_only_with_current_term_entry() -> None:
    """§5.4.2 Figure 8 scenario, end to end: S1 leads term 2 and puts entry 2 on S1,S2;
    S5 leads term 3 elsewhere; S1 leads term 4 and re-replicates entry 2 to S3 (majority),
    but commits it only together with its term-4 no-op."""
    net = Network(5, pre_vote=False, check_quorum=False)
    net.elect("n1")  # term 1, no-op at index 1 everywhere
    net.isolate("n1", "n2")
    net.node("n1").propose(b"x")  # entry 2, term 1 on n1, n2 only
    net.stabilize()
    assert net.node("n1").status().commit == 1
    net.isolate("n5", "n3", "n4")
    net.node("n5").campaign()  # term 2, no-op at index 2 on n3,n4,n5: majority, commits
    net.stabilize()
    assert net.node("n5").status().role == Role.LEADER
    # Restore: n1 cannot win (older last term), n5 stays leader and overwrites entry 2.
    net.heal()
    net.tick("n5", 1)
    net.stabilize()
    for nid in net.ids:
        assert net.log(nid)[1][1] == 2, nid  # index 2 is term 2 everywhere
        assert b"x" not in net.applied_data(nid)


def test_leader_noop_commits_previous_term_entries() -> None:
    """§5.4.2 / §8: a new leader commits the previous term's entries through its no-op."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.cut("n1", "n3")
    net.node("n1").propose(b"a")
    # Deliver the append to n2 but drop its acknowledgement: entry 2 is on n1 and n2,
    # uncommitted.
    net.process_ready("n1")
    net.deliver()
    net.process_ready("n2")
    net.inflight.clear()
    assert net.node("n1").status().commit == 1
    net.heal()
    net.elect("n2")
    assert net.node("n2").status().commit == 3  # entry 2 (term 1) and the no-op 3 (term 2)
    assert net.applied_data("n2") == [b"a"]


def test_leader_append_only_and_proposal_index_term() -> None:
    """Figure 3 Leader Append-Only; propose returns the new entry's (index, term)."""
    net = Network(3)
    net.elect("n1")
    assert net.node("n1").propose(b"a") == (2, 1)
    assert net.node("n1").propose(b"b") == (3, 1)
    net.stabilize()
    for nid in net.ids:
        assert net.log(nid) == [(1, 1, b""), (2, 1, b"a"), (3, 1, b"b")]
        assert net.applied_data(nid) == [b"a", b"b"]


def test_fast_backtracking_skips_a_term_per_round_trip() -> None:
    """§5.3 (end): with the conflict hint the leader needs one round trip per term of
    divergence, not one per entry."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.isolate("n1")
    for k in range(20):
        net.node("n1").propose(f"stale{k}".encode())
    net.stabilize()
    net.heal()
    net.isolate("n1")
    net.elect("n2")
    for k in range(5):
        net.node("n2").propose(f"fresh{k}".encode())
    net.stabilize()
    net.elect("n3")  # its log ends at 7/2 when elected, so it first probes n1 at 7
    net.heal()
    net.delivered.clear()
    net.tick("n3")
    net.stabilize()
    rejects = [m for m in net.delivered if m.type == MT.APP_RESP and m.reject and m.sender == "n1"]
    # One rejection (hint 7/1) takes the leader straight to index 1, past the five term-2
    # entries it would otherwise probe one by one.
    assert len(rejects) == 1, rejects
    assert net.log("n1") == net.log("n3")


def test_batching_respects_max_msg_bytes() -> None:
    """Entries per AppendEntries are bounded by max_msg_bytes (at least one entry)."""
    net = Network(2, pre_vote=False, max_msg_bytes=100, check_quorum=False)
    net.elect("n1")
    net.isolate("n2")
    for _ in range(10):
        net.node("n1").propose(b"x" * 30)  # 46 bytes each
    net.stabilize()
    net.heal()
    net.delivered.clear()
    net.tick("n1")
    net.stabilize()
    apps = [m for m in net.delivered if m.type == MT.APP and m.entries]
    assert apps and all(sum(e.size_bytes() for e in m.entries) <= 100 for m in apps)
    assert max(len(m.entries) for m in apps) == 2
    net.node("n1").propose(b"y" * 500)  # bigger than the limit still goes, alone
    net.stabilize()
    assert net.applied_data("n2")[-1] == b"y" * 500


def test_inflight_window_limits_pipelining() -> None:
    """Replicate state pipelines at most max_inflight_msgs appends before acks."""
    net = Network(2, pre_vote=False, max_inflight_msgs=3, check_quorum=False, max_msg_bytes=1)
    net.elect("n1")
    for k in range(10):
        net.node("n1").propose(f"v{k}".encode())
    net.process_ready("n1")
    apps = [m for m in net.inflight if m.type == MT.APP and m.to == "n2"]
    assert [len(m.entries) for m in apps] == [1, 1, 1]  # one entry each by size; window 3
    ((_, pr),) = [p for p in net.node("n1").status().progress if p[0] == "n2"]
    assert pr.state == ProgressState.REPLICATE and pr.inflight == 3
    net.stabilize()
    assert len(net.applied_data("n2")) == 10


def test_probe_state_sends_one_message_at_a_time() -> None:
    """Probe state: a single AppendEntries in flight until a response (or heartbeat
    response) arrives."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.isolate("n3")
    net.node("n1").report_unreachable("n3")  # replicate -> probe
    for k in range(5):
        net.node("n1").propose(f"v{k}".encode())
    net.process_ready("n1")
    to_n3 = [m for m in net.inflight if m.type == MT.APP and m.to == "n3"]
    assert len(to_n3) == 1
    ((_, pr),) = [p for p in net.node("n1").status().progress if p[0] == "n3"]
    assert pr.state == ProgressState.PROBE


def test_heartbeat_carries_bounded_commit() -> None:
    """Heartbeats carry min(leader commit, follower match): a follower never learns a
    commit index beyond what it is known to hold."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    net.isolate("n3")
    net.node("n1").propose(b"a")
    net.stabilize()
    net.heal()
    net.node("n1").tick()
    net.process_ready("n1")
    hb = {m.to: m.commit for m in net.inflight if m.type == MT.HEARTBEAT}
    assert hb == {"n2": 2, "n3": 1}


def test_stale_leader_learns_higher_term_from_append_reply() -> None:
    """With check-quorum/pre-vote, a follower answers a stale-term append so the deposed
    leader learns the new term (§5.1)."""
    node = follower_with_log([1, 2], term=3)
    node.step(app(1, 1, 1, [(2, 1)]))
    (resp,) = ready_and_persist(node)
    assert resp.type == MT.APP_RESP and resp.term == 3


def test_proposals_in_one_ready_are_batched_into_one_append() -> None:
    """Proposals made between two Readys go out as one AppendEntries per follower (up to
    max_msg_bytes), and a commit advance is announced once per Ready, not once per ack."""
    net = Network(3, pre_vote=False, check_quorum=False)
    net.elect("n1")
    for k in range(50):
        net.node("n1").propose(f"v{k}".encode())
    net.delivered.clear()
    net.stabilize()
    apps = [m for m in net.delivered if m.type == MT.APP and m.to == "n2"]
    assert [len(m.entries) for m in apps] == [50, 0]  # the entries, then the commit
    assert apps[-1].commit == 51
    assert len(net.applied_data("n2")) == 50
