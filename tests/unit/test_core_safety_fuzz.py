"""A small randomized check of Raft's safety properties (Figure 3) over the core alone:
random ticks, drops, partitions, proposals and restarts on the in-test network, with the
invariants checked after every round. The heavy, fault-rich version lives in raft.sim; this
one keeps the core honest on its own and runs in a few seconds."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from core_net import Network

from raft.core import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
)

SEEDS = int(os.environ.get("RAFT_CORE_FUZZ_SEEDS", "10"))


def members_now(net: Network) -> list[str]:
    """Voters and learners per the current leader (removed nodes get nothing new)."""
    leaders = net.leaders()
    if len(leaders) != 1:
        return []
    cs = net.node(leaders[0]).status().conf_state
    return sorted(cs.voters | cs.learners | cs.voters_outgoing)


def check_invariants(net: Network, leaders_by_term: dict[int, str]) -> None:
    # Election Safety: at most one leader per term.
    for nid, box in net.boxes.items():
        st = box.node.status()
        if st.role == Role.LEADER:
            prev = leaders_by_term.setdefault(st.term, nid)
            assert prev == nid, f"two leaders in term {st.term}: {prev} and {nid}"
    # Log Matching: same index and term -> identical prefix (checked on stored logs).
    logs = {nid: {i: (t, d) for i, t, d in net.log(nid)} for nid in net.boxes}
    # (Compacted prefixes are covered by State Machine Safety below.)
    ids = sorted(logs)
    for a_pos, a in enumerate(ids):
        for b in ids[a_pos + 1 :]:
            common = sorted(set(logs[a]) & set(logs[b]))
            for k, i in enumerate(common):
                if logs[a][i][0] == logs[b][i][0]:
                    for j in common[: k + 1]:
                        assert logs[a][j] == logs[b][j], f"log mismatch {a}/{b} at {j}"
    # State Machine Safety: applied sequences are prefixes of one another.
    applied = [[(e.index, e.term, e.data) for e in net.boxes[n].applied] for n in ids]
    longest = max(applied, key=len)
    for seq in applied:
        assert seq == longest[: len(seq)], "state machines diverged"


def propose_membership_change(net: Network, rng: random.Random) -> None:
    """Remove a voter, add one back (single-server or joint), or demote one to learner;
    refusals (a change already pending, joint state) are part of the game."""
    leaders = net.leaders()
    if not leaders:
        return
    node = net.node(leaders[0])
    cs = node.status().conf_state
    if cs.voters_outgoing:
        return  # auto-leave is on its way
    outside = sorted(set(net.ids) - cs.voters - cs.learners)
    inside = sorted(cs.voters)
    changes: list[ConfChangeSingle] = []
    if outside and rng.random() < 0.5:
        changes.append(ConfChangeSingle(ConfChangeType.ADD_NODE, rng.choice(outside)))
    elif len(inside) > 3:
        kind = ConfChangeType.REMOVE_NODE if rng.random() < 0.7 else ConfChangeType.ADD_LEARNER
        changes.append(ConfChangeSingle(kind, rng.choice(inside)))
    if sorted(cs.learners) and rng.random() < 0.3:
        changes.append(ConfChangeSingle(ConfChangeType.ADD_NODE, sorted(cs.learners)[0]))
    if not changes:
        return
    with contextlib.suppress(ProposalDroppedError):
        node.propose_conf_change(ConfChange(changes=tuple(changes), joint=rng.random() < 0.3))


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize(
    "pre_vote,check_quorum,membership",
    [(True, True, False), (False, False, False), (True, True, True)],
)
def test_random_faults_keep_safety(
    seed: int, pre_vote: bool, check_quorum: bool, membership: bool
) -> None:
    """Figure 3 properties hold under message loss, partitions, restarts, compaction,
    leadership transfers and (optionally) membership changes."""
    rng = random.Random(seed)
    net = Network(
        5 if seed % 2 or membership else 3,
        seed=seed,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        election_timeout_ticks=5,
        max_inflight_msgs=4,
    )
    leaders_by_term: dict[int, str] = {}
    proposed = 0
    for _round in range(250):
        r = rng.random()
        if r < 0.05:
            victims = rng.sample(net.ids, rng.randint(1, len(net.ids) // 2))
            net.isolate(*victims)
        elif r < 0.10:
            net.heal()
        elif r < 0.12:
            net.restart(rng.choice(net.ids))
        elif r < 0.17:
            net.compact(rng.choice(net.ids))
        elif r < 0.20 and membership:
            propose_membership_change(net, rng)
        elif r < 0.22:
            leaders = net.leaders()
            if leaders:
                with contextlib.suppress(NotLeaderError):
                    net.node(leaders[0]).transfer_leader(rng.choice(net.ids))
        # Random loss on top of any partition.
        part = net.drop
        net.drop = lambda m, part=part: (part is not None and part(m)) or rng.random() < 0.1
        for nid in net.ids:
            net.node(nid).tick()
            if rng.random() < 0.3:
                try:
                    net.node(nid).propose(f"v{proposed}".encode())
                    proposed += 1
                except (NotLeaderError, ProposalDroppedError):
                    pass
        for nid in net.ids:
            net.process_ready(nid)
        net.deliver()
        net.drop = part
        check_invariants(net, leaders_by_term)
    # Liveness after healing: within a bounded number of ticks a leader commits a final
    # entry and every node applies it (elections may still churn for a while without
    # pre-vote, so proposals are retried).
    net.heal()
    done = False
    for _ in range(100):
        net.tick_all(1)
        leaders = net.leaders()
        if len(leaders) == 1 and b"final" not in net.applied_data(leaders[0]):
            with contextlib.suppress(ProposalDroppedError):
                net.node(leaders[0]).propose(b"final")
            net.stabilize()
        members = members_now(net)
        if members and all(b"final" in net.applied_data(nid) for nid in members):
            done = True
            break
    assert done, [net.node(nid).status() for nid in net.ids]
    check_invariants(net, leaders_by_term)
