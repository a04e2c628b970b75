"""``raftlab sim``: run the real Raft core in the deterministic simulator over many seeds.

Exit status: 0 when no seed broke an invariant, 1 when one did (each failing seed is printed
with the invariant, the last events and the command that replays it), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from deploy.errors import LabError

if TYPE_CHECKING:
    from raft.sim import SimConfig, SimResult, SwarmSummary

DEFAULT_STEPS = 300
LONG_STEPS = 3000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run the Raft core in the deterministic simulator over many seeds",
        description=(
            "Run the real Raft core (raft.core.RawNode) under a seeded hostile world: lost, "
            "duplicated, reordered and delayed messages, partitions, crashes that lose "
            "unsynced writes, damaged disks on a minority, pauses and clock skew. Safety "
            "invariants are checked after every step, liveness after the faults heal, and "
            "the clients' history with the linearizability checker. A failing seed prints "
            "the command that replays it."
        ),
    )
    p.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC",
        help="an experiment spec (experiments/*.yml): run its workload and faults in the "
        "simulator, one run directory per seed under --runs (like `raftlab run`)",
    )
    p.add_argument("--runs", default="runs", metavar="DIR", help="runs root for SPEC runs")
    p.add_argument("--seeds", type=int, default=100, metavar="N", help="run seeds 0..N-1")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="run only seed S")
    p.add_argument(
        "--nodes",
        default="5",
        help="cluster size, 3..7, or a list such as 3,4,5,7 (seed i gets the (i mod len)th; "
        "default 5)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=3,
        metavar="N",
        help="concurrent clients (default 3; open-loop seeds admit up to 2N)",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help=f"long runs: {LONG_STEPS} ticks per seed unless --steps says otherwise",
    )
    p.add_argument(
        "--lease-drift",
        choices=("bounded", "beyond"),
        default="bounded",
        help="bounded: lease-read seeds keep clock drift within the lease's assumption (must "
        "pass); beyond: every seed uses lease reads under wild clock skew (violations are "
        "expected: evidence that the checker sees them)",
    )
    p.add_argument(
        "--no-buggify",
        dest="buggify",
        action="store_false",
        help="every enabled fault with the same weight on every seed (default: a random mix "
        "per seed)",
    )
    p.add_argument(
        "--max-events",
        type=int,
        default=2_000_000,
        metavar="E",
        help="event budget per seed; more is reported as a livelock (default 2000000)",
    )
    p.add_argument(
        "--max-seed-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="wall-clock budget per seed; more is reported as a livelock (default 300)",
    )
    p.add_argument(
        "--faults",
        default="all",
        help="comma-separated: drop,dup,reorder,delay,partition,oneway,crash,pause,skew,disk,"
        "late,member, or all, or none (default all)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="K",
        help=f"length of each run in ticks of virtual time (default {DEFAULT_STEPS})",
    )
    p.add_argument("--trace", action="store_true", help="print each run's event trace")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="J",
        help="worker processes (default: one per CPU)",
    )
    p.add_argument(
        "--workload",
        choices=("register", "kv"),
        default="register",
        help="client operations: one cas-register or a few kv keys (default register)",
    )
    p.add_argument(
        "--no-lincheck",
        dest="lincheck",
        action="store_false",
        help="skip the linearizability check of the client history",
    )
    p.set_defaults(func=func)


class _ProgressBar:
    """A ``\\r`` counter on a terminal; otherwise a line every 10%."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total
        self._tty = stream.isatty()
        self._next_decile = 1

    def __call__(self, done: int, total: int) -> None:
        if self._tty:
            self._stream.write(f"\rsim: {done}/{total} seeds")
            if done == total:
                self._stream.write("\n")
            self._stream.flush()
            return
        while total and done * 10 >= self._next_decile * total and self._next_decile <= 10:
            self._stream.write(f"sim: {done}/{total} seeds ({self._next_decile * 10}%)\n")
            self._stream.flush()
            self._next_decile += 1


def func(args: argparse.Namespace) -> int:
    from raft.sim import (
        Drift,
        FaultSpecError,
        SimConfig,
        SimConfigError,
        Workload,
        parse_faults,
        run_swarm,
    )

    if args.spec is not None:
        return _run_spec(args)
    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        raise LabError(f"--faults: {exc}") from None
    if args.seed is None and args.seeds < 1:
        raise LabError(f"--seeds must be >= 1, got {args.seeds}")
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise LabError(f"--jobs must be >= 1, got {jobs}")
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    sizes = _parse_nodes(args.nodes)
    steps = args.steps if args.steps is not None else LONG_STEPS if args.long else DEFAULT_STEPS
    try:
        configs = [
            SimConfig(
                seed=s,
                nodes=sizes[s % len(sizes)],
                faults=faults,
                steps=steps,
                trace=args.trace,
                workload=Workload(args.workload),
                clients=args.clients,
                lincheck=args.lincheck,
                drift=Drift(args.lease_drift),
                buggify=args.buggify,
                max_events=args.max_events,
                max_wall_s=args.max_seed_seconds,
            )
            for s in seeds
        ]
    except SimConfigError as exc:
        raise LabError(str(exc)) from None
    by_seed = {c.seed: c for c in configs}
    progress = _ProgressBar(sys.stderr, len(configs)) if len(configs) > 1 else None

    def on_result(r: SimResult) -> None:
        if not r.ok:  # printed at once: a swarm never hides a failure until it ends
            _print_failure(r, by_seed[r.seed], sys.stdout)

    summary = run_swarm(
        configs, jobs=min(jobs, len(configs)), progress=progress, on_result=on_result
    )
    try:
        _report(summary, configs, args.trace, sys.stdout)
    except BrokenPipeError:  # `raftlab sim ... --trace | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if summary.violations else 0


def _parse_nodes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LabError(f"--nodes must be a number or a list like 3,4,5,7, got {text!r}") from None
    if not sizes:
        raise LabError("--nodes is empty")
    return sizes


def _print_failure(r: SimResult, cfg: SimConfig, out: TextIO) -> None:
    try:
        out.write(f"VIOLATION seed {r.seed}: {r.violation}\n")
        out.write("  last events:\n")
        for line in r.trace_tail[-20:]:
            out.write(f"    {line}\n")
        out.write(f"  replay: {cfg.replay_command()}\n")
        out.flush()
    except BrokenPipeError:
        pass


def _report(
    summary: SwarmSummary,
    configs: list[SimConfig],
    trace: bool,
    out: TextIO,
) -> None:
    if trace:
        for r in summary.results:
            out.write(f"--- trace of seed {r.seed} ---\n")
            for line in r.trace:
                out.write(line + "\n")
    verdicts = ", ".join(f"{n} {v}" for v, n in summary.lincheck)
    out.write(
        f"seeds {summary.seeds}  steps {summary.steps} ticks  events {summary.events}  "
        f"elections {summary.elections}  commits {summary.commits}  "
        f"client ops {summary.client_ops} (ok {summary.client_ok})  faults {summary.faults}  "
        f"membership changes {summary.membership_changes}  late/stale messages "
        f"{summary.late_messages}  snapshots installed {summary.snapshots_installed}  "
        f"lincheck: {verdicts}  violations {summary.violations}  "
        f"wall {summary.wall_s:.1f}s\n"
    )
    if summary.commit_after_heal_ticks_max is not None:
        out.write(
            f"recovery after heal: leader within {summary.leader_after_heal_ticks_max:.1f} "
            f"ticks, commit within {summary.commit_after_heal_ticks_max:.1f} ticks (worst "
            f"seed; bound {configs[0].liveness_bound_ticks})\n"
        )


def _run_spec(args: argparse.Namespace) -> int:
    """``raftlab sim SPEC``: each seed a run directory judged by the lab's checkers; exit
    0 when every seed is valid, 1 when one is invalid, else 2."""
    from pathlib import Path

    from deploy.experiment import load_spec
    from deploy.experiment.campaign import print_table, worst_exit
    from deploy.experiment.simrun import run_sim_seeds

    spec = load_spec(args.spec)
    if args.seed is None and args.seeds < 1:
        raise LabError(f"--seeds must be >= 1, got {args.seeds}")
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise LabError(f"--jobs must be >= 1, got {jobs}")
    try:
        nodes = int(str(args.nodes))
    except ValueError:
        raise LabError(f"--nodes: one cluster size with SPEC, got {args.nodes!r}") from None
    rows = run_sim_seeds(spec, seeds, Path(args.runs), nodes=nodes, jobs=min(jobs, len(seeds)))
    print_table(rows, sys.stdout)
    return worst_exit(rows)
