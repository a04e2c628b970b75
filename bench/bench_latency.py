"""Latency over time at fixed rates: is a high p99 a steady queue or a few stalls?

One 3-node cluster (fsync on), 32 clients on their own schedules writing 200-byte values
at each rate, latency counted from each request's scheduled start (no coordinated omission),
reported per half second (p50, p99, max) beside the nodes' own notable events in that window
(snapshots with their thread and loop times, loop stalls, WAL syncs of 50 ms or more,
role changes). A steady p99 in every
bucket means queueing (the cluster's CPU per write against the rate); a p99 made of a few bad
buckets points at the event next to them.

Writes ``bench/results/latency.md``. ``python -m bench latency`` or
``python -m bench.bench_latency [--rates 800,1600,3200] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_compare import Raftlab, fixed_rate
from raft.runtime.bench import percentile

RESULTS = Path(__file__).parent / "results" / "latency.md"
BUCKET_S = 0.5
NOTABLE = ("snapshot", "loop_stall", "slow_sync", "role", "leader_lost", "storage_failed")


def _events(cluster_dir: str, lo: float, hi: float) -> list[dict[str, Any]]:
    out = []
    for path in sorted(Path(cluster_dir).glob("*/log/events.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("ev") in NOTABLE and lo <= e.get("ts", 0) <= hi:
                    out.append(e)
    return sorted(out, key=lambda e: e["ts"])


def measure(rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        s = Raftlab(tmp, 3, "always")
        try:
            res = asyncio.run(fixed_rate(s.client, 32, seconds, 200, rate))
            wall0, got = res.start_wall, list(zip(res.due, res.lat, strict=True))
            events = _events(s.lc.dir, wall0, wall0 + seconds + 5)
        finally:
            s.down()
    buckets: dict[int, list[float]] = {}
    for t, lat in got:
        buckets.setdefault(int(t / BUCKET_S), []).append(lat)
    rows = []
    for b in sorted(buckets):
        lats = sorted(buckets[b])
        rows.append(
            {
                "t": b * BUCKET_S,
                "n": len(lats),
                "p50_ms": round(percentile(lats, 0.5) * 1e3, 2),
                "p99_ms": round(percentile(lats, 0.99) * 1e3, 2),
                "max_ms": round(lats[-1] * 1e3, 2),
            }
        )
    lats = sorted(x for _, x in got)
    return {
        "rate": rate,
        "ok": len(got),
        "achieved_per_s": round(len(got) / seconds, 1),
        "p50_ms": round(percentile(lats, 0.5) * 1e3, 2) if lats else None,
        "p99_ms": round(percentile(lats, 0.99) * 1e3, 2) if lats else None,
        "buckets": rows,
        "events": [
            {"t": round(e["ts"] - wall0, 2), "node": e.get("node"), "ev": e.get("ev")}
            | {k: v for k, v in e.items() if k not in ("ts", "node", "ev", "v")}
            for e in events
        ],
    }


def render(results: list[dict[str, Any]], head: str) -> str:
    lines = ["# Latency over time at fixed rates", "", head, ""]
    for r in results:
        p99s = sorted(b["p99_ms"] for b in r["buckets"])
        lines += [
            f"## {r['rate']:,.0f} writes/s: {r['achieved_per_s']:,.0f}/s answered, "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms",
            "",
            f"Per-bucket p99: lowest {p99s[0] if p99s else '-'} ms, median "
            f"{p99s[len(p99s) // 2] if p99s else '-'} ms, highest {p99s[-1] if p99s else '-'} ms.",
            "",
            "| t s | writes | p50 ms | p99 ms | max ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {b['t']:.1f} | {b['n']} | {b['p50_ms']} | {b['p99_ms']} | {b['max_ms']} |"
            for b in r["buckets"]
        ]
        if r["events"]:
            lines += ["", "Node events in the run:", ""]
            lines += [f"- {json.dumps(e)}" for e in r["events"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_latency", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("--rates", default="800,1600,3200", help="writes/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="per rate (default 10)")
    ap.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--rates: expected numbers separated by commas, got {args.rates!r}")
    if not rates or min(rates) <= 0 or args.seconds <= 0:
        ap.error("--rates must be positive numbers and --seconds > 0")
    results = []
    for rate in rates:
        r = measure(rate, args.seconds)
        print(f"{rate:,.0f}/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms", flush=True)
        results.append(r)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = (
        f"Written by `python -m bench.bench_latency` on {when} ({os.cpu_count()} CPUs, load "
        f"{load} at the end). 3 nodes, fsync on, 32 clients on their own schedules, 200-byte "
        f"writes, {args.seconds:g} s per rate; latency from the scheduled start, per "
        f"{BUCKET_S} s bucket."
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, head))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
