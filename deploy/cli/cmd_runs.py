"""``raftlab runs [DIR]``: list the runs under DIR (``runs/<experiment>/<timestamp>/``)
with their verdicts from results.json, newest last; refreshes ``DIR/latest``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deploy.cli._output import out as _out


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "runs",
        help="list runs and their verdicts",
        description="List runs (DIR/<experiment>/<timestamp>/) with the verdicts recorded in "
        "their results.json, oldest first, and point DIR/latest at the newest.",
    )
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="default: ./runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-link", action="store_true", help="do not update DIR/latest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.analysis import list_runs, update_latest
    from deploy.errors import LabError

    root = Path(args.dir)
    if not root.is_dir():
        raise LabError(f"{root}: no such directory (runs live in runs/<experiment>/<timestamp>/)")
    runs = list_runs(root)
    latest = None if args.no_link else update_latest(root)
    if args.json:
        _out(
            json.dumps(
                [
                    {
                        "experiment": r.experiment,
                        "timestamp": r.timestamp,
                        "path": str(r.path),
                        "verdicts": r.verdicts,
                        "latest": r.path == latest,
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return 0
    if not runs:
        _out(f"no runs under {root}")
        return 0
    w = max(len(r.experiment) for r in runs)
    _out(
        f"{'experiment':<{w}}  {'timestamp':<20}  {'overall':<13}  {'invariants':<10}  "
        f"{'linearizability':<15}"
    )
    for r in runs:
        mark = "  <- latest" if latest is not None and r.path == latest else ""
        _out(
            f"{r.experiment:<{w}}  {r.timestamp:<20}  {r.overall:<13}  "
            f"{r.verdicts.get('invariants', '-'):<10}  "
            f"{r.verdicts.get('linearizability', '-'):<15}{mark}"
        )
    return 0
