"""Issue 10 §1 on real processes: a follower that loses acknowledged entries (repaired, or
its damaged last record cut at open) must not help a stale node win and overwrite them.

Steps (3 nodes): stop the lagging node n3; put x1..x60, all acknowledged by the leader L and
the follower F; SIGKILL F and damage its WAL (a flipped byte 40 records from the end, then
``raft repair``; or a flipped byte in the last record, cut automatically at open); SIGKILL
L; start F and n3 and try one more put; start L. Before protocol-aware recovery, F voted
for n3, n3 overwrote the lost range, and 40 acknowledged writes (or x60) read back nil.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from raft_cluster_fixture import BOUND_S, events, pick_base_port, run, wait_for

from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status
from raft.storage.recovering import RECOVERING_FILE
from raft.storage.wal import list_segments, scan_wal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N_KEYS = 60
BACK = 40


def _flip_record(data_dir: str, back: int) -> int:
    """Flip a payload byte of the record ``back`` records before the last; returns its
    index."""
    wal = os.path.join(data_dir, "wal")
    scan = scan_wal(wal)
    index = scan.last_index - back
    seg = [p for first, p in list_segments(wal) if first <= index][-1]
    off = scan.offsets[index - scan.first_index] + 14
    with open(seg, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x40]))
    return index


async def _put_all(addrs: list, n: int) -> dict[str, str]:  # type: ignore[type-arg]
    acked: dict[str, str] = {}
    async with RaftClient(addrs, op_timeout_s=BOUND_S) as c:
        for i in range(1, n + 1):
            resp = await c.put(f"x{i}", f"v{i}")
            assert resp.status is Status.OK, resp
            acked[f"x{i}"] = f"v{i}"
    return acked


async def _try_put(addrs: list) -> bool:  # type: ignore[type-arg]
    try:
        async with RaftClient(addrs, op_timeout_s=4.0, attempt_timeout_s=1.0) as c:
            return (await c.put("y", "after")).status is Status.OK
    except (TimeoutError, OSError):
        return False


async def _read_all(addrs: list, acked: dict[str, str]) -> dict[str, object]:  # type: ignore[type-arg]
    got: dict[str, object] = {}
    async with RaftClient(addrs, op_timeout_s=BOUND_S) as c:
        for k in acked:
            r = await c.get(k)
            got[k] = r.value if r.status is Status.OK else r.status
    return got


@pytest.mark.parametrize("damage", ["repair", "torn-tail"])
def test_lost_acknowledged_entries_are_not_overwritten(tmp_path: Path, damage: str) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    cfg = lc.up(nodes=3, base_port=pick_base_port(3))
    try:
        leader = lc.wait_leader(BOUND_S)
        lagging = "n3" if leader != "n3" else "n2"
        follower = next(n for n in cfg.nodes if n not in (leader, lagging))
        lc.stop_node(lagging, signal.SIGKILL)
        addrs = [cfg.nodes[leader].client, cfg.nodes[follower].client]
        acked = run(_put_all(addrs, N_KEYS))

        lc.stop_node(follower, signal.SIGKILL)
        fdir = cfg.node_data_dir(follower)
        if damage == "repair":
            _flip_record(fdir, BACK)
            out = subprocess.run(
                [sys.executable, "-m", "raft.cli", "repair", fdir],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "mark the node recovering" in out, out
        else:
            _flip_record(fdir, 0)  # the last record: cut automatically at open
        lc.stop_node(leader, signal.SIGKILL)

        lc.start_node(follower)
        lc.start_node(lagging)
        others = [cfg.nodes[follower].client, cfg.nodes[lagging].client]
        # Neither can lead safely: the follower may have lost what the lagging node lacks.
        stale_put_ok = run(_try_put(others))
        stale_leader = lc.leader()

        lc.start_node(leader)
        wait_for(
            lambda: any(e["ev"] == "recovered" for e in events(lc, follower)),
            what=f"{follower} recovered",
        )
        for node in cfg.nodes:
            got = run(_read_all([cfg.nodes[node].client], acked))
            assert got == acked, (node, {k: v for k, v in got.items() if v != acked[k]})
        assert not stale_put_ok
        assert stale_leader is None
        assert not os.path.exists(os.path.join(fdir, RECOVERING_FILE))
    finally:
        lc.down()
