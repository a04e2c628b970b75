"""A slow WAL sync is logged: ``slow_sync`` names the milliseconds every write of the node
waited behind one fdatasync (a latency spike on a shared disk shows nothing else)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from single_node import single_node_config, wait_leader

from raft.machines.codec import encode_command
from raft.runtime import node as node_mod
from raft.runtime.node import RaftNode
from raft.storage import wal


def test_a_slow_sync_is_logged_with_its_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fdatasync
    slow = {"on": False}

    def fdatasync(fd: int) -> None:
        if slow["on"]:
            time.sleep(0.08)
        real(fd)

    monkeypatch.setattr(wal.os, "fdatasync", fdatasync)
    cfg = single_node_config(tmp_path)

    async def run() -> None:
        n = RaftNode(cfg, "n1", b"s" * 32)
        await n.start()
        try:
            await wait_leader(n)
            await asyncio.wait_for(n.propose("", 0, encode_command("put", "fast", 1)), 30)
            slow["on"] = True
            await asyncio.wait_for(n.propose("", 0, encode_command("put", "slow", 1)), 30)
        finally:
            slow["on"] = False
            await n.stop("test")

    asyncio.run(run())
    logs = list(tmp_path.rglob("events.jsonl"))
    events = [json.loads(x) for p in logs for x in p.read_text().splitlines()]
    slow_syncs = [e for e in events if e["ev"] == "slow_sync"]
    assert slow_syncs, "the 80 ms sync was not logged"
    assert all(e["ms"] >= node_mod.SLOW_SYNC_S * 1000 and e["tickets"] >= 1 for e in slow_syncs)
    assert any(e["ms"] >= 80 for e in slow_syncs)
    # Only the slow ones: the writes before the slowdown synced quickly.
    first_slow = min(i for i, e in enumerate(events) if e["ev"] == "slow_sync")
    assert any(e["ev"] == "persist" for e in events[:first_slow])
