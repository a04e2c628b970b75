"""raft.storage.checksum: the crc32c package's function without its slow ``__init__``."""

from __future__ import annotations

import os
import subprocess
import sys

import crc32c as package
import pytest

from raft.storage import checksum


@pytest.mark.parametrize("size", [0, 1, 7, 64, 4096, 1 << 20])
def test_same_checksums_as_the_package(size: int) -> None:
    data = os.urandom(size)
    assert checksum.crc32c(data) == package.crc32c(data)
    assert checksum.crc32c(memoryview(data), 0xDEADBEEF) == package.crc32c(data, 0xDEADBEEF)
    # Continuing from the CRC of a prefix gives the CRC of the whole.
    half = size // 2
    assert checksum.crc32c(data[half:], checksum.crc32c(data[:half])) == package.crc32c(data)


def test_a_node_start_does_not_run_the_packages_init() -> None:
    """The package's __init__ scans site-packages for its version (20-60 ms per start)."""
    code = "import sys, raft.storage, raft.runtime.snapstream; print('crc32c' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_falls_back_to_the_package_when_its_layout_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checksum, "_extension_crc32c", lambda: None)
    assert checksum._load() is package.crc32c

    def broken() -> None:
        raise ImportError("no such extension")

    monkeypatch.setattr(checksum, "_extension_crc32c", broken)
    assert checksum._load() is package.crc32c
