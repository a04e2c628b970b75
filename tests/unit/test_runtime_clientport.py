"""The client port against hostile clients (issue 10 §4), on an in-process node with its real
ClientServer: a decoding bomb is refused while other clients' writes go on, idle and
slow-loris connections are closed, connections beyond the cap are refused with a clear
error, authentication is enforced when on, and request deadlines answer ``timeout``."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import struct
from pathlib import Path

import pytest
from single_node import single_node_config as _config
from single_node import wait_leader as _leader

from raft.runtime import framing
from raft.runtime.client import RaftClient
from raft.runtime.config import ClusterConfig
from raft.runtime.node import RaftNode
from raft.runtime.protocol import Request, Status, decode_response, encode_request
from raft.runtime.server import ClientServer, client_token, connections_cap

SECRET = b"s" * 32
BOUND_S = 20.0


async def _serving(cfg: ClusterConfig) -> tuple[RaftNode, ClientServer]:
    node = RaftNode(cfg, "n1", SECRET)
    await node.start()
    server = ClientServer(node, client_token(node))
    await server.start()
    return node, server


async def _stop(node: RaftNode, server: ClientServer) -> None:
    await server.stop()
    await node.stop("test")


async def _eof_within(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout_s)


def test_element_bomb_is_refused_while_other_writes_go_on(tmp_path: Path) -> None:
    async def main() -> None:
        node, server = await _serving(_config(tmp_path))
        try:
            await _leader(node)
            n = 8_000_000
            bomb = (
                b"\x84\xa2id\x07\xa2op\xa3put\xa3key\xa1b\xa5value\xdd"
                + n.to_bytes(4, "big")
                + b"\x90" * n
            )
            a = node.addrs.client
            r, w = await asyncio.open_connection(a.host, a.port)
            async with RaftClient([a], op_timeout_s=BOUND_S) as c:
                assert (await c.put("warm", 0)).status is Status.OK
                w.write(framing.encode_frame(bomb, framing.FRAME_BYTES_MAX))
                answer = asyncio.ensure_future(framing.read_frame(r, 1 << 20))
                writes = 0
                while not answer.done() or writes < 3:
                    assert (await c.put("other", writes)).status is Status.OK
                    writes += 1
                resp = decode_response(await answer)
                assert resp.status is Status.BAD_REQUEST and "elements" in resp.error
                assert (await c.get("b")).value is None  # the bomb never became a value
            w.close()
        finally:
            await _stop(node, server)

    asyncio.run(main())


def test_idle_and_slow_loris_connections_are_closed(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = dataclasses.replace(_config(tmp_path), client_idle_timeout_s=1)
        node, server = await _serving(cfg)
        try:
            a = node.addrs.client
            _r1, w1 = await asyncio.open_connection(a.host, a.port)  # idle
            r2, w2 = await asyncio.open_connection(a.host, a.port)  # slow loris
            w2.write(struct.pack(">I", 100) + b"\x85")  # a frame that never completes
            await asyncio.sleep(0.6)
            w2.write(b"\xa2")
            assert await _eof_within(r2, BOUND_S) == b""
            assert await _eof_within(_r1, BOUND_S) == b""
            assert server.idle_closed >= 2
            w1.close()
            w2.close()
        finally:
            await _stop(node, server)

    asyncio.run(main())


def test_connections_beyond_the_cap_get_a_clear_error(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = dataclasses.replace(_config(tmp_path), client_connections_max=4)
        node, server = await _serving(cfg)
        try:
            await _leader(node)
            a = node.addrs.client
            held = [await asyncio.open_connection(a.host, a.port) for _ in range(4)]
            await asyncio.sleep(0.1)
            r, w = await asyncio.open_connection(a.host, a.port)
            data = await _eof_within(r, BOUND_S)
            resp = decode_response(data[4:])
            assert resp.status is Status.BAD_REQUEST and "too many client connections" in resp.error
            w.close()
            for _r, hw in held[:2]:
                hw.close()
            await asyncio.sleep(0.2)
            async with RaftClient([a], op_timeout_s=BOUND_S) as c:
                assert (await c.put("k", 1)).status is Status.OK
            for _r, hw in held[2:]:
                hw.close()
        finally:
            await _stop(node, server)

    asyncio.run(main())


def test_authentication_when_required(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = dataclasses.replace(_config(tmp_path), client_auth=True)
        node, server = await _serving(cfg)
        try:
            await _leader(node)
            a = node.addrs.client
            async with RaftClient([a], op_timeout_s=BOUND_S, token=None) as c:
                c.token = None  # ignore $RAFT_CLIENT_TOKEN_FILE
                resp = await c.put("k", 1)
                assert resp.status is Status.UNAUTHORIZED and "authentication" in resp.error
                assert (await c.get("k")).status is Status.UNAUTHORIZED
            async with RaftClient([a], op_timeout_s=BOUND_S, token=b"w" * 32) as c:
                assert (await c.put("k", 1)).status is Status.UNAUTHORIZED
            async with RaftClient([a], op_timeout_s=BOUND_S, token=SECRET) as c:
                assert (await c.put("k", 2)).status is Status.OK
                assert (await c.get("k")).value == 2
        finally:
            await _stop(node, server)

    asyncio.run(main())


def test_request_deadline_answers_timeout(tmp_path: Path) -> None:
    """A read whose barrier never completes is answered ``timeout`` by the connection's
    deadline timer (one timer per connection, no wait_for per request), each at its own
    deadline, and the connection keeps serving."""

    async def main() -> None:
        node, server = await _serving(_config(tmp_path))
        try:
            await _leader(node)
            never = asyncio.Event()

            async def stuck_barrier() -> None:
                await never.wait()

            node.read_barrier = stuck_barrier  # type: ignore[method-assign]
            a = node.addrs.client
            r, w = await asyncio.open_connection(a.host, a.port)
            for i in (2, 1):
                req = Request(id=i, op="get", key="k", timeout_ms=150 * i)
                w.write(framing.encode_frame(encode_request(req)))
            got = [decode_response(await asyncio.wait_for(framing.read_frame(r), BOUND_S))]
            got.append(decode_response(await asyncio.wait_for(framing.read_frame(r), BOUND_S)))
            assert [(g.id, g.status) for g in got] == [(1, Status.TIMEOUT), (2, Status.TIMEOUT)]
            put = Request(id=3, op="put", key="k", value=1)
            w.write(framing.encode_frame(encode_request(put)))
            resp = decode_response(await asyncio.wait_for(framing.read_frame(r), BOUND_S))
            assert resp.status is Status.OK
            w.close()
        finally:
            await _stop(node, server)

    asyncio.run(main())


def test_connection_cap_stays_below_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap leaves 64 + limit/4 descriptors to the storage, peers, HTTP and logs."""
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (256, 256))
    assert connections_cap(1024) == 256 - (64 + 64)
    assert connections_cap(10) == 10
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (100, 100))
    assert connections_cap(1024) == 11
