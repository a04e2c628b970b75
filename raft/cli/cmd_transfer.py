"""``raft transfer-leader [--to ID]``: hand leadership to a voter (thesis §3.10)."""

from __future__ import annotations

import argparse
from typing import Any

TRANSFER_ATTEMPTS_MAX = 3


def register(subparsers: Any) -> None:
    from raft.cli._admin import add_cluster_flags, add_timeout_flag

    p: argparse.ArgumentParser = subparsers.add_parser(
        "transfer-leader",
        help="hand leadership to a voter (default: the most up-to-date one)",
        description="Ask the leader to bring the target up to date and let it campaign at "
        "once (thesis §3.10); waits until the target leads. Writes pause for the short "
        "handover only. Exit 0 once the target leads; 1 if refused or it did not take over.",
    )
    p.add_argument("--to", metavar="ID", help="the voter to lead (default: most up to date)")
    add_cluster_flags(p)
    add_timeout_flag(p, "the target to lead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from raft.cli._admin import AdminFailed, call, finish
    from raft.runtime.protocol import OP_TRANSFER_LEADER

    if args.to is not None:
        from raft.cli.cmd_member import _check_id

        _check_id(args.to)

    def go() -> None:
        for attempt in range(TRANSFER_ATTEMPTS_MAX):
            try:
                value = call(args, OP_TRANSFER_LEADER, args.to)
                break
            except AdminFailed as exc:
                # Another voter won the election the target started (a race with writes
                # accepted after the transfer timed out): ask the new leader again.
                if "leadership moved to" not in str(exc) or attempt + 1 == TRANSFER_ATTEMPTS_MAX:
                    raise
        if args.json:
            print(json.dumps(value, sort_keys=True))
        else:
            print(f"leader is now {value['leader']} (term {value['term']})")

    return finish("raft transfer-leader", go)
