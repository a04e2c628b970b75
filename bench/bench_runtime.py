"""A 3-node local cluster (real processes on 127.0.0.1..3, fsync always) under
``raft client bench``-style closed-loop load: writes/s and latency percentiles.

Writes ``bench/results/runtime.md``. The figures depend heavily on the machine's load (the
nodes, the clients and everything else share its CPUs), so the load average is recorded."""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import random
import socket
import tempfile
from pathlib import Path

from raft.runtime.bench import BenchResult, BenchSpec, percentile, run_bench
from raft.runtime.localcluster import LocalCluster

RESULTS = Path(__file__).parent / "results" / "runtime.md"
CASES = [
    ("writes, 1 client", "always", BenchSpec(1000, 1, 256)),
    ("writes, 32 clients", "always", BenchSpec(6000, 32, 256)),
    ("writes, 128 clients", "always", BenchSpec(12000, 128, 256)),
    ("50% reads (ReadIndex), 32 clients", "always", BenchSpec(6000, 32, 256, 0.5)),
    ("writes, 32 clients, fsync never", "never", BenchSpec(6000, 32, 256)),
]


def _free_base(nodes: int) -> int:
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000, 3)
        try:
            for i in range(1, nodes + 1):
                for port in (base, base + 1, base + 2):
                    with socket.socket() as s:
                        s.bind((f"127.0.0.{i}", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _row(name: str, r: BenchResult) -> str:
    lat = sorted(r.write_lat_s) or sorted(r.read_lat_s)
    writes = len(r.write_lat_s) / r.elapsed_s
    reads = len(r.read_lat_s) / r.elapsed_s
    p = [percentile(lat, q) * 1e3 for q in (0.5, 0.9, 0.99)]
    errors = sum(r.errors.values())
    return (
        f"| {name} | {r.spec.concurrency} | {writes:,.0f} | {reads:,.0f} | "
        f"{p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} | {lat[-1] * 1e3:.1f} | {errors} |"
    )


def main() -> None:
    load = os.getloadavg()[0]
    rows = []
    for name, fsync, spec in CASES:
        with tempfile.TemporaryDirectory(prefix="raftlab-bench-") as d:
            lc = LocalCluster(os.path.join(d, "c"))
            try:
                lc.up(nodes=3, base_port=_free_base(3), fsync=fsync)
                lc.wait_leader(30.0, started=True)
                addrs = [a.client for a in lc.config().nodes.values()]
                result = asyncio.run(run_bench(addrs, spec))
            finally:
                lc.down()
        print(f"{name}: {result.render()}", flush=True)
        rows.append(_row(name, result))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"""# Runtime: a 3-node local cluster under closed-loop load

Written by `python -m bench runtime` on {now}.
Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, load average
{load:.1f} at the start. Three `raft serve` processes on 127.0.0.1..3 (uvloop), DiskStorage
with the fsync policy shown, 256-byte values over 1000 keys; clients in one asyncio process,
each with its own session and one operation outstanding (like etcd's `benchmark`).
Latency is the client's: request sent to answer received, including redirects; the latency
columns are the writes' (the reads' when a case has no writes).
The same measurement from the command line: `raft cluster up` then
`raft client bench --ops 6000 --concurrency 32 --size 256`.

| case | clients | writes/s | reads/s | p50 ms | p90 ms | p99 ms | max ms | not ok |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
"""
        + "\n".join(rows)
        + """

Concurrent writes share log entries and fsyncs (the driver packs every queued proposal into one
entry per Ready), which is where the throughput at 32+ clients comes from; a single client
pays a full round of leader fsync, follower fsync and apply per write.
"""
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
