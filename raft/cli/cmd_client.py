"""``raft client put|get|cas|delete|bench``: talk to a cluster through the client protocol.

Redirects to the leader and retries with the same (client_id, seq), so a write is applied at
most once. Exit status: 0 ok, 1 the operation failed (cas mismatch, machine error), 2 usage or
no definite answer (outcome unknown for writes).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "client",
        help="put/get/cas/delete keys, or benchmark a cluster",
        description="Client for a raftlab cluster. ADDRS: comma-separated client host:port; "
        "default $RAFT_CLUSTER or the 'raft cluster up' directory.",
    )
    p.add_argument("--cluster", help="comma-separated client addresses host:port,...")
    p.add_argument("--dir", help="'raft cluster up' directory (default .raftlab-cluster)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per operation")
    p.add_argument(
        "--type",
        choices=["str", "int", "json"],
        default="str",
        help="how to read VALUE arguments (default: str)",
    )
    p.add_argument("--json", action="store_true", help="print the full response as JSON")
    p.add_argument(
        "--token-file",
        help="client token for a cluster with client_auth on (default $RAFT_CLIENT_TOKEN_FILE; "
        "the role's deployment uses the cluster secret)",
    )
    sub = p.add_subparsers(dest="op", metavar="OP", required=True)
    s = sub.add_parser("put", help="set KEY to VALUE")
    s.add_argument("key")
    s.add_argument("value")
    s = sub.add_parser("get", help="read KEY (linearizable unless the node's read mode says)")
    s.add_argument("key")
    s = sub.add_parser("cas", help="set KEY to NEW if it holds EXPECTED")
    s.add_argument("key")
    s.add_argument("expected")
    s.add_argument("new")
    s = sub.add_parser("delete", help="remove KEY")
    s.add_argument("key")
    b = sub.add_parser("bench", help="measure throughput and latency")
    b.add_argument("--ops", type=int, default=10000, help="total operations")
    b.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    b.add_argument("--size", type=int, default=256, help="value size in bytes")
    b.add_argument("--reads", type=float, default=0.0, help="percentage of reads (0-100)")
    b.add_argument("--keys", type=int, default=1000, help="number of distinct keys")
    p.set_defaults(func=run)


def _token(args: argparse.Namespace) -> bytes | None:
    """--token-file, else $RAFT_CLIENT_TOKEN_FILE, else (when the addresses come from a
    'raft cluster up' directory) that cluster's token if it has client_auth on."""
    import os

    from raft.cli import CliError
    from raft.runtime.client import load_token

    try:
        token = load_token(args.token_file)
        if token is None and not args.cluster and not os.environ.get("RAFT_CLUSTER"):
            from raft.runtime.localcluster import LocalCluster

            token = LocalCluster(args.dir or ".raftlab-cluster").client_token()
    except (OSError, ValueError) as exc:
        raise CliError(f"client token: {exc}") from None
    return token


def _value(text: str, kind: str) -> Any:
    import json

    from raft.cli import CliError

    if kind == "str":
        return text
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise CliError(f"value {text!r} is not an integer (--type int)") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"value {text!r} is not JSON: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import asyncio

    from raft.cli import CliError
    from raft.cli._cluster_addrs import resolve

    addrs = resolve(args.cluster, args.dir)
    token = _token(args)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    if args.op == "bench":
        from raft.runtime.bench import BenchSpec, run_bench

        if args.ops <= 0 or args.concurrency <= 0 or args.size < 0 or args.keys <= 0:
            raise CliError("--ops, --concurrency and --keys must be > 0, --size >= 0")
        if not 0 <= args.reads <= 100:
            raise CliError("--reads must be a percentage between 0 and 100")
        spec = BenchSpec(args.ops, args.concurrency, args.size, args.reads / 100.0, args.keys)
        result = asyncio.run(run_bench(addrs, spec, token))
        print(result.render())
        return 0 if result.completed else 2
    return asyncio.run(_one(args, addrs, token))


async def _one(args: argparse.Namespace, addrs: list[Any], token: bytes | None) -> int:
    import json

    from raft.runtime.client import RaftClient
    from raft.runtime.protocol import Status

    async with RaftClient(addrs, op_timeout_s=args.timeout, token=token) as client:
        if args.op == "put":
            resp = await client.put(args.key, _value(args.value, args.type))
        elif args.op == "get":
            resp = await client.get(args.key)
        elif args.op == "cas":
            resp = await client.cas(
                args.key, _value(args.expected, args.type), _value(args.new, args.type)
            )
        else:
            resp = await client.delete(args.key)
    if args.json:
        out = {"status": resp.status.value, "value": resp.value, "error": resp.error}
        out["node"] = resp.node
        print(json.dumps(out, default=lambda b: b.hex() if isinstance(b, bytes) else str(b)))
    elif resp.status is Status.OK:
        if args.op == "get":
            print("(nil)" if resp.value is None else _show(resp.value))
        elif args.op == "delete":
            print("deleted" if resp.value else "not found")
        else:
            print("OK")
    elif resp.status is Status.FAIL:
        print(f"FAILED: {resp.error} (current value: {_show(resp.value)})")
    else:
        import sys

        print(f"{resp.status.value}: {resp.error}", file=sys.stderr)
    if resp.status is Status.OK:
        return 0
    if resp.status in (Status.FAIL, Status.ERROR):
        return 1
    return 2


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
