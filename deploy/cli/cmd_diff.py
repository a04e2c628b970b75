"""``raftlab diff RUN_DIR``: align the nodes' committed/applied logs and show where they
agree, the first divergence, missing ranges and differing results.
``raftlab diff RUN_A RUN_B``: compare two runs of one spec (event counts, elections, commit
latency, verdicts).

Exit (one run) 0 no divergence, 1 divergence found, 2 could not check; (two runs) 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deploy.cli._output import out as _out


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diff",
        help="compare the nodes' logs of a run, or two runs",
        description="With one run: align the nodes' committed/applied logs (index, term, "
        "digest): agreeing ranges, first divergence, missing ranges (compacted or not "
        "replicated), different results. With two runs: compare event counts, elections, "
        "commit latency and verdicts.",
    )
    p.add_argument("run_a", metavar="RUN_DIR", help="run directory or folder of node logs")
    p.add_argument("run_b", metavar="RUN_B", nargs="?", help="second run to compare against")
    p.add_argument("--nodes", help="comma-separated nodes to compare (default: all)")
    p.add_argument("--from", dest="from_index", type=int, metavar="INDEX", help="first index")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.analysis import analyze, diff_nodes, render_node_diff
    from deploy.errors import LabError

    if args.run_b is not None:
        return _run_vs_run(args)
    a = analyze(Path(args.run_a), check_linearizable=False)
    nodes = a.logs.nodes
    if args.nodes:
        want = [n.strip() for n in args.nodes.split(",") if n.strip()]
        unknown = [n for n in want if n not in nodes]
        if unknown:
            raise LabError(
                f"unknown node(s) {', '.join(unknown)}; the logs have {', '.join(nodes)}"
            )
        nodes = want
    if args.from_index is not None and args.from_index < 1:
        raise LabError(f"--from must be >= 1, got {args.from_index}")
    nd = diff_nodes(a.invariants, nodes, args.from_index)
    if args.json:
        _out(json.dumps(nd.to_json(), indent=2))
    else:
        _out(render_node_diff(nd), end="")
    return 1 if nd.diverged else 0


def _summary(path: Path) -> Any:
    from deploy.analysis import analyze, summarize_run

    a = analyze(path, check_linearizable=False)
    # Linearizability was not checked here (it can be slow): report it only as recorded.
    inv = a.verdicts["invariants"]
    verdicts: dict[str, Any] = {"invariants": inv, "overall": inv}
    res = a.inputs.results
    if res is not None:
        try:
            recorded = json.loads(res.read_text(encoding="utf-8")).get("verdicts")
            if isinstance(recorded, dict):
                verdicts.update(recorded)  # includes linearizability from the full analysis
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
    events = [m.event for m in a.timeline.events]
    return summarize_run(str(path), events, a.invariants, verdicts)


def _run_vs_run(args: argparse.Namespace) -> int:
    from deploy.analysis import diff_runs
    from deploy.analysis.diff import render_run_diff

    d = diff_runs(_summary(Path(args.run_a)), _summary(Path(args.run_b)))
    if args.json:
        _out(json.dumps(d, indent=2))
    else:
        _out(render_run_diff(d), end="")
    return 0
