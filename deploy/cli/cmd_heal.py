"""``raftlab heal -i INVENTORY | --cluster DIR``: undo every fault after a crashed controller.

A run heals its own faults on exit, Ctrl-C or error; when the controller itself died (kill -9,
power loss) rules, qdiscs, paused or faked-clock nodes and fill files may stay behind. This
command removes whatever any nemesis fault can leave, on every node, and is safe to repeat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deploy.errors import LabError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "heal",
        help="undo every nemesis fault on a cluster (after a crashed run)",
        description=(
            "Remove every trace any nemesis fault can leave on each node: the RAFTLAB-NEMESIS "
            "iptables chains and their jumps, the nemesis's qdiscs and packet delayers, "
            "paused processes (SIGCONT), nodes running under libfaketime (restarted without "
            "it), the disk-fill file; then start any node that is not running. Idempotent."
        ),
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-i", "--inventory", type=Path, help="inventory directory (hosts over SSH)")
    where.add_argument("--cluster", metavar="DIR", help="a `raft cluster up` directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.nemesis import InventoryControl, LocalControl, heal_cluster

    if args.inventory is not None:
        if not (args.inventory / "hosts.yml").is_file():
            raise LabError(f"{args.inventory}: no hosts.yml (not an inventory directory)")
        control: Any = InventoryControl(args.inventory)
    else:
        if not Path(args.cluster, "cluster.yml").is_file():
            raise LabError(f"{args.cluster}: no cluster.yml (not a `raft cluster up` directory)")
        control = LocalControl(args.cluster)
    try:
        done = heal_cluster(control, log=lambda m: print(m, file=sys.stderr))
    finally:
        close = getattr(control, "close", None)
        if close is not None:
            close()
    print(f"healed: {len(done)} action(s)" if done else "nothing to heal")
    return 0
