"""``raftlab sim SPEC``: an experiment spec in the deterministic simulator, one run directory
per seed in the lab's layout (``nodes/<node>/events.jsonl``, ``history.jsonl``,
``nemesis.jsonl``, ``results.json``, ``report.html``), judged by the lab's checkers.

What maps, and how (the rest has no meaning in the simulator and is recorded as skipped):

========================  ======================================================
spec                      simulator
========================  ======================================================
workload.duration_s       chaos phase of ``duration_s * 100`` ticks (a tick is 10 ms)
recovery_s                liveness bound after the heal (at least 100 ticks)
workload.clients          concurrent clients; ``kv`` -> kv keys, else one cas-register
kill, restart             crash (unsynced writes lost) and restart
pause                     pause (no ticks, messages queue)
partition                 partition; ``mode: one-way`` -> one-way link loss
loss, duplicate,          drop, dup, reorder, delay (the whole network)
reorder, delay
clock                     skew (the node ticks faster or slower)
rate, disk-fill,          skipped
disk-corrupt, disk-fsync
========================  ======================================================

The simulator's nemesis draws its own targets and times from the seed; the spec's schedule
sets which kinds, how long each lasts and how often faults start (its mean gap).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.experiment.judge import RunOutcome, judge, run_stamp
from deploy.experiment.record import git_revision, honest_warnings, record_run, versions
from deploy.experiment.spec import ExperimentSpec, Model

TICKS_PER_S = 100
"""Simulator ticks per second of a spec (a tick is 10 ms of virtual time)."""

SIM_KIND = {
    "kill": "crash",
    "restart": "crash",
    "pause": "pause",
    "partition": "partition",
    "loss": "drop",
    "duplicate": "dup",
    "reorder": "reorder",
    "delay": "delay",
    "clock": "skew",
    "membership": "member",
}


@dataclass(frozen=True, slots=True)
class SimPlan:
    config_json: dict[str, Any]
    mapped: dict[str, str]
    skipped: tuple[str, ...]
    faults_requested: int


def plan(spec: ExperimentSpec, seed: int, nodes: int = 5) -> SimPlan:
    """The simulator configuration for ``spec`` at ``seed``."""
    from raft.sim import SimConfig, Workload, format_faults, parse_faults

    mapped: dict[str, str] = {}
    skipped: list[str] = []
    requested = 0
    durations: list[int] = []
    for f in spec.nemesis:
        sim = SIM_KIND.get(f.kind)
        if sim == "partition" and f.params.get("mode") == "one-way":
            sim = "oneway"
        if sim is None:
            skipped.append(f.kind)
            continue
        mapped[f.kind] = sim
        requested += len(f.starts(spec.workload.duration_s))
        durations.append(max(1, round(f.duration_s * TICKS_PER_S)))
    chaos = max(20, round(spec.workload.duration_s * TICKS_PER_S))
    liveness = max(100, round(spec.recovery_s * TICKS_PER_S))
    gap = max(1, chaos // requested) if requested else 25
    cfg = SimConfig(
        seed=seed,
        nodes=nodes,
        faults=parse_faults(",".join(sorted(set(mapped.values()))) or "none"),
        steps=chaos + liveness + 10,
        workload=Workload.KV if spec.workload.model is Model.KV else Workload.REGISTER,
        clients=spec.workload.clients,
        liveness_bound_ticks=liveness,
        fault_gap_ticks=(max(1, gap // 2), max(1, gap * 3 // 2)),
        fault_duration_ticks=(min(durations), max(durations)) if durations else (3, 50),
    )
    cj = cfg.to_json()
    cj["faults"] = format_faults(cfg.faults)
    return SimPlan(cj, mapped, tuple(dict.fromkeys(skipped)), requested)


def run_sim_seed(spec: ExperimentSpec, seed: int, runs_root: Path, nodes: int = 5) -> RunOutcome:
    """One seed of ``spec`` in the simulator, written and judged as a run directory."""
    from raft.lincheck.formats import render_jsonl
    from raft.sim import SimConfig, World
    from raft.sim.events import EventRecorder
    from raft.sim.world import NS_PER_UNIT, SUBTICKS

    p = plan(spec, seed, nodes)
    cfg = SimConfig.from_json(p.config_json)
    run_dir = runs_root / spec.name / f"{run_stamp()}-sim-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=False)
    world = World(cfg)
    rec = EventRecorder(NS_PER_UNIT)
    world.observer = rec
    result = world.run()
    history = world.clients.history
    rec.add_client_events(history)
    rec.write(run_dir)
    (run_dir / "history.jsonl").write_text(render_jsonl(history), encoding="utf-8")
    (run_dir / "spec.json").write_text(json.dumps(spec.to_json(), indent=2), encoding="utf-8")
    fired = result.faults
    warnings = honest_warnings(result.client_ok, p.faults_requested, fired)
    end_ts = rec.ts(cfg.steps * SUBTICKS)
    record_run(
        run_dir,
        {
            "mode": "sim",
            "experiment": spec.name,
            "seed": seed,
            "start_ts": rec.base_ts,
            "run_window": {"start_ts": rec.base_ts, "end_ts": end_ts, "clock": "virtual"},
            "faults_requested": p.faults_requested,
            "faults_fired": fired,
            "run_warnings": warnings,
            "workload": {
                "invoked": result.client_ops,
                "ok": world.clients.ok,
                "fail": world.clients.failed,
                "info": world.clients.unknown,
            },
            "parameters": {
                "spec": spec.to_json(),
                "seed": seed,
                "clients": spec.workload.clients,
                "schedule": [f.to_json() for f in spec.nemesis],
                "sim_config": p.config_json,
                "sim_faults": p.mapped,
                "skipped_faults": list(p.skipped),
                "replay": cfg.replay_command(),
                "git_revision": git_revision(),
                "versions": versions(),
                "delay_mechanism": "simulated network",
            },
            "sim": {
                "violation": None
                if result.violation is None
                else {
                    "invariant": result.violation.invariant.value,
                    "node": result.violation.node,
                    "detail": result.violation.detail,
                },
                "lincheck": result.lincheck,
                "elections": result.elections,
                "leader_after_heal_ticks": result.leader_after_heal_ticks,
                "commit_after_heal_ticks": result.commit_after_heal_ticks,
                "trace_tail": list(result.trace_tail) if result.violation else [],
            },
        },
    )
    model = "kv" if cfg.workload.value == "kv" else "cas-register"
    extra = {"simulator": "invalid" if result.violation is not None else "valid"}
    return judge(run_dir, spec, model=model, extra_verdicts=extra)


def _worker(args: tuple[dict[str, Any], int, str, int]) -> dict[str, Any]:
    from deploy.experiment.spec import parse_spec

    raw, seed, root, nodes = args
    spec = parse_spec(raw["doc"], raw["source"]).with_seed(seed)
    out = run_sim_seed(spec, seed, Path(root), nodes)
    return outcome_json(out, seed)


def outcome_json(out: RunOutcome, seed: int) -> dict[str, Any]:
    """A run's row in a campaign table (plain data)."""
    results = json.loads((out.run_dir / "results.json").read_text(encoding="utf-8"))
    ops = results.get("workload") or {}
    return {
        "seed": seed,
        "run_dir": str(out.run_dir),
        "report": str(out.report) if out.report else None,
        "verdicts": out.verdicts,
        "faults_requested": results.get("faults_requested", 0),
        "faults_fired": results.get("faults_fired", 0),
        "ok": ops.get("ok", 0),
        "fail": ops.get("fail", 0),
        "info": ops.get("info", 0),
        "warnings": list(out.warnings),
        "exit_code": out.exit_code,
    }


def run_sim_seeds(
    spec: ExperimentSpec,
    seeds: Sequence[int],
    runs_root: Path,
    *,
    nodes: int = 5,
    jobs: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every seed of ``seeds`` (``jobs`` worker processes), rows in seed order."""
    rows: list[dict[str, Any]] = []
    payload = {"doc": dict(spec.raw), "source": spec.source}
    tasks = [(payload, s, str(runs_root), nodes) for s in seeds]
    if jobs <= 1 or len(tasks) <= 1:
        for t in tasks:
            rows.append(_worker(t))
            if progress is not None:
                progress(rows[-1])
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes=jobs) as pool:
            for row in pool.imap_unordered(_worker, tasks):
                rows.append(row)
                if progress is not None:
                    progress(row)
    rows.sort(key=lambda r: int(r["seed"]))
    return rows
