"""``raftlab run SPEC``: run an experiment spec on a cluster, end to end (docs/experiments.md).

Exit 0 valid, 1 invalid, 2 unknown (also: no operation succeeded, or faults were asked for
and none fired) or could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run the experiment in SPEC (experiments/*.yml): health check, workload with the nemesis
schedule (live progress on stderr), heal (always, also on Ctrl-C or an error), recovery
period, collect the node logs, analyse and report. The run directory is
runs/<experiment>/<timestamp>/ (runs/latest points at it).

The cluster is -i INVENTORY (the testbed's inventories/local, or real hosts), --cluster DIR
(a `raft cluster up` directory), or the spec's `cluster`.

Exit 0 valid, 1 invalid, 2 unknown or could not run.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run an experiment spec on a cluster and report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="experiment file (YAML)")
    p.add_argument("-i", "--inventory", help="inventory directory (e.g. inventories/local)")
    p.add_argument("--cluster", metavar="DIR", help="a `raft cluster up` directory")
    p.add_argument("--seed", type=int, help="override the spec's seed")
    p.add_argument("--runs", default="runs", metavar="DIR", help="runs root (default ./runs)")
    p.add_argument("--no-report", action="store_true", help="skip report.html and plots/")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.experiment import load_spec
    from deploy.experiment.runner import Target, run_experiment

    spec = load_spec(args.spec)
    if args.seed is not None:
        spec = spec.with_seed(args.seed)
    target = Target.choose(spec, args.inventory, args.cluster)
    out = run_experiment(spec, target, Path(args.runs), report=not args.no_report)
    print(out.summary_line())
    for w in out.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    print(f"run directory: {out.run_dir}")
    if out.report is not None:
        print(f"report: {out.report}")
    return out.exit_code
