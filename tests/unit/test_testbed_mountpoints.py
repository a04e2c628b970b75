"""Issue 10 "Also": `raftlab testbed down` removed the mount-point directories (/opt,
/etc/raftlab, ...) it had created even while another prefix's testbed had its hosts' private
directories bind-mounted there, which detached that testbed's mounts. `down` now leaves a
directory that any mount namespace still mounts something on."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from deploy.testbed.bed import mounted_in_any_namespace


def test_a_directory_mounted_in_another_namespace_is_seen(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (a mount namespace); CI runs as root", pytrace=False)
    point = tmp_path / "mountpoint"
    point.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    assert not mounted_in_any_namespace(str(point))
    ready = tmp_path / "ready"
    # A process in its own mount namespace, as a testbed host is, bind-mounts onto `point`.
    child = subprocess.Popen(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {src} {point} && touch {ready} && exec sleep 30",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert child.poll() is None, "unshare/mount failed"
            assert time.monotonic() < deadline, "the child never mounted"
            time.sleep(0.05)
        assert not os.path.ismount(point)  # invisible from here...
        assert mounted_in_any_namespace(str(point))  # ...but down must still leave it
    finally:
        child.kill()
        child.wait()
    assert not mounted_in_any_namespace(str(point))
