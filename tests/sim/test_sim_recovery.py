"""Disk faults in the simulator (issue 10): a minority node that loses synced entries comes
back recovering, the leader brings it back (§2), and the swarm stays safe (§1)."""

from __future__ import annotations

from raft.sim import SimConfig, World, parse_faults

SEEDS = 8


def test_nodes_that_lost_entries_catch_up_and_finish_recovering() -> None:
    """After the faults heal, every node holds the leader's log and none is still
    recovering: the leader noticed the loss (no match that never decreases, no busy loop)."""
    damaged_runs = 0
    for seed in range(SEEDS):
        cfg = SimConfig(seed=seed, nodes=3, faults=parse_faults("disk"), steps=400, trace=True)
        w = World(cfg)
        r = w.run()
        assert r.ok, (seed, str(r.violation))
        if not any("nemesis disk fault" in line for line in w.trace_lines()):
            continue
        damaged_runs += 1
        lasts = {n: w.last_index(n) for n in w.node_ids()}
        assert len(set(lasts.values())) == 1, (seed, lasts)
        for nid in w.node_ids():
            assert not w._nodes[nid].disk.recovering, (seed, nid)
        assert r.commit_after_heal_ticks is not None, seed
    assert damaged_runs >= SEEDS // 2


def test_disk_faults_hit_only_a_fixed_minority() -> None:
    for nodes in (3, 4, 5, 7):
        w = World(SimConfig(seed=nodes, nodes=nodes, faults=parse_faults("all")))
        assert len(w.disk_fault_nodes()) == (nodes - 1) // 2
    assert "disk" in {k.value for k in parse_faults("all")}
