"""``raftlab analyze PATH``: merge the node event logs of a run (or any folder of them),
check Raft's invariants and, with a history, linearizability; write ``results.json``,
``merged.jsonl``, ``report.html`` and ``plots/`` (and ``shiviz.log`` with ``--shiviz``).

Exit 0 valid, 1 invalid, 2 unknown or could not check.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from deploy.cli._output import out as _out
from deploy.cli.cmd_check import _MODELS

MAX_SHOWN = 20


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "analyze",
        help="merge node logs, check invariants and linearizability, write the report",
        description="Analyse a run directory (runs/<experiment>/<timestamp>/) or any folder "
        "holding node event logs (events.jsonl, searched recursively), with an optional "
        "history.jsonl beside them. Writes results.json, merged.jsonl, report.html and "
        "plots/ into the run directory (or --out), and shiviz.log with --shiviz. Exit 0 "
        "valid, 1 invalid, 2 unknown or could not check.",
    )
    p.add_argument("path", metavar="RUN_DIR", help="run directory or folder of node logs")
    p.add_argument("--history", help="client history (default: history.jsonl found there)")
    p.add_argument(
        "--model",
        choices=list(_MODELS),
        help="linearizability model (default: kv if ops have keys, else register)",
    )
    p.add_argument(
        "--lin-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="linearizability budget in CPU seconds per search process; past it the verdict "
        "is unknown (default 60)",
    )
    p.add_argument(
        "--reference", metavar="NODE", help="clock reference node (default: first by name)"
    )
    p.add_argument("--no-lin", action="store_true", help="skip the linearizability check")
    p.add_argument(
        "--shiviz",
        nargs="?",
        const="",
        metavar="OUT",
        help="also write the ShiViz log (vector clocks per event), to OUT or by default "
        "RUN_DIR/shiviz.log; off by default: as big as merged.jsonl, slow to make, and ShiViz "
        "opens only short runs",
    )
    p.add_argument("--no-report", action="store_true", help="skip report.html and plots/")
    p.add_argument("--out", help="where to write outputs (default: RUN_DIR)")
    p.add_argument("--json", action="store_true", help="print results.json instead of text")
    p.add_argument(
        "--timings",
        action="store_true",
        help="print the wall and CPU seconds of each phase (load, merge, ...) to stderr",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.analysis import analyze, exit_code, write_outputs, write_shiviz
    from deploy.analysis.rundir import PhaseClock
    from deploy.errors import LabError

    if args.lin_timeout <= 0:
        raise LabError(f"--lin-timeout must be > 0, got {args.lin_timeout}")
    a = analyze(
        Path(args.path),
        history=Path(args.history) if args.history else None,
        model=args.model,
        lin_timeout_s=args.lin_timeout,
        check_linearizable=not args.no_lin,
        reference=args.reference,
    )
    out = Path(args.out) if args.out else a.inputs.root
    clock = PhaseClock()
    drawing = None
    try:
        shiviz = None
        if args.shiviz is not None:
            shiviz = Path(args.shiviz) if args.shiviz else out / "shiviz.log"
            a.shiviz = shiviz  # the report links it
        # The report (plots, HTML) is drawn in a child beside the outputs written here.
        drawing = None if args.no_report else ReportChild.start(a, out)
        results = write_outputs(a, out)
        clock.lap("results+merged.jsonl")
        if shiviz is not None:
            write_shiviz(a.timeline, shiviz)
            clock.lap("shiviz")
        report = None
        if not args.no_report:
            from deploy.report import write_report

            # In this process when there is no child or it failed (its error is shown).
            report = out / "report.html"
            if drawing is None or not drawing.wait():
                report = write_report(a, out)
            clock.lap("report")
    except OSError as exc:
        if drawing is not None:
            drawing.wait()  # nothing left drawing into the directory once we report
        raise LabError(f"cannot write outputs to {out}: {exc.strerror or exc}") from None
    a.timings.update(clock.laps)
    if args.timings:
        events = max(a.logs.count(), 1)
        for phase, (wall, cpu) in a.timings.items():
            print(
                f"{phase:>22}: {wall:7.3f} s wall {cpu:7.3f} s CPU "
                f"({events / max(wall, 1e-9):,.0f} events/s)",
                file=sys.stderr,
            )
    if args.json:
        _out(json.dumps(a.results_json(), indent=2))
    else:
        _out(summary_text(a))
        _out(f"wrote {results}, {out / 'merged.jsonl'}" + (f", {shiviz}" if shiviz else ""))
        if report is not None:
            _out(f"report: {report}")
    if a.logs.count() >= LEAVE_TO_EXIT_EVENTS:
        _leave_to_exit(a)
    return exit_code(a.verdicts)


class ReportChild:
    """``write_report`` in a forked child (it inherits the analysis, nothing is sent), so
    drawing the plots overlaps writing results.json and merged.jsonl. Only for long runs
    (:data:`REPORT_CHILD_MIN_EVENTS`), and only where ``fork`` exists."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @classmethod
    def start(cls, a: Any, out: Path) -> ReportChild | None:
        if a.logs.count() < REPORT_CHILD_MIN_EVENTS or not hasattr(os, "fork"):
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:  # the child: draw, then leave without running the parent's cleanup
            code = 1
            try:
                from deploy.report import write_report

                write_report(a, out)
                code = 0
            except BaseException as exc:  # the parent draws again and reports the error
                print(f"report: drawing in a child failed: {exc}", file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return cls(pid)

    def wait(self) -> bool:
        """True if the child wrote the report."""
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return False
        return os.waitstatus_to_exitcode(status) == 0


REPORT_CHILD_MIN_EVENTS = 50_000
"""Below this many events the report is drawn in the analysing process (a fork costs more
than it saves)."""

LEAVE_TO_EXIT_EVENTS = 100_000
"""From this many events on, the analysis is not freed when the command ends."""


def _leave_to_exit(obj: object) -> None:
    """Keep ``obj`` (the analysis of a long run: millions of objects) alive until the
    process exits instead of freeing it object by object as ``run`` returns, which costs
    about a sixth of the analysis itself (bench/results/analyze.md); the operating system
    takes the memory back at once. A self-referencing holder moved to the collector's
    permanent generation is never collected, also not at interpreter shutdown."""
    holder: list[object] = [obj]
    holder.append(holder)
    gc.freeze()


def summary_text(a: Any) -> str:
    """The human summary: verdicts first, then counts, violations and unreadable lines."""
    v = a.verdicts
    c = a.counts()
    lines = [
        "verdict: "
        + v["overall"].upper()
        + "  ("
        + ", ".join(f"{k} {x}" for k, x in v.items() if k != "overall")
        + ")",
        f"nodes {c['nodes']}, events {c['events']}, elections {c['elections']}, "
        f"highest commit {c['max_commit_index']}, faults {c['faults'] or 'none'}",
        "leaders per term: "
        + (", ".join(f"{t}:{'+'.join(n)}" for t, n in c["leaders_per_term"].items()) or "none"),
    ]
    lines += [f"WARNING: {w}" for w in getattr(a, "warnings", ())]
    clocks = a.timeline.clocks
    lines.append(
        f"clock offsets vs {clocks.reference}: "
        + ", ".join(f"{n} {x * 1000:+.1f}ms" for n, x in clocks.offsets.items())
    )
    for viol in a.invariants.violations[:MAX_SHOWN]:
        lines.append(f"  VIOLATION {viol}")
    extra = sum(a.invariants.violation_counts.values()) - min(
        len(a.invariants.violations), MAX_SHOWN
    )
    if extra > 0:
        lines.append(f"  ... and {extra} more (results.json)")
    lin = a.linearizability
    if lin is not None:
        lines.append(
            f"linearizability: {lin.get('verdict')} (model {lin.get('model')})"
            + (f": {lin.get('reason')}" if lin.get("reason") else "")
        )
    if a.problems:
        lines.append(f"{len(a.problems)} line(s) skipped:")
        lines += [f"  {p}" for p in a.problems[:MAX_SHOWN]]
        if len(a.problems) > MAX_SHOWN:
            lines.append(f"  ... and {len(a.problems) - MAX_SHOWN} more (results.json)")
    return "\n".join(lines)
