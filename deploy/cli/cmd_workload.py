"""``raftlab workload``: drive a running cluster with concurrent clients, record the history,
and (on a ``raft cluster up`` cluster) kill the leader now and then."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import IO, Any

from deploy.errors import LabError

DESCRIPTION = """\
Run a bounded client workload against a cluster and write history.jsonl (docs/formats.md).

With --cluster-dir (a `raft cluster up` directory) and --kill-leader-every, the leader is
killed with SIGKILL every few seconds and restarted after --down-for seconds; each fault is
recorded in nemesis.jsonl beside the history. Every killed node is restarted before the
command ends, also when it is interrupted.

Afterwards: raftlab analyze DIR && raftlab report DIR
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "workload",
        help="drive a cluster with concurrent clients and record a history",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cluster", help="client addresses host:port,... (default: --cluster-dir)")
    p.add_argument(
        "--cluster-dir", default=".raftlab-cluster", help="a `raft cluster up` directory"
    )
    p.add_argument("--model", choices=("register", "kv"), default="kv")
    p.add_argument("--clients", type=int, default=5, help="concurrent clients (default 5)")
    p.add_argument("--ops", type=int, default=1000, help="operations at most (default 1000)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds at most (default 20)")
    p.add_argument("--keys", type=int, default=3, help="keys for the kv model (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", help="history file (default: <cluster-dir>/history.jsonl); nemesis.jsonl beside"
    )
    p.add_argument(
        "--kill-leader-every", type=float, default=0.0, metavar="S", help="kill leader every S s"
    )
    p.add_argument("--down-for", type=float, default=1.5, metavar="S", help="restart after S s")
    p.set_defaults(func=run)


class _LeaderKiller:
    """Kills the leader of a local cluster every ``every_s`` and restarts it after
    ``down_s``; ``heal`` restarts whatever is still down."""

    def __init__(
        self, cluster_dir: str, every_s: float, down_s: float, log: IO[str], t0_ns: int
    ) -> None:
        from raft.runtime.localcluster import LocalCluster

        self.lc = LocalCluster(cluster_dir)
        self.every_s = every_s
        self.down_s = down_s
        self.log = log
        self.down: set[str] = set()
        self.t0 = t0_ns
        self.kills = 0

    def _record(self, action: str, node: str, **extra: Any) -> None:
        line = {
            "time": time.monotonic_ns() - self.t0,
            "ts": time.time(),
            "fault": "kill",
            "action": action,
            "targets": [node],
            **extra,
        }
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
                return
            except TimeoutError:
                pass
            leader = await self._find_leader(stop)
            if leader is None:
                continue
            await asyncio.to_thread(self.lc.stop_node, leader, signal.SIGKILL)
            self.down.add(leader)
            self.kills += 1
            self._record("start", leader, signal="SIGKILL")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.down_s)
            await asyncio.to_thread(self._restart, leader)

    async def _find_leader(self, stop: asyncio.Event, tries: int = 20) -> str | None:
        """The current leader, polling a little while an election is under way."""
        for _ in range(tries):
            leader = await asyncio.to_thread(self.lc.leader)
            if leader is not None or stop.is_set():
                return leader
            await asyncio.sleep(0.1)
        return None

    def _restart(self, node: str) -> None:
        if node in self.down:
            self.lc.start_node(node)
            self.down.discard(node)
            self._record("stop", node)

    def heal(self) -> None:
        for node in sorted(self.down):
            self._restart(node)


async def _main(args: argparse.Namespace, out: IO[str], nemesis_log: IO[str] | None) -> int:
    from deploy.workload import HistoryWriter, WorkloadSpec, run_workload
    from raft.cli._cluster_addrs import resolve

    addrs = resolve(args.cluster, args.cluster_dir)
    try:
        spec = WorkloadSpec(
            model=args.model,
            clients=args.clients,
            ops_max=args.ops,
            duration_s=args.duration,
            keys=args.keys,
            seed=args.seed,
        )
    except ValueError as exc:
        raise LabError(str(exc)) from None
    stop = asyncio.Event()
    t0_ns = time.monotonic_ns()
    killer = None
    tasks = []
    if args.kill_leader_every > 0 and nemesis_log is not None:
        killer = _LeaderKiller(
            args.cluster_dir, args.kill_leader_every, args.down_for, nemesis_log, t0_ns
        )
        tasks.append(asyncio.create_task(killer.loop(stop)))
    print(
        f"workload: {spec.clients} clients, {spec.model}, at most {spec.ops_max} ops "
        f"or {spec.duration_s:g} s",
        file=sys.stderr,
    )
    try:
        summary = await run_workload(addrs, spec, HistoryWriter(out), stop, t0_ns)
    finally:
        stop.set()
        for t in tasks:
            await t
        if killer is not None:
            await asyncio.to_thread(killer.heal)
    result = summary.to_json()
    if killer is not None:
        result["leader_kills"] = killer.kills
    print(json.dumps(result))
    return 0


def run(args: argparse.Namespace) -> int:
    out_path = args.out or os.path.join(args.cluster_dir, "history.jsonl")
    if args.kill_leader_every > 0 and not os.path.exists(
        os.path.join(args.cluster_dir, "cluster.yml")
    ):
        raise LabError(f"--kill-leader-every needs a `raft cluster up` dir; {args.cluster_dir!r}")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    nemesis_path = os.path.join(os.path.dirname(os.path.abspath(out_path)), "nemesis.jsonl")
    with open(out_path, "w", encoding="utf-8") as out:
        if args.kill_leader_every > 0:
            with open(nemesis_path, "w", encoding="utf-8") as nlog:
                code = asyncio.run(_main(args, out, nlog))
        else:
            code = asyncio.run(_main(args, out, None))
    print(f"history: {out_path}", file=sys.stderr)
    return code
