"""The simulated network: decides, for each message sent, whether and when it arrives.

Links are directed (``sender -> to``). Without faults every message arrives after a small
random latency and links are FIFO, like TCP. Faults (set by the nemesis) add loss,
duplication, reordering (a random jitter that may overtake earlier messages), extra delay,
symmetric partitions, one-way blocks and *very late* messages: with ``late_rate`` a message
is held for many election timeouts (``late_hold``), so it arrives in a later term, after its
sender was deposed or restarted, after its receiver's log was replaced. Late holds never end
after ``late_cap`` (the heal time), so the calm phase is calm. :meth:`Network.heal` removes
every fault.

The network only answers "when"; the world owns the event queue and delivers. Times are world
time units (``world.SUBTICKS`` per tick).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from raft.core.types import NodeId


class Network:
    """Link state and the per-message routing decision."""

    def __init__(self, rng: random.Random, latency_min: int, latency_max: int) -> None:
        if not 0 < latency_min <= latency_max:
            raise ValueError(f"bad latency range [{latency_min}, {latency_max}]")
        self._rng = rng
        self.latency_min = latency_min
        self.latency_max = latency_max
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.reorder_jitter = 0
        """When > 0, each message gets an extra random delay in [0, jitter] and links stop
        being FIFO."""
        self.extra_delay = 0
        self.late_rate = 0.0
        """Chance that a message is held for a time drawn from ``late_hold``."""
        self.late_hold: tuple[int, int] = (0, 0)
        self.late_cap = 1 << 62
        """No late message is scheduled after this time (the world sets its heal time)."""
        self.late = 0
        self._blocked: set[tuple[NodeId, NodeId]] = set()
        self._last_arrival: dict[tuple[NodeId, NodeId], int] = {}
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    # -- faults --------------------------------------------------------------------------
    def partition(self, side_a: Sequence[NodeId], side_b: Sequence[NodeId]) -> None:
        """Nothing crosses between ``side_a`` and ``side_b``, in either direction."""
        for a in side_a:
            for b in side_b:
                self._blocked.add((a, b))
                self._blocked.add((b, a))

    def block(self, sender: NodeId, to: NodeId) -> None:
        """Messages from ``sender`` to ``to`` are lost (the reverse direction still works)."""
        self._blocked.add((sender, to))

    def is_blocked(self, sender: NodeId, to: NodeId) -> bool:
        return (sender, to) in self._blocked

    def close_arrival(self, sender: NodeId, to: NodeId, now: int) -> int | None:
        """When ``to`` sees ``sender``'s connection close (a crash: the kernel sends FIN or
        RST), or ``None`` when the link is blocked (a partition carries no FIN either). Like
        a FIN it comes after everything already sent on the link. Draws no random numbers,
        so a seed's other events are the same with or without it."""
        link = (sender, to)
        if link in self._blocked:
            return None
        return max(now + self.latency_min + self.extra_delay, self._last_arrival.get(link, 0) + 1)

    def heal_links(self) -> None:
        self._blocked.clear()

    def heal(self) -> None:
        """No more loss, duplication, reordering, extra delay or blocked links."""
        self.heal_links()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.reorder_jitter = 0
        self.extra_delay = 0
        self.late_rate = 0.0

    # -- routing -------------------------------------------------------------------------
    def route(self, sender: NodeId, to: NodeId, now: int) -> tuple[int, ...]:
        """Arrival times of one message sent at ``now``: empty when it is lost, two when it
        is duplicated."""
        self.sent += 1
        if (sender, to) in self._blocked:
            self.dropped += 1
            return ()
        rng = self._rng
        if self.drop_rate and rng.random() < self.drop_rate:
            self.dropped += 1
            return ()
        first = self._arrival(sender, to, now)
        if self.dup_rate and rng.random() < self.dup_rate:
            self.duplicated += 1
            return (first, self._arrival(sender, to, now))
        return (first,)

    def _arrival(self, sender: NodeId, to: NodeId, now: int) -> int:
        rng = self._rng
        t = now + rng.randint(self.latency_min, self.latency_max) + self.extra_delay
        if self.late_rate and rng.random() < self.late_rate:
            held = now + rng.randint(*self.late_hold)
            if held < self.late_cap:
                self.late += 1
                return held  # overtakes nothing it should not: links are not FIFO for it
        if self.reorder_jitter:
            return t + rng.randint(0, self.reorder_jitter)
        link = (sender, to)
        last = self._last_arrival.get(link, 0)
        if t <= last:
            t = last + 1  # FIFO link: never overtake an earlier message
        self._last_arrival[link] = t
        return t
