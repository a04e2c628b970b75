"""Membership changes: single-server (thesis §4.1), joint consensus (thesis §4.3), learners
(thesis §4.2.1), and the ConfChange entry encoding."""

from __future__ import annotations

import pytest
from core_net import Network
from hypothesis import given, settings
from hypothesis import strategies as st

from raft.core import (
    ConfChange,
    ConfChangeError,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    ProposalDroppedError,
    Role,
    decode_conf_change,
    encode_conf_change,
)
from raft.core.confchange import apply_conf_change

ADD, LEARN, REMOVE = ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER, ConfChangeType.REMOVE_NODE


def cc(*changes: tuple[ConfChangeType, str], joint: bool = False, auto: bool = True) -> ConfChange:
    return ConfChange(
        changes=tuple(ConfChangeSingle(t, n) for t, n in changes), joint=joint, auto_leave=auto
    )


def cs(voters: str, learners: str = "") -> ConfState:
    return ConfState(voters=frozenset(voters.split()), learners=frozenset(learners.split()))


def test_simple_add_and_remove() -> None:
    """Thesis §4.1: one voter at a time applies directly."""
    assert apply_conf_change(cs("a b c"), cc((ADD, "d"))).voters == {"a", "b", "c", "d"}
    assert apply_conf_change(cs("a b c"), cc((REMOVE, "c"))).voters == {"a", "b"}


def test_simple_change_of_two_voters_is_refused() -> None:
    """Thesis §4.1/§4.3: changing two voters at once needs a joint configuration."""
    from raft.core.confchange import simple

    with pytest.raises(ConfChangeError):
        simple(cs("a b c"), (ConfChangeSingle(ADD, "d"), ConfChangeSingle(REMOVE, "a")))


def test_joint_enter_and_leave() -> None:
    """Thesis §4.3: C_old,new keeps the old voters as the outgoing half; leaving drops
    them."""
    j = apply_conf_change(cs("a b c"), cc((ADD, "d"), (REMOVE, "a")))
    assert j.voters == {"b", "c", "d"} and j.voters_outgoing == {"a", "b", "c"} and j.auto_leave
    out = apply_conf_change(j, ConfChange())
    assert out.voters == {"b", "c", "d"} and not out.voters_outgoing and not out.auto_leave


def test_demotion_in_joint_waits_in_learners_next() -> None:
    j = apply_conf_change(cs("a b c"), cc((LEARN, "c"), joint=True))
    assert "c" in j.learners_next and "c" in j.voters_outgoing and "c" not in j.learners
    out = apply_conf_change(j, ConfChange())
    assert out.learners == {"c"} and out.voters == {"a", "b"}


@pytest.mark.parametrize(
    ("start", "change"),
    [
        (cs("a"), cc((REMOVE, "a"))),  # removes all voters
        (cs("a b c"), ConfChange()),  # leave joint when not joint
    ],
)
def test_invalid_changes_raise(start: ConfState, change: ConfChange) -> None:
    with pytest.raises(ConfChangeError):
        apply_conf_change(start, change)


def test_enter_joint_twice_raises() -> None:
    j = apply_conf_change(cs("a b c"), cc((ADD, "d"), joint=True))
    with pytest.raises(ConfChangeError):
        apply_conf_change(j, cc((ADD, "e"), joint=True))


_changes = st.lists(
    st.builds(
        ConfChangeSingle,
        st.sampled_from([ADD, LEARN, REMOVE]),
        st.sampled_from(["n1", "n2", "n3", "n4", "n5"]),
    ),
    max_size=4,
)


@settings(deadline=None)
@given(_changes, st.booleans(), st.booleans())
def test_encoding_round_trips(changes: list[ConfChangeSingle], joint: bool, auto: bool) -> None:
    c = ConfChange(changes=tuple(changes), joint=joint, auto_leave=auto)
    assert decode_conf_change(encode_conf_change(c)) == c


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"[]",
        b'{"changes": 3}',
        b'{"changes": [{"type": "x", "node": "n1"}]}',
        b'{"changes": [{"type": "add_node", "node": ""}]}',
        b'{"joint": "yes"}',
    ],
)
def test_decoding_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ConfChangeError):
        decode_conf_change(data)


@settings(deadline=None)
@given(st.lists(_changes, max_size=6))
def test_applied_states_stay_consistent(seq: list[list[ConfChangeSingle]]) -> None:
    """Whatever sequence of changes is attempted, every accepted result is consistent:
    learners and voters disjoint, learners_next only while joint and among outgoing."""
    state = cs("n1 n2 n3")
    for changes in seq:
        change = ConfChange(changes=tuple(changes))
        if state.voters_outgoing:
            change = ConfChange()
        try:
            state = apply_conf_change(state, change)
        except ConfChangeError:
            continue
        assert not (state.learners & (state.voters | state.voters_outgoing))
        assert state.learners_next <= state.voters_outgoing
        assert state.voters


# -- end to end -----------------------------------------------------------------------


def test_add_voter_end_to_end() -> None:
    """Thesis §4.1: a new server joins via a committed CONF_CHANGE entry and then counts
    towards the quorum."""
    net = Network(3)
    net.elect("n1")
    net.add_node("n4", voters=("n1", "n2", "n3"))
    net.node("n1").propose_conf_change(cc((ADD, "n4")))
    net.stabilize()
    net.tick("n1")
    net.stabilize()
    for nid in ("n1", "n2", "n3", "n4"):
        assert net.node(nid).status().conf_state.voters == {"n1", "n2", "n3", "n4"}, nid
    # With 4 voters a quorum is 3: n1+n2 alone cannot commit.
    net.isolate("n3", "n4")
    net.node("n1").propose(b"x")
    net.stabilize()
    assert b"x" not in net.applied_data("n1")


def test_only_one_pending_change() -> None:
    """Thesis §4.1: a leader does not propose a change until the previous one is applied."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose_conf_change(cc((ADD, "n4")))
    with pytest.raises(ProposalDroppedError):
        net.node("n1").propose_conf_change(cc((ADD, "n5")))


def test_joint_change_auto_leaves() -> None:
    """Thesis §4.3: after C_old,new is applied the leader proposes C_new by itself."""
    net = Network(3)
    net.elect("n1")
    net.add_node("n4", voters=("n1", "n2", "n3"))
    net.node("n1").propose_conf_change(cc((ADD, "n4"), (REMOVE, "n3")))
    net.stabilize()
    net.tick("n1")
    net.stabilize()
    confs = net.boxes["n1"].conf_states
    assert [bool(c.voters_outgoing) for c in confs] == [True, False]
    assert confs[-1].voters == {"n1", "n2", "n4"}
    assert net.node("n2").status().conf_state.voters == {"n1", "n2", "n4"}


def test_joint_needs_both_majorities() -> None:
    """Thesis §4.3: in C_old,new, commitment needs a majority of both configurations."""
    net = Network(3)
    net.elect("n1")
    net.add_node("n4", voters=("n1", "n2", "n3"))
    net.add_node("n5", voters=("n1", "n2", "n3"))
    net.node("n1").propose_conf_change(
        cc((ADD, "n4"), (ADD, "n5"), (REMOVE, "n2"), (REMOVE, "n3"), auto=False)
    )
    net.stabilize()
    net.tick("n1")
    net.stabilize()
    assert net.node("n1").status().conf_state.voters_outgoing == {"n1", "n2", "n3"}
    # n1,n4,n5 are a majority of the new config but only n1 of the old one.
    net.isolate("n2", "n3")
    net.node("n1").propose(b"x")
    net.stabilize()
    assert b"x" not in net.applied_data("n1")
    net.heal()
    net.tick("n1")
    net.stabilize()
    assert b"x" in net.applied_data("n1")


def test_removed_leader_steps_down() -> None:
    """Thesis §4.2.2: a leader removed from the configuration steps down once the change
    is applied; the rest elect a new leader."""
    net = Network(3)
    net.elect("n1")
    net.node("n1").propose_conf_change(cc((REMOVE, "n1")))
    net.stabilize()
    assert net.node("n1").status().role == Role.FOLLOWER
    for _ in range(60):
        net.tick_all(1)
        if net.leaders():
            break
    assert len(net.leaders()) == 1 and net.leaders()[0] in ("n2", "n3")


def test_learner_replicates_but_does_not_count() -> None:
    """Thesis §4.2.1: a learner gets the log but its acknowledgement does not commit."""
    net = Network(2)
    net.elect("n1")
    net.add_node("n3", voters=("n1", "n2"))
    net.node("n1").propose_conf_change(cc((LEARN, "n3")))
    net.stabilize()
    net.tick("n1")
    net.stabilize()
    net.isolate("n2")
    net.node("n1").propose(b"x")
    net.stabilize()
    assert b"x" not in net.applied_data("n1")
    assert b"x" in [d for _, _, d in net.log("n3")]


def test_a_commit_made_by_a_configuration_switch_is_reported_before_its_entries() -> None:
    """Lab (membership experiment): a leader's new, smaller quorum committed an entry when
    the configuration change applied, but the core reported the commit only at its next
    step, after the runtime had applied the entry (``applied_within_commit`` violated)."""
    net = Network(4)
    net.elect("n1")
    net.isolate("n3", "n4")
    leader = net.node("n1")
    index, _ = leader.propose(b"x")
    for _ in range(20):
        net.process_ready("n1")
        net.process_ready("n2")
        net.deliver()
    assert leader.raft.raft_log.committed < index  # 2 of 4 voters hold it: no quorum
    leader.apply_conf_change(
        ConfChange(changes=(ConfChangeSingle(ConfChangeType.REMOVE_NODE, "n4"),))
    )
    rd = leader.ready()
    assert index in {e.index for e in rd.committed_entries}
    commits = [dict(ev.fields)["index"] for ev in rd.events if ev.ev == "commit"]
    assert commits and max(commits) >= index  # type: ignore[operator]
