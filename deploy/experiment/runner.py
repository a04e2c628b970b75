"""``raftlab run SPEC``: one experiment on a real cluster, from health check to report.

Steps: health check (a leader, a write and a read), workload and nemesis schedule together
(live progress on stderr), heal (always: at the end, on Ctrl-C, on an exception), recovery
period (the cluster must elect a leader and serve a write again), collect the node logs
(inventory: the collect playbook; local cluster: a copy), analyse, report. The run
directory (``runs/<experiment>/<timestamp>/``) gets ``spec.yml``, ``history.jsonl``,
``nemesis.jsonl``, ``nodes/<node>/``, ``results.json`` (full parameters and the run's
window), ``report.html``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deploy.errors import LabError
from deploy.experiment.judge import RunOutcome, judge, run_stamp
from deploy.experiment.record import (
    PROJECT_DIR,
    git_revision,
    honest_warnings,
    record_run,
    versions,
)
from deploy.experiment.spec import ExperimentSpec
from deploy.workload import (
    HistoryWriter,
    WorkloadSpec,
    WorkloadSummary,
    client_token,
    run_workload,
)
from raft.runtime.transport import Address

HEALTH_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a run goes: exactly one of an inventory directory or a local cluster dir."""

    inventory: Path | None = None
    cluster_dir: Path | None = None

    @staticmethod
    def choose(spec: ExperimentSpec, inventory: str | None, cluster_dir: str | None) -> Target:
        """Command line first, then the spec's ``cluster``."""
        if inventory and cluster_dir:
            raise LabError("give either -i/--inventory or --cluster, not both")
        if inventory:
            return Target(inventory=Path(inventory))
        if cluster_dir:
            return Target(cluster_dir=Path(cluster_dir))
        if spec.cluster.inventory:
            return Target(inventory=Path(spec.cluster.inventory))
        if spec.cluster.local:
            return Target(cluster_dir=Path(spec.cluster.local))
        raise LabError(
            f"{spec.source or spec.name}: no cluster: give -i INVENTORY or --cluster DIR, "
            "or set cluster.inventory / cluster.local in the spec"
        )

    def describe(self) -> dict[str, str | None]:
        return {
            "inventory": str(self.inventory) if self.inventory else None,
            "local": str(self.cluster_dir) if self.cluster_dir else None,
        }


def _nemesis_api() -> Any:
    """The nemesis package (``deploy.nemesis``) as a module object."""
    return importlib.import_module("deploy.nemesis")


def make_control(target: Target) -> Any:
    """The nemesis' ClusterControl for ``target``."""
    nem = _nemesis_api()
    if target.inventory is not None:
        if not (target.inventory / "hosts.yml").is_file():
            raise LabError(f"{target.inventory}: no hosts.yml (an inventory directory)")
        return nem.InventoryControl(target.inventory)
    assert target.cluster_dir is not None
    if not (target.cluster_dir / "cluster.yml").is_file():
        raise LabError(
            f"{target.cluster_dir}: no cluster.yml; start one with `raft cluster up "
            f"--dir {target.cluster_dir}`"
        )
    return nem.LocalControl(str(target.cluster_dir))


def check_supported(spec: ExperimentSpec, target: Target) -> None:
    """Refuse, before anything runs, faults the target cannot have."""
    nem_api = _nemesis_api()
    control = make_control(target)
    if not getattr(control, "own_network", True):
        net = sorted({f.kind for f in spec.nemesis} & set(nem_api.NETWORK_KINDS))
        if net:
            raise LabError(
                f"{spec.source or spec.name}: {', '.join(net)} need hosts with a network of "
                "their own (the testbed: -i inventories/local, or real hosts); the nodes of a "
                "`raft cluster up` cluster share this machine's"
            )


def client_addresses(target: Target, control: Any) -> tuple[list[Address], dict[Address, Address]]:
    """The client addresses the controller dials, and the map from advertised addresses
    (leader hints) to them: on an inventory each node's address, or an SSH tunnel to it
    when the controller cannot reach it (a GEE slice: ``raft_lab_access``)."""
    from raft.cli._cluster_addrs import resolve

    if target.inventory is not None:
        addrs, amap = control.client_endpoints()
        return list(addrs), dict(amap)
    return list(resolve(None, str(target.cluster_dir))), {}


async def health_check(
    control: Any,
    addrs: list[Address],
    run_id: str,
    timeout_s: float = HEALTH_TIMEOUT_S,
    token: bytes | None = None,
    address_map: dict[Address, Address] | None = None,
) -> dict[str, Any]:
    """A leader, then a write and a read of a fresh key through the client port; raises
    LabError naming what failed."""
    from raft.runtime.client import RaftClient
    from raft.runtime.protocol import Status

    t0 = time.monotonic()
    deadline = t0 + timeout_s
    leader = None
    while time.monotonic() < deadline:
        leader = await asyncio.to_thread(control.leader)
        if leader is not None:
            break
        await asyncio.sleep(0.3)
    if leader is None:
        raise LabError(f"health check: no leader within {timeout_s:g} s")
    client = RaftClient(
        addrs,
        client_id=f"health-{run_id}",
        op_timeout_s=5.0,
        token=token,
        address_map=address_map,
    )
    key = f"{run_id}.health"
    try:
        last = ""
        while time.monotonic() < deadline:
            put = await client.put(key, run_id)
            if put.status is Status.OK:
                got = await client.get(key)
                if got.status is Status.OK and got.value == run_id:
                    return {"leader": leader, "seconds": round(time.monotonic() - t0, 2)}
                last = f"read gave {got.status.value} {got.value!r}"
            else:
                last = f"write gave {put.status.value} {put.error or ''}".strip()
            await asyncio.sleep(0.3)
    finally:
        await client.close()
    raise LabError(f"health check: the cluster did not serve a write and a read ({last})")


class Progress:
    """Live progress on stderr: elapsed, ops/s, errors, active faults. On a terminal one
    line rewritten in place each second; otherwise a line every five seconds."""

    def __init__(
        self,
        stream: IO[str],
        summary: WorkloadSummary,
        active: Callable[[], list[dict[str, Any]]],
        duration_s: float,
    ) -> None:
        self.stream = stream
        self.summary = summary
        self.active = active
        self.duration_s = duration_s
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self._last_ok = 0
        self._last_t = self.t0

    def line(self) -> str:
        now = time.monotonic()
        s = self.summary
        rate = (s.ok - self._last_ok) / max(now - self._last_t, 1e-3)
        self._last_ok, self._last_t = s.ok, now
        faults = ", ".join(
            f"{a.get('fault')}({','.join(a.get('targets') or [])})" for a in self.active()
        )
        return (
            f"run {now - self.t0:5.1f}/{self.duration_s:g}s  ok/s {rate:6.1f}  "
            f"ok {s.ok}  fail {s.fail}  info {s.info}  faults: {faults or '-'}"
        )

    async def loop(self, stop: asyncio.Event) -> None:
        every = PROGRESS_EVERY_S if self.tty else 5 * PROGRESS_EVERY_S
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if self.tty:
                self.stream.write("\r\x1b[K" + self.line())
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()
        if self.tty:
            self.stream.write("\n")


class _JsonlRecord:
    """The nemesis' ``record``: one JSON line per call, flushed at once (a crash keeps
    everything recorded so far)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lines: list[dict[str, Any]] = []

    def __call__(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        self.out.write(json.dumps(line, default=str) + "\n")
        self.out.flush()


def collect(target: Target, run_dir: Path, log: Callable[[str], None]) -> None:
    """The node logs into ``run_dir/nodes/<node>/``."""
    nodes_dir = run_dir / "nodes"
    if target.cluster_dir is not None:
        for node_dir in sorted(p for p in target.cluster_dir.iterdir() if p.is_dir()):
            logs = node_dir / "log"
            if logs.is_dir():
                shutil.copytree(logs, nodes_dir / node_dir.name, dirs_exist_ok=True)
        return
    assert target.inventory is not None
    shutil.copy(target.inventory / "hosts.yml", run_dir / "inventory.yml")
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"))
    cmd = [
        "ansible-playbook",
        "-i",
        str(target.inventory),
        str(PROJECT_DIR / "playbooks" / "collect.yml"),
        "-e",
        f"raft_node_collect_dir={run_dir.resolve()}",
    ]
    log("collect: " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise LabError(f"collect: ansible-playbook exited {proc.returncode}:\n{tail}")


PACKET_FAULTS = frozenset({"loss", "duplicate", "delay", "reorder", "rate"})


def _mechanisms(lines: list[dict[str, Any]], kinds: frozenset[str] | None = None) -> list[str]:
    """How the faults (of ``kinds``, default all) were made, from the nemesis lines."""
    return sorted(
        {
            str(x["mechanism"])
            for x in lines
            if x.get("mechanism") and (kinds is None or x.get("fault") in kinds)
        }
    )


async def _run(
    spec: ExperimentSpec,
    target: Target,
    run_dir: Path,
    log: Callable[[str], None],
    stream: IO[str],
) -> dict[str, Any]:
    """Health check, workload + nemesis, heal, recovery. Returns what results.json gets.
    SIGTERM ends it like Ctrl-C: the main task is cancelled, the finally clauses heal."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None and threading.current_thread() is threading.main_thread():
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    control = make_control(target)
    try:
        return await _run_on(spec, target, run_dir, log, stream, control)
    finally:
        close = getattr(control, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def _run_on(
    spec: ExperimentSpec,
    target: Target,
    run_dir: Path,
    log: Callable[[str], None],
    stream: IO[str],
    control: Any,
) -> dict[str, Any]:
    nem_api = _nemesis_api()
    addrs, amap = await asyncio.to_thread(client_addresses, target, control)
    if amap:
        log(f"clients reach the nodes through SSH tunnels: {', '.join(map(str, addrs))}")
    schedule = [nem_api.parse_fault(dict(f.raw)) for f in spec.nemesis]
    w = spec.workload
    wspec = WorkloadSpec(
        model=w.model.value,
        clients=w.clients,
        duration_s=w.duration_s,
        keys=w.keys,
        read_fraction=w.read_share,
        values_max=w.values,
        seed=spec.seed,
        op_timeout_s=w.op_timeout_s,
        rate=w.rate,
    )
    token = client_token(target.inventory)
    log(f"health check ({len(addrs)} nodes)")
    health = await health_check(control, addrs, wspec.run_id, token=token, address_map=amap)
    log(f"healthy: leader {health['leader']} ({health['seconds']} s)")
    prepare = getattr(control, "prepare", None)
    if prepare is not None:
        await asyncio.to_thread(prepare)  # SSH sessions open before t0: faults start on time
    t0_ns = time.monotonic_ns()
    start_ts = time.time()
    summary = WorkloadSummary()
    stop = asyncio.Event()
    heal_error: str | None = None
    nemesis_failure: str | None = None
    with (
        (run_dir / "history.jsonl").open("w", encoding="utf-8") as hist,
        (run_dir / "nemesis.jsonl").open("w", encoding="utf-8") as nlog,
    ):
        record = _JsonlRecord(nlog)
        nemesis = nem_api.Nemesis(control, record, random.Random(spec.seed), t0_ns=t0_ns)
        progress = Progress(stream, summary, nemesis.active, w.duration_s)
        tasks = [
            asyncio.create_task(nemesis.run(schedule, stop)),
            asyncio.create_task(progress.loop(stop)),
        ]
        try:
            await run_workload(addrs, wspec, HistoryWriter(hist), stop, t0_ns, summary, token, amap)
        finally:
            stop.set()
            for t in tasks:
                try:
                    await asyncio.wait_for(t, 120)
                except Exception as exc:  # the nemesis failed: say so, the run goes on to heal
                    nemesis_failure = f"{type(exc).__name__}: {exc}"
                    log(f"WARNING: nemesis failed: {nemesis_failure}")
            try:
                nemesis.heal()  # idempotent; run() healed already unless it was cancelled
            except LabError as exc:
                heal_error = str(exc)
                log(f"WARNING: {exc}")
        workload_end_ts = time.time()
        log(f"workload done: {json.dumps(summary.to_json())}")
        log(f"recovery: {spec.recovery_s:g} s")
        await asyncio.sleep(spec.recovery_s)
        try:
            recovered: dict[str, Any] = await health_check(
                control,
                addrs,
                wspec.run_id + "-r",
                timeout_s=max(10.0, spec.recovery_s),
                token=token,
                address_map=amap,
            )
            recovered["ok"] = True
        except LabError as exc:
            recovered = {"ok": False, "error": str(exc)}
            log(f"WARNING: the cluster did not recover: {exc}")
        fired = sum(nemesis.started.values())
        lines = record.lines
    asked = spec.faults_requested
    warnings = honest_warnings(summary.ok, asked, fired)
    if not recovered["ok"]:
        warnings.append(f"the cluster did not recover after the heal: {recovered['error']}")
    return {
        "mode": "lab",
        "experiment": spec.name,
        "seed": spec.seed,
        "run_id": wspec.run_id,
        "start_ts": start_ts,
        "run_window": {"start_ts": start_ts, "end_ts": time.time(), "clock": "controller"},
        "workload_end_ts": workload_end_ts,
        "faults_requested": asked,
        "faults_fired": fired,
        "faults_by_kind": dict(nemesis.started),
        "nemesis_errors": list(nemesis.errors)
        + [e for e in (nemesis_failure, heal_error) if e is not None],
        "workload": summary.to_json(),
        "health": health,
        "recovery": recovered,
        "run_warnings": warnings,
        "parameters": {
            "spec": spec.to_json(),
            "seed": spec.seed,
            "clients": w.clients,
            "client_ids": f"wl-{wspec.run_id}-<i>",
            "key_prefix": f"{wspec.run_id}.",
            "schedule": [f.to_json() for f in spec.nemesis],
            "cluster": target.describe(),
            "git_revision": git_revision(),
            "versions": versions(),
            "delay_mechanism": _mechanisms(lines, PACKET_FAULTS) or None,
            "mechanisms": _mechanisms(lines),
        },
    }


def run_experiment(
    spec: ExperimentSpec,
    target: Target,
    runs_root: Path = Path("runs"),
    *,
    stream: IO[str] = sys.stderr,
    report: bool = True,
) -> RunOutcome:
    """Run ``spec`` on ``target`` and judge it; the run directory is kept even when the
    run fails half way (what was recorded is there)."""

    def log(msg: str) -> None:
        stream.write(f"run: {msg}\n")
        stream.flush()

    check_supported(spec, target)
    run_dir = runs_root / spec.name / run_stamp()
    run_dir.mkdir(parents=True, exist_ok=False)
    if spec.source and Path(spec.source).is_file():
        shutil.copy(spec.source, run_dir / "spec.yml")
    (run_dir / "spec.json").write_text(json.dumps(spec.to_json(), indent=2), encoding="utf-8")
    log(f"{spec.name} (seed {spec.seed}) -> {run_dir}")
    try:
        fields = asyncio.run(_run(spec, target, run_dir, log, stream))
    except (KeyboardInterrupt, asyncio.CancelledError, Exception) as exc:
        # The faults are healed by now (finally clauses); say in the run what happened.
        why = "interrupted" if not isinstance(exc, Exception) else type(exc).__name__
        record_run(run_dir, {"mode": "lab", "experiment": spec.name, "aborted": f"{why}: {exc}"})
        log(f"aborted ({why}); faults healed; partial run in {run_dir}")
        if isinstance(exc, asyncio.CancelledError):
            raise KeyboardInterrupt from None  # SIGTERM: reported like Ctrl-C
        raise
    record_run(run_dir, fields)
    collect(target, run_dir, log)
    extra: dict[str, str] = {}
    if fields["run_warnings"]:
        for w in fields["run_warnings"]:
            log(f"WARNING: {w}")
        extra["run"] = "unknown"
    out = judge(run_dir, spec, extra_verdicts=extra, report=report)
    _update_latest(runs_root)
    return out


def _update_latest(runs_root: Path) -> None:
    from deploy.analysis import update_latest

    with contextlib.suppress(OSError):
        update_latest(runs_root)
