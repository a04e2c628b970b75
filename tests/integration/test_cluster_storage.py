"""A node whose disk fills up: it logs ``storage_error``, stops accepting writes and leaves
the work to the others; the cluster stays writable and nothing acknowledged is lost. The full
disk is a real 2 MiB tmpfs (needs root; CI runs as root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, events, pick_base_port, run, wait_for
from small_disk import fill, small_tmpfs

from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

VALUE_BYTES = 64 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path) as mnt:
        yield mnt


def test_full_disk_node_steps_aside_cluster_stays_writable(tmp_path: Path, small_fs: Path) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    cfg = lc.write_config(3, base_port=pick_base_port(3))
    try:
        lc.start_node("n1", ("--data-dir", str(small_fs)))
        lc.start_node("n2")
        lc.start_node("n3")
        lc.wait_leader(BOUND_S)
        acked: dict[str, str] = {}

        async def write_some(prefix: str, n: int) -> None:
            async with RaftClient(client_addrs(lc), op_timeout_s=BOUND_S) as c:
                for i in range(n):
                    value = f"{prefix}{i}".ljust(VALUE_BYTES, ".")
                    resp = await c.put(f"{prefix}{i}", value)
                    if resp.status is Status.OK:
                        acked[f"{prefix}{i}"] = value

        run(write_some("before", 3))
        assert len(acked) == 3
        fill(small_fs / "filler")
        # Enough data to overflow n1's disk whatever the WAL had preallocated.
        run(write_some("during", 40))
        wait_for(
            lambda: any(e["ev"] == "storage_error" for e in events(lc, "n1")),
            what="storage_error on n1",
        )
        st = lc.statuses()["n1"]
        assert st is not None and st["storage_failed"] and st["role"] != "leader"
        assert lc.wait_leader(BOUND_S, among={"n2", "n3"}) in ("n2", "n3")
        run(write_some("after", 5))
        assert all(f"after{i}" in acked for i in range(5))

        async def read_back() -> None:
            async with RaftClient([cfg.nodes["n2"].client, cfg.nodes["n3"].client]) as c:
                for k, v in acked.items():
                    got = await c.get(k)
                    assert got.status is Status.OK and got.value == v, k
            async with RaftClient([cfg.nodes["n1"].client], op_timeout_s=1.0) as c:
                assert (await c.put("to-n1", "x")).status is not Status.OK

        run(read_back())
    finally:
        lc.down()
