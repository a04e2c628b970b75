"""``raft config check FILE``: validate a cluster.yml before a node ever reads it.

Exit status 0 when the file is valid (one summary line on stdout), 1 when it is not (each
problem on stderr naming the file and the field), as Ansible's ``validate:`` expects. With
``--id ID`` it also checks that ID is one of the file's nodes. The machine is loaded too
(built-in or ``package.module:Class`` plugin, imported as the node would), so a plugin that
does not import or is not a state machine is caught here, not at the node's start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "config",
        help="validate a cluster.yml (exit 0 valid, 1 invalid)",
        description="Check cluster.yml files: 'raft config check FILE [--id ID]'.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate FILE; exit 0 when valid, 1 with the errors")
    c.add_argument("file", help="path to cluster.yml")
    c.add_argument("--id", help="also require this node id to be in the file")
    c.add_argument(
        "--no-machine", action="store_true", help="do not import the machine, check its name only"
    )
    p.set_defaults(func=run)


def check(path: str, node_id: str | None = None, load: bool = True) -> list[str]:
    """The problems of the cluster.yml at ``path`` (empty when it is valid)."""
    from raft.machines import MachineLoadError, load_machine
    from raft.runtime.config import ConfigFileError, load_config

    try:
        cfg = load_config(path)
    except ConfigFileError as exc:
        return [str(exc)]
    problems = []
    if node_id is not None and node_id not in cfg.nodes:
        problems.append(f"{path}: --id {node_id}: not a node of the file ({', '.join(cfg.nodes)})")
    if load:
        try:
            load_machine(cfg.machine)
        except MachineLoadError as exc:
            problems.append(f"{path}: machine: {exc}")
    return problems


def run(args: argparse.Namespace) -> int:
    problems = check(args.file, args.id, load=not args.no_machine)
    if problems:
        for p in problems:
            print(f"raft config check: {p}", file=sys.stderr)
        return 1
    from raft.runtime.config import load_config

    cfg = load_config(args.file)
    print(f"{args.file}: valid ({len(cfg.nodes)} nodes, cluster {cfg.cluster}, {cfg.machine})")
    return 0
