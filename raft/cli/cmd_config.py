"""``raft config check FILE``: validate a cluster.yml without starting a node.

Used by the Ansible role as the ``validate:`` command of the cluster.yml template, so a bad
setting is refused on every host before it replaces the file a running node was started
with. Exit status 0 when valid; otherwise the error names the file and the field (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "config",
        help="check a cluster.yml",
        description="Work with cluster.yml files (docs/interfaces.md).",
    )
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE; exit 0 when a node could start with it")
    check.add_argument("file", help="the cluster.yml to check")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from raft.cli import CliError
    from raft.runtime.config import ConfigFileError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.file}: ok ({len(cfg.nodes)} nodes, cluster {cfg.cluster})")
    return 0
