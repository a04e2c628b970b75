"""The runtime logs a commit before the applies it allows, so the log analysis can check
"applied <= committed" on real node logs (issue 14)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from single_node import single_node_config, wait_leader

from deploy.analysis.events import find_event_files, load_event_logs
from deploy.analysis.invariants import check_invariants
from raft.machines.codec import encode_command
from raft.runtime.node import RaftNode


def test_single_node_logs_commit_before_apply(tmp_path: Path) -> None:
    cfg = single_node_config(tmp_path)

    async def main() -> None:
        node = RaftNode(cfg, "n1", b"s" * 32)
        await node.start()
        try:
            await wait_leader(node)
            for i in range(5):
                await asyncio.wait_for(node.propose("c", i + 1, encode_command("put", "k", i)), 5)
        finally:
            await node.stop("test")

    asyncio.run(main())
    logs = load_event_logs(find_event_files(tmp_path / "log"), tmp_path)
    events = [e for evs in logs.events_by_node.values() for e in evs]
    rep = check_invariants(events)
    assert rep.applied_entries >= 6  # the leader's empty entry and five writes
    assert rep.valid, [str(v) for v in rep.violations]
