"""Shared helpers of the runtime's integration tests: a real local cluster of node processes
on 127.0.0.x (the same code as ``raft cluster up``), always torn down."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status
from raft.runtime.transport import Address

BOUND_S = 20.0
"""Generous upper bound for anything that should take a second or two (CI is loaded)."""


def _ports_free(base: int, nodes: int) -> bool:
    for i in range(1, nodes + 1):
        for port in (base, base + 1, base + 2):
            with socket.socket() as s:
                try:
                    s.bind((f"127.0.0.{i}", port))
                except OSError:
                    return False
    return True


def pick_base_port(nodes: int) -> int:
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000, 3)
        if _ports_free(base, nodes):
            return base
    raise RuntimeError("no free port range found")


@contextmanager
def running_cluster(path: str, nodes: int = 3, **kw: Any) -> Iterator[LocalCluster]:
    lc = LocalCluster(path)
    try:
        lc.up(nodes=nodes, base_port=pick_base_port(nodes), **kw)
        lc.wait_leader(BOUND_S)
        yield lc
    finally:
        lc.down()


def client_addrs(lc: LocalCluster) -> list[Address]:
    return [a.client for a in lc.config().nodes.values()]


def wait_for(cond: Callable[[], Any], timeout_s: float = BOUND_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s:.0f}s")


def events(lc: LocalCluster, node: str) -> list[dict[str, Any]]:
    path = os.path.join(lc.config().node_log_dir(node), "events.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def put_all(addrs: list[Address], items: dict[str, str]) -> None:
    """Write every item, one after the other; each must be acknowledged."""
    async with RaftClient(addrs, op_timeout_s=BOUND_S) as c:
        for k, v in items.items():
            resp = await c.put(k, v)
            assert resp.status is Status.OK, (k, resp)


def metric_total(lc: LocalCluster, node: str, name: str) -> float:
    """The sum of a metric's samples on ``node``'s /metrics."""
    http = lc.config().nodes[node].http
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=BOUND_S) as r:
        text = r.read().decode()
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + "{"))


def raft_cli(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    """``raft ARGS`` in a child process (the exit status is the caller's to check)."""
    return subprocess.run(
        [sys.executable, "-m", "raft.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
