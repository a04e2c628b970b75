"""``raft client bench``: closed-loop load from C concurrent clients, like etcd's benchmark
tool. Each client has its own session (client_id), one operation outstanding at a time."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

from raft.runtime.client import RaftClient
from raft.runtime.protocol import Status
from raft.runtime.transport import Address


@dataclass(frozen=True, slots=True)
class BenchSpec:
    ops: int
    concurrency: int
    size: int
    read_fraction: float = 0.0
    keys: int = 1000


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


@dataclass(slots=True)
class BenchResult:
    spec: BenchSpec
    elapsed_s: float = 0.0
    write_lat_s: list[float] = field(default_factory=list)
    read_lat_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return len(self.write_lat_s) + len(self.read_lat_s)

    def render(self) -> str:
        s = self.spec
        lines = [
            f"ops {s.ops}, concurrency {s.concurrency}, value {s.size} B, "
            f"reads {s.read_fraction * 100:.0f}%: {self.completed} ok in {self.elapsed_s:.2f} s"
        ]
        for name, lat in (("writes", self.write_lat_s), ("reads", self.read_lat_s)):
            if not lat:
                continue
            lat = sorted(lat)
            rate = len(lat) / self.elapsed_s if self.elapsed_s > 0 else 0.0
            lines.append(
                f"{name}/s: {rate:.1f}  latency ms: p50 {percentile(lat, 0.5) * 1e3:.2f}  "
                f"p90 {percentile(lat, 0.9) * 1e3:.2f}  p99 {percentile(lat, 0.99) * 1e3:.2f}  "
                f"max {lat[-1] * 1e3:.2f}"
            )
        if self.errors:
            errs = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
            lines.append(f"not ok: {errs}")
        return "\n".join(lines)


async def run_bench(
    addrs: list[Address], spec: BenchSpec, token: bytes | None = None, seed: int = 1
) -> BenchResult:
    result = BenchResult(spec)
    remaining = [spec.ops]
    value = os.urandom(spec.size // 2).hex().ljust(spec.size, "x")[: spec.size]

    async def worker(w: int) -> None:
        rng = random.Random(seed * 7919 + w)
        async with RaftClient(addrs, token=token) as client:
            while remaining[0] > 0:
                remaining[0] -= 1
                key = f"k{rng.randrange(spec.keys)}"
                is_read = rng.random() < spec.read_fraction
                t0 = time.perf_counter()
                resp = await (client.get(key) if is_read else client.put(key, value))
                dt = time.perf_counter() - t0
                if resp.status is Status.OK:
                    (result.read_lat_s if is_read else result.write_lat_s).append(dt)
                else:
                    result.errors[resp.status.value] = result.errors.get(resp.status.value, 0) + 1

    # Warm up: find the leader once so the first measured ops do not pay for the redirect.
    async with RaftClient(addrs, token=token) as probe:
        await probe.get("warmup")
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(spec.concurrency)))
    result.elapsed_s = time.perf_counter() - t0
    return result
