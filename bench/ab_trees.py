"""Before/after of raftlab trees, one cluster up at a time: A up, measured, down; B up, ...;
repeated, and the median of the rounds per case.

``python -m bench.bench_compare`` keeps its systems up side by side (each round interleaves
them while the others idle); on two cores a second cluster's heartbeats and a fixed-rate run's
queueing made before/after differences of a few percent vanish in the noise. This starts one
3-node cluster at a time, each tree's nodes importing that tree's code (``PYTHONPATH``; the
nodes start in the cluster's directory, so the caller's checkout does not shadow it), and
measures closed-loop writes at each client count and fixed-rate writes (32 clients, latency
from the scheduled start) at each rate.

``python -m bench.ab_trees TREE_A TREE_B [--rounds 3] [--seconds 4] [--clients 1,8,32,128]
[--rates 1600,3200] [--out bench/results/ab.md]``. Not part of ``make bench`` (it needs two
checkouts, e.g. ``git worktree add ../base main``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.bench_compare import Raftlab, closed_loop, fixed_rate

RESULTS = Path(__file__).parent / "results" / "ab.md"


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        msg = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def measure(
    trees: list[str], rounds: int, seconds: float, clients: list[int], rates: list[int]
) -> dict[str, dict[str, list[list[float]]]]:
    """{case: {tree: [[writes/s, p50 ms, p99 ms] per round]}}"""
    got: dict[str, dict[str, list[list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        for r in range(rounds):
            for i, tree in enumerate(trees):
                s = Raftlab(os.path.join(tmp, f"{r}-{i}"), 3, "always", tree=tree)
                try:
                    asyncio.run(closed_loop(s.client, 8, 1.0, 200))  # warm up
                    cases = [(f"{n} clients", closed_loop, n) for n in clients]
                    cases += [(f"{x}/s fixed", fixed_rate, x) for x in rates]
                    for name, fn, arg in cases:
                        if fn is closed_loop:
                            v = asyncio.run(closed_loop(s.client, arg, seconds, 200))
                        else:
                            v = asyncio.run(fixed_rate(s.client, 32, seconds, 200, arg))
                        row = [round(v.rate, 1), round(v.p(0.5), 2), round(v.p(0.99), 2)]
                        got.setdefault(name, {}).setdefault(tree, []).append(row)
                        print(f"round {r + 1}/{rounds} {tree}: {name}: {row}", flush=True)
                finally:
                    s.down()
    return got


def render(trees: list[str], got: dict[str, dict[str, list[list[float]]]], note: str) -> str:
    head = " | ".join(f"{t}: writes/s, p50, p99 ms" for t in trees)
    lines = [
        "# Before/after of raftlab trees, one cluster up at a time",
        "",
        note,
        "",
        f"| case | {head} | ratio writes/s (B/A) |",
        "|---|" + "---|" * len(trees) + "---:|",
    ]
    for case, by in got.items():
        cells, rates = [], []
        for t in trees:
            rows = by.get(t, [])
            med = [statistics.median(r[j] for r in rows) for j in range(3)] if rows else [0, 0, 0]
            rates.append(med[0])
            cells.append(f"{med[0]:,.0f}/s, {med[1]:.2f}, {med[2]:.2f}")
        ratio = f"{rates[1] / rates[0]:.2f}" if len(rates) > 1 and rates[0] else "-"
        lines.append(f"| {case} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ab_trees",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("trees", nargs="+", help="checkouts to compare (the first is A)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=_ints, default=[1, 8, 32, 128])
    ap.add_argument("--rates", type=_ints, default=[1600, 3200])
    ap.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    trees = [str(Path(t).resolve()) for t in args.trees]
    for t in trees:
        if not (Path(t) / "raft" / "__init__.py").is_file():
            ap.error(f"{t} is not a raftlab checkout (no raft/__init__.py)")
    if len(set(trees)) != len(trees):
        ap.error("the same checkout twice: its rows would be one (compare two checkouts)")
    if args.rounds < 1 or args.seconds <= 0:
        ap.error("--rounds must be >= 1 and --seconds > 0")
    got = measure(trees, args.rounds, args.seconds, args.clients, args.rates)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    note = (
        f"Written by `python -m bench.ab_trees` on {when} ({os.cpu_count()} CPUs, load {load} "
        f"at the end): {args.rounds} rounds of {args.seconds:g} s per case, median of the "
        "rounds; 3 nodes, fsync on, 200-byte writes; fixed rates from 32 clients."
    )
    text = render(trees, got, note)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps(got, indent=1) + "\n")
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
