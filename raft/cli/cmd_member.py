"""``raft member list|add-learner|promote|add|remove|wait``: change a running cluster's
membership through the client protocol (docs/membership.md), and wait until a change is in
effect.

Every change runs on the leader, one at a time; a change to the voters goes through a joint
configuration (thesis §4.3) that the leader leaves by itself. New members are added as
learners, catch up, and are then promoted (``add`` does both).
"""

from __future__ import annotations

import argparse
from typing import Any

_EPILOG = """\
examples:
  raft member list --cluster 127.0.0.1:7001
  raft serve --id n4 --config n4.yml --join &      # first start the new node, then:
  raft member add n4 --peer 127.0.0.4:7000 --client 127.0.0.4:7001 --http 127.0.0.4:7002 \\
      --cluster 127.0.0.1:7001
  raft member remove n2 --cluster 127.0.0.1:7001
  raft member wait --voter n4 --absent n2 --timeout 120 --cluster 127.0.0.1:7001

exit status: 0 done; 1 refused (one line on stderr says why, e.g. "another configuration
change is in progress", "n7 is not a member") or, for wait, not reached in time; 2 usage
error or no definite answer.
"""

WAIT_TIMEOUT_S_MAX = 3600.0
WAIT_POLL_S = 0.5
WAIT_REQUEST_S = 5.0
"""One ``member_list`` request of ``raft member wait`` (the leader answers at once; without
a leader the request is retried until this, then asked again)."""


def register(subparsers: Any) -> None:
    from raft.cli._admin import add_cluster_flags, add_timeout_flag

    p: argparse.ArgumentParser = subparsers.add_parser(
        "member",
        help="list, add, promote or remove cluster members (joint consensus)",
        description="Show or change the membership of a running cluster. Changes are made "
        "by the leader (any member's address will do: leader hints are followed), one at a "
        "time; changes to the voters go through a joint configuration. A new node is "
        "started with 'raft serve --join' and learns the configuration from the cluster.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="member_op", metavar="OP", required=True)
    s = sub.add_parser(
        "list",
        help="the configuration in effect on the leader",
        description="Each member's role, addresses and match index as the leader sees "
        "them, and whether a joint configuration is in progress.",
    )
    add_cluster_flags(s)
    s.set_defaults(func=_list)
    for name, help_text, func in (
        ("add-learner", "add a non-voting member that receives the log", _add_learner),
        ("add", "add a learner, wait until it caught up, then promote it", _add),
    ):
        s = sub.add_parser(name, help=help_text, description=help_text + ".")
        s.add_argument("id", help="the new node's id (its key in its own cluster.yml)")
        s.add_argument("--peer", required=True, help="its peer address host:port")
        s.add_argument("--client", required=True, help="its client address host:port")
        s.add_argument("--http", help="its HTTP address host:port (optional)")
        add_cluster_flags(s)
        add_timeout_flag(s, "the change (and, for add, the catch-up)")
        s.set_defaults(func=func)
    s = sub.add_parser(
        "promote",
        help="make a learner a voter once it caught up",
        description="Wait until the learner's log is within a few entries of the "
        "leader's, then make it a voter through a joint configuration. Refused if it does "
        "not catch up within --timeout.",
    )
    s.add_argument("id", help="the learner to promote")
    add_cluster_flags(s)
    add_timeout_flag(s, "the learner to catch up and the change to apply")
    s.set_defaults(func=_promote)
    s = sub.add_parser(
        "remove",
        help="remove a member (the leader may remove itself)",
        description="Remove a voter (through a joint configuration) or a learner. The "
        "leader may remove itself: it steps down once the change committed and another "
        "voter takes over. A removed node is refused by the others; stop it afterwards.",
    )
    s.add_argument("id", help="the member to remove")
    add_cluster_flags(s)
    add_timeout_flag(s, "the change to apply")
    s.set_defaults(func=_remove)
    s = sub.add_parser(
        "wait",
        help="wait until nodes are voters (or gone) and no joint configuration is in progress",
        description="Ask the leader for the configuration in effect every half second until "
        "every --voter ID is a voter, no --absent ID is a member, and no joint configuration "
        "is in progress (a change is complete only then). Prints the configuration; exit 1 "
        "if it is not reached within --timeout (stderr says what was missing when last "
        "seen). Changes nothing: use it after 'add', 'promote' or 'remove', or to wait for "
        "a change someone else makes.",
    )
    s.add_argument("--voter", action="append", default=[], metavar="ID", help="must be a voter")
    s.add_argument(
        "--absent", action="append", default=[], metavar="ID", help="must not be a member"
    )
    add_cluster_flags(s)
    s.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help=f"seconds to wait (default 30, at most {WAIT_TIMEOUT_S_MAX:.0f})",
    )
    s.set_defaults(func=_wait)


def _addrs(args: argparse.Namespace) -> dict[str, str | None]:
    from raft.cli import CliError
    from raft.runtime.config import ConfigFileError, parse_address

    try:
        for flag in ("peer", "client", "http"):
            if getattr(args, flag) is not None:
                parse_address(getattr(args, flag), f"--{flag}")
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    return {"peer": args.peer, "client": args.client, "http": args.http}


def _check_id(nid: str) -> None:
    from raft.cli import CliError
    from raft.runtime.config import ConfigFileError, check_node_id

    try:
        check_node_id(nid, "ID")
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None


def _show(args: argparse.Namespace, view: dict[str, Any], done: str = "") -> None:
    import json

    if args.json:
        print(json.dumps(view, sort_keys=True))
        return
    if done:
        print(done)
    print(render(view))


def render(view: dict[str, Any]) -> str:
    """The member table ``raft member list`` prints."""
    joint = "no"
    if view.get("joint"):
        joint = (
            f"yes (incoming {','.join(view.get('voters', []))}; "
            f"outgoing {','.join(view.get('voters_outgoing', []))})"
        )
    leader = view.get("leader") or "unknown"
    if view.get("stepped_down"):
        leader = f"{view['stepped_down']} stepped down (the others elect a new one)"
    lines = [f"leader {leader}  conf index {view.get('index')}  joint {joint}"]
    table = [["ID", "ROLE", "PEER", "CLIENT", "HTTP", "MATCH", "LAG"]]
    for m in view.get("members", []):
        table.append(
            [
                str(m.get("id")),
                str(m.get("role")),
                str(m.get("peer") or "-"),
                str(m.get("client") or "-"),
                str(m.get("http") or "-"),
                "-" if m.get("match") is None else str(m["match"]),
                "-" if m.get("lag") is None else str(m["lag"]),
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from raft.cli._admin import call, finish
    from raft.runtime.protocol import OP_MEMBER_LIST

    return finish("raft member list", lambda: _show(args, call(args, OP_MEMBER_LIST)))


def _add_learner(args: argparse.Namespace) -> int:
    from raft.cli._admin import call, finish
    from raft.runtime.protocol import OP_MEMBER_ADD_LEARNER

    _check_id(args.id)
    value = _addrs(args)

    def go() -> None:
        view = call(args, OP_MEMBER_ADD_LEARNER, args.id, value)
        _show(args, view, f"added {args.id} as a learner")

    return finish("raft member add-learner", go)


def _promote(args: argparse.Namespace) -> int:
    from raft.cli._admin import call, finish
    from raft.runtime.protocol import OP_MEMBER_PROMOTE

    _check_id(args.id)

    def go() -> None:
        _show(args, call(args, OP_MEMBER_PROMOTE, args.id), f"promoted {args.id} to voter")

    return finish("raft member promote", go)


def _add(args: argparse.Namespace) -> int:
    from raft.cli._admin import AdminFailed, call, finish
    from raft.runtime.protocol import OP_MEMBER_ADD_LEARNER, OP_MEMBER_PROMOTE

    _check_id(args.id)
    value = _addrs(args)

    def go() -> None:
        call(args, OP_MEMBER_ADD_LEARNER, args.id, value)
        try:
            view = call(args, OP_MEMBER_PROMOTE, args.id)
        except AdminFailed as exc:
            raise AdminFailed(
                f"{args.id} was added as a learner but not promoted: {exc} "
                f"(retry with 'raft member promote {args.id}')"
            ) from None
        _show(args, view, f"added {args.id} as a learner, then promoted it to voter")

    return finish("raft member add", go)


def _remove(args: argparse.Namespace) -> int:
    from raft.cli._admin import call, finish
    from raft.runtime.protocol import OP_MEMBER_REMOVE

    _check_id(args.id)

    def go() -> None:
        _show(args, call(args, OP_MEMBER_REMOVE, args.id), f"removed {args.id}")

    return finish("raft member remove", go)


def _wait(args: argparse.Namespace) -> int:
    import time

    from raft.cli import CliError
    from raft.cli._admin import AdminFailed, NoAnswer, finish, request
    from raft.cli._cluster_addrs import resolve
    from raft.cli.cmd_client import _token
    from raft.runtime.members import MemberGoal, MemberWaitTimeout, wait_members
    from raft.runtime.protocol import OP_MEMBER_LIST

    for nid in args.voter + args.absent:
        _check_id(nid)
    both = sorted(set(args.voter) & set(args.absent))
    if both:
        raise CliError(f"{', '.join(both)} cannot be both --voter and --absent")
    if not 0 < args.timeout <= WAIT_TIMEOUT_S_MAX:
        raise CliError(f"--timeout must be in (0, {WAIT_TIMEOUT_S_MAX:.0f}] seconds")
    goal = MemberGoal(frozenset(args.voter), frozenset(args.absent))
    addrs, token = resolve(args.cluster, args.dir), _token(args)
    deadline = time.monotonic() + args.timeout

    def fetch() -> Any:
        left = max(0.5, min(WAIT_REQUEST_S, deadline - time.monotonic()))
        return request(addrs, token, OP_MEMBER_LIST, timeout_s=left, op_timeout_s=left)

    def go() -> None:
        try:
            view = wait_members(
                fetch, goal.missing, args.timeout, poll_s=WAIT_POLL_S, retry_on=(NoAnswer,)
            )
        except MemberWaitTimeout as exc:
            raise AdminFailed(f"{goal}: {exc}") from None
        _show(args, dict(view), f"reached: {goal}")

    return finish("raft member wait", go)
