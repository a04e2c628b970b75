"""``raft cluster up|down|kill|start|status``: a local cluster of node processes."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="start and stop a local cluster (processes on 127.0.0.x)",
        description="Run a local cluster: node i listens on 127.0.0.i. Everything (cluster.yml, "
        "secret, pids, data, logs) lives under --dir.",
    )
    p.add_argument("--dir", default=".raftlab-cluster", help="cluster directory")
    # --dir is also accepted after the action (`raft cluster up --dir X`).
    dir_opt = argparse.ArgumentParser(add_help=False)
    dir_opt.add_argument("--dir", default=argparse.SUPPRESS, help="cluster directory")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser(
        "up", parents=[dir_opt], help="write cluster.yml and start every node; wait for a leader"
    )
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--base-port", type=int, default=7000, help="peer port; client +1, http +2")
    up.add_argument("--machine", default="kv", help="register | kv | module:Class")
    up.add_argument("--fsync", default="always", choices=["always", "batch", "never"])
    up.add_argument("--read-mode", default="read_index", choices=["read_index", "lease", "local"])
    up.add_argument("--tick-ms", type=int, default=50)
    up.add_argument(
        "--snapshot-entries", type=int, default=10000, help="snapshot every N applied entries"
    )
    up.add_argument(
        "--client-auth",
        action="store_true",
        help="clients must authenticate with the cluster secret (DIR/secret)",
    )
    up.add_argument("--wait", type=float, default=20.0, help="seconds to wait for a leader")
    sub.add_parser("down", parents=[dir_opt], help="stop the nodes this directory started")
    kill = sub.add_parser("kill", parents=[dir_opt], help="stop one node (SIGKILL unless --term)")
    kill.add_argument("node")
    kill.add_argument("--term", action="store_true", help="SIGTERM (clean stop) instead")
    start = sub.add_parser("start", parents=[dir_opt], help="start one node again")
    start.add_argument("node")
    sub.add_parser(
        "addrs",
        parents=[dir_opt],
        help="print the client addresses (for --cluster / RAFT_CLUSTER)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal

    from raft.cli import CliError
    from raft.runtime.config import ConfigFileError
    from raft.runtime.localcluster import ClusterStateError, LocalCluster

    lc = LocalCluster(args.dir)
    try:
        if args.action == "up":
            if lc.running():
                raise CliError(f"{args.dir}: a cluster is already running here (raft cluster down)")
            cfg = lc.up(
                nodes=args.nodes,
                base_port=args.base_port,
                machine=args.machine,
                fsync=args.fsync,
                read_mode=args.read_mode,
                tick_ms=args.tick_ms,
                snapshot_entries=args.snapshot_entries,
                client_auth=args.client_auth,
            )
            try:
                leader = lc.wait_leader(args.wait, started=True)
            except ClusterStateError:
                lc.down()
                raise
            print(f"cluster of {len(cfg.nodes)} up in {args.dir}; leader {leader}")
            print(f"export RAFT_CLUSTER={lc.client_addresses()}")
            if cfg.client_auth:
                print(f"export RAFT_CLIENT_TOKEN_FILE={cfg.client_token_file or cfg.secret_file}")
            return 0
        if args.action == "down":
            stopped = lc.down()
            print(f"stopped {', '.join(stopped) if stopped else 'nothing'}")
            return 0
        if args.action == "kill":
            sig = signal.SIGTERM if args.term else signal.SIGKILL
            if args.node not in lc.config().nodes:
                raise CliError(f"unknown node {args.node!r}")
            if not lc.stop_node(args.node, sig):
                raise CliError(f"{args.node} is not running")
            print(f"{args.node} stopped")
            return 0
        if args.action == "start":
            pid = lc.start_node(args.node)
            print(f"{args.node} started (pid {pid})")
            return 0
        if args.action == "addrs":
            print(lc.client_addresses())
            return 0
    except (ClusterStateError, ConfigFileError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{args.dir}: {exc}") from None
    raise CliError(f"unknown action {args.action}")
