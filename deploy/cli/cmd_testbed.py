"""``raftlab testbed up|status|down``: the local hosts the lab deploys to."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from deploy.errors import LabError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "testbed",
        help="local hosts (network namespaces running sshd) for the lab",
        description=(
            "Local testbed hosts: each a network namespace with its own address, hostname, "
            "process table, private /opt, /etc/raftlab, /var/lib/raftlab, /var/log/raftlab "
            "and sshd. `up` writes an Ansible inventory (default inventories/local). Needs root."
        ),
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the testbed records what it made (default /var/lib/raftlab-testbed)",
    )
    sub = p.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="create the hosts (idempotent) and write the inventory")
    up.add_argument("--hosts", type=int, default=5, help="number of hosts (default 5)")
    up.add_argument(
        "--style",
        choices=["plain", "gee"],
        default="plain",
        help="plain: hosts on a bridge; gee: behind a gateway, like a GEE slicelet",
    )
    up.add_argument("--subnet", default=None, help="lab network (default 10.77.0.0/24)")
    up.add_argument(
        "--inner-subnet",
        default=None,
        help="gee only: the hosts' private network (default 10.78.0.0/24)",
    )
    up.add_argument("--prefix", default=None, help="name prefix of every object (default raftlab)")
    up.add_argument(
        "--inventory-dir",
        type=Path,
        default=Path("inventories/local"),
        help="where to write the Ansible inventory (default inventories/local)",
    )
    up.set_defaults(func=_up)
    st = sub.add_parser("status", help="hosts, addresses, sshd and node process health")
    st.set_defaults(func=_status)
    down = sub.add_parser("down", help="remove everything `up` made")
    down.set_defaults(func=_down)


def _testbed(args: argparse.Namespace) -> Any:
    from deploy.testbed import DEFAULT_STATE_DIR, Testbed

    return Testbed(args.state_dir or DEFAULT_STATE_DIR)


def _up(args: argparse.Namespace) -> int:
    from deploy.testbed import (
        DEFAULT_INNER_SUBNET,
        DEFAULT_PREFIX,
        DEFAULT_SUBNET,
        TestbedState,
    )

    bed = _testbed(args)
    wanted = TestbedState(
        prefix=args.prefix or DEFAULT_PREFIX,
        style=args.style,
        subnet=args.subnet or DEFAULT_SUBNET,
        inner_subnet=args.inner_subnet or DEFAULT_INNER_SUBNET,
        hosts=args.hosts,
        inventory_dir=str(args.inventory_dir.resolve()),
    )
    t0 = time.monotonic()
    plan = bed.up(wanted)
    took = time.monotonic() - t0
    inv = Path(wanted.inventory_dir)
    print(
        f"testbed up: {len(plan.hosts)} hosts ({plan.style.value}, prefix {plan.prefix}, "
        f"subnet {plan.subnet}) in {took:.1f} s"
    )
    if plan.gateway is not None:
        print(f"  gateway {plan.gateway.name}: {plan.gateway.outer_address}:22")
    for h in plan.hosts:
        print(f"  {h.name} ({h.node_id}): {h.address}, ssh {h.ssh_host}:{h.ssh_port}")
    print(f"inventory: {inv}/hosts.yml  (ssh -F {inv}/ssh_config h1)")
    return 0


def _status(args: argparse.Namespace) -> int:
    bed = _testbed(args)
    rows = bed.status()
    if not rows:
        print(f"no testbed is up (state dir {bed.state_dir})")
        return 1
    print(f"{'host':6} {'netns':16} {'address':15} {'ssh':21} {'sshd':5} node")
    healthy = True
    for r in rows:
        node = ",".join(map(str, r.node_pids)) if r.node_pids else "-"
        sshd = "up" if r.sshd_up else "DOWN"
        healthy = healthy and r.netns_exists and r.init_alive and r.sshd_up
        print(f"{r.name:6} {r.netns:16} {r.address:15} {r.ssh:21} {sshd:5} {node}")
    return 0 if healthy else 1


def _down(args: argparse.Namespace) -> int:
    bed = _testbed(args)
    t0 = time.monotonic()
    if not bed.down():
        print(f"no testbed is up (state dir {bed.state_dir}); nothing to remove")
        return 0
    print(f"testbed down in {time.monotonic() - t0:.1f} s")
    return 0


__all__ = ["LabError", "register"]
