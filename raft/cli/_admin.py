"""What the admin commands (``raft member``, ``raft transfer-leader``, ``raft snapshot``)
share: the cluster flags, the client token, one admin request and its exit code.

Exit codes (docs/membership.md): 0 done; 1 refused or failed (one line on stderr saying
why); 2 usage errors, or no definite answer (the change may or may not have happened).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raft.cli import CliError

TIMEOUT_S_DEFAULT = 30.0
TIMEOUT_S_MAX = 55.0
"""The node answers within its request deadline, which the client protocol caps at 60 s."""


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        help="comma-separated client addresses host:port of any members (default "
        "$RAFT_CLUSTER or the 'raft cluster up' directory); leader hints are followed",
    )
    p.add_argument("--dir", help="'raft cluster up' directory (default .raftlab-cluster)")
    p.add_argument(
        "--token-file",
        help="client token for a cluster with client_auth on (default $RAFT_CLIENT_TOKEN_FILE; "
        "as for 'raft client')",
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def add_timeout_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_S_DEFAULT,
        help=f"seconds to wait for {what} (default {TIMEOUT_S_DEFAULT:.0f}, at most "
        f"{TIMEOUT_S_MAX:.0f})",
    )


def call(args: argparse.Namespace, op: str, node: str | None = None, value: Any = None) -> Any:
    """Send one admin request; the answer's value on success. Raises :class:`AdminFailed`
    (exit 1) on a refusal, CliError (exit 2) when there was no definite answer."""
    from raft.cli._cluster_addrs import resolve
    from raft.cli.cmd_client import _token

    timeout_s = float(getattr(args, "timeout", TIMEOUT_S_DEFAULT))
    if not 0 < timeout_s <= TIMEOUT_S_MAX:
        raise CliError(f"--timeout must be in (0, {TIMEOUT_S_MAX:.0f}] seconds")
    return request(resolve(args.cluster, args.dir), _token(args), op, node, value, timeout_s)


def request(
    addrs: list[Any],
    token: bytes | None,
    op: str,
    node: str | None = None,
    value: Any = None,
    timeout_s: float = TIMEOUT_S_DEFAULT,
    op_timeout_s: float | None = None,
) -> Any:
    """:func:`call` with the addresses and token already resolved (a command that sends
    many requests resolves them once); ``op_timeout_s`` bounds the whole request, retries
    included (default ``timeout_s`` + 10)."""
    import asyncio

    from raft.runtime.client import RaftClient
    from raft.runtime.node import ADMIN_REPLY_MARGIN_S
    from raft.runtime.protocol import Status

    async def one() -> Any:
        # The request's deadline is timeout_s + ADMIN_REPLY_MARGIN_S (the client sends its
        # attempt timeout less 0.2 s), so the node waits timeout_s and then says why.
        async with RaftClient(
            addrs,
            op_timeout_s=timeout_s + 10 if op_timeout_s is None else op_timeout_s,
            attempt_timeout_s=timeout_s + ADMIN_REPLY_MARGIN_S + 0.2,
            token=token,
        ) as client:
            return await client.admin(op, node, value)

    resp = asyncio.run(one())
    if resp.status is Status.OK:
        return resp.value
    if resp.status in (Status.FAIL, Status.ERROR):
        raise AdminFailed(resp.error or resp.status.value)
    if resp.status is Status.BAD_REQUEST:
        raise CliError(f"refused as malformed: {resp.error}")
    if resp.status is Status.UNAUTHORIZED:
        raise CliError(f"no definite answer ({resp.status.value}): {resp.error}")
    raise NoAnswer(f"no definite answer ({resp.status.value}): {resp.error}")


class NoAnswer(CliError):
    """No node answered in time, or none knew the leader: worth asking again later (exit
    status 2, as every CliError)."""


class AdminFailed(Exception):
    """The cluster refused the operation (it had no effect)."""


def finish(prog: str, fn: Any) -> int:
    """Run ``fn``; a refusal is one line on stderr and exit status 1."""
    try:
        fn()
    except AdminFailed as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
