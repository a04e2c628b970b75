"""``raftlab campaign SPEC --seeds 1..50``: many seeded runs of one spec, in the simulator or
on a cluster, and one table (seed, faults fired, operations, verdicts, report) printed and
written as ``campaign.html`` beside ``campaign.json``.

On a cluster, each run after the first starts from a reset cluster: every node stopped, its
data directory emptied, every node started again (seconds, over the nemesis' cluster
control), instead of a redeploy (minutes). The run's own window and fresh keys keep the
analysis honest even without it; the reset makes each run start from the same state.
"""

from __future__ import annotations

import html
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from deploy.errors import LabError
from deploy.experiment.judge import run_stamp
from deploy.experiment.spec import ExperimentSpec

SEEDS_MAX = 10_000


def parse_seeds(text: str) -> list[int]:
    """``1..50`` (inclusive), ``3,5,9``, ``7``, or a mix (``1..3,10``)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ".." in part:
                lo_s, hi_s = part.split("..", 1)
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise LabError(
                f"--seeds: {part!r} is not a seed, a range like 1..50, or a list like 1,5,9"
            ) from None
        if len(out) > SEEDS_MAX:
            raise LabError(f"--seeds: at most {SEEDS_MAX} seeds")
    if not out or any(s < 0 for s in out):
        raise LabError("--seeds: give seeds >= 0 (e.g. 1..50)")
    return list(dict.fromkeys(out))


def worst_exit(rows: Sequence[dict[str, Any]]) -> int:
    """1 if any run is invalid, else 2 if any is unknown (or failed to run), else 0."""
    codes = {int(r.get("exit_code", 2)) for r in rows}
    if 1 in codes:
        return 1
    return 2 if codes - {0} or not rows else 0


def _ops(r: dict[str, Any]) -> str:
    return f"{r.get('ok', 0)}/{r.get('fail', 0)}/{r.get('info', 0)}"


def print_table(rows: Sequence[dict[str, Any]], out: IO[str]) -> None:
    out.write(
        f"{'seed':>6}  {'faults':>7}  {'ops ok/fail/info':>17}  {'overall':<8}  "
        f"{'invariants':<10}  {'lin':<8}  report\n"
    )
    for r in rows:
        v = r.get("verdicts") or {}
        faults = f"{r.get('faults_fired', 0)}/{r.get('faults_requested', 0)}"
        out.write(
            f"{r['seed']:>6}  {faults:>7}  {_ops(r):>17}  {v.get('overall', 'error'):<8}  "
            f"{v.get('invariants', '-'):<10}  {v.get('linearizability', '-'):<8}  "
            f"{r.get('report') or r.get('error') or '-'}\n"
        )
    counts: dict[str, int] = {}
    for r in rows:
        o = (r.get("verdicts") or {}).get("overall", "error")
        counts[o] = counts.get(o, 0) + 1
    out.write(
        f"{len(rows)} runs: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + "\n"
    )
    out.flush()


def write_html(rows: Sequence[dict[str, Any]], spec: ExperimentSpec, path: Path) -> Path:
    """The table as one self-contained HTML page with links to each run's report."""
    colour = {"valid": "#d9f2d9", "invalid": "#f6caca", "unknown": "#fbeebb"}
    body = []
    for r in rows:
        v = r.get("verdicts") or {}
        overall = v.get("overall", "error")
        rep = r.get("report")
        link = (
            f'<a href="{html.escape(str(Path(rep).resolve().as_uri()))}">report</a>'
            if rep
            else html.escape(str(r.get("error") or "-"))
        )
        body.append(
            f"<tr style='background:{colour.get(overall, '#eee')}'>"
            f"<td>{r['seed']}</td><td>{r.get('faults_fired', 0)} / "
            f"{r.get('faults_requested', 0)}</td><td>{r.get('ok', 0)}</td>"
            f"<td>{r.get('fail', 0)}</td><td>{r.get('info', 0)}</td>"
            f"<td><b>{html.escape(overall)}</b></td>"
            f"<td>{html.escape(v.get('invariants', '-'))}</td>"
            f"<td>{html.escape(v.get('linearizability', '-'))}</td>"
            f"<td>{html.escape('; '.join(r.get('warnings') or []))}</td><td>{link}</td></tr>"
        )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>campaign {html.escape(spec.name)}</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;border-bottom:1px solid #ccc}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Campaign: {html.escape(spec.name)}</h1>
<p>{html.escape(spec.description)} &mdash; {len(rows)} runs, spec {html.escape(spec.source)}</p>
<table><tr><th>seed</th><th>faults fired / asked</th><th>ok</th><th>fail</th><th>info</th>
<th>overall</th><th>invariants</th><th>linearizability</th><th>warnings</th><th>report</th></tr>
{"".join(body)}
</table></body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path


def reset_cluster(control: Any, log: Any = None) -> float:
    """Stop every node, empty its data directory, start every node; returns seconds. Any
    fault a crashed run left behind is healed first."""
    import importlib

    t0 = time.monotonic()
    importlib.import_module("deploy.nemesis").heal_cluster(control)
    nodes = control.nodes()
    for node in nodes:
        control.stop(node)
    for node in nodes:
        data = control.data_dir(node)
        if not data or data in ("/", ".") or not data.startswith("/"):
            raise LabError(f"reset: refusing to empty data directory {data!r} of {node}")
        control.run(node, f"find {shlex.quote(data)} -mindepth 1 -delete", timeout_s=120)
    for node in nodes:
        control.start(node)
    took = time.monotonic() - t0
    if log is not None:
        log(f"reset: {len(nodes)} nodes stopped, wiped and started in {took:.1f} s")
    return took


def run_campaign(
    spec: ExperimentSpec,
    seeds: Sequence[int],
    runs_root: Path,
    *,
    sim: bool = False,
    inventory: str | None = None,
    cluster_dir: str | None = None,
    reset: bool = True,
    jobs: int = 1,
    out: IO[str] | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Run every seed; returns the rows and the HTML table's path."""
    out = out or sys.stdout
    from deploy.experiment.simrun import outcome_json, run_sim_seeds

    camp_dir = runs_root / spec.name / f"campaign-{run_stamp()}"
    camp_dir.mkdir(parents=True, exist_ok=False)

    def log(msg: str) -> None:
        sys.stderr.write(f"campaign: {msg}\n")
        sys.stderr.flush()

    def done(row: dict[str, Any]) -> None:
        v = (row.get("verdicts") or {}).get("overall", "error")
        log(f"seed {row['seed']}: {v} ({row.get('run_dir') or row.get('error')})")

    rows: list[dict[str, Any]]
    if sim:
        rows = run_sim_seeds(spec, seeds, runs_root, jobs=jobs, progress=done)
    else:
        from deploy.experiment.runner import Target, make_control, run_experiment

        target = Target.choose(spec, inventory, cluster_dir)
        rows = []
        for i, seed in enumerate(seeds):
            try:
                if i > 0 and reset:
                    reset_cluster(make_control(target), log)
                o = run_experiment(spec.with_seed(seed), target, runs_root)
                rows.append(outcome_json(o, seed))
            except LabError as exc:
                rows.append({"seed": seed, "error": str(exc), "exit_code": 2})
            done(rows[-1])
    (camp_dir / "campaign.json").write_text(
        json.dumps({"spec": spec.to_json(), "runs": rows}, indent=2), encoding="utf-8"
    )
    page = write_html(rows, spec, camp_dir / "campaign.html")
    print_table(rows, out)
    out.write(f"campaign table: {page}\n")
    return rows, page
