"""The client port and the process-level server: a :class:`RaftNode` plus its client and
HTTP listeners, run until a signal.

Client requests (see :mod:`raft.runtime.protocol`): reads (the machine's ``read_ops``) wait
for the read barrier of the node's read mode and are served from the local state machine;
writes are proposed on the leader only (a follower relays them to the leader once, see
:mod:`raft.runtime.forward`; ``not_leader`` with the leader's client address when it cannot)
and answered with the machine's result once applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import resource
import signal
import socket
import time
from typing import Any

from raft.machines import codec as machine_codec
from raft.machines.codec import CommandError
from raft.runtime import auth, framing
from raft.runtime.forward import Forwarder
from raft.runtime.http import HttpServer, json_route
from raft.runtime.node import AdminRefusedError, NodeUnavailableError, RaftNode
from raft.runtime.protocol import (
    ADMIN_LOCAL_OPS,
    ADMIN_OPS,
    CLIENT_FRAME_BYTES_MAX,
    OP_AUTH,
    OP_AUTH_NONCE,
    OP_MEMBER_LIST,
    OP_SESSION,
    OP_SNAPSHOT_NOW,
    OP_TRANSFER_LEADER,
    TIMEOUT_MS_MAX,
    BadRequestError,
    Request,
    Response,
    Status,
    decode_request,
    encode_response,
    parse_admin,
)
from raft.runtime.sessions import key_hash

log = logging.getLogger("raft.runtime")

INFLIGHT_PER_CONNECTION_MAX = 1024
DECODE_INLINE_BYTES_MAX = 64 << 10
"""Larger frames are decoded in a worker thread, so a hostile request cannot hold the event
loop (and with it the driver's heartbeats) for the time its decoding takes."""
DECODES_IN_THREADS_MAX = 2
WRITE_BUFFER_BYTES_HIGH = 1 << 20
"""Above this many unsent reply bytes a connection stops reading requests until the client
reads its answers (backpressure per connection, not for the node)."""
FDS_RESERVED_MIN = 64
"""File descriptors kept out of the client connection cap (plus a quarter of the limit), for
the storage, peer connections (capped by the transport), HTTP (capped at 16), logs."""


def connections_cap(configured: int) -> int:
    """The client connection cap this process can afford: ``configured``, but never so many
    that client sockets could exhaust the open-file limit the storage needs (EMFILE creating
    a WAL segment or the hard state once failed the storage for good). Raises the soft limit
    to the hard one first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    reserve = FDS_RESERVED_MIN + soft // 4
    return max(1, min(configured, soft - reserve))


class _Conn:
    """One client connection: its replies (coalesced into one socket write per loop pass),
    the deadlines of its requests (one timer for all of them) and its last activity."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.out: list[bytes] = []
        self.handlers: set[asyncio.Task[None]] = set()
        self.deadlines: list[tuple[float, int, asyncio.Task[None]]] = []
        self.expired: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.last_active = time.monotonic()
        self.authenticated = False
        self.nonce = b""


class ClientServer:
    def __init__(self, node: RaftNode, token: bytes | None = None) -> None:
        """``token``: when set, every connection must authenticate with it (HMAC
        challenge) before anything else is served."""
        self.node = node
        self.token = token
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self._decode_slots = asyncio.Semaphore(DECODES_IN_THREADS_MAX)
        self._order = itertools.count()
        self._reaper: asyncio.Task[None] | None = None
        self.connections_max = connections_cap(node.cfg.client_connections_max)
        self.idle_timeout_s = float(node.cfg.client_idle_timeout_s)
        self.refused_connections = 0
        self.idle_closed = 0
        self.forwarder = Forwarder(token)  # perf: writes sent to a follower go to the leader

    async def start(self) -> None:
        a = self.node.addrs.bind(self.node.addrs.client)  # listen address (1:1 NAT)
        self._server = await asyncio.start_server(
            self._serve_conn, a.host, a.port, backlog=socket.SOMAXCONN
        )
        self._reaper = asyncio.create_task(self._reap_idle(), name=f"client-idle-{self.node.id}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        # Close the sockets rather than cancel the tasks: each handler then sees the end of
        # its stream and returns normally.
        for c in list(self._conns.values()):
            c.writer.close()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2.0)
        await self.forwarder.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _reap_idle(self) -> None:
        """Close connections that neither completed a request nor waited for one for
        ``client_idle_timeout_s`` (idle ones, and slow-loris ones that trickle bytes)."""
        period = max(0.05, min(1.0, self.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.idle_timeout_s
            for c in list(self._conns.values()):
                if not c.handlers and c.last_active < cutoff and not c.writer.is_closing():
                    self.idle_closed += 1
                    c.writer.close()

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.connections_max:
            self.refused_connections += 1
            err = f"too many client connections (limit {self.connections_max}); retry later"
            with contextlib.suppress(Exception):
                writer.write(
                    framing.encode_frame(
                        encode_response(Response(0, Status.BAD_REQUEST, error=err))
                    )
                )
            writer.close()
            return
        task = asyncio.current_task()
        conn = _Conn(reader, writer)
        if task is not None:
            self._conns[task] = conn
        slots = asyncio.Semaphore(INFLIGHT_PER_CONNECTION_MAX)
        try:
            while True:
                try:
                    body = await framing.read_frame(reader, CLIENT_FRAME_BYTES_MAX)
                except framing.ConnectionClosedError:
                    break
                except framing.FrameError as exc:
                    self._reply(conn, Response(0, Status.BAD_REQUEST, error=str(exc)))
                    self._log_client("?", "", Status.BAD_REQUEST)
                    break  # the stream is out of sync: close
                conn.last_active = time.monotonic()
                await slots.acquire()
                t = asyncio.create_task(self._handle(conn, body))
                conn.handlers.add(t)
                t.add_done_callback(conn.handlers.discard)
                t.add_done_callback(lambda _t: slots.release())
                transport = writer.transport
                if transport.get_write_buffer_size() > WRITE_BUFFER_BYTES_HIGH:
                    await writer.drain()
            if conn.handlers:  # the client half-closed: answer what it asked before closing
                await asyncio.wait(set(conn.handlers), timeout=TIMEOUT_MS_MAX / 1000 + 1)
        except (ConnectionError, OSError):
            pass
        finally:
            for t in conn.handlers:
                t.cancel()
            if conn.timer is not None:
                conn.timer.cancel()
            self._flush(conn)
            writer.close()
            if task is not None:
                self._conns.pop(task, None)

    # -- replies: one socket write per connection per loop pass ---------------------------

    def _reply(self, conn: _Conn, resp: Response) -> None:
        if conn.writer.is_closing():
            return
        resp = Response(
            resp.id, resp.status, resp.value, resp.error, resp.leader, resp.node or self.node.id
        )
        if not conn.out:
            asyncio.get_running_loop().call_soon(self._flush, conn)
        conn.out.append(framing.encode_frame(encode_response(resp), CLIENT_FRAME_BYTES_MAX))

    def _flush(self, conn: _Conn) -> None:
        if not conn.out:
            return
        data = b"".join(conn.out)
        conn.out.clear()
        if not conn.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                conn.writer.write(data)

    # -- deadlines: one timer per connection ----------------------------------------------

    def _arm(self, conn: _Conn, task: asyncio.Task[None], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + timeout_s
        if len(conn.deadlines) > 2 * len(conn.handlers) + 64:  # drop finished requests
            conn.deadlines = [d for d in conn.deadlines if not d[2].done()]
            heapq.heapify(conn.deadlines)
        heapq.heappush(conn.deadlines, (when, next(self._order), task))
        if conn.timer is None or when < conn.timer.when():
            if conn.timer is not None:
                conn.timer.cancel()
            conn.timer = loop.call_at(when, self._expire, conn)

    def _expire(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        conn.timer = None
        while conn.deadlines and (conn.deadlines[0][0] <= now or conn.deadlines[0][2].done()):
            _, _, task = heapq.heappop(conn.deadlines)
            if not task.done():
                conn.expired.add(task)
                task.cancel()
        if conn.deadlines:
            conn.timer = loop.call_at(conn.deadlines[0][0], self._expire, conn)

    # -- requests -------------------------------------------------------------------------

    def _log_client(self, op: str, req: str, status: Status, result: str = "") -> None:
        outcome = {
            Status.OK: "ok",
            Status.FAIL: "ok",
            Status.ERROR: "bad_request",
            Status.NOT_LEADER: "not_leader",
            Status.TIMEOUT: "timeout",
            Status.BAD_REQUEST: "bad_request",
            Status.UNAUTHORIZED: "bad_request",
        }[status]
        fields: dict[str, Any] = {"op": op, "req": req, "outcome": outcome}
        if status in (Status.FAIL, Status.ERROR):
            fields["result"] = status.value
        self.node.metrics.client_requests_total += 1
        self.node.events.emit("client", **fields)

    async def _decode(self, body: bytes) -> Request:
        if len(body) <= DECODE_INLINE_BYTES_MAX:
            return decode_request(body)
        async with self._decode_slots:
            return await asyncio.to_thread(decode_request, body)

    async def _handle(self, conn: _Conn, body: bytes) -> None:
        try:
            req = await self._decode(body)
        except BadRequestError as exc:
            rid = getattr(exc, "request_id", 0)
            self._reply(conn, Response(rid, Status.BAD_REQUEST, error=str(exc)))
            self._log_client("?", str(rid), Status.BAD_REQUEST)
            return
        task = asyncio.current_task()
        try:
            if req.op in (OP_AUTH_NONCE, OP_AUTH):
                resp = self._authenticate(conn, req)
            elif self.token is not None and not conn.authenticated:
                resp = Response(
                    req.id,
                    Status.UNAUTHORIZED,
                    error="this node requires client authentication: pass the cluster's "
                    "client token (raft client --token-file, RaftClient(token=...))",
                )
            else:
                if task is not None:
                    self._arm(conn, task, req.timeout_ms / 1000.0)
                resp = await self.execute(req)
        except asyncio.CancelledError:
            if task is None or task not in conn.expired:
                raise
            conn.expired.discard(task)
            task.uncancel()
            resp = Response(req.id, Status.TIMEOUT, error="no answer in time; outcome unknown")
        conn.last_active = time.monotonic()
        self._reply(conn, resp)
        if resp.status is Status.UNAUTHORIZED and req.op == OP_AUTH:
            self._flush(conn)
            conn.writer.close()
        req_name = f"{req.client_id}:{req.seq}" if req.client_id else str(req.id)
        self._log_client(req.op, req_name, resp.status)

    def _authenticate(self, conn: _Conn, req: Request) -> Response:
        if req.op == OP_AUTH_NONCE:
            conn.nonce = auth.new_nonce()
            return Response(req.id, Status.OK, value=conn.nonce)
        if self.token is None:  # authentication is off: any proof is fine
            conn.authenticated = True
            return Response(req.id, Status.OK)
        if conn.nonce and auth.check_client_auth(self.token, conn.nonce, req.value):
            conn.authenticated = True
            return Response(req.id, Status.OK)
        conn.nonce = b""  # one try per nonce
        return Response(req.id, Status.UNAUTHORIZED, error="client authentication failed")

    async def execute(self, req: Request) -> Response:
        node = self.node
        if req.op in ADMIN_OPS:
            return await self._admin(req)
        if req.op == OP_SESSION:
            command = b""
        else:
            try:
                command = machine_codec.encode_command(req.op, req.key, req.value, req.expect)
            except CommandError as exc:
                return Response(req.id, Status.BAD_REQUEST, error=str(exc))
        try:
            if req.op in node.read_ops:
                await node.read_barrier()
                try:
                    result = node.machine.query(command)
                except Exception as exc:  # a custom machine broke its contract
                    error = f"state machine raised {type(exc).__name__}: {exc}"
                    return Response(req.id, Status.ERROR, error=error)
            else:
                if not node.is_leader():
                    return await self._forward(req, req.timeout_ms / 1000.0)
                khash = key_hash(req.session_key) if req.session_key else b""
                result = await node.propose(req.client_id, req.seq, command, khash)
        except NodeUnavailableError as exc:
            if not exc.definite and req.op not in node.read_ops:
                # The entry may have reached peers before the failure: outcome unknown.
                return Response(req.id, Status.TIMEOUT, error=str(exc))
            return self._not_leader(req, exc.leader)
        try:
            res = machine_codec.decode_result(result)
        except CommandError:
            return Response(req.id, Status.OK, value=result)
        status = {"ok": Status.OK, "fail": Status.FAIL, "error": Status.ERROR}[res.status.value]
        return Response(req.id, status, value=res.value, error=res.error)

    # -- begin: admin operations (issue 11; docs/membership.md) --
    async def _admin(self, req: Request) -> Response:
        """Membership changes, leadership transfer and the member list run on the leader
        (a follower forwards them once, like writes); ``snapshot_now`` on the node asked."""
        node = self.node
        try:
            a = parse_admin(req)
        except BadRequestError as exc:
            return Response(req.id, Status.BAD_REQUEST, error=str(exc))
        if a.op not in ADMIN_LOCAL_OPS and not node.is_leader():
            return await self._forward(req, req.timeout_ms / 1000.0)
        try:
            if a.op == OP_MEMBER_LIST:
                value: Any = await node.member_list()
            elif a.op == OP_TRANSFER_LEADER:
                value = await node.transfer_leader(a.node, a.timeout_s)
            elif a.op == OP_SNAPSHOT_NOW:
                value = await node.snapshot_now()
            else:
                value = await node.change_members(a.op, a.node, a.addrs, a.timeout_s)
        except AdminRefusedError as exc:
            return Response(req.id, Status.FAIL, error=str(exc))
        except NodeUnavailableError as exc:
            if not exc.definite:
                return Response(req.id, Status.TIMEOUT, error=str(exc))
            return self._not_leader(req, exc.leader)
        log.info("admin %s %s: ok", a.op, a.node)
        return Response(req.id, Status.OK, value=value)

    # -- end: admin operations --

    async def _forward(self, req: Request, timeout_s: float) -> Response:
        """A write on a follower goes to the leader (raft/runtime/forward.py), once."""
        node = self.node
        addrs = node.address_of(node.state.leader)
        here = node.state.leader == node.id or bool(node.state.storage_failed)
        if req.forwarded or addrs is None or here:
            return self._not_leader(req, node.state.leader)
        return await self.forwarder.forward(req, addrs.client, timeout_s)

    def _not_leader(self, req: Request, leader: str) -> Response:
        addrs = self.node.address_of(leader)
        hint = str(addrs.client) if addrs is not None and leader != self.node.id else ""
        return Response(req.id, Status.NOT_LEADER, error="not the leader", leader=hint)


def client_token(node: RaftNode) -> bytes | None:
    """The token the client port requires, or None when ``client_auth`` is off."""
    cfg = node.cfg
    if not cfg.client_auth:
        return None
    path = cfg.client_token_file or cfg.secret_file
    if path == cfg.secret_file:
        return node.secret
    return auth.load_secret(path)


async def serve(node: RaftNode, install_signals: bool = True) -> str:
    """Run ``node`` with its client and HTTP ports until SIGTERM/SIGINT, or until its driver
    crashes (then the process should exit non-zero and be restarted; a storage failure
    instead keeps the node up, refusing writes). Returns the stop reason."""
    client = ClientServer(node, client_token(node))
    http = HttpServer(
        {
            "/status": json_route(node.status),
            "/metrics": lambda: ("text/plain; version=0.0.4", node.metrics_text()),
        }
    )
    stop = asyncio.Event()
    reason = "signal"
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        await client.start()
        a = node.addrs.bind(node.addrs.http)
        await http.start(a.host, a.port)
        log.info(
            "node %s serving: peer %s, client %s, http %s",
            node.id,
            node.addrs.peer,
            node.addrs.client,
            node.addrs.http,
        )
        stopped = asyncio.create_task(stop.wait())
        crashed = asyncio.create_task(node.crash_event.wait())
        await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        crashed.cancel()
        reason = f"error: driver crashed: {node.crashed}" if node.crashed else "signal"
    except BaseException as exc:
        reason = f"error: {type(exc).__name__}: {exc}"
        raise
    finally:
        await client.stop()
        await http.stop()
        await node.stop(reason)
    return reason
