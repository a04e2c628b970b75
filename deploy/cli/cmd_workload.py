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
from deploy.experiment.record import honest_warnings, record_run

DESCRIPTION = """\
Run a bounded client workload against a cluster and write history.jsonl (docs/formats.md).

With --kill-leader-every, the leader is killed with SIGKILL every few seconds and restarted
after --down-for seconds: on a `raft cluster up` cluster (--cluster-dir), or over SSH on the
hosts of an inventory (--inventory, as written by `raftlab testbed up`). Each fault is
recorded in nemesis.jsonl beside the history. Every killed node is restarted before the
command ends, also when it is interrupted.

The run lasts --duration seconds (--ops, when given, ends it earlier). Each run uses its
own client ids and keys (--run-id, random by default), so a second run on the same cluster
is judged like the first. Exit 0 when the workload ran; 2 (with a warning) when no operation
succeeded or leader kills were asked for and none happened: such a run proves nothing.

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
    p.add_argument("--model", choices=("register", "cas-register", "kv"), default="kv")
    p.add_argument("--clients", type=int, default=5, help="concurrent clients (default 5)")
    p.add_argument("--ops", type=int, default=None, help="operations at most (default: no limit)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="total invocations per second (default 0: closed loop)",
    )
    p.add_argument("--run-id", help="this run's id in client ids and keys (default: random)")
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
    )
    from raft.cli._cluster_addrs import resolve

    # An inventory's nodes are reached directly or through SSH tunnels (raft_lab_access: a
    # GEE slice's private addresses), and leader hints are mapped to what the clients dial.
    inv_control = InventoryControl(Path(args.inventory)) if args.inventory else None
    amap: dict[Any, Any] = {}
    if args.cluster is None and inv_control is not None:
        addrs, amap = await asyncio.to_thread(inv_control.client_endpoints)
    else:
        addrs = resolve(args.cluster, args.cluster_dir)
    try:
        return await _drive(args, out, nemesis_log, addrs, amap, inv_control)
    finally:
        if inv_control is not None:
            await asyncio.to_thread(inv_control.close)


async def _drive(
    args: argparse.Namespace,
    out: IO[str],
    nemesis_log: IO[str] | None,
    addrs: Any,
    amap: dict[Any, Any],
    inv_control: Any,
) -> int:
    from deploy.nemesis import LeaderKiller, LocalControl, NodeControl
    from deploy.workload import HistoryWriter, WorkloadSpec, client_token, run_workload

    try:
        spec = WorkloadSpec(
            model=args.model,
            clients=args.clients,
            ops_max=args.ops,
            duration_s=args.duration,
            keys=args.keys,
            seed=args.seed,
            rate=args.rate,
            **({"run_id": args.run_id} if args.run_id else {}),
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
            inv_control if inv_control is not None else LocalControl(args.cluster_dir)
        )
        killer = LeaderKiller(control, args.kill_leader_every, args.down_for, nemesis_log, t0_ns)
        tasks.append(asyncio.create_task(killer.loop(stop)))
    limit = "" if spec.ops_max is None else f" (at most {spec.ops_max} ops)"
    print(
        f"workload {spec.run_id}: {spec.clients} clients, {spec.model}, "
        f"{spec.duration_s:g} s{limit}",
        file=sys.stderr,
    )
    try:
        summary = await run_workload(
            addrs,
            spec,
            HistoryWriter(out),
            stop,
            t0_ns,
            token=client_token(args.inventory),
            address_map=amap,
        )
    finally:
        stop.set()
        for t in tasks:
            await t
        if killer is not None:
            await asyncio.to_thread(killer.heal)
    result = summary.to_json()
    asked = 0
    if killer is not None:
        result["leader_kills"] = killer.kills
        asked = int(spec.duration_s // args.kill_leader_every)
    print(json.dumps(result))
    fired = killer.kills if killer is not None else 0
    warnings = honest_warnings(summary.ok, asked, fired)
    record_run(
        os.path.dirname(os.path.abspath(out.name)),
        {
            "start_ts": start_ts,
            "run_window": {"start_ts": start_ts, "end_ts": time.time()},
            "run_id": spec.run_id,
            "faults_requested": asked,
            "faults_fired": fired,
            "workload": result,
            "parameters": {
                "workload": {
                    "model": spec.model,
                    "clients": spec.clients,
                    "duration_s": spec.duration_s,
                    "ops_max": spec.ops_max,
                    "keys": spec.keys,
                    "rate": spec.rate,
                    "seed": spec.seed,
                    "client_ids": f"wl-{spec.run_id}-<i>",
                    "key_prefix": f"{spec.run_id}.",
                },
                "kill_leader_every_s": args.kill_leader_every or None,
                "down_for_s": args.down_for,
            },
            "warnings": warnings,
        },
    )
    for w in warnings:
        print(f"workload: WARNING: {w}; the run proves nothing", file=sys.stderr)
    return 2 if warnings else 0


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
