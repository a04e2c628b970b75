"""An asyncio client for the client protocol (:mod:`raft.runtime.protocol`, version 2).

It follows ``not_leader`` redirects, and retries writes after timeouts and connection
failures with the *same* ``(client_id, seq)``, which the cluster applies at most once; so a
write it reports ``ok`` happened exactly once, and one it gives up on (``timeout``) happened at
most once. Before its first write it opens a session: the cluster assigns the ``client_id``
and binds it to a random session key only this object knows, so no other client can write
under it. One client object issues one write at a time (use several clients for
concurrency). With a ``token`` (or ``$RAFT_CLIENT_TOKEN_FILE``) every connection first proves
it holds the cluster's client token (HMAC over a fresh server nonce).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
from collections.abc import Mapping
from typing import Any

from raft.runtime import auth, framing
from raft.runtime.config import parse_address
from raft.runtime.protocol import (
    CLIENT_FRAME_BYTES_MAX,
    OP_AUTH,
    OP_AUTH_NONCE,
    OP_SESSION,
    Request,
    Response,
    Status,
    decode_response,
    encode_request,
)
from raft.runtime.transport import Address

CONNECT_TIMEOUT_S = 1.0
RETRY_PAUSE_S = 0.05
DEFINITE = frozenset(
    {Status.OK, Status.FAIL, Status.ERROR, Status.BAD_REQUEST, Status.UNAUTHORIZED}
)
TOKEN_FILE_ENV = "RAFT_CLIENT_TOKEN_FILE"
SESSION_KEY_BYTES = 32


def load_token(path: str | None = None) -> bytes | None:
    """The client token from ``path``, else from ``$RAFT_CLIENT_TOKEN_FILE``, else None.
    Raises OSError / ValueError for a file that cannot be read or is too short."""
    path = path or os.environ.get(TOKEN_FILE_ENV) or None
    return None if path is None else auth.load_secret(path)


class ClientError(Exception):
    """The cluster could not be reached or gave no definite answer in time."""


class AuthenticationError(ConnectionError):
    """The node refused this client's token (or the client has none and the node wants
    one)."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[Response]] = {}
        self.task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                body = await framing.read_frame(self.reader, CLIENT_FRAME_BYTES_MAX)
                resp = decode_response(body)
                fut = self.pending.pop(resp.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except (framing.FrameError, ValueError, OSError) as exc:
            err = ConnectionError(f"connection lost: {exc}")
        except asyncio.CancelledError:
            err = ConnectionError("connection closed")
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.pending.clear()

    def alive(self) -> bool:
        return not self.task.done() and not self.writer.is_closing()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.writer.close()


class RaftClient:
    def __init__(
        self,
        addrs: list[Address],
        client_id: str | None = None,
        op_timeout_s: float = 10.0,
        attempt_timeout_s: float = 2.0,
        token: bytes | None = None,
        address_map: Mapping[Address, Address] | None = None,
    ) -> None:
        """``client_id`` is only a label now (``label``): the cluster assigns the session id
        (``client_id`` after the first write). ``token``: the client token when the
        cluster requires authentication (default: ``$RAFT_CLIENT_TOKEN_FILE``'s content).
        ``address_map``: where to dial instead of a node's advertised client address, for
        a client that reaches the nodes through tunnels (leader hints name the advertised
        addresses, which such a client cannot dial)."""
        if not addrs:
            raise ValueError("no cluster addresses given")
        self.addrs = list(addrs)
        self.label = client_id or ""
        self.client_id = ""
        self.session_key = secrets.token_bytes(SESSION_KEY_BYTES)
        self.token = token if token is not None else load_token()
        self.op_timeout_s = op_timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.seq = 0
        self._ids = itertools.count(1)
        self._conns: dict[Address, _Conn] = {}
        self._target = 0
        self._leader: Address | None = None
        self.last_node = ""
        self.address_map: dict[Address, Address] = dict(address_map or {})

    async def close(self) -> None:
        for c in self._conns.values():
            await c.close()
        self._conns.clear()

    async def __aenter__(self) -> RaftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _conn(self, addr: Address) -> _Conn:
        c = self._conns.get(addr)
        if c is not None and c.alive():
            return c
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr.host, addr.port), CONNECT_TIMEOUT_S
        )
        c = _Conn(reader, writer)
        if self.token is not None:
            try:
                await self._authenticate(c)
            except BaseException:
                await c.close()
                raise
        self._conns[addr] = c
        return c

    async def _authenticate(self, c: _Conn) -> None:
        """Prove we hold the token: HMAC over the server's fresh nonce."""
        assert self.token is not None
        nonce = await self._send(c, Request(id=next(self._ids), op=OP_AUTH_NONCE))
        if nonce.status is not Status.OK or not isinstance(nonce.value, bytes):
            raise ConnectionError(f"authentication: no nonce ({nonce.status.value})")
        mac = auth.client_auth_mac(self.token, nonce.value)
        done = await self._send(c, Request(id=next(self._ids), op=OP_AUTH, value=mac))
        if done.status is not Status.OK:
            raise AuthenticationError(f"the node refused the client token: {done.error}")

    async def _send(self, c: _Conn, req: Request) -> Response:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        c.pending[req.id] = fut
        c.writer.write(framing.encode_frame(encode_request(req), CLIENT_FRAME_BYTES_MAX))
        try:
            return await asyncio.wait_for(fut, self.attempt_timeout_s)
        finally:
            c.pending.pop(req.id, None)

    async def _attempt(self, addr: Address, req: Request) -> Response:
        return await self._send(await self._conn(addr), req)

    def _next_target(self) -> Address:
        if self._leader is not None:
            return self._leader
        addr = self.addrs[self._target % len(self.addrs)]
        return addr

    def _rotate(self) -> None:
        self._leader = None
        self._target += 1

    async def request(
        self,
        op: str,
        key: str | None = None,
        value: Any = None,
        expect: Any = None,
        write: bool = True,
    ) -> Response:
        """Send one operation until a definite answer or the op timeout. Writes get a fresh
        ``seq`` reused on every retry (in this client's session, opened on first use). The
        returned status is ``timeout`` when no definite answer came in time (outcome unknown
        for writes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.op_timeout_s
        if write and not self.client_id:
            opened = await self._run(OP_SESSION, None, None, None, True, deadline, session=False)
            if opened.status is not Status.OK or not isinstance(opened.value, str):
                why = opened.error or f"status {opened.status.value}"
                return Response(opened.id, opened.status, error=f"cannot open a session: {why}")
            self.client_id = opened.value
        if write:
            self.seq += 1
        return await self._run(op, key, value, expect, write, deadline, session=write)

    async def _run(
        self,
        op: str,
        key: str | None,
        value: Any,
        expect: Any,
        write: bool,
        deadline: float,
        session: bool,
        final: frozenset[Status] = DEFINITE,
    ) -> Response:
        loop = asyncio.get_running_loop()
        last = Response(0, Status.TIMEOUT, error="no node answered")
        attempt_ms = max(1, int(self.attempt_timeout_s * 1000) - 200)
        while loop.time() < deadline:
            addr = self._next_target()
            req = Request(
                id=next(self._ids),
                op=op,
                client_id=self.client_id if session else "",
                seq=self.seq if session else 0,
                key=key,
                value=value,
                expect=expect,
                timeout_ms=attempt_ms,
                session_key=self.session_key if session or op == OP_SESSION else b"",
            )
            try:
                resp = await self._attempt(addr, req)
            except AuthenticationError as exc:
                return Response(req.id, Status.UNAUTHORIZED, error=str(exc))
            except (OSError, TimeoutError, ConnectionError) as exc:
                last = Response(req.id, Status.TIMEOUT, error=f"{addr}: {exc or 'timeout'}")
                old = self._conns.pop(addr, None)
                if old is not None:
                    await old.close()
                self._rotate()
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            self.last_node = resp.node
            if resp.status in final:
                if write:
                    # A follower that forwarded the write names the leader: go there next.
                    self._leader = self._hint(resp.leader) or addr
                return resp
            last = resp
            if resp.status is Status.NOT_LEADER and resp.leader:
                hinted = self._hint(resp.leader)
                if hinted is not None and hinted != addr:
                    self._leader = hinted
                    continue
            self._rotate()
            await asyncio.sleep(RETRY_PAUSE_S)
        return Response(last.id, Status.TIMEOUT, error=last.error or "timed out")

    def _hint(self, leader: str) -> Address | None:
        """The address to dial for a leader hint (through ``address_map``); remembered."""
        if not leader:
            return None
        try:
            hinted = parse_address(leader, "leader hint")
        except ValueError:
            return None
        hinted = self.address_map.get(hinted, hinted)
        if hinted not in self.addrs:
            self.addrs.append(hinted)
        return hinted

    async def admin(self, op: str, node: str | None = None, value: Any = None) -> Response:
        """An admin operation (docs/membership.md): follows leader hints and retries only
        when nothing reached a node; a node's ``timeout`` answer is returned as it is (the
        change may or may not have happened, so it is not sent again)."""
        deadline = asyncio.get_running_loop().time() + self.op_timeout_s
        final = DEFINITE | {Status.TIMEOUT}
        return await self._run(op, node, value, None, False, deadline, False, final)

    async def put(self, key: str | None, value: Any) -> Response:
        return await self.request("put", key, value)

    async def get(self, key: str | None) -> Response:
        return await self.request("get", key, write=False)

    async def cas(self, key: str | None, expect: Any, value: Any) -> Response:
        return await self.request("cas", key, value, expect)

    async def delete(self, key: str) -> Response:
        return await self.request("delete", key)
