"""``raftlab campaign SPEC --seeds 1..50``: many seeded runs of one experiment, one table.

Exit 0 when every run is valid, 1 when one is invalid, else 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run the experiment in SPEC once per seed, in the simulator (--sim) or on a cluster
(-i INVENTORY, --cluster DIR, or the spec's cluster), and print a table (seed, faults fired,
operations ok/fail/info, verdicts, report of each run), also written as campaign.html under
runs/<experiment>/campaign-<timestamp>/. On a cluster, the cluster is reset between runs
(nodes stopped, data wiped, nodes started: seconds, no redeploy).

Exit 0 all valid, 1 one invalid, 2 otherwise.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "campaign",
        help="run an experiment over many seeds and tabulate the verdicts",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="experiment file (YAML)")
    p.add_argument("--seeds", default="1..10", help="e.g. 1..50, 3,5,9 (default 1..10)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true", help="run in the simulator")
    where.add_argument("-i", "--inventory", help="inventory directory (testbed or hosts)")
    where.add_argument("--cluster", metavar="DIR", help="a `raft cluster up` directory")
    p.add_argument("--runs", default="runs", metavar="DIR", help="runs root (default ./runs)")
    p.add_argument("--no-reset", action="store_true", help="do not reset between cluster runs")
    p.add_argument("--jobs", type=int, default=None, help="simulator worker processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.errors import LabError
    from deploy.experiment import load_spec
    from deploy.experiment.campaign import parse_seeds, run_campaign, worst_exit

    spec = load_spec(args.spec)
    seeds = parse_seeds(args.seeds)
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise LabError(f"--jobs must be >= 1, got {jobs}")
    rows, _ = run_campaign(
        spec,
        seeds,
        Path(args.runs),
        sim=args.sim,
        inventory=args.inventory,
        cluster_dir=args.cluster,
        reset=not args.no_reset,
        jobs=min(jobs, len(seeds)),
    )
    return worst_exit(rows)
