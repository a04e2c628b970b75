"""The ``raft`` command: run and talk to Raft nodes.

Each subcommand lives in its own module ``raft.cli.cmd_<name>`` exposing
``register(subparsers)``; the parser it adds sets ``func(args) -> int`` (the exit code).
Modules import their heavy dependencies inside ``func`` so ``raft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import raft


class CliError(Exception):
    """A mistake the user can fix (bad flag, missing file, unreachable node). Printed as one
    line without a traceback; the command exits with status 2."""


def build_parser(prog: str, description: str, package: str) -> argparse.ArgumentParser:
    """A parser with one subcommand per ``cmd_*`` module found in ``package``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {raft.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_"))
    for name in names:
        importlib.import_module(f"{package}.{name}").register(sub)
    return parser


def run_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    errors: tuple[type[BaseException], ...],
) -> int:
    """Parse, dispatch, and turn user-facing errors into one line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except errors as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "raft",
        "Run Raft nodes and talk to them: serve, client, status, cluster up/down, repair.",
        "raft.cli",
    )
    return run_main(parser, argv, (CliError,))


if __name__ == "__main__":
    sys.exit(main())
