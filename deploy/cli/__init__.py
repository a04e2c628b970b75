"""The ``raftlab`` command: the lab's entry point (sim, testbed, run, check, analyze, diff,
report, runs, heal). Subcommands live in ``deploy.cli.cmd_<name>`` modules, see
:func:`raft.cli.build_parser`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from deploy.errors import LabError
from raft.cli import CliError, build_parser, run_main


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "raftlab",
        "raftlab: the Raft test lab. Simulate, provision a testbed, run experiments with "
        "faults, and check, merge, diff and report on what the nodes and clients saw.",
        "deploy.cli",
    )
    return run_main(parser, argv, (LabError, CliError))


if __name__ == "__main__":
    sys.exit(main())
