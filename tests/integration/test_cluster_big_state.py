"""Issue 10 §3 on real processes: a kv state of two 5 MB values (over the old 8 MiB snapshot
restore limit) is snapshotted, shipped to a lagging follower as an InstallSnapshot, and every
node restarts from it. Before the fix, any restart or install crashed with "kv snapshot: ...
exceeds the limit of 8388608" and one handoff took the whole cluster down."""

from __future__ import annotations

from pathlib import Path

from raft_cluster_fixture import BOUND_S, client_addrs, events, run, running_cluster, wait_for

from raft.runtime.client import RaftClient
from raft.runtime.protocol import Status

FIVE_MB = 5_000_000


def test_big_state_snapshot_installs_and_restarts(tmp_path: Path) -> None:
    with running_cluster(str(tmp_path / "c"), snapshot_entries=4) as lc:
        leader = lc.wait_leader(BOUND_S)
        lagging = next(n for n in sorted(lc.config().nodes) if n != leader)
        lc.stop_node(lagging)

        async def fill() -> None:
            async with RaftClient(client_addrs(lc), op_timeout_s=60.0) as c:
                for i, fill in enumerate("ab"):
                    assert (await c.put(f"big{i}", fill * FIVE_MB)).status is Status.OK
                for i in range(8):  # past snapshot_entries: the leader snapshots and compacts
                    assert (await c.put(f"k{i}", i)).status is Status.OK

        run(fill())
        lc.start_node(lagging)
        wait_for(
            lambda: any(
                e["ev"] == "snapshot" and e.get("action") == "install" for e in events(lc, lagging)
            ),
            60.0,
            f"{lagging} installing the snapshot",
        )
        for nid in sorted(lc.config().nodes):  # every node restarts from its snapshot
            lc.stop_node(nid)
        for nid in sorted(lc.config().nodes):
            lc.start_node(nid)
        lc.wait_leader(60.0, started=True)

        async def read_back() -> None:
            addr = lc.config().nodes[lagging].client
            async with RaftClient([addr], op_timeout_s=60.0) as c:
                got = await c.get("big1")
                assert got.status is Status.OK and got.value == "b" * FIVE_MB
                assert (await c.get("k7")).value == 7

        run(read_back())
        assert all(lc.running().get(n) for n in lc.config().nodes)
