"""A minimal HTTP/1.1 server for ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus).

Only what monitoring needs: one request per connection, GET only, bounded header size and
read time; anything else gets a 4xx and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable

REQUEST_BYTES_MAX = 8192
READ_TIMEOUT_S = 5.0
CONNECTIONS_MAX = 16
"""Open HTTP connections; more are answered 503 and closed at once, so a flood on the
monitoring port cannot take the file descriptors the storage needs."""

Route = Callable[[], tuple[str, str]]
"""Returns (content type, body)."""


class HttpServer:
    def __init__(self, routes: dict[str, Route]) -> None:
        self._routes = routes
        self._server: asyncio.Server | None = None
        self._open = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=REQUEST_BYTES_MAX, backlog=socket.SOMAXCONN
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= CONNECTIONS_MAX:
            with contextlib.suppress(ConnectionError, OSError):
                await self._reply(writer, 503, "text/plain", "too many connections\n")
            writer.close()
            return
        self._open += 1
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
                await self._reply(writer, 400, "text/plain", "bad request\n")
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await self._reply(writer, 400, "text/plain", "bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self._reply(writer, 405, "text/plain", "only GET\n")
                return
            route = self._routes.get(target)
            if route is None:
                await self._reply(writer, 404, "text/plain", "not found\n")
                return
            ctype, body = route()
            await self._reply(writer, 200, ctype, body, head_only=method == "HEAD")
        except (ConnectionError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, code: int, ctype: str, body: str, head_only: bool = False
    ) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            503: "Service Unavailable",
        }
        data = body.encode()
        header = (
            f"HTTP/1.1 {code} {reason.get(code, 'Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(header if head_only else header + data)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()


def json_route(fn: Callable[[], object]) -> Route:
    return lambda: ("application/json", json.dumps(fn()) + "\n")


def fetch_json(host: str, port: int, path: str, timeout_s: float = 2.0) -> object:
    """Blocking GET returning decoded JSON (used by ``raft status`` and ``raft cluster``)."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"GET {path} on {host}:{port} answered {resp.status}")
        return json.loads(body)
    finally:
        conn.close()
