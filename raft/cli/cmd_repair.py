"""``raft repair DATA_DIR [--dry-run]``: cut a damaged node data directory back to its longest
valid prefix and print what was dropped (files, byte offsets, index range).

Exit status: 0 when the directory is clean or was repaired; with ``--dry-run``, 1 when it
needs a repair (like the checking commands: 0 valid, 1 invalid); 2 on a usage error.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "repair",
        help="cut a damaged data directory back to its longest valid prefix",
        description=(
            "Verify every record of a node's data directory (wal/, snap/, hardstate). Keep "
            "the longest valid prefix of the log, delete what follows the first damage and "
            "print what was dropped. The node must be stopped."
        ),
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="the node's data directory")
    p.add_argument(
        "--dry-run", action="store_true", help="only report what would be dropped; change nothing"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--wiped",
        action="store_true",
        help=(
            "the node's data was lost (disk replaced, directory emptied): create the "
            "directory marked recovering, so the node does not vote until a leader brought "
            "it back (a node cannot tell a wiped directory from a new one by itself)"
        ),
    )
    mode.add_argument(
        "--accept-loss",
        action="store_true",
        help=(
            "remove the recovering mark (the node votes again at once). Only when no leader "
            "can bring it back, e.g. a majority lost data: acknowledged writes may be lost"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raft.cli import CliError
    from raft.storage import StorageError, repair

    if getattr(args, "wiped", False) or getattr(args, "accept_loss", False):
        return _mark(args)
    try:
        report = repair(args.data_dir, dry_run=args.dry_run)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    except StorageError as exc:
        raise CliError(str(exc)) from exc
    for line in report.lines():
        print(line)
    if args.dry_run and report.changed():
        return 1
    return 0


def _mark(args: argparse.Namespace) -> int:
    from raft.cli import CliError
    from raft.storage import StorageError
    from raft.storage.repair import accept_loss, mark_wiped

    verb = "would " if args.dry_run else ""
    try:
        if args.wiped:
            if not args.dry_run:
                mark_wiped(args.data_dir)
            print(f"{verb}mark {args.data_dir} recovering: it votes again once caught up")
        else:
            had = accept_loss(args.data_dir, dry_run=args.dry_run)
            print(
                f"{verb}remove the recovering mark of {args.data_dir}"
                if had
                else f"{args.data_dir} is not marked recovering"
            )
    except (FileNotFoundError, FileExistsError) as exc:
        raise CliError(str(exc)) from exc
    except StorageError as exc:
        raise CliError(str(exc)) from exc
    return 0
