"""Concurrent clients that drive a cluster and record a Jepsen-style history.

Each worker is one logical client at a time (a Jepsen *process*): it invokes an operation,
waits for its completion, and records both events (docs/formats.md, "Client history").
When an outcome is unknown (a write that timed out) the event is ``info`` and the worker
continues as a new process (``process + clients``), so no process ever has two operations
outstanding. Reads that time out are recorded as ``fail``: a read has no effect, so it
certainly did not change the state.

Everything is bounded: the run lasts ``duration_s`` seconds (a duration means a duration);
``ops_max``, when set, ends it earlier.

Run isolation (a second run on the same cluster is judged as correctly as the first): every
run has its own ``run_id``; client ids are ``wl-<run_id>-<i>`` (never reused, so no session
of an earlier run answers for this one) and keys are ``<run_id>.k<i>`` (fresh, so the
checker's assumption that every key starts absent holds). The register models use one such
key too, so they never read an earlier run's register.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploy.errors import LabError
from raft.lincheck import HistoryEvent
from raft.lincheck.formats import render_jsonl
from raft.runtime.client import RaftClient
from raft.runtime.protocol import Response, Status
from raft.runtime.transport import Address

MODELS = ("register", "cas-register", "kv")


def new_run_id() -> str:
    """A short id unique per run (random: two controllers never pick the same)."""
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What the clients do. ``read_fraction`` of operations are reads; the rest split evenly
    into writes and compare-and-sets over a small value domain (``values_max``), so that cas
    operations both succeed and fail and the checker has something to decide (the plain
    ``register`` model has no cas: reads and writes only). ``rate`` > 0 paces the clients
    to about that many invocations per second in total; 0 is a closed loop."""

    model: str = "kv"
    clients: int = 5
    ops_max: int | None = None
    duration_s: float = 30.0
    keys: int = 3
    read_fraction: float = 0.4
    values_max: int = 5
    seed: int = 0
    op_timeout_s: float = 5.0
    rate: float = 0.0
    run_id: str = field(default_factory=new_run_id)

    def client_id(self, index: int) -> str:
        return f"wl-{self.run_id}-{index}"

    def key(self, index: int) -> str:
        return f"{self.run_id}.k{index}"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.clients < 1 or self.duration_s <= 0:
            raise ValueError("clients and duration_s must be positive")
        if self.ops_max is not None and self.ops_max < 1:
            raise ValueError(f"ops_max must be positive (or unset), not {self.ops_max}")
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0 (0: closed loop), not {self.rate}")
        if not self.run_id or not all(c.isalnum() or c in "-_" for c in self.run_id):
            raise ValueError(f"run_id must be letters, digits, '-' or '_', not {self.run_id!r}")
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


def client_token(inventory: str | Path | None) -> bytes | None:
    """The client token of a role-deployed cluster (client_auth on): the cluster secret the
    role keeps next to the inventory; else ``$RAFT_CLIENT_TOKEN_FILE`` (None: no auth)."""
    from raft.runtime.client import load_token

    secret = Path(inventory) / "secret" if inventory else None
    try:
        return load_token(str(secret) if secret is not None and secret.exists() else None)
    except (OSError, ValueError) as exc:
        raise LabError(f"client token: {exc}") from None


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
        address_map: Mapping[Address, Address] | None = None,
    ) -> None:
        self.addrs = list(addrs)
        self.address_map = dict(address_map or {})
        self.token = token
        self.spec = spec
        self.sink = sink
        self.stop = stop
        self.summary = WorkloadSummary()
        self.start_ns = start_ns
        self.deadline = time.monotonic() + spec.duration_s
        self.budget = spec.ops_max if spec.ops_max is not None else -1
        self.interval_s = spec.clients / spec.rate if spec.rate > 0 else 0.0

    def _now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def _key(self, rng: random.Random) -> str:
        if self.spec.model != "kv":
            return self.spec.key(0)
        return self.spec.key(rng.randrange(self.spec.keys))

    def _choose(self, rng: random.Random) -> tuple[str, Any]:
        r = rng.random()
        if r < self.spec.read_fraction:
            return "read", None
        if self.spec.model == "register" or (
            r < self.spec.read_fraction + (1 - self.spec.read_fraction) / 2
        ):
            return "write", rng.randrange(self.spec.values_max)
        return "cas", [rng.randrange(self.spec.values_max), rng.randrange(self.spec.values_max)]

    async def _issue(self, client: RaftClient, f: str, key: str | None, value: Any) -> Response:
        if f == "read":
            return await client.get(key)
        if f == "write":
            return await client.put(key, value)
        return await client.cas(key, value[0], value[1])

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; True when stopped."""
        if seconds <= 0:
            return self.stop.is_set()
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def worker(self, index: int) -> None:
        rng = random.Random(self.spec.seed * 1_000_003 + index)
        process = index
        client = RaftClient(
            list(self.addrs),
            client_id=self.spec.client_id(index),
            op_timeout_s=self.spec.op_timeout_s,
            token=self.token,
            address_map=self.address_map,
        )
        next_at = time.monotonic() + rng.random() * self.interval_s
        try:
            while self.budget != 0 and time.monotonic() < self.deadline:
                if self.stop.is_set():
                    return
                if self.interval_s:
                    wait = next_at - time.monotonic()
                    if wait > 0 and await self._sleep(min(wait, self.deadline - time.monotonic())):
                        return
                    next_at = max(next_at + self.interval_s, time.monotonic())
                    if time.monotonic() >= self.deadline:
                        return
                if self.budget > 0:
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
    summary: WorkloadSummary | None = None,
    token: bytes | None = None,
    address_map: Mapping[Address, Address] | None = None,
) -> WorkloadSummary:
    """Run ``spec.clients`` workers against ``addrs`` until the duration, the operation
    budget (if any), or ``stop`` ends them; every event goes to ``sink`` as it happens.
    History times count from ``start_ns`` (``time.monotonic_ns()``; default: now), so a
    nemesis can share the time base. ``summary``, when given, is updated live (progress).
    ``token``: the client token when the cluster has ``client_auth`` on (None:
    ``$RAFT_CLIENT_TOKEN_FILE`` if set). ``address_map``: advertised client address ->
    the address the clients dial (SSH tunnels: :meth:`InventoryControl.client_endpoints`),
    so leader hints lead to a reachable address."""
    t0_ns = time.monotonic_ns() if start_ns is None else start_ns
    run = _Run(addrs, spec, sink, stop or asyncio.Event(), t0_ns, token, address_map)
    if summary is not None:
        run.summary = summary
    t0 = time.monotonic()
    await asyncio.gather(*(run.worker(i) for i in range(spec.clients)))
    run.summary.elapsed_s = time.monotonic() - t0
    return run.summary
