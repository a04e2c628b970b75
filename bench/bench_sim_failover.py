"""Leader failover in the simulator, with and without the closed-connection hint.

``python -m bench.bench_sim_failover [--seeds N]`` crashes the leader of a calm simulated
cluster (no other faults, default timeouts: e = 10 ticks, heartbeats every tick, pre-vote
and check-quorum on, ReadIndex reads) and measures, in ticks of logical time, how long the
survivors take to elect a new leader: once as the runtime now behaves (the crash closes the
dead node's connections and each survivor's core is told ``report_connection_lost``), once
with the close suppressed (what a partition or a hung leader looks like, and every crash
before the hint existed). Same seeds for both, 3 and 5 nodes. Logical time has no noise,
so one pass is exact; a tick is 50 ms with the runtime's defaults.

Writes ``bench/results/sim_failover.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from unittest import mock

from raft.sim.network import Network
from raft.sim.world import ReadMode, SimConfig, World

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "sim_failover.md"
E = 10
CRASH_AT = 40.0
LOOK_STEP = 0.05
LOOK_UNTIL = CRASH_AT + 6 * E


def failover_ticks(seed: int, nodes: int) -> float:
    """Ticks from the leader's crash to the first leader among the survivors (inf if none
    within six election timeouts)."""
    seen: dict[str, float] = {}
    old: list[str] = []

    def crash(w: World) -> None:
        leader = w.leader_hint()
        assert leader is not None, f"seed {seed}: no leader to crash"
        old.append(leader)
        w.crash(leader)

    def look(at: float):  # type: ignore[no-untyped-def]
        def check(w: World) -> None:
            new = w.leader_hint()
            if "t" not in seen and new is not None and new != old[0]:
                seen["t"] = at - CRASH_AT

        return check

    steps = int((LOOK_UNTIL - CRASH_AT) / LOOK_STEP)
    script = [(CRASH_AT, crash)] + [
        (CRASH_AT + k * LOOK_STEP, look(CRASH_AT + k * LOOK_STEP)) for k in range(1, steps + 1)
    ]
    cfg = SimConfig(
        seed=seed,
        nodes=nodes,
        faults=frozenset(),
        steps=int(LOOK_UNTIL) + 60,
        clients=0,
        election_timeout_ticks=E,
        pre_vote=True,
        check_quorum=True,
        read_mode=ReadMode.INDEX,
        lincheck=False,
    )
    r = World(cfg, script=script).run()
    if r.violation is not None:
        raise SystemExit(f"seed {seed}, {nodes} nodes: {r.violation}")
    return seen.get("t", float("inf"))


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200, help="seeds per row (200)")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    rows = []
    for nodes in (3, 5):
        got: dict[str, list[float]] = {"hint": [], "timeout only": []}
        for seed in range(args.seeds):
            got["hint"].append(failover_ticks(seed, nodes))
            with mock.patch.object(Network, "close_arrival", lambda self, s, t, now: None):
                got["timeout only"].append(failover_ticks(seed, nodes))
            if (seed + 1) % 50 == 0:
                print(f"{nodes} nodes: {seed + 1}/{args.seeds} seeds", file=sys.stderr, flush=True)
        for name, xs in got.items():
            rows.append((nodes, name, xs))
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Leader failover in the simulator: closed-connection hint vs election timeout",
        "",
        f"Written by `python -m bench.bench_sim_failover --seeds {args.seeds}` on {now} "
        f"(Python {platform.python_version()}). Logical ticks from the leader's crash to a new "
        f"leader; e = {E} ticks (50 ms each with the runtime's defaults, so x 50 ms = wall "
        "time on an idle machine). Same seeds in both rows of a size.",
        "",
        "| nodes | failure detection | seeds | p50 ticks | p90 | p99 | max | no leader |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for nodes, name, xs in rows:
        ok = [x for x in xs if x != float("inf")]
        stats = (
            " | ".join(f"{_pct(ok, q):.2f}" for q in (0.5, 0.9, 0.99)) + f" | {max(ok):.2f}"
            if ok
            else "- | - | - | -"
        )
        lines.append(f"| {nodes} | {name} | {len(xs)} | {stats} | {len(xs) - len(ok)} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
