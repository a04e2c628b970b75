"""Bounded fuzzing of a live cluster's peer and client ports: random, truncated, oversized and
malformed frames and requests. Each is refused (connection closed or ``bad_request``); the
nodes keep serving and every write acknowledged before is still readable."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, events, run, running_cluster, wait_for

from raft.runtime import auth, framing
from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status, decode_response

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CASES_PER_PORT = 150


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(str(tmp_path_factory.mktemp("fuzz") / "c")) as lc:
        yield lc


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _peer_case(rng: random.Random, cluster_name: str) -> tuple[bytes, bool]:
    """(bytes to send, whether the node must log a ``peer_refused`` for them). Random bytes
    and a truncated frame may end before a whole frame arrived: the node just closes those
    (a connection that said nothing complete is not a refused peer)."""
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300)), False
    if kind == 1:  # truncated frame
        return struct.pack(">I", 1000) + rng.randbytes(rng.randrange(0, 50)), False
    if kind == 2:  # oversized announcement
        return struct.pack(">I", rng.randrange(framing.FRAME_BYTES_MAX + 1, 2**32)), True
    if kind == 3:  # a frame of garbage
        return _frame(rng.randbytes(rng.randrange(1, 500))), True
    hello = auth.Hello(cluster_name, "n2", rng.randbytes(16), to="n1")
    good = auth.encode_hello(b"x" * 32, hello)  # wrong secret
    if kind == 4:
        return _frame(good), True
    if kind == 5:  # a hello with flipped bytes
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return _frame(bytes(b)), True
    bad_version = msgpack.packb({"magic": "RAFTLAB", "v": rng.randrange(2, 9)})
    return _frame(bad_version + b"m" * 32), True


def _client_case(rng: random.Random) -> tuple[bytes, bool]:
    """(bytes to send, whether a framed reply is expected before close)."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300)), False
    if kind == 1:
        return struct.pack(">I", 500) + rng.randbytes(rng.randrange(0, 40)), False
    if kind == 2:
        return struct.pack(">I", rng.randrange(16 << 20, 2**32)), False
    if kind == 3:
        return _frame(rng.randbytes(rng.randrange(1, 300))), True
    bad: list[dict[str, Any]] = [
        {"id": 1},
        {"id": 2, "op": 7},
        {"id": 3, "op": "put", "key": ["k"], "value": 1},
        {"id": 4, "op": "put", "client_id": "c", "seq": -5},
        {"id": 5, "op": "put", "key": "k", "value": msgpack.ExtType(5, b"x")},
        {"id": 6, "op": "frobnicate", "key": "k"},
        {"id": 7, "op": "put", "key": "k"},  # kv put without a value
        {"op": "get", "key": "k", "id": "str"},
    ]
    return _frame(msgpack.packb(rng.choice(bad))), True


async def _exchange(host: str, port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, return everything the server sends before closing."""
    r, w = await asyncio.open_connection(host, port)
    try:
        w.write(data)
        await w.drain()
        if w.can_write_eof():
            w.write_eof()
        return await asyncio.wait_for(r.read(1 << 20), BOUND_S)
    except ConnectionResetError:
        return b""
    finally:
        w.close()


def test_fuzz_peer_and_client_ports(cluster: LocalCluster) -> None:
    cfg = cluster.config()
    rng = random.Random(20261128)
    acked: dict[str, int] = {}
    must_refuse = 0

    async def main() -> None:
        nonlocal must_refuse
        async with RaftClient(client_addrs(cluster)) as c:
            for i in range(20):
                if (await c.put(f"fz{i}", i)).status is Status.OK:
                    acked[f"fz{i}"] = i
        assert len(acked) == 20
        nodes = list(cfg.nodes.values())
        for _ in range(CASES_PER_PORT):
            a = rng.choice(nodes).peer
            data, refusable = _peer_case(rng, cfg.cluster)
            must_refuse += refusable
            reply = await _exchange(a.host, a.port, data)
            assert reply == b""  # refused: never an ack to a bad hello
        statuses: dict[str, int] = {}
        for _ in range(CASES_PER_PORT):
            a = rng.choice(nodes).client
            data, expect_reply = _client_case(rng)
            reply = await _exchange(a.host, a.port, data)
            if expect_reply:
                body = reply[4:]
                assert len(reply) >= 4 and struct.unpack(">I", reply[:4])[0] == len(body)
                resp = decode_response(body)
                statuses[resp.status.value] = statuses.get(resp.status.value, 0) + 1
                assert resp.status in (Status.BAD_REQUEST, Status.ERROR, Status.NOT_LEADER)
        assert statuses.get("bad_request", 0) > 10
        async with RaftClient(client_addrs(cluster)) as c:
            for k, v in acked.items():
                got = await c.get(k)
                assert got.status is Status.OK and got.value == v
            assert (await c.put("after-fuzz", 1)).status is Status.OK

    run(main())
    assert all(st is not None for st in cluster.statuses().values())

    def refused() -> int:
        return sum(1 for n in cfg.nodes for e in events(cluster, n) if e["ev"] == "peer_refused")

    # The event log is flushed every 0.2 s: wait for every refusal to reach the files.
    assert must_refuse > CASES_PER_PORT // 2
    wait_for(lambda: refused() >= must_refuse, what=f"{must_refuse} peer_refused events")
