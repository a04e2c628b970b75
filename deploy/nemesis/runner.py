"""Running a fault schedule: :class:`Nemesis`, and :func:`heal_cluster` after a crash.

``Nemesis.run`` starts one task per :class:`FaultSpec`: wait for ``start_s``, choose the
targets (seeded rng), break, record, wait ``duration_s`` (or the stop event), heal, record,
and repeat every ``interval_s`` (at most ``count`` times). Whatever happens (stop, an
exception, cancellation) every active fault is healed before ``run`` returns; ``heal()`` may
be called again at any time and does nothing when nothing is active.

Every start and stop goes to ``record`` (a line of ``nemesis.jsonl``, docs/formats.md):
``time`` (ns since run start), ``elapsed_s``, ``ts`` (wall clock), ``fault``, ``action``,
``id``, ``targets``, ``params``, ``mechanism`` and what was observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from deploy.errors import LabError
from deploy.nemesis.control import ClusterControl, NotSupportedError
from deploy.nemesis.faults import Active, FaultContext, start_fault
from deploy.nemesis.spec import NETWORK_KINDS, FaultSpec, TargetKind, select_targets

Record = Callable[[dict[str, Any]], None]


class Nemesis:
    """Runs a schedule of faults against a cluster and heals them (see the module doc)."""

    def __init__(
        self,
        control: ClusterControl,
        record: Record,
        rng: random.Random,
        *,
        t0_ns: int | None = None,
    ) -> None:
        self.control = control
        self.record = record
        self.rng = rng
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self._active: dict[int, Active] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self._stop_flag = threading.Event()
        self._probes: dict[tuple[str, str], Any] = {}
        #: How many occurrences started, per kind (a run with none asked-for fired is unknown).
        self.started: dict[str, int] = {}
        self.errors: list[str] = []

    # -- recording -------------------------------------------------------------------------

    def _emit(self, action: str, a: Active, **extra: Any) -> None:
        now = time.monotonic_ns() - self.t0_ns
        line = {
            "time": now,
            "elapsed_s": round(now / 1e9, 3),
            "ts": time.time(),
            "fault": a.spec.kind,
            "action": action,
            "id": a.id,
            "targets": list(a.targets),
            "params": dict(a.spec.params),
            "mechanism": a.mechanism,
            **extra,
        }
        self.record(line)

    def active(self) -> list[dict[str, Any]]:
        """The faults in effect now (for live progress): kind, targets, mechanism, since."""
        with self._lock:
            items = list(self._active.values())
        now = time.monotonic()
        return [
            {
                "id": a.id,
                "fault": a.spec.kind,
                "targets": list(a.targets),
                "mechanism": a.mechanism,
                "for_s": round(now - a.started_at, 1),
            }
            for a in items
        ]

    # -- one occurrence ----------------------------------------------------------------------

    def start_now(self, spec: FaultSpec) -> Active | None:
        """Start one occurrence of ``spec`` at once (blocking); None when it has no target
        now (e.g. target leader while there is no leader). Records the start."""
        nodes = self.control.nodes()
        leader = self.control.leader() if spec.target.kind is TargetKind.LEADER else None
        with self._lock:
            targets = select_targets(spec.target, nodes, leader, self.rng)
            fid = self._next_id
            self._next_id += 1
        if spec.kind == "partition" and spec.target.kind is TargetKind.LEADER and not targets:
            return None
        if not targets and spec.kind != "partition":
            return None
        ctx = FaultContext(self.control, self.rng, fid, self._stop_flag, self._probes)
        a = start_fault(ctx, spec, targets)
        with self._lock:
            self._active[a.id] = a
            self.started[spec.kind] = self.started.get(spec.kind, 0) + 1
        self._emit("start", a, observed=a.observed, **a.detail)
        return a

    def stop_now(self, a: Active) -> None:
        """Heal one occurrence (blocking) and record the stop; a no-op if already healed."""
        with self._lock:
            if self._active.pop(a.id, None) is None:
                return
        try:
            observed = a.heal()
        except Exception as exc:
            self.errors.append(f"heal {a.spec.kind} #{a.id}: {exc}")
            self._emit("stop", a, error=str(exc))
            raise
        self._emit("stop", a, observed=observed)

    def heal(self) -> None:
        """Heal everything this nemesis started and has not healed yet (idempotent)."""
        self._stop_flag.set()
        with self._lock:
            items = sorted(self._active.values(), key=lambda a: -a.id)
        first: Exception | None = None
        for a in items:
            try:
                self.stop_now(a)
            except Exception as exc:  # keep healing the others, then report the first
                first = first or exc
        if first is not None:
            raise LabError(f"healing failed: {first}") from first

    # -- the schedule ------------------------------------------------------------------------

    def check(self, schedule: Sequence[FaultSpec]) -> None:
        """Refuse (:class:`NotSupportedError`) a schedule with faults that make no sense on
        this cluster, and (:class:`FaultSpecError`) one naming nodes it does not have, before
        anything is touched. :meth:`run` calls it first."""
        nodes = self.control.nodes()
        for i, spec in enumerate(schedule):
            if spec.kind in NETWORK_KINDS and not self.control.own_network:
                raise NotSupportedError(
                    f"nemesis[{i}]: {spec.kind}: every node of a `raft cluster up` cluster "
                    "shares this machine's loopback network; network faults need the testbed "
                    "or real hosts (an inventory)"
                )
            if spec.target.kind is TargetKind.NODES:
                select_targets(spec.target, nodes, None, random.Random(0))

    async def run(self, schedule: Sequence[FaultSpec], stop: asyncio.Event) -> None:
        """Run every fault of ``schedule`` until ``stop`` is set (or each has run out of
        occurrences); always heals before returning. An occurrence that fails to start is
        recorded (``action: error``) and the schedule goes on."""
        self.check(schedule)
        self._stop_flag.clear()
        tasks = [asyncio.create_task(self._one(spec, stop)) for spec in schedule]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await asyncio.to_thread(self.heal)

    async def _sleep_until(self, at_s: float, stop: asyncio.Event) -> bool:
        """Wait until ``at_s`` seconds after t0; False when ``stop`` came first."""
        delay = at_s - (time.monotonic_ns() - self.t0_ns) / 1e9
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return not stop.is_set()

    async def _one(self, spec: FaultSpec, stop: asyncio.Event) -> None:
        k = 0
        while spec.count is None or k < spec.count:
            at = spec.start_s + k * (spec.interval_s or 0.0)
            if not await self._sleep_until(at, stop):
                return
            k += 1
            try:
                a = await asyncio.to_thread(self.start_now, spec)
            except Exception as exc:
                self.errors.append(f"start {spec.kind}: {exc}")
                self.record(
                    {
                        "time": time.monotonic_ns() - self.t0_ns,
                        "ts": time.time(),
                        "fault": spec.kind,
                        "action": "error",
                        "error": str(exc),
                    }
                )
                a = None
            if a is not None:
                await self._sleep_until(at + spec.duration_s, stop)
                await asyncio.to_thread(self.stop_now, a)
            if spec.interval_s is None:
                return


def heal_cluster(
    control: ClusterControl, log: Callable[[str], None] = lambda _m: None
) -> list[str]:
    """Undo whatever any fault can leave behind on every node (in parallel), without knowing
    which faults ran (for ``raftlab heal`` after a crashed controller). Idempotent. Returns
    what it did, ``node: action`` per line."""
    from concurrent.futures import ThreadPoolExecutor

    from deploy.nemesis.heal import heal_node

    nodes = control.nodes()
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(nodes)))) as ex:
        results = list(ex.map(lambda n: (n, heal_node(control, n)), nodes))
    done: list[str] = []
    for node, actions in results:
        for what in actions:
            log(f"{node}: {what}")
            done.append(f"{node}: {what}")
    from deploy.nemesis.membership import MembershipError, restore_membership

    try:  # a membership fault cut short: nodes out of the configuration are added back
        done += restore_membership(control, log)
    except MembershipError as exc:
        log(f"membership: {exc}")
        done.append(f"membership not restored: {exc}")
    return done


def leftovers(control: ClusterControl) -> dict[str, list[str]]:
    """Per node, what of the nemesis is still there (empty lists: all healed)."""
    from concurrent.futures import ThreadPoolExecutor

    from deploy.nemesis.heal import inspect_node
    from deploy.nemesis.membership import missing_voters

    nodes = control.nodes()
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(nodes)))) as ex:
        left = dict(zip(nodes, ex.map(lambda n: inspect_node(control, n), nodes), strict=True))
    for n in missing_voters(control) or ():
        left[n].append("not a voter of the configuration in effect")
    return left
