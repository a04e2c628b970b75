"""``raftlab report RUN_DIR``: write ``report.html`` (self-contained) and ``plots/*.png``.

Exit status follows the verdict like ``analyze`` (0 valid, 1 invalid, 2 unknown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="write report.html and plots/ for a run",
        description="Render a run's report: report.html (one self-contained file: verdicts, "
        "timeline of roles/terms with fault windows, latency and throughput, violations) and "
        "the same plots as PNG in plots/.",
    )
    p.add_argument("path", metavar="RUN_DIR", help="run directory or folder of node logs")
    p.add_argument("--out", help="where to write (default: RUN_DIR)")
    p.add_argument("--history", help="client history (default: history.jsonl found there)")
    p.add_argument("--lin-timeout", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--no-lin", action="store_true", help="skip the linearizability check")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.analysis import analyze, exit_code
    from deploy.errors import LabError
    from deploy.report import write_report

    a = analyze(
        Path(args.path),
        history=Path(args.history) if args.history else None,
        lin_timeout_s=args.lin_timeout,
        check_linearizable=not args.no_lin,
    )
    try:
        path = write_report(a, Path(args.out) if args.out else None, plots=not args.no_plots)
    except OSError as exc:
        raise LabError(f"cannot write the report: {exc.strerror or exc}") from None
    print(f"report: {path} (verdict {a.verdicts['overall']})")
    return exit_code(a.verdicts)
