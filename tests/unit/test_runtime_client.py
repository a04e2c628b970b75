"""RaftClient against a scripted server: it opens a session, follows leader hints, retries
timeouts and lost connections with the same (client_id, seq, session_key), and gives up with
``timeout``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from raft.runtime import framing
from raft.runtime.client import RaftClient
from raft.runtime.protocol import Request, Response, Status, decode_request, encode_response
from raft.runtime.transport import Address

Script = Callable[[Request, int], Response | None]
"""(request, how many requests this server saw before) -> response, or None to drop it."""


class FakeNode:
    def __init__(self, name: str, script: Script) -> None:
        self.name = name
        self.script = script
        self.seen: list[Request] = []
        self.sessions: list[bytes] = []
        self.addr = Address("127.0.0.1", 0)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.addr = Address("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                req = decode_request(await framing.read_frame(r))
                if req.op == "session":  # the server assigns the session id
                    self.sessions.append(req.session_key)
                    w.write(
                        framing.encode_frame(encode_response(Response(req.id, Status.OK, "s1.0")))
                    )
                    continue
                n = len(self.seen)
                self.seen.append(req)
                resp = self.script(req, n)
                if resp == "close":  # type: ignore[comparison-overlap]
                    w.close()
                    return
                if resp is not None:
                    w.write(framing.encode_frame(encode_response(resp)))
        except (framing.FrameError, ConnectionError):
            w.close()


def test_follows_hint_and_keeps_seq() -> None:
    async def main() -> None:
        leader = FakeNode("L", lambda q, n: Response(q.id, Status.OK, value="done"))
        await leader.start()
        follower = FakeNode(
            "F", lambda q, n: Response(q.id, Status.NOT_LEADER, leader=str(leader.addr))
        )
        await follower.start()
        try:
            async with RaftClient([follower.addr], client_id="cid") as c:
                r1 = await c.put("k", 1)
                r2 = await c.put("k", 2)
            assert r1.status is Status.OK and r2.status is Status.OK
            assert [(q.client_id, q.seq) for q in follower.seen] == [("s1.0", 1)]
            assert [(q.client_id, q.seq) for q in leader.seen] == [("s1.0", 1), ("s1.0", 2)]
            assert follower.sessions == [c.session_key] and not leader.sessions
            assert {q.session_key for q in follower.seen + leader.seen} == {c.session_key}
        finally:
            await leader.stop()
            await follower.stop()

    asyncio.run(main())


def test_retries_timeouts_and_dropped_connections_with_same_seq() -> None:
    def flaky(q: Request, n: int) -> Response | None:
        if n == 0:
            return None  # no answer: the attempt times out
        if n == 1:
            return "close"  # type: ignore[return-value]
        if n == 2:
            return Response(q.id, Status.TIMEOUT)
        return Response(q.id, Status.OK)

    async def main() -> None:
        node = FakeNode("A", flaky)
        await node.start()
        try:
            async with RaftClient([node.addr], client_id="c", attempt_timeout_s=0.3) as c:
                r = await c.cas("k", 1, 2)
            assert r.status is Status.OK
            assert len(node.seen) == 4
            assert {(q.client_id, q.seq, q.op) for q in node.seen} == {("s1.0", 1, "cas")}
            assert len({q.id for q in node.seen}) == 4  # each attempt has its own request id
        finally:
            await node.stop()

    asyncio.run(main())


def test_gives_up_with_timeout_and_reads_carry_no_session() -> None:
    async def main() -> None:
        node = FakeNode("A", lambda q, n: Response(q.id, Status.NOT_LEADER))
        await node.start()
        try:
            async with RaftClient([node.addr], op_timeout_s=0.5) as c:
                r = await c.get("k")
            assert r.status is Status.TIMEOUT
            assert node.seen and all(q.client_id == "" and q.seq == 0 for q in node.seen)
            assert all(q.session_key == b"" for q in node.seen) and not node.sessions
        finally:
            await node.stop()

    asyncio.run(main())
