"""A single-node cluster in-process (loopback, real DiskStorage), shared by the runtime's
unit tests: its config, a wait for its leadership, and the node serving its client port."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from raft.runtime.config import ClusterConfig, NodeAddresses
from raft.runtime.node import RaftNode
from raft.runtime.server import ClientServer
from raft.runtime.transport import Address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def single_node_config(tmp_path: Path, **kw: Any) -> ClusterConfig:
    """Node ``n1`` alone, data and log under ``tmp_path``, 10 ms ticks."""
    return cluster_config(tmp_path, ("n1",), **kw)


def cluster_config(tmp_path: Path, ids: tuple[str, ...], **kw: Any) -> ClusterConfig:
    """Nodes ``ids`` on free loopback ports, data and log under ``tmp_path``, 10 ms ticks."""
    nodes = {n: NodeAddresses(*(Address("127.0.0.1", free_port()) for _ in range(3))) for n in ids}
    return ClusterConfig(
        cluster="unit",
        nodes=nodes,
        data_dir=str(tmp_path / "data"),
        log_dir=str(tmp_path / "log"),
        tick_ms=10,
        **kw,
    )


async def wait_leader(node: RaftNode) -> None:
    for _ in range(500):
        if node.is_leader():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("single node did not become leader")


async def serving(cfg: ClusterConfig) -> tuple[RaftNode, ClientServer]:
    """``n1`` of ``cfg`` started, leading, and serving its client port (no client auth)."""
    node = RaftNode(cfg, "n1", b"s" * 32)
    await node.start()
    server = ClientServer(node)
    await server.start()
    await wait_leader(node)
    return node, server
