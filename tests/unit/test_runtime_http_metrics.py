"""The minimal HTTP server (status codes for bad requests) and the Prometheus rendering."""

from __future__ import annotations

import asyncio
import json
import re

from raft.runtime.http import HttpServer, json_route
from raft.runtime.metrics import Histogram, Metrics, render


async def _get(port: int, raw: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(raw)
    await w.drain()
    w.write_eof()  # a request cut short is then answered at once, not after the read timeout
    data = await asyncio.wait_for(r.read(), 5.0)
    w.close()
    return data


def test_routes_and_refusals() -> None:
    async def main() -> None:
        srv = HttpServer({"/status": json_route(lambda: {"id": "n1", "term": 3})})
        await srv.start("127.0.0.1", 0)
        assert srv._server is not None
        port = srv._server.sockets[0].getsockname()[1]
        try:
            ok = await _get(port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = ok.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"id": "n1", "term": 3}
            assert b"Content-Length: %d" % len(body) in head
            assert (await _get(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
            assert (await _get(port, b"POST /status HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
            assert (await _get(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
            huge = b"GET /status HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
            assert (await _get(port, huge)).startswith(b"HTTP/1.1 400")
            assert (await _get(port, b"GET /status HTTP/1.1\r\n")).startswith(b"HTTP/1.1 400")
        finally:
            await srv.stop()

    asyncio.run(main())


def test_histogram_is_cumulative() -> None:
    h = Histogram()
    for v in (0.0005, 0.003, 0.003, 0.7, 10.0):
        h.observe(v)
    lines = h.render("lat", 'node="n1"')
    buckets = {
        m.group(1): int(m.group(2))
        for line in lines
        if (m := re.match(r'lat_bucket\{node="n1",le="([^"]+)"\} (\d+)', line))
    }
    assert buckets["0.001"] == 1 and buckets["0.005"] == 3 and buckets["1.0"] == 4
    assert buckets["+Inf"] == 5
    assert 'lat_count{node="n1"} 5' in lines


def test_render_names_and_values() -> None:
    m = Metrics(proposals_total=7, elections_total=2)
    text = render(m, "n1", "lab", term=4, role="leader", commit=9, applied=8, last_index=10)
    assert 'raft_term{node="n1",cluster="lab"} 4' in text
    assert 'raft_role{node="n1",cluster="lab"} 3' in text
    assert 'raft_proposals_total{node="n1",cluster="lab"} 7' in text
    assert 'raft_commit_index{node="n1",cluster="lab"} 9' in text
    assert "# TYPE raft_commit_latency_seconds histogram" in text
