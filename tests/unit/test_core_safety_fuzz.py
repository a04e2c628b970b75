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

from raft.core import NotLeaderError, ProposalDroppedError, Role

SEEDS = int(os.environ.get("RAFT_CORE_FUZZ_SEEDS", "10"))


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


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("pre_vote,check_quorum", [(True, True), (False, False)])
def test_random_faults_keep_safety(seed: int, pre_vote: bool, check_quorum: bool) -> None:
    """Figure 3 properties hold under message loss, partitions and restarts."""
    rng = random.Random(seed)
    net = Network(
        5 if seed % 2 else 3,
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
        if all(b"final" in net.applied_data(nid) for nid in net.ids):
            done = True
            break
    assert done, [net.node(nid).status() for nid in net.ids]
    check_invariants(net, leaders_by_term)
