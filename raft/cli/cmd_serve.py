"""``raft serve --id n1 --config cluster.yml``: run one Raft node until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run one node of the cluster described by cluster.yml",
        description="Run one Raft node: peer, client and HTTP ports as in cluster.yml. "
        "Flags override the file. Stops cleanly on SIGTERM or SIGINT.",
    )
    p.add_argument("--id", required=True, help="this node's id (a key of 'nodes:')")
    p.add_argument("--config", required=True, help="path to cluster.yml")
    p.add_argument("--data-dir", help="override data_dir")
    p.add_argument("--log-dir", help="override log_dir (events.jsonl, node.log)")
    p.add_argument("--machine", help="override machine: register | kv | module:Class")
    p.add_argument("--read-mode", choices=["read_index", "lease", "local"])
    p.add_argument("--fsync", choices=["always", "batch", "never"])
    p.add_argument("--quiet", action="store_true", help="log only to node.log, not stderr")
    p.add_argument(
        "--join",
        action="store_true",
        help="with an empty data dir, do not bootstrap from cluster.yml's nodes: wait, as a "
        "non-member, until a leader adds this node ('raft member add'), and learn the "
        "configuration and every member's addresses from it. Only this node's own entry "
        "of cluster.yml is used. Ignored once the data dir holds a log or snapshot (the "
        "durable configuration always wins over cluster.yml)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    import sys

    from raft.cli import CliError
    from raft.machines import MachineLoadError
    from raft.runtime.auth import load_secret
    from raft.runtime.config import ConfigFileError, load_config

    try:
        cfg = load_config(args.config).with_overrides(
            data_dir=os.path.abspath(args.data_dir) if args.data_dir else None,
            log_dir=os.path.abspath(args.log_dir) if args.log_dir else None,
            machine=args.machine,
            read_mode=args.read_mode,
            fsync=args.fsync,
        )
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    if args.id not in cfg.nodes:
        raise CliError(f"--id {args.id}: not a node in {args.config} ({', '.join(cfg.nodes)})")
    try:
        secret = load_secret(cfg.secret_file)
    except FileNotFoundError:
        raise CliError(f"secret_file {cfg.secret_file}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"secret_file {cfg.secret_file}: {exc}") from None

    log_dir = cfg.node_log_dir(args.id)
    os.umask(0o077)  # data, logs and events are the operator's alone (0700/0600)
    try:
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CliError(f"log_dir {log_dir}: {exc.strerror}") from None
    handlers: list[logging.Handler] = [logging.FileHandler(os.path.join(log_dir, "node.log"))]
    if not args.quiet:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.id} %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    from raft.runtime.backend import StorageUnavailableError, storage_failures
    from raft.runtime.node import RaftNode
    from raft.runtime.server import client_token, serve

    async def main() -> int:
        try:
            node = RaftNode(cfg, args.id, secret, join=args.join)
        except (MachineLoadError, StorageUnavailableError) as exc:
            raise CliError(f"node {args.id}: {exc}") from None
        except storage_failures() as exc:
            raise CliError(
                f"node {args.id}: storage in {cfg.node_data_dir(args.id)} refuses to open: "
                f"{exc} (see 'raft repair')"
            ) from None
        try:
            client_token(node)
        except (OSError, ValueError) as exc:
            await node.stop("bad client token")
            raise CliError(f"node {args.id}: client token: {exc}") from None
        try:
            reason = await serve(node)
        except OSError as exc:
            raise CliError(f"node {args.id}: cannot listen: {exc}") from None
        return 1 if reason.startswith("error") else 0

    return asyncio.run(main())
