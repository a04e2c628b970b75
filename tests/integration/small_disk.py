"""A real, small file system for disk-full tests: a 2 MiB tmpfs mounted by the test (root
needed; CI runs as root, and elsewhere the test fails saying so rather than skipping)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(parent: Path, size: str = "2m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail(
            "disk-full tests mount a tmpfs and need root: run them as root (CI does)",
            pytrace=False,
        )
    mnt = parent / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    with open(path, "wb", buffering=0) as f:
        for _ in range(4096):
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return
    raise AssertionError("the file system never filled up")
