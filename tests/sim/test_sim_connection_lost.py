"""The simulator models what a crash looks like to the survivors: their connections from the
crashed node close (unless a partition is in the way), and the core's CONNECTION_LOST hint
lets a follower of a crashed leader campaign within half an election timeout. Measured with
the benchmark's own scenario (bench/bench_sim_failover.py: a calm cluster, the leader
crashed at tick 40, default timeouts)."""

from __future__ import annotations

import pytest

from bench.bench_sim_failover import E, failover_ticks
from raft.sim.network import Network

# Pre-vote and vote rounds are a few sub-tick messages: a follower told at the crash
# campaigns after 1..E/2 ticks and wins within a tick or two more.
QUICK = E // 2 + 3


@pytest.mark.parametrize("nodes", [3, 5])
def test_survivors_of_a_leader_crash_elect_within_half_an_election_timeout(nodes: int) -> None:
    """Most seeds; the others are split votes (two followers drew the same short delay,
    likelier here than on a real network, the simulated messages taking a tenth to a third
    of a tick), which cost a normal election timeout."""
    ticks = [failover_ticks(seed, nodes) for seed in range(10)]
    assert sum(t <= QUICK for t in ticks) >= 8, ticks
    assert max(ticks) < 3 * E, ticks


@pytest.mark.parametrize("seed", range(3))
def test_without_the_close_a_crash_costs_a_whole_election_timeout(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a partition looks like (no FIN crosses it): nobody campaigns before ``e`` ticks
    after the last heartbeat."""
    monkeypatch.setattr(Network, "close_arrival", lambda self, sender, to, now: None)
    assert E - 1 <= failover_ticks(seed, 3) < 3 * E
