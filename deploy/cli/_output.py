"""Output helpers shared by the ``raftlab`` subcommands."""

from __future__ import annotations

import os
import sys


def out(text: str, end: str = "\n") -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
