"""Snapshots end to end (create on the leader, InstallSnapshot to a node that fell behind,
load at restart) and the opt-in read modes (lease, local)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, events, run, running_cluster, wait_for

from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def _put_many(lc: LocalCluster, prefix: str, n: int) -> None:
    async with RaftClient(client_addrs(lc), op_timeout_s=BOUND_S) as c:
        for i in range(n):
            assert (await c.put(f"{prefix}{i}", i)).status is Status.OK


async def _get_all(addr: Any, prefix: str, n: int) -> list[Any]:
    async with RaftClient([addr], op_timeout_s=BOUND_S) as c:
        return [(await c.get(f"{prefix}{i}")).value for i in range(n)]


def _caught_up(lc: LocalCluster, node: str) -> bool:
    sts = lc.statuses()
    leader = [s for s in sts.values() if s and s["role"] == "leader"]
    me = sts[node]
    return bool(me and leader and me["applied"] >= leader[0]["commit"])


def test_snapshot_install_and_load(tmp_path: Path) -> None:
    with running_cluster(str(tmp_path / "c"), snapshot_entries=20) as lc:
        leader = lc.wait_leader(BOUND_S)
        behind = next(n for n in lc.config().nodes if n != leader)
        lc.stop_node(behind, signal.SIGKILL)
        run(_put_many(lc, "s", 120))
        lc.start_node(behind)
        wait_for(lambda: _caught_up(lc, behind), what=f"{behind} catching up")
        wait_for(
            lambda: any(
                e["ev"] == "snapshot" and e["action"] == "install" for e in events(lc, behind)
            ),
            what="snapshot install event",
        )
        leader_evs = [e for n in lc.config().nodes if n != behind for e in events(lc, n)]
        assert any(e["ev"] == "snapshot" and e["action"] == "create" for e in leader_evs)
        # A clean restart loads the snapshot from disk and serves the same data.
        lc.stop_node(behind, signal.SIGTERM)
        lc.start_node(behind)
        wait_for(lambda: _caught_up(lc, behind), what=f"{behind} restarted")
        wait_for(
            lambda: any(
                e["ev"] == "snapshot" and e["action"] == "load" for e in events(lc, behind)
            ),
            what="snapshot load event",
        )
        addr = lc.config().nodes[behind].client
        assert run(_get_all(addr, "s", 120)) == list(range(120))


def test_lease_and_local_read_modes(tmp_path: Path) -> None:
    with running_cluster(str(tmp_path / "c"), read_mode="lease") as lc:
        run(_put_many(lc, "l", 5))
        cfg = lc.config()
        assert run(_get_all(cfg.nodes["n1"].client, "l", 5)) == list(range(5))
        assert lc.statuses()["n1"]["read_mode"] == "lease"  # type: ignore[index]
        # One node switched to local (possibly stale) reads: served from its own state.
        lc.stop_node("n3", signal.SIGTERM)
        lc.start_node("n3", ("--read-mode", "local"))
        wait_for(lambda: (lc.statuses()["n3"] or {}).get("read_mode") == "local", what="n3 up")
        wait_for(lambda: _caught_up(lc, "n3"), what="n3 catching up")
        assert run(_get_all(cfg.nodes["n3"].client, "l", 5)) == list(range(5))
