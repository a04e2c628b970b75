"""The nemesis breaks things and always heals them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from raft.core import NodeId
from raft.sim import ALL_FAULTS, FaultKind, Network, SimConfig, World
from raft.sim.faults import Nemesis, NemesisTiming


class _FakeWorld:
    """Just enough of a world to watch what the nemesis does."""

    def __init__(self) -> None:
        self.network = Network(random.Random(0), latency_min=1, latency_max=5)
        self.ids = ["n1", "n2", "n3", "n4", "n5"]
        self.down: set[NodeId] = set()
        self.paused: set[NodeId] = set()
        self.periods: dict[NodeId, int] = {}
        self.notes: list[str] = []
        self.damaged: list[NodeId] = []
        self.replayed = 0
        self.changes = 0

    def node_ids(self) -> Sequence[NodeId]:
        return self.ids

    def leader_hint(self) -> NodeId | None:
        return "n1"

    def is_up(self, node: NodeId) -> bool:
        return node not in self.down

    def is_paused(self, node: NodeId) -> bool:
        return node in self.paused

    def crash(self, node: NodeId, *, disk_fault: bool = False) -> None:
        self.down.add(node)
        self.paused.discard(node)  # as in the world: a crashed process is not stopped
        if disk_fault:
            self.damaged.append(node)

    def disk_fault_nodes(self) -> Sequence[NodeId]:
        return self.ids[-1:]

    def restart(self, node: NodeId) -> None:
        self.down.discard(node)

    def pause(self, node: NodeId) -> None:
        self.paused.add(node)

    def resume(self, node: NodeId) -> None:
        self.paused.discard(node)

    def set_tick_period(self, node: NodeId, period: int | None) -> None:
        if period is None:
            self.periods.pop(node, None)
        else:
            self.periods[node] = period

    def note(self, text: str) -> None:
        self.notes.append(text)

    def replay_stale(self, count: int) -> int:
        self.replayed += count
        return count

    def change_membership(self) -> str | None:
        self.changes += 1
        return "remove n5"


def _blocked(net: Network, ids: Sequence[NodeId]) -> int:
    return sum(1 for a in ids for b in ids if a != b and net.is_blocked(a, b))


def test_every_fault_kind_starts_and_stops() -> None:
    w = _FakeWorld()
    timing = NemesisTiming(gap_min=1, gap_max=5, duration_min=5, duration_max=20)
    nem = Nemesis(ALL_FAULTS, random.Random(7), w, timing, subticks=100)
    seen: set[FaultKind] = set()
    for now in range(0, 3000, 3):
        nem.step(now)
        seen.update(f.kind for f in nem.active)
    assert w.damaged and set(w.damaged) <= set(w.disk_fault_nodes())  # only the minority
    # Membership changes are instant (nothing to stop); stale replays come with "late".
    assert seen == set(ALL_FAULTS) - {FaultKind.MEMBER}
    assert w.changes > 0 and nem.membership_changes == w.changes
    assert w.replayed > 0
    nem.stop_due(10**9)
    assert nem.active == []
    assert not w.down and not w.paused and not w.periods
    assert _blocked(w.network, w.ids) == 0
    net = w.network
    assert (net.drop_rate, net.dup_rate, net.reorder_jitter, net.extra_delay) == (0, 0, 0, 0)
    assert net.late_rate == 0


def test_links_heal_when_overlapping_link_faults_stop_together() -> None:
    w = _FakeWorld()
    timing = NemesisTiming(gap_min=1, gap_max=1, duration_min=50, duration_max=50)
    kinds = frozenset({FaultKind.PARTITION, FaultKind.ONEWAY})
    nem = Nemesis(kinds, random.Random(3), w, timing, subticks=100)
    nem.step(0)
    nem.step(0)
    assert len(nem.active) == 2
    assert _blocked(w.network, w.ids) > 0
    nem.stop_due(50)
    assert _blocked(w.network, w.ids) == 0


def test_world_is_healed_at_the_end_of_a_run() -> None:
    # A seed whose fault mix is busy (faults and membership changes) in 200 ticks.
    world = World(SimConfig(seed=6, nodes=5, steps=200, lincheck=False))
    result = world.run()
    assert result.violation is None
    assert result.faults > 3 and result.membership_changes > 0
    ids = world.node_ids()
    members = [n for n in ids if world.is_member(n)]
    assert len(members) >= 3
    assert all(world.is_up(n) and not world.is_paused(n) for n in members)
    assert not any(world.is_up(n) for n in ids if n not in members)  # removed: powered off
    assert _blocked(world.network, ids) == 0
    assert result.leader_after_heal_ticks is not None
    assert result.commit_after_heal_ticks is not None
