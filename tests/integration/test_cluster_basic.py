"""A 3-node cluster of real processes: election, writes through any node, the CLI, HTTP
status and metrics, a wrong-secret peer, and the event log format (docs/formats.md)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, events, run, running_cluster, wait_for

from raft.core.types import Message, MessageType
from raft.runtime import framing
from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Request, Status, decode_response, encode_request
from raft.runtime.transport import PeerTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(str(tmp_path_factory.mktemp("basic") / "c")) as lc:
        yield lc


def _raft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raft.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAFT_CLUSTER": ""},
    )


async def _raw(addr: Any, req: Request) -> Any:
    r, w = await asyncio.open_connection(addr.host, addr.port)
    try:
        w.write(framing.encode_frame(encode_request(req)))
        return decode_response(await asyncio.wait_for(framing.read_frame(r), 10))
    finally:
        w.close()


def test_one_leader_and_status_fields(cluster: LocalCluster) -> None:
    sts = cluster.statuses()
    assert all(st is not None for st in sts.values())
    for nid, st in sts.items():
        assert st is not None
        assert {
            "id",
            "role",
            "term",
            "leader",
            "commit",
            "applied",
            "last_index",
            "cluster",
        } <= set(st)
        assert st["id"] == nid and st["cluster"] == "raftlab"
    leader = cluster.wait_leader(BOUND_S)
    wait_for(
        lambda: all(s and s["leader"] == leader for s in cluster.statuses().values()),
        what="every node knows the leader",
    )


def test_write_through_any_node_is_forwarded_to_the_leader(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader(BOUND_S)
    cfg = cluster.config()

    async def main() -> None:
        for nid, a in cfg.nodes.items():
            async with RaftClient([a.client]) as c:
                assert (await c.put(f"via-{nid}", nid)).status is Status.OK
                assert (await c.get(f"via-{nid}")).value == nid
        follower = next(n for n in cfg.nodes if n != leader)
        # A follower relays a write to the leader and relays the answer (same request id).
        req = Request(id=9, op="put", key="x", value=1)
        resp = await _raw(cfg.nodes[follower].client, req)
        assert resp.status is Status.OK and resp.id == 9
        async with RaftClient([cfg.nodes[leader].client]) as c:
            assert (await c.get("x")).value == 1
        # A relayed request is never relayed again: no ping-pong between stale followers.
        again = Request(id=10, op="put", key="x", value=2, forwarded=True)
        resp = await _raw(cfg.nodes[follower].client, again)
        assert resp.status is Status.NOT_LEADER and resp.id == 10
        assert resp.leader == str(cfg.nodes[leader].client)

    run(main())


def test_cli_put_get_cas_delete_status(cluster: LocalCluster) -> None:
    addrs = ",".join(str(a) for a in client_addrs(cluster))
    ok = _raft("client", "--cluster", addrs, "put", "k", "v")
    assert ok.returncode == 0 and ok.stdout.strip() == "OK", ok.stderr
    assert _raft("client", "--cluster", addrs, "get", "k").stdout.strip() == "v"
    assert _raft("client", "--cluster", addrs, "cas", "k", "v", "w").returncode == 0
    mismatch = _raft("client", "--cluster", addrs, "cas", "k", "v", "x")
    assert mismatch.returncode == 1 and "current value: w" in mismatch.stdout
    assert _raft("client", "--dir", cluster.dir, "get", "k").stdout.strip() == "w"
    assert _raft("client", "--cluster", addrs, "delete", "k").stdout.strip() == "deleted"
    assert _raft("client", "--cluster", addrs, "get", "k").stdout.strip() == "(nil)"
    bad = _raft("client", "--cluster", "nohostport", "get", "k")
    assert bad.returncode == 2 and "host:port" in bad.stderr
    status = _raft("status", "--dir", cluster.dir, "--cluster", addrs)
    assert status.returncode == 0
    assert len(re.findall(r"\bleader\b", status.stdout)) >= 2  # header + the leader's row


def test_metrics_exposed(cluster: LocalCluster) -> None:
    import http.client

    a = cluster.config().nodes["n1"].http
    conn = http.client.HTTPConnection(a.host, a.port, timeout=5)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    for name in (
        "raft_term",
        "raft_role",
        "raft_commit_index",
        "raft_applied_index",
        "raft_proposals_total",
        "raft_elections_total",
        "raft_commit_latency_seconds_bucket",
    ):
        assert re.search(rf"^{name}\{{", body, re.M), name
    conn.request("GET", "/nope")
    assert conn.getresponse().status == 404


def test_wrong_secret_peer_refused_and_logged(cluster: LocalCluster) -> None:
    cfg = cluster.config()
    refused: list[str] = []

    async def main() -> None:
        t = PeerTransport(
            "n2",
            cfg.cluster,
            b"not-the-secret-" * 3,
            {n: a.peer for n, a in cfg.nodes.items()},
            on_message=lambda i, m: None,
            on_unreachable=lambda p: None,
            on_refused=lambda p, r, d: refused.append(r),
        )
        # Dial from an address no node uses so the cluster's own links are untouched.
        await t.start(type(cfg.nodes["n1"].peer)("127.0.0.9", 0))
        t.send("", Message(type=MessageType.HEARTBEAT, to="n1", sender="n2", term=99))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND_S
        while not _refusal_logged() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await t.stop()

    def _refusal_logged() -> bool:
        return any(
            e["ev"] == "peer_refused" and e["reason"] == "bad_mac" for e in events(cluster, "n1")
        )

    run(main())
    assert _refusal_logged()
    assert refused == []  # the node closed without an ack: nothing verified on our side

    async def still_serving() -> Status:
        async with RaftClient(client_addrs(cluster)) as c:
            return (await c.put("after-refusal", 1)).status

    assert run(still_serving()) is Status.OK
    assert all(s and s["term"] < 99 for s in cluster.statuses().values())


REQUIRED = {
    "start": {"v", "commit", "applied", "last_index", "last_term", "vote", "voters"},
    "stop": {"reason"},
    "role": {"role", "leader"},
    "vote": {"candidate", "granted", "pre"},
    "persist": {"first", "last", "entries"},
    "truncate": {"from"},
    "commit": {"index", "eterm"},
    "apply": {"entries"},
    "snapshot": {"action", "index", "sterm"},
    "conf": {"index", "voters", "learners", "voters_outgoing"},
    "send": {"to", "msg", "id"},
    "recv": {"from", "msg", "id"},
    "client": {"op", "req", "outcome"},
    "storage_error": {"what", "path"},
    "peer_refused": {"peer", "reason"},
}
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_event_log_lines_valid(cluster: LocalCluster) -> None:
    cluster.stop_node("n3", signal.SIGTERM)  # a clean stop writes `stop` and flushes
    try:
        by_node = {n: events(cluster, n) for n in cluster.config().nodes}
        wait_for(lambda: all(len(events(cluster, n)) > 5 for n in by_node), what="flushed logs")
        by_node = {n: events(cluster, n) for n in by_node}
        sends: dict[str, tuple[str, str, str]] = {}
        recvs: dict[str, tuple[str, str, str]] = {}
        for node, evs in by_node.items():
            assert evs[0]["ev"] == "start" and evs[0]["v"] == 1
            for e in evs:
                assert isinstance(e["ts"], float) and e["node"] == node
                assert isinstance(e["term"], int) and isinstance(e["ev"], str)
                assert REQUIRED.get(e["ev"], set()) <= set(e), e
                if e["ev"] == "role":
                    assert e["role"] in ("follower", "pre_candidate", "candidate", "leader")
                if e["ev"] == "persist":
                    assert e["first"] == e["entries"][0][0] and e["last"] == e["entries"][-1][0]
                    assert all(HEX16.match(d) for _, _, d in e["entries"])
                if e["ev"] == "apply":
                    assert all(len(row) == 4 and HEX16.match(row[3]) for row in e["entries"])
                if e["ev"] == "client":
                    assert e["outcome"] in ("ok", "not_leader", "timeout", "bad_request")
                if e["ev"] == "send":
                    assert e["id"].startswith(f"{node}:")
                    sends[e["id"]] = (node, e["to"], e["msg"])
                if e["ev"] == "recv":
                    recvs[e["id"]] = (e["from"], node, e["msg"])
        assert by_node["n3"][-1]["ev"] == "stop"
        paired = [i for i in recvs if i in sends]
        assert len(paired) > 10
        assert all(sends[i] == recvs[i] for i in paired)
        kinds = {e["ev"] for evs in by_node.values() for e in evs}
        assert {"start", "role", "vote", "persist", "commit", "apply", "client", "stop"} <= kinds
    finally:
        cluster.start_node("n3")
