"""``raftlab analyze`` end to end on a real run: events/s, per phase, wall and CPU.

Each measurement is a fresh ``raftlab analyze RUN --out TMP --timings`` process, as a user
runs it (interpreter start and imports included); its phase lines give the split. Variants,
run interleaved (A/B/A/B) so a loaded machine shifts all of them alike:

- ``full``: the default command (linearizability check and report included);
- ``core``: ``--no-lin --no-report`` (load, merge, invariants, results.json, merged.jsonl);
- ``shiviz``: ``full`` plus ``--shiviz``;
- ``no-orjson``: ``core`` with orjson hidden (the pure-Python fallback);
- ``baseline-*``: with ``--baseline DIR``, the same commands run from another checkout
  (the code before the streaming rewrite), for old-vs-new on the same input.

The run directory is ``RAFTLAB_BENCH_RUN`` or the newest ``runs/lab-*/<timestamp>`` (what
``make lab`` leaves); without one, a synthetic run (deploy.analysis.synthetic) is made.
Rates are events/s over the whole process: wall (what a user waits) and CPU (this process
and its checker workers; on a shared machine the steadier figure).

Writes ``bench/results/analyze.md``. ``python -m bench analyze`` or
``python -m bench.bench_analyze [RUN_DIR] [--repeat N] [--baseline DIR] [--variants a,b]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "analyze.md"
GOAL = 200_000
"""Issue 12's goal: events/s end to end on the ``make lab`` run."""

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "core": ["--no-lin", "--no-report"],
    "shiviz": ["--shiviz"],
    "no-orjson": ["--no-lin", "--no-report"],
}
_PHASE = re.compile(r"^\s*(?P<name>.+?): +(?P<wall>[\d.]+) s wall +(?P<cpu>[\d.]+) s CPU")
_QUICK = ("--no-lin", "--no-report", "--json")
_CLI = "import sys; from deploy.cli import main; sys.exit(main(sys.argv[1:]))"
_CLI_NO_ORJSON = "import sys; sys.modules['orjson'] = None; " + _CLI


def find_run() -> Path | None:
    env = os.environ.get("RAFTLAB_BENCH_RUN")
    if env:
        return Path(env)
    runs = sorted(
        (p for p in (ROOT / "runs").glob("lab-*/*") if (p / "nodes").is_dir()),
        key=lambda p: p.name,
    )
    return runs[-1] if runs else None


def synthetic_run(where: Path) -> Path:
    from deploy.analysis.synthetic import standard_run

    standard_run(where, nodes=5, writes=1500, offsets={"n2": 0.004, "n3": -0.003})
    return where


def _count_events(run: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-analyze-count-") as tmp:
        out = subprocess.run(
            [sys.executable, "-c", _CLI, "analyze", str(run), "--out", tmp, *_QUICK],
            capture_output=True,
            text=True,
            env=_env(ROOT),
            check=False,
        )
    return int(json.loads(out.stdout)["counts"]["events"])


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def measure(run: Path, variant: str, tree: Path) -> dict[str, object]:
    """One fresh process: wall and CPU seconds in total and per phase."""
    flags = VARIANTS[variant]
    code = _CLI_NO_ORJSON if variant == "no-orjson" else _CLI
    timings = ["--timings"] if tree == ROOT else []  # a baseline may predate the flag
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code, "analyze", str(run), "--out", tmp, *flags, *timings],
            capture_output=True,
            text=True,
            env=_env(tree),
            cwd=tree,  # `python -c` puts the working directory first on sys.path
            check=False,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"analyze failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    phases: dict[str, tuple[float, float]] = {}
    for line in proc.stderr.splitlines():
        m = _PHASE.match(line)
        if m:
            phases[m["name"]] = (float(m["wall"]), float(m["cpu"]))
    verdict = proc.stdout.splitlines()[0] if proc.stdout else ""
    return {"wall": wall, "cpu": cpu, "phases": phases, "verdict": verdict}


def _median_phases(samples: list[dict[str, object]]) -> dict[str, tuple[float, float]]:
    names: list[str] = []
    for s in samples:
        for n in s["phases"]:  # type: ignore[attr-defined]
            if n not in names:
                names.append(n)
    out = {}
    for n in names:
        got = [s["phases"][n] for s in samples if n in s["phases"]]  # type: ignore[index,operator]
        out[n] = (statistics.median(g[0] for g in got), statistics.median(g[1] for g in got))
    return out


def run_bench(
    run: Path,
    repeat: int,
    variants: list[str],
    baseline: Path | None,
    baseline_variants: tuple[str, ...] = ("core",),
) -> dict[str, list[dict[str, object]]]:
    plan = [(v, ROOT) for v in variants]
    if baseline is not None:
        plan += [(f"baseline-{v}", baseline) for v in baseline_variants]
    samples: dict[str, list[dict[str, object]]] = {name: [] for name, _ in plan}
    for i in range(repeat):
        for name, tree in plan:
            variant = name.removeprefix("baseline-")
            s = measure(run, variant, tree)
            samples[name].append(s)
            print(f"[{i + 1}/{repeat}] {name}: {s['wall']:.2f} s wall, {s['cpu']:.2f} s CPU")
    return samples


def render(run: Path, events: int, samples: dict[str, list[dict[str, object]]], load: str) -> str:
    lines = [
        "# `raftlab analyze` speed",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}. Generated by `python -m bench analyze` "
        "(bench/bench_analyze.py): each figure is a fresh `raftlab analyze RUN --out TMP` "
        "process (interpreter start and imports included), median of the samples, variants "
        f"interleaved. Input: `{run}` ({events:,} node events). Load average during the "
        f"run: {load}. Goal (issue 12): {GOAL:,} events/s end to end.",
        "",
        "| variant | samples | wall s | CPU s | events/s (wall) | events/s (CPU) "
        "| goal ratio (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ss in samples.items():
        wall = statistics.median(float(s["wall"]) for s in ss)  # type: ignore[arg-type]
        cpu = statistics.median(float(s["cpu"]) for s in ss)  # type: ignore[arg-type]
        lines.append(
            f"| {name} | {len(ss)} | {wall:.2f} | {cpu:.2f} | {events / wall:,.0f} | "
            f"{events / cpu:,.0f} | {events / wall / GOAL:.2f} |"
        )
    for name, ss in samples.items():
        ph = _median_phases(ss)
        if not ph:
            continue
        lines += [
            "",
            f"Phases of `{name}` (median wall / CPU seconds; the rest of the process is "
            "interpreter start, imports and exit):",
            "",
            "| phase | wall s | CPU s | share of CPU |",
            "|---|---:|---:|---:|",
        ]
        total_cpu = statistics.median(float(s["cpu"]) for s in ss)  # type: ignore[arg-type]
        for n, (w, c) in ph.items():
            lines.append(f"| {n} | {w:.2f} | {c:.2f} | {c / total_cpu:.0%} |")
        rest = total_cpu - sum(c for _, c in ph.values())
        lines.append(f"| (start, imports, exit) | | {rest:.2f} | {rest / total_cpu:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("run", nargs="?", help="run directory (default: newest runs/lab-*/*)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default="full,core,shiviz,no-orjson")
    ap.add_argument("--baseline", help="another checkout to time the same commands from")
    ap.add_argument(
        "--baseline-variants",
        default="full,core",
        help="variants timed from the baseline checkout, interleaved with ours",
    )
    ap.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = ap.parse_args(argv if argv is not None else [])
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; have {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="bench-analyze-run-") as tmp:
        run = Path(args.run).resolve() if args.run else find_run()
        if run is None:
            print("no runs/lab-*/* run found: using a synthetic 5-node run")
            run = synthetic_run(Path(tmp) / "synthetic")
        events = _count_events(run)
        print(f"input {run}: {events:,} events")
        samples = run_bench(
            run,
            args.repeat,
            variants,
            Path(args.baseline) if args.baseline else None,
            tuple(v for v in args.baseline_variants.split(",") if v),
        )
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        text = render(run, events, samples, load)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
