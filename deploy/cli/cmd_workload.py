"""``raftlab workload``: drive a running cluster with concurrent clients, record the history,
and (on a ``raft cluster up`` cluster) kill the leader now and then."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from deploy.errors import LabError

DESCRIPTION = """\
Run a bounded client workload against a cluster and write history.jsonl (docs/formats.md).

With --kill-leader-every, the leader is killed with SIGKILL every few seconds and restarted
after --down-for seconds: on a `raft cluster up` cluster (--cluster-dir), or over SSH on the
hosts of an inventory (--inventory, as written by `raftlab testbed up`). Each fault is
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
    p.add_argument(
        "--inventory",
        help="an inventory dir (e.g. inventories/local): the cluster the raft_node role deployed",
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


async def _main(args: argparse.Namespace, out: IO[str], nemesis_log: IO[str] | None) -> int:
    from deploy.nemesis import (
        InventoryControl,
        LeaderKiller,
        LocalControl,
        NodeControl,
        inventory_client_addresses,
    )
    from deploy.workload import HistoryWriter, WorkloadSpec, run_workload
    from raft.cli._cluster_addrs import resolve

    cluster = args.cluster
    if cluster is None and args.inventory:
        cluster = inventory_client_addresses(Path(args.inventory))
    addrs = resolve(cluster, args.cluster_dir)
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
    start_ts = time.time()
    killer = None
    tasks = []
    if args.kill_leader_every > 0 and nemesis_log is not None:
        control: NodeControl = (
            InventoryControl(Path(args.inventory))
            if args.inventory
            else LocalControl(args.cluster_dir)
        )
        killer = LeaderKiller(control, args.kill_leader_every, args.down_for, nemesis_log, t0_ns)
        tasks.append(asyncio.create_task(killer.loop(stop)))
    print(
        f"workload: {spec.clients} clients, {spec.model}, at most {spec.ops_max} ops "
        f"or {spec.duration_s:g} s",
        file=sys.stderr,
    )
    try:
        summary = await run_workload(
            addrs, spec, HistoryWriter(out), stop, t0_ns, _client_token(args.inventory)
        )
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
    _record_run(os.path.dirname(os.path.abspath(out.name)), start_ts, result)
    return 0


def _client_token(inventory: str | None) -> bytes | None:
    """The client token of a role-deployed cluster (client_auth on): the cluster secret the
    role keeps next to the inventory; else ``$RAFT_CLIENT_TOKEN_FILE`` (None: no auth)."""
    from raft.runtime.client import load_token

    secret = Path(inventory) / "secret" if inventory else None
    try:
        return load_token(str(secret) if secret is not None and secret.exists() else None)
    except (OSError, ValueError) as exc:
        raise LabError(f"client token: {exc}") from None


def _record_run(run_dir: str, start_ts: float, summary: dict[str, Any]) -> None:
    """Note in ``results.json`` when history time 0 was on the controller's wall clock (so
    the analysis can place the history on the nodes' timeline) and what the workload did;
    keys already in the file are kept."""
    path = os.path.join(run_dir, "results.json")
    results: dict[str, Any] = {}
    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
        if isinstance(loaded, dict):
            results = loaded
    except (OSError, ValueError):
        pass
    results["start_ts"] = start_ts
    results["workload"] = summary
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    out_path = args.out or os.path.join(args.cluster_dir, "history.jsonl")
    if (
        args.kill_leader_every > 0
        and not args.inventory
        and not os.path.exists(os.path.join(args.cluster_dir, "cluster.yml"))
    ):
        raise LabError(
            f"--kill-leader-every needs --inventory or a `raft cluster up` dir; "
            f"{args.cluster_dir!r} has no cluster.yml"
        )
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
