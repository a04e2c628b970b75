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
    from raft.sim import SimConfig, SwarmSummary

DEFAULT_STEPS = 300


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run the Raft core in the deterministic simulator over many seeds",
        description=(
            "Run the real Raft core (raft.core.RawNode) under a seeded hostile world: lost, "
            "duplicated, reordered and delayed messages, partitions, crashes that lose "
            "unsynced writes, pauses and clock skew. Safety invariants are checked after "
            "every step, liveness after the faults heal, and the clients' history with the "
            "linearizability checker. A failing seed prints the command that replays it."
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
    p.add_argument("--nodes", type=int, default=5, help="cluster size, 3..7 (default 5)")
    p.add_argument(
        "--faults",
        default="all",
        help="comma-separated: drop,dup,reorder,delay,partition,oneway,crash,pause,skew, "
        "or all, or none (default all)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
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
    try:
        configs = [
            SimConfig(
                seed=s,
                nodes=args.nodes,
                faults=faults,
                steps=args.steps,
                trace=args.trace,
                workload=Workload(args.workload),
                lincheck=args.lincheck,
            )
            for s in seeds
        ]
    except SimConfigError as exc:
        raise LabError(str(exc)) from None
    progress = _ProgressBar(sys.stderr, len(configs)) if len(configs) > 1 else None
    summary = run_swarm(configs, jobs=min(jobs, len(configs)), progress=progress)
    try:
        _report(summary, configs, seeds, args.trace, sys.stdout)
    except BrokenPipeError:  # `raftlab sim ... --trace | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if summary.violations else 0


def _report(
    summary: SwarmSummary,
    configs: list[SimConfig],
    seeds: list[int],
    trace: bool,
    out: TextIO,
) -> None:
    if trace:
        for r in summary.results:
            out.write(f"--- trace of seed {r.seed} ---\n")
            for line in r.trace:
                out.write(line + "\n")
    for r in summary.failures:
        cfg = configs[seeds.index(r.seed)]
        out.write(f"VIOLATION seed {r.seed}: {r.violation}\n")
        out.write("  last events:\n")
        for line in r.trace_tail[-20:]:
            out.write(f"    {line}\n")
        out.write(f"  replay: {cfg.replay_command()}\n")
    verdicts = ", ".join(f"{n} {v}" for v, n in summary.lincheck)
    out.write(
        f"seeds {summary.seeds}  steps {summary.steps} ticks  events {summary.events}  "
        f"elections {summary.elections}  commits {summary.commits}  "
        f"client ops {summary.client_ops} (ok {summary.client_ok})  faults {summary.faults}  "
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
