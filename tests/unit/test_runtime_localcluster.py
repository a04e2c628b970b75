"""`raft cluster up` refuses ports another process holds, instead of starting nodes that
cannot listen while it reports the other process's leader as its own; its files are private."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from raft.runtime.localcluster import ClusterStateError, LocalCluster


def test_up_refuses_addresses_in_use(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        lc = LocalCluster(str(tmp_path / "c"))
        with pytest.raises(ClusterStateError, match=rf"n1.peer 127\.0\.0\.1:{port}"):
            lc.up(nodes=1, base_port=port)
        assert lc.running() == {}


def test_written_files_are_private(tmp_path: Path) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    lc.write_config(nodes=2)
    for path in (Path(lc.dir), Path(lc.config_path), Path(lc.dir) / "secret"):
        assert path.stat().st_mode & 0o077 == 0, path
