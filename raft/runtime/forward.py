"""Write forwarding: a follower relays a client's write to the leader's client port and
relays the answer back, so a client may talk to any node (docs/runtime.md).

A relayed request carries ``fwd``: the node receiving it never forwards it again (it answers
``not_leader`` with its hint instead), so two nodes with stale views of the leader cannot
bounce a request between them. The client's ``(client_id, seq)`` travels unchanged, so the
leader deduplicates a retry that arrives both directly and through a follower.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from raft.runtime import auth, framing
from raft.runtime.client import _Conn as _Link  # one connection, requests in flight by id
from raft.runtime.protocol import (
    CLIENT_FRAME_BYTES_MAX,
    OP_AUTH,
    OP_AUTH_NONCE,
    Request,
    Response,
    Status,
    encode_request,
)
from raft.runtime.transport import Address

CONNECT_TIMEOUT_S = 1.0


class Forwarder:
    """Relays requests to a leader's client address; one connection per address."""

    def __init__(self, token: bytes | None = None) -> None:
        """``token``: the cluster's client token, when the leader's client port requires
        authentication (a follower proves it like any client)."""
        self.token = token
        self._links: dict[Address, _Link] = {}
        self._ids = itertools.count(1)
        self.forwarded_total = 0

    async def _link(self, addr: Address) -> _Link:
        link = self._links.get(addr)
        if link is not None and link.alive():
            return link
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr.host, addr.port), CONNECT_TIMEOUT_S
        )
        link = _Link(reader, writer)
        if self.token is not None:
            try:
                await self._authenticate(link)
            except BaseException:
                await link.close()
                raise
        self._links[addr] = link
        return link

    async def _exchange(self, link: _Link, req: Request) -> Response:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        link.pending[req.id] = fut
        link.writer.write(framing.encode_frame(encode_request(req), CLIENT_FRAME_BYTES_MAX))
        try:
            return await asyncio.wait_for(fut, CONNECT_TIMEOUT_S)
        finally:
            link.pending.pop(req.id, None)

    async def _authenticate(self, link: _Link) -> None:
        """HMAC over the leader's fresh nonce, as RaftClient does (docs/runtime.md)."""
        assert self.token is not None
        nonce = await self._exchange(link, Request(id=next(self._ids), op=OP_AUTH_NONCE))
        if nonce.status is not Status.OK or not isinstance(nonce.value, bytes):
            raise ConnectionError(f"authentication: no nonce ({nonce.status.value})")
        mac = auth.client_auth_mac(self.token, nonce.value)
        done = await self._exchange(link, Request(id=next(self._ids), op=OP_AUTH, value=mac))
        if done.status is not Status.OK:
            raise ConnectionError(f"the leader refused this node's client token: {done.error}")

    async def forward(self, req: Request, addr: Address, timeout_s: float) -> Response:
        """The leader's answer to ``req`` (with the client's request id), ``timeout`` when
        none came in time or the connection broke after sending (outcome unknown), or
        ``not_leader`` with ``addr`` as the hint when the leader could not be reached."""
        try:
            link = await self._link(addr)
        except (OSError, TimeoutError, ConnectionError):
            return Response(req.id, Status.NOT_LEADER, error="leader unreachable", leader=str(addr))
        rid = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        link.pending[rid] = fut
        relayed = dataclasses.replace(req, id=rid, forwarded=True)
        link.writer.write(framing.encode_frame(encode_request(relayed), CLIENT_FRAME_BYTES_MAX))
        self.forwarded_total += 1
        try:
            resp = await asyncio.wait_for(fut, timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            return Response(req.id, Status.TIMEOUT, error=f"forwarded to the leader: {exc}")
        finally:
            link.pending.pop(rid, None)
        # Name the leader in the answer, so a client that can reach it goes there next.
        return dataclasses.replace(resp, id=req.id, leader=resp.leader or str(addr))

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()
