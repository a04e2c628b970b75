"""Fault kinds and the nemesis that schedules them during a simulated run.

Every fault comes as "how to break" plus "how to heal": each started fault has a stop time,
and :meth:`Nemesis.heal_all` stops everything at once (the world calls it when the chaos phase
ends, so liveness can be checked on a healed cluster). All choices come from the world's one
seeded ``random.Random``, so a seed replays the same faults at the same virtual times.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from raft.core.types import NodeId
from raft.sim.network import Network


class FaultKind(enum.Enum):
    """The closed set of faults the simulator injects (``--faults`` names them)."""

    DROP = "drop"  # messages are lost with some probability
    DUP = "dup"  # messages are delivered twice
    REORDER = "reorder"  # delivery order on a link no longer follows send order
    DELAY = "delay"  # extra latency on every message
    PARTITION = "partition"  # the cluster splits in two groups that cannot talk
    ONEWAY = "oneway"  # some directed links drop everything (A hears B, B not A)
    CRASH = "crash"  # a node loses power: unsynced writes are lost, it restarts later
    PAUSE = "pause"  # a node stops (SIGSTOP): no ticks, inbound messages queue up
    SKEW = "skew"  # a node's clock runs fast or slow (ticks at another rate)
    DISK = "disk"  # a crash that also damages a minority node's disk (lost synced tail)
    LATE = "late"  # some messages arrive many election timeouts late; old ones are replayed
    MEMBER = "member"  # membership changes (add, remove, promote, demote, joint, leader leaves)


ALL_FAULTS: frozenset[FaultKind] = frozenset(FaultKind)


class FaultSpecError(ValueError):
    """A ``--faults`` value named an unknown fault kind."""


def parse_faults(spec: str) -> frozenset[FaultKind]:
    """``"drop,dup,crash"`` or ``"all"`` or ``"none"``/``""`` -> the set of kinds. Raises
    FaultSpecError naming the unknown token and the valid ones."""
    kinds: set[FaultKind] = set()
    for raw in spec.split(","):
        token = raw.strip().lower()
        if not token or token == "none":
            continue
        if token == "all":
            kinds.update(ALL_FAULTS)
            continue
        try:
            kinds.add(FaultKind(token))
        except ValueError:
            valid = ", ".join(k.value for k in FaultKind)
            raise FaultSpecError(f"unknown fault {token!r} (valid: {valid}, all, none)") from None
    return frozenset(kinds)


def format_faults(kinds: frozenset[FaultKind]) -> str:
    """The canonical ``--faults`` spelling of ``kinds`` (``all`` when every kind is in)."""
    if kinds == ALL_FAULTS:
        return "all"
    if not kinds:
        return "none"
    return ",".join(k.value for k in FaultKind if k in kinds)


class FaultTarget(Protocol):
    """What the nemesis needs from the world."""

    network: Network

    def node_ids(self) -> Sequence[NodeId]: ...

    def leader_hint(self) -> NodeId | None: ...

    def is_up(self, node: NodeId) -> bool: ...

    def is_paused(self, node: NodeId) -> bool: ...

    def crash(self, node: NodeId, *, disk_fault: bool = False) -> None: ...

    def disk_fault_nodes(self) -> Sequence[NodeId]:
        """The minority of nodes whose disks may be damaged (FaultKind.DISK)."""
        ...

    def restart(self, node: NodeId) -> None: ...

    def pause(self, node: NodeId) -> None: ...

    def resume(self, node: NodeId) -> None: ...

    def set_tick_period(self, node: NodeId, period: int | None) -> None:
        """``None`` restores the node's normal rate."""
        ...

    def note(self, text: str) -> None:
        """Record a nemesis action in the trace."""
        ...

    def replay_stale(self, count: int) -> int:
        """Deliver ``count`` copies of old messages again, later (a network may); returns
        how many were scheduled."""
        ...

    def change_membership(self) -> str | None:
        """Propose a random membership change at the leader; returns what, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ActiveFault:
    kind: FaultKind
    stop_at: int
    target: NodeId = ""
    """The node for node faults (crash, pause, skew); empty for network-wide faults."""


@dataclass(frozen=True, slots=True)
class NemesisTiming:
    """How often and how long faults happen, in world time units (see ``world.SUBTICKS``)."""

    gap_min: int
    gap_max: int
    duration_min: int
    duration_max: int


class Nemesis:
    """Starts a random enabled fault now and then and stops each when its time is up."""

    def __init__(
        self,
        kinds: frozenset[FaultKind],
        rng: random.Random,
        world: FaultTarget,
        timing: NemesisTiming,
        subticks: int,
        *,
        buggify: bool = False,
        skew_range: tuple[float, float] = (0.5, 2.0),
        late_hold: tuple[int, int] = (0, 0),
        max_delay_ticks: int = 8,
        max_jitter_ticks: int = 4,
        lease_attack: bool = False,
    ) -> None:
        self.kinds = tuple(k for k in FaultKind if k in kinds)  # enum order: deterministic
        self.weights: tuple[int, ...] = tuple(1 for _ in self.kinds)
        """Relative chance of each kind when a fault starts."""
        if buggify and self.kinds:
            # BUGGIFY/VOPR: each seed its own mix. Some kinds are off, the rest weighted, so
            # a seed may be all partitions and crashes, another mostly late messages.
            weights = [0 if rng.random() < 0.3 else rng.choice((1, 2, 4, 8)) for _ in self.kinds]
            if not any(weights):
                weights[rng.randrange(len(weights))] = 1
            self.weights = tuple(weights)
        self._member_p = 0.0
        """Chance of a membership change at each nemesis step (0 when ``member`` is off)."""
        if FaultKind.MEMBER in self.kinds:
            weight = self.weights[self.kinds.index(FaultKind.MEMBER)]
            self._member_p = min(1.0, 0.15 * weight) if buggify else 0.5
        self._rng = rng
        self._world = world
        self._timing = timing
        self._subticks = subticks
        self._skew_range = skew_range
        self._late_hold = late_hold
        self._max_delay = max_delay_ticks * subticks
        self._max_jitter = max_jitter_ticks * subticks
        self._lease_attack = lease_attack
        """Slow a leader's clock whenever a partition cuts it off (``Drift.BEYOND``)."""
        self.active: list[ActiveFault] = []
        self.started = 0
        self.membership_changes = 0

    def describe(self) -> str:
        """The seed's fault mix, e.g. ``crash:4 late:1`` (kinds with weight 0 left out)."""
        return " ".join(
            f"{k.value}:{w}" for k, w in zip(self.kinds, self.weights, strict=True) if w
        )

    def next_gap(self) -> int:
        return self._rng.randint(self._timing.gap_min, self._timing.gap_max)

    def step(self, now: int) -> None:
        """Stop the faults that are due, then start one new fault (if any kind is enabled)."""
        self.stop_due(now)
        if not self.kinds:
            return
        kind = self._rng.choices(self.kinds, self.weights)[0]
        if kind is not FaultKind.MEMBER:
            self._start(kind, now)
        # Membership changes run beside the faults (not instead of one), at the seed's rate.
        if self._member_p and self._rng.random() < self._member_p:
            self._start(FaultKind.MEMBER, now)

    def stop_due(self, now: int) -> None:
        due = [f for f in self.active if f.stop_at <= now]
        self.active = [f for f in self.active if f.stop_at > now]
        for f in due:
            self._stop(f)

    def heal_all(self) -> None:
        """Stop every active fault and put the world back to normal."""
        active, self.active = self.active, []
        for f in active:
            self._stop(f)
        net = self._world.network
        net.heal()
        for node in self._world.node_ids():
            if not self._world.is_up(node):
                self._world.restart(node)
            elif self._world.is_paused(node):
                self._world.resume(node)
            self._world.set_tick_period(node, None)

    def start_partition(self, side_a: Sequence[NodeId], side_b: Sequence[NodeId], now: int) -> None:
        """An aimed partition (the world cuts the leader off in a joint phase); healed like
        any other partition."""
        self._world.network.partition(side_a, side_b)
        self._world.note(f"nemesis aimed partition {list(side_a)} | {list(side_b)}")
        self.started += 1
        self.active.append(ActiveFault(FaultKind.PARTITION, now + self._duration()))

    # -- start/stop by kind --------------------------------------------------------------
    def _duration(self) -> int:
        return self._rng.randint(self._timing.duration_min, self._timing.duration_max)

    def _pick_node(self, candidates: list[NodeId]) -> NodeId | None:
        if not candidates:
            return None
        leader = self._world.leader_hint()
        if leader in candidates and self._rng.random() < 0.5:
            return leader
        return self._rng.choice(candidates)

    def _active_kinds(self) -> set[FaultKind]:
        return {f.kind for f in self.active}

    def _start(self, kind: FaultKind, now: int) -> None:
        w = self._world
        net = w.network
        rng = self._rng
        stop_at = now + self._duration()
        ids = list(w.node_ids())
        if kind in _NETWORK_WIDE and kind in self._active_kinds():
            return  # one episode of each network-wide kind at a time
        target: NodeId = ""
        if kind is FaultKind.DROP:
            net.drop_rate = rng.uniform(0.05, 0.4)
            w.note(f"nemesis start drop p={net.drop_rate:.2f}")
        elif kind is FaultKind.DUP:
            net.dup_rate = rng.uniform(0.05, 0.3)
            w.note(f"nemesis start dup p={net.dup_rate:.2f}")
        elif kind is FaultKind.REORDER:
            net.reorder_jitter = rng.randint(
                min(self._subticks // 2, self._max_jitter), self._max_jitter
            )
            w.note(f"nemesis start reorder jitter={net.reorder_jitter}")
        elif kind is FaultKind.DELAY:
            net.extra_delay = rng.randint(min(self._subticks, self._max_delay), self._max_delay)
            w.note(f"nemesis start delay +{net.extra_delay}")
        elif kind is FaultKind.PARTITION:
            leader = w.leader_hint()
            shuffled = list(ids)
            rng.shuffle(shuffled)
            size = rng.randint(1, len(ids) // 2)
            if leader is not None and rng.random() < 0.5:
                shuffled.remove(leader)
                shuffled.insert(0, leader)
            side = sorted(shuffled[:size])
            net.partition(side, sorted(shuffled[size:]))
            w.note(f"nemesis start partition {side} | {sorted(shuffled[size:])}")
            if self._lease_attack and leader is not None and leader in side:
                # Lease attack: the cut-off leader's clock also slows down, so it trusts its
                # lease long after the majority elected another leader.
                period = int(self._subticks * rng.uniform(*self._skew_range))
                w.set_tick_period(leader, max(1, period))
                w.note(f"nemesis start skew {leader} period={period} (with the partition)")
                self.active.append(ActiveFault(FaultKind.SKEW, stop_at, leader))
        elif kind is FaultKind.ONEWAY:
            node = self._pick_node(ids)
            assert node is not None
            others = [n for n in ids if n != node]
            count = rng.randint(1, len(others))
            chosen = sorted(rng.sample(others, count))
            outbound = rng.random() < 0.5
            for other in chosen:
                if outbound:
                    net.block(node, other)
                else:
                    net.block(other, node)
            arrow = f"{node} -/-> {chosen}" if outbound else f"{chosen} -/-> {node}"
            w.note(f"nemesis start oneway {arrow}")
        elif kind is FaultKind.CRASH:
            node = self._pick_node([n for n in ids if w.is_up(n)])
            if node is None:
                return
            w.crash(node)
            target = node
        elif kind is FaultKind.DISK:
            node = self._pick_node([n for n in w.disk_fault_nodes() if w.is_up(n)])
            if node is None:
                return
            w.crash(node, disk_fault=True)
            target = node
        elif kind is FaultKind.PAUSE:
            node = self._pick_node([n for n in ids if w.is_up(n) and not w.is_paused(n)])
            if node is None:
                return
            w.pause(node)
            target = node
        elif kind is FaultKind.SKEW:
            node = self._pick_node(ids)
            assert node is not None
            period = int(self._subticks * rng.uniform(*self._skew_range))
            w.set_tick_period(node, max(1, period))
            w.note(f"nemesis start skew {node} period={period}")
            target = node
        elif kind is FaultKind.LATE:
            net.late_rate = rng.uniform(0.02, 0.2)
            net.late_hold = self._late_hold
            replayed = w.replay_stale(rng.randint(1, 10))
            w.note(f"nemesis start late p={net.late_rate:.2f}, {replayed} old messages replayed")
        elif kind is FaultKind.MEMBER:
            what = w.change_membership()
            if what is None:
                return
            self.membership_changes += 1
            w.note(f"nemesis membership {what}")
            self.started += 1
            return  # nothing to stop: the change stays (or fails on its own)
        self.started += 1
        self.active.append(ActiveFault(kind=kind, stop_at=stop_at, target=target))

    def _stop(self, f: ActiveFault) -> None:
        w = self._world
        net = w.network
        kind = f.kind
        if kind is FaultKind.DROP:
            net.drop_rate = 0.0
        elif kind is FaultKind.DUP:
            net.dup_rate = 0.0
        elif kind is FaultKind.REORDER:
            net.reorder_jitter = 0
        elif kind is FaultKind.DELAY:
            net.extra_delay = 0
        elif kind is FaultKind.LATE:
            net.late_rate = 0.0
        elif kind in (FaultKind.PARTITION, FaultKind.ONEWAY):
            # Overlapping link faults: the links heal when the last of them stops.
            if not any(a.kind in _LINK_KINDS for a in self.active):
                net.heal_links()
        elif kind in (FaultKind.CRASH, FaultKind.DISK):
            if not w.is_up(f.target):
                w.restart(f.target)
            return
        elif kind is FaultKind.PAUSE:
            if w.is_up(f.target) and w.is_paused(f.target):
                w.resume(f.target)
            return
        elif kind is FaultKind.SKEW:
            w.set_tick_period(f.target, None)
        w.note(f"nemesis stop {kind.value} {f.target}".rstrip())


_NETWORK_WIDE = frozenset(
    {FaultKind.DROP, FaultKind.DUP, FaultKind.REORDER, FaultKind.DELAY, FaultKind.LATE}
)
_LINK_KINDS = frozenset({FaultKind.PARTITION, FaultKind.ONEWAY})
