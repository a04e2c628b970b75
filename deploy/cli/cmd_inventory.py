"""``raftlab inventory import-gee DIR``: an Ansible inventory from a GEE slicelet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "inventory",
        help="make inventories for real hosts (import a GEE slicelet)",
        description="Make Ansible inventories the lab deploys to.",
    )
    sub = p.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import-gee",
        help="turn an unpacked GEE slicelet (ansible-hosts, ssh-config, ansible.cfg, key) "
        "into an inventory directory",
    )
    imp.add_argument("slicelet", type=Path, metavar="DIR", help="the unpacked slicelet")
    imp.add_argument(
        "--out",
        type=Path,
        default=Path("inventories/gee"),
        help="the inventory directory to write (default inventories/gee)",
    )
    imp.set_defaults(func=_import_gee)


def _import_gee(args: argparse.Namespace) -> int:
    from deploy.geeimport import read_slicelet, write_inventory

    sl = read_slicelet(args.slicelet)
    files = write_inventory(sl, args.out)
    gws = sorted({s.gateway for s in sl.slivers})
    print(
        f"imported {len(sl.slivers)} slivers (user {sl.user}, gateways {', '.join(gws)}) "
        f"into {args.out}"
    )
    for f in files:
        print(f"  {f}")
    missing = [s.name for s in sl.slivers if not s.address]
    if missing:
        print(f"set raft_node_address in {args.out}/hosts.yml for: {', '.join(missing)}")
    print(f"pin the host keys in {args.out}/known_hosts before deploying")
    return 0
