"""Membership of a real local cluster, driven through the `raft` CLI while clients write
(docs/membership.md): grow 3 -> 5 with nodes started by `raft serve --join` (whose own
cluster.yml names only themselves), restart every node (the grown configuration wins over
the 3-node cluster.yml), transfer leadership to a new node, let that leader remove itself,
shrink back to 3 (one node removed while it is down, so it never learns of it), check that
the removed nodes (running again) do not disturb the cluster, and read every acknowledged
write back at the end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from raft_cluster_fixture import BOUND_S, events, pick_base_port, raft_cli, wait_for

from raft.runtime.client import RaftClient
from raft.runtime.config import ClusterConfig, NodeAddresses, render_config
from raft.runtime.http import fetch_json
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status
from raft.runtime.transport import Address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CLIENTS = 3


class Workload:
    """Closed-loop writers of unique keys in a thread; remembers what was acknowledged."""

    def __init__(self, addrs: list[Address]) -> None:
        self.addrs = addrs
        self.acked: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _writer(self, w: int) -> None:
        async with RaftClient(self.addrs, op_timeout_s=5.0, attempt_timeout_s=1.0) as c:
            for i in range(1_000_000):
                if self.stop.is_set():
                    return
                key = f"w{w}-{i}"
                if (await c.put(key, i)).status is Status.OK:
                    self.acked[key] = i
                await asyncio.sleep(0.02)

    async def _main(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in range(CLIENTS)))

    def acks_grow(self, what: str) -> None:
        before = len(self.acked)
        wait_for(lambda: len(self.acked) >= before + 20, what=f"writes succeeding {what}")
        print(f"{time.strftime('%X')} {len(self.acked)} writes acknowledged {what}")


def _status(addrs: NodeAddresses) -> dict[str, Any] | None:
    try:
        st = fetch_json(addrs.http.host, addrs.http.port, "/status", 0.5)
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) else None


class Joiners:
    """Nodes started with `raft serve --join` from a cluster.yml holding only themselves."""

    def __init__(self, cfg: ClusterConfig, base: int, root: Path) -> None:
        self.cfg, self.root = cfg, root
        self.addrs: dict[str, NodeAddresses] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for i in (4, 5):
            host = f"127.0.0.{i}"
            self.addrs[f"n{i}"] = NodeAddresses(
                Address(host, base), Address(host, base + 1), Address(host, base + 2)
            )

    def start(self, nid: str) -> None:
        path = self.root / f"{nid}.yml"
        path.write_text(render_config(replace(self.cfg, nodes={nid: self.addrs[nid]})))
        err = open(self.root / f"{nid}.stderr", "ab")  # noqa: SIM115 - the child owns it
        cmd = ["serve", "--id", nid, "--config", str(path), "--join", "--quiet"]
        self.procs[nid] = subprocess.Popen([sys.executable, "-m", "raft.cli", *cmd], stderr=err)
        err.close()

    def stop(self, nid: str) -> None:
        p = self.procs.pop(nid, None)
        if p is not None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def member_args(self, nid: str) -> list[str]:
        a = self.addrs[nid]
        return [nid, "--peer", str(a.peer), "--client", str(a.client), "--http", str(a.http)]


def _leader_of(nodes: dict[str, NodeAddresses]) -> str:
    def one() -> str | None:
        leaders = {n for n, a in nodes.items() if (_status(a) or {}).get("role") == "leader"}
        return next(iter(leaders)) if len(leaders) == 1 else None

    return str(wait_for(one, what="one leader"))


def test_grow_restart_transfer_and_shrink_while_clients_write(tmp_path: Path) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    base = pick_base_port(5)
    cfg = lc.up(nodes=3, base_port=base)
    joiners = Joiners(cfg, base, tmp_path)
    originals = dict(cfg.nodes)
    everyone = {**originals, **joiners.addrs}
    cluster = ",".join(str(a.client) for a in originals.values())
    wl = Workload([a.client for a in originals.values()])
    try:
        lc.wait_leader(BOUND_S)
        for nid in joiners.addrs:
            joiners.start(nid)
        wl.thread.start()
        wl.acks_grow("before the change")

        # -- grow 3 -> 5: add (learner, catch up, promote through a joint configuration)
        for nid in ("n4", "n5"):
            r = raft_cli("member", "add", *joiners.member_args(nid), "--cluster", cluster)
            assert r.returncode == 0, r.stderr
            assert "promoted it to voter" in r.stdout
        r = raft_cli("member", "list", "--cluster", cluster, "--json")
        view = json.loads(r.stdout)
        assert not view["joint"] and view["voters"] == ["n1", "n2", "n3", "n4", "n5"]
        by_id = {m["id"]: m for m in view["members"]}
        assert by_id["n5"]["client"] == str(joiners.addrs["n5"].client)
        assert by_id["n1"]["peer"] == str(originals["n1"].peer)
        wl.acks_grow("after growing to 5")
        # The joined node learned the configuration (and everyone's addresses) from the
        # cluster: its own cluster.yml names only itself.
        st4 = wait_for(lambda: _status(joiners.addrs["n4"]), what="n4 status")
        assert st4["voters"] == ["n1", "n2", "n3", "n4", "n5"] and not st4["joint"]

        # -- a second change while one is in progress is refused, with the reason
        # (deterministic ordering is tested in tests/unit/test_runtime_membership.py)

        # -- restart all five: the grown configuration wins over the 3-node cluster.yml
        for nid in originals:
            lc.stop_node(nid)
        for nid in list(joiners.procs):
            joiners.stop(nid)
        for nid in originals:
            lc.start_node(nid)
        for nid in joiners.addrs:
            joiners.start(nid)
        _leader_of(everyone)
        five = ["n1", "n2", "n3", "n4", "n5"]
        for nid, a in everyone.items():
            wait_for(
                lambda a=a: (_status(a) or {}).get("voters") == five,
                what=f"{nid} back in the 5-voter configuration after the restart",
            )
        wl.acks_grow("after restarting the grown cluster")

        # -- transfer leadership to n4 while clients write
        r = raft_cli("transfer-leader", "--to", "n4", "--cluster", cluster)
        assert r.returncode == 0, r.stderr
        assert "leader is now n4" in r.stdout  # the command waits until n4 leads
        wl.acks_grow("after the transfer")

        # -- the leader (n4, unless an overloaded machine elected another since) removes
        # itself, then the other new node goes: back to 3
        leader = _leader_of(everyone)
        first = leader if leader in ("n4", "n5") else "n4"
        second = "n5" if first == "n4" else "n4"
        r = raft_cli("member", "remove", first, "--cluster", cluster)
        assert r.returncode == 0, r.stderr
        print(f"removed {first}; it was the leader and stepped down: {'stepped down' in r.stdout}")
        _leader_of({n: a for n, a in everyone.items() if n != first})  # a voter takes over
        wl.acks_grow("after the leader removed itself")
        # The second is down while it is removed, so it never learns of its removal: restarted, it
        # still believes it is a voter of the old configuration and tries to campaign.
        joiners.stop(second)
        r = raft_cli("member", "remove", second, "--cluster", cluster)
        assert r.returncode == 0, r.stderr
        joiners.start(second)  # --join is ignored: its data dir holds a configuration
        r = raft_cli("member", "remove", second, "--cluster", cluster)
        assert r.returncode == 1 and f"{second} is not a member" in r.stderr
        view = json.loads(raft_cli("member", "list", "--cluster", cluster, "--json").stdout)
        assert view["voters"] == ["n1", "n2", "n3"] and not view["learners"]

        # -- the removed nodes keep running but cannot disturb: nobody even receives their
        # vote requests (the first applied its removal and is idle; the second did not and
        # tries to campaign, but every member refuses its connections), and their terms
        # never pass the cluster's
        wait_for(lambda: _status(joiners.addrs[second]), what=f"{second} serving again")
        since = time.time()
        time.sleep(4.0)
        leader = _leader_of(originals)
        term = _status(originals[leader])["term"]  # type: ignore[index]
        refused = 0
        for nid in originals:
            recent = [e for e in events(lc, nid) if e["ts"] > since]
            heard = [e for e in recent if e["ev"] == "recv" and e["from"] in (first, second)]
            assert heard == [], (nid, heard)
            refused += sum(
                1
                for e in recent
                if e["ev"] == "peer_refused" and f"'{second}'" in e.get("detail", "")
            )
        assert refused > 0  # the stale one keeps trying to reach the others, in vain
        for nid in (first, second):
            st = _status(joiners.addrs[nid])
            assert st is not None and st["role"] != "leader" and st["term"] <= term, st
        wl.acks_grow("after shrinking to 3")
    finally:
        wl.stop.set()
        if wl.thread.is_alive():
            wl.thread.join(30)
        for nid in list(joiners.procs):
            joiners.stop(nid)

    # -- nothing acknowledged was lost
    async def read_back() -> list[str]:
        lost: list[str] = []
        items = sorted(wl.acked.items())

        async def reader(part: list[tuple[str, int]]) -> None:
            addrs = [a.client for a in originals.values()]
            async with RaftClient(addrs, op_timeout_s=BOUND_S) as c:
                for key, value in part:
                    got = await c.get(key)
                    if got.status is not Status.OK or got.value != value:
                        lost.append(f"{key}={value} read {got.status.value} {got.value!r}")

        await asyncio.gather(*(reader(items[i::8]) for i in range(8)))
        return lost

    try:
        assert len(wl.acked) > 100
        assert asyncio.run(read_back()) == []
    finally:
        lc.down()
