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
import logging
import signal
from typing import Any

from raft.machines import codec as machine_codec
from raft.machines.codec import CommandError
from raft.runtime import framing
from raft.runtime.forward import Forwarder
from raft.runtime.http import HttpServer, json_route
from raft.runtime.node import NodeUnavailableError, RaftNode
from raft.runtime.protocol import (
    CLIENT_FRAME_BYTES_MAX,
    TIMEOUT_MS_MAX,
    BadRequestError,
    Request,
    Response,
    Status,
    decode_request,
    encode_response,
)

log = logging.getLogger("raft.runtime")

INFLIGHT_PER_CONNECTION_MAX = 1024


class ClientServer:
    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.forwarder = Forwarder()  # perf: writes sent to a follower go to the leader

    async def start(self) -> None:
        a = self.node.addrs.client
        self._server = await asyncio.start_server(self._serve_conn, a.host, a.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Close the sockets rather than cancel the tasks: each handler then sees the end of
        # its stream and returns normally.
        for w in list(self._conns.values()):
            w.close()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2.0)
        await self.forwarder.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns[task] = writer
        slots = asyncio.Semaphore(INFLIGHT_PER_CONNECTION_MAX)
        handlers: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    body = await framing.read_frame(reader, CLIENT_FRAME_BYTES_MAX)
                except framing.ConnectionClosedError:
                    break
                except framing.FrameError as exc:
                    self._reply(writer, Response(0, Status.BAD_REQUEST, error=str(exc)))
                    self._log_client("?", "", Status.BAD_REQUEST)
                    break  # the stream is out of sync: close
                await slots.acquire()
                t = asyncio.create_task(self._handle(body, writer))
                handlers.add(t)
                t.add_done_callback(handlers.discard)
                t.add_done_callback(lambda _t: slots.release())
            if handlers:  # the client half-closed: answer what it asked before closing
                await asyncio.wait(set(handlers), timeout=TIMEOUT_MS_MAX / 1000 + 1)
        except (ConnectionError, OSError):
            pass
        finally:
            for t in handlers:
                t.cancel()
            writer.close()
            if task is not None:
                self._conns.pop(task, None)

    def _reply(self, writer: asyncio.StreamWriter, resp: Response) -> None:
        if writer.is_closing():
            return
        resp = Response(
            resp.id, resp.status, resp.value, resp.error, resp.leader, resp.node or self.node.id
        )
        writer.write(framing.encode_frame(encode_response(resp), CLIENT_FRAME_BYTES_MAX))

    def _log_client(self, op: str, req: str, status: Status, result: str = "") -> None:
        outcome = {
            Status.OK: "ok",
            Status.FAIL: "ok",
            Status.ERROR: "bad_request",
            Status.NOT_LEADER: "not_leader",
            Status.TIMEOUT: "timeout",
            Status.BAD_REQUEST: "bad_request",
        }[status]
        fields: dict[str, Any] = {"op": op, "req": req, "outcome": outcome}
        if status in (Status.FAIL, Status.ERROR):
            fields["result"] = status.value
        self.node.metrics.client_requests_total += 1
        self.node.events.emit("client", **fields)

    async def _handle(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            req = decode_request(body)
        except BadRequestError as exc:
            rid = getattr(exc, "request_id", 0)
            self._reply(writer, Response(rid, Status.BAD_REQUEST, error=str(exc)))
            self._log_client("?", str(rid), Status.BAD_REQUEST)
            return
        resp = await self.execute(req)
        self._reply(writer, resp)
        # Backpressure: a client that does not read its answers stalls only its own
        # handlers (at most INFLIGHT_PER_CONNECTION_MAX of them), not the node's memory.
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        req_name = f"{req.client_id}:{req.seq}" if req.client_id else str(req.id)
        self._log_client(req.op, req_name, resp.status)

    async def execute(self, req: Request) -> Response:
        node = self.node
        try:
            command = machine_codec.encode_command(req.op, req.key, req.value, req.expect)
        except CommandError as exc:
            return Response(req.id, Status.BAD_REQUEST, error=str(exc))
        timeout_s = req.timeout_ms / 1000.0
        try:
            if req.op in node.read_ops:
                await asyncio.wait_for(node.read_barrier(), timeout_s)
                try:
                    result = node.machine.query(command)
                except Exception as exc:  # a custom machine broke its contract
                    error = f"state machine raised {type(exc).__name__}: {exc}"
                    return Response(req.id, Status.ERROR, error=error)
            else:
                if not node.is_leader():
                    return await self._forward(req, timeout_s)  # perf: write forwarding
                result = await asyncio.wait_for(
                    node.propose(req.client_id, req.seq, command), timeout_s
                )
        except TimeoutError:
            return Response(req.id, Status.TIMEOUT, error="no answer in time; outcome unknown")
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

    async def _forward(self, req: Request, timeout_s: float) -> Response:
        """A write on a follower goes to the leader (raft/runtime/forward.py), once."""
        node = self.node
        addrs = node.cfg.nodes.get(node.state.leader)
        here = node.state.leader == node.id or bool(node.state.storage_failed)
        if req.forwarded or addrs is None or here:
            return self._not_leader(req, node.state.leader)
        return await self.forwarder.forward(req, addrs.client, timeout_s)

    def _not_leader(self, req: Request, leader: str) -> Response:
        addrs = self.node.cfg.nodes.get(leader)
        hint = str(addrs.client) if addrs is not None and leader != self.node.id else ""
        return Response(req.id, Status.NOT_LEADER, error="not the leader", leader=hint)


async def serve(node: RaftNode, install_signals: bool = True) -> str:
    """Run ``node`` with its client and HTTP ports until SIGTERM/SIGINT, or until its driver
    crashes (then the process should exit non-zero and be restarted; a storage failure
    instead keeps the node up, refusing writes). Returns the stop reason."""
    client = ClientServer(node)
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
        a = node.addrs.http
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
