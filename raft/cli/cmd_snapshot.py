"""``raft snapshot --cluster ADDR``: the node at ADDR takes a snapshot now."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from raft.cli._admin import add_cluster_flags

    p: argparse.ArgumentParser = subparsers.add_parser(
        "snapshot",
        help="make one node take a snapshot now",
        description="The node at the (first) --cluster address snapshots what it applied "
        "and compacts its log; prints the snapshot's index. Nodes also snapshot by "
        "themselves every 'snapshot_entries' entries.",
    )
    add_cluster_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from raft.cli import CliError
    from raft.cli._admin import call, finish
    from raft.cli._cluster_addrs import resolve
    from raft.runtime.protocol import OP_SNAPSHOT_NOW

    addrs = resolve(args.cluster, args.dir)
    if len(addrs) != 1:
        raise CliError("raft snapshot talks to one node: give exactly one --cluster address")

    def go() -> None:
        value = call(args, OP_SNAPSHOT_NOW)
        if args.json:
            print(json.dumps(value, sort_keys=True))
        else:
            print(f"{value['node']}: snapshot at index {value['index']} (term {value['term']})")

    return finish("raft snapshot", go)
