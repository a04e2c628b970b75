"""Concurrent clients that drive a cluster and record a Jepsen-style history.

Each worker is one logical client at a time (a Jepsen *process*): it invokes an operation,
waits for its completion, and records both events (docs/formats.md, "Client history").
When an outcome is unknown (a write that timed out) the event is ``info`` and the worker
continues as a new process (``process + clients``), so no process ever has two operations
outstanding. Reads that time out are recorded as ``fail``: a read has no effect, so it
certainly did not change the state.

Everything is bounded: at most ``ops_max`` operations and ``duration_s`` seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from raft.lincheck import HistoryEvent
from raft.lincheck.formats import render_jsonl
from raft.runtime.client import RaftClient
from raft.runtime.protocol import Response, Status
from raft.runtime.transport import Address

MODELS = ("register", "kv")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What the clients do. ``read_fraction`` of operations are reads; the rest split evenly
    into writes and compare-and-sets over a small value domain (``values_max``), so that cas
    operations both succeed and fail and the checker has something to decide."""

    model: str = "kv"
    clients: int = 5
    ops_max: int = 1000
    duration_s: float = 30.0
    keys: int = 3
    read_fraction: float = 0.4
    values_max: int = 5
    seed: int = 0
    op_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.clients < 1 or self.ops_max < 1 or self.duration_s <= 0:
            raise ValueError("clients, ops_max and duration_s must be positive")
        if not 0.0 <= self.read_fraction <= 1.0:
            raise ValueError(f"read_fraction must be within [0, 1], not {self.read_fraction}")
        if self.keys < 1 or self.values_max < 1:
            raise ValueError("keys and values_max must be positive")


@dataclass(slots=True)
class WorkloadSummary:
    invoked: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    elapsed_s: float = 0.0
    by_f: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "invoked": self.invoked,
            "ok": self.ok,
            "fail": self.fail,
            "info": self.info,
            "elapsed_s": round(self.elapsed_s, 3),
            "ok_per_s": round(self.ok / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "by_f": dict(sorted(self.by_f.items())),
        }


class HistoryWriter:
    """Appends history events to a JSON Lines file as they happen, so an interrupted run
    keeps everything recorded up to the interruption."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, ev: HistoryEvent) -> None:
        self._out.write(render_jsonl((ev,)))


def _completion(f: str, resp: Response) -> tuple[str, Any]:
    """Map a client response onto a history completion type and value."""
    if resp.status is Status.OK:
        return "ok", resp.value if f == "read" else None
    if resp.status in (Status.FAIL, Status.ERROR, Status.BAD_REQUEST, Status.UNAUTHORIZED):
        return "fail", None
    # TIMEOUT (or a final NOT_LEADER): a read had no effect; a write may have.
    return ("fail" if f == "read" else "info"), None


class _Run:
    def __init__(
        self,
        addrs: Sequence[Address],
        spec: WorkloadSpec,
        sink: Callable[[HistoryEvent], None],
        stop: asyncio.Event,
        start_ns: int,
        token: bytes | None = None,
    ) -> None:
        self.addrs = list(addrs)
        self.token = token
        self.spec = spec
        self.sink = sink
        self.stop = stop
        self.summary = WorkloadSummary()
        self.start_ns = start_ns
        self.deadline = time.monotonic() + spec.duration_s
        self.budget = spec.ops_max

    def _now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def _key(self, rng: random.Random) -> str | None:
        if self.spec.model == "register":
            return None
        return f"k{rng.randrange(self.spec.keys)}"

    def _choose(self, rng: random.Random) -> tuple[str, Any]:
        r = rng.random()
        if r < self.spec.read_fraction:
            return "read", None
        if r < self.spec.read_fraction + (1 - self.spec.read_fraction) / 2:
            return "write", rng.randrange(self.spec.values_max)
        return "cas", [rng.randrange(self.spec.values_max), rng.randrange(self.spec.values_max)]

    async def _issue(self, client: RaftClient, f: str, key: str | None, value: Any) -> Response:
        if f == "read":
            return await client.get(key)
        if f == "write":
            return await client.put(key, value)
        return await client.cas(key, value[0], value[1])

    async def worker(self, index: int) -> None:
        rng = random.Random(self.spec.seed * 1_000_003 + index)
        process = index
        client = RaftClient(
            list(self.addrs),
            client_id=f"wl{self.spec.seed}-{index}",
            op_timeout_s=self.spec.op_timeout_s,
            token=self.token,
        )
        try:
            while self.budget > 0 and time.monotonic() < self.deadline:
                if self.stop.is_set():
                    return
                self.budget -= 1
                f, value = self._choose(rng)
                key = self._key(rng)
                self.sink(HistoryEvent(process, "invoke", f, key, value, self._now()))
                self.summary.invoked += 1
                self.summary.by_f[f] = self.summary.by_f.get(f, 0) + 1
                try:
                    resp = await self._issue(client, f, key, value)
                except Exception as exc:  # a bug or an unexpected failure: outcome unknown
                    resp = Response(0, Status.TIMEOUT, error=f"{type(exc).__name__}: {exc}")
                kind, out = _completion(f, resp)
                done_value = out if kind == "ok" and f == "read" else value
                self.sink(
                    HistoryEvent(
                        process,
                        kind,
                        f,
                        key,
                        done_value,
                        self._now(),
                        node=resp.node or None,
                        error=resp.error or None,
                    )
                )
                if kind == "ok":
                    self.summary.ok += 1
                elif kind == "fail":
                    self.summary.fail += 1
                else:
                    self.summary.info += 1
                    process += self.spec.clients
        finally:
            await client.close()


async def run_workload(
    addrs: Sequence[Address],
    spec: WorkloadSpec,
    sink: Callable[[HistoryEvent], None],
    stop: asyncio.Event | None = None,
    start_ns: int | None = None,
    token: bytes | None = None,
) -> WorkloadSummary:
    """Run ``spec.clients`` workers against ``addrs`` until the operation budget, the
    duration, or ``stop`` ends them; every event goes to ``sink`` as it happens. History
    times count from ``start_ns`` (``time.monotonic_ns()``; default: now), so a nemesis can
    share the time base. ``token``: the client token when the cluster has ``client_auth``
    on (None: ``$RAFT_CLIENT_TOKEN_FILE`` if set)."""
    t0_ns = time.monotonic_ns() if start_ns is None else start_ns
    run = _Run(addrs, spec, sink, stop or asyncio.Event(), t0_ns, token)
    t0 = time.monotonic()
    await asyncio.gather(*(run.worker(i) for i in range(spec.clients)))
    run.summary.elapsed_s = time.monotonic() - t0
    return run.summary
