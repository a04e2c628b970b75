"""Shared helpers of the runtime's integration tests: a real local cluster of node processes
on 127.0.0.x (the same code as ``raft cluster up``), always torn down."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raft.runtime.localcluster import LocalCluster
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
