"""RaftNode in-process (a single-node cluster on loopback, real DiskStorage): writes, reads,
at-most-once sessions, and the storage-failure path (no write acknowledged after the disk
refused it, `storage_error` logged, further writes refused)."""

from __future__ import annotations

import asyncio
import errno
import json
import random
import time
from pathlib import Path

import pytest
from single_node import cluster_config, single_node_config, wait_leader

from raft.core.types import Message, MessageType, Role
from raft.machines.codec import decode_result, encode_command
from raft.runtime.config import ClusterConfig
from raft.runtime.node import NodeUnavailableError, RaftNode
from raft.runtime.sessions import key_hash
from raft.storage.errors import StorageIOError


def _config(tmp_path: Path) -> ClusterConfig:
    return single_node_config(tmp_path)


def test_write_read_and_session(tmp_path: Path) -> None:
    async def main() -> None:
        node = RaftNode(_config(tmp_path), "n1", b"s" * 32)
        await node.start()
        try:
            await wait_leader(node)
            kh = key_hash(b"k" * 16)
            opened = await asyncio.wait_for(node.propose("", 0, b"", kh), 5)
            c = decode_result(opened).value
            put = encode_command("put", "k", "v")
            r1 = await asyncio.wait_for(node.propose(c, 1, put, kh), 5)
            assert decode_result(r1).status.value == "ok"
            cas = encode_command("cas", "k", "w", "v")
            first = await asyncio.wait_for(node.propose(c, 2, cas, kh), 5)
            again = await asyncio.wait_for(node.propose(c, 2, cas, kh), 5)  # a retry
            assert first == again and decode_result(first).status.value == "ok"
            await asyncio.wait_for(node.read_barrier(), 5)
            got = decode_result(node.machine.query(encode_command("get", "k")))
            assert got.value == "w"
            assert node.status()["applied"] >= 3 and node.status()["role"] == "leader"
        finally:
            await node.stop("test")

    asyncio.run(main())


def test_storage_failure_stops_writes_and_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        node = RaftNode(_config(tmp_path), "n1", b"s" * 32)
        await node.start()
        try:
            await wait_leader(node)
            await asyncio.wait_for(node.propose("c", 1, encode_command("put", "k", 1)), 5)

            def broken_sync() -> None:
                raise StorageIOError("sync", str(tmp_path / "data"), OSError(errno.EIO, "EIO"))

            def broken_fdatasync(fd: int) -> None:
                raise OSError(errno.EIO, "EIO")

            # The in-place path syncs through storage.sync, the asynchronous writer thread
            # through fdatasync on the WAL: both fail.
            node.storage.sync = broken_sync  # type: ignore[method-assign]
            monkeypatch.setattr("os.fdatasync", broken_fdatasync)
            with pytest.raises(NodeUnavailableError) as info:
                await asyncio.wait_for(node.propose("c", 2, encode_command("put", "k", 2)), 5)
            assert info.value.definite is False  # its entry may have reached peers
            assert node.status()["storage_failed"].startswith("StorageIOError")
            assert not node.is_leader()
            with pytest.raises(NodeUnavailableError) as refused:
                await node.propose("c", 3, encode_command("put", "k", 3))
            assert refused.value.definite is True
            with pytest.raises(NodeUnavailableError):
                await node.read_barrier()
        finally:
            await node.stop("test")
        lines = [
            json.loads(x) for x in (tmp_path / "log" / "events.jsonl").read_text().splitlines()
        ]
        errors = [e for e in lines if e["ev"] == "storage_error"]
        assert len(errors) == 1 and "EIO" in errors[0]["what"]
        # Nothing after the failure was reported applied.
        applied = [row[0] for e in lines if e["ev"] == "apply" for row in e["entries"]]
        assert applied == sorted(applied) and lines[-1]["ev"] == "stop"

    asyncio.run(main())


def test_ticks_catch_up_with_elapsed_time_after_a_pause(tmp_path: Path) -> None:
    """Issue 10 "Also": after a pause the driver ticked once instead of once per elapsed
    tick period (wrong for leases). Block the loop for 30 tick periods: the next driver pass
    must tick several times (bounded by the election timeout, 10 ticks here)."""

    async def main() -> None:
        node = RaftNode(_config(tmp_path), "n1", b"s" * 32)
        await node.start()
        try:
            await wait_leader(node)
            passes = [0]
            ticks_in_pass: dict[int, int] = {}
            step_inbox, tick = node._step_inbox, node.core.tick

            def counting_step_inbox() -> None:
                passes[0] += 1
                step_inbox()

            def counting_tick() -> None:
                ticks_in_pass[passes[0]] = ticks_in_pass.get(passes[0], 0) + 1
                tick()

            node._step_inbox = counting_step_inbox  # type: ignore[method-assign]
            node.core.tick = counting_tick  # type: ignore[method-assign]
            await asyncio.sleep(0.05)
            time.sleep(0.3)  # a pause: the event loop is blocked for 30 tick periods
            await asyncio.sleep(0.1)
            burst = max(ticks_in_pass.values())
            assert 5 <= burst <= node.cfg.election_timeout_ticks
        finally:
            await node.stop("test")

    asyncio.run(main())


def test_messages_received_during_a_pause_are_stepped_before_its_ticks(tmp_path: Path) -> None:
    """Issue 12 (catch-up): after a pause the driver ran the ticks the pause was worth
    before stepping the messages that arrived during it, so a follower whose leader's
    heartbeat was waiting in its inbox timed out and campaigned (pre-vote) against a live
    leader, and a check-quorum leader could step down with its quorum's answers unread.
    A follower of n2 (which never runs; its heartbeats are fed by hand) is paused for 30
    tick periods with a heartbeat from n2 waiting: it must not campaign."""
    cfg = cluster_config(tmp_path, ("n1", "n2", "n3"))

    async def main() -> None:
        node = RaftNode(cfg, "n1", b"s" * 32, rng=random.Random(7))
        await node.start()
        sent: list[MessageType] = []
        send = node._send

        def recording_send(m: Message) -> None:
            sent.append(m.type)
            send(m)

        node._send = recording_send  # type: ignore[method-assign]
        try:
            raft, e = node.core.raft, cfg.election_timeout_ticks
            term = 2

            def heartbeat() -> None:
                node._on_peer_message("", Message(MessageType.HEARTBEAT, "n1", "n2", term))

            heartbeat()
            await asyncio.sleep(0.03)
            # A randomised timeout above the burst's cap, so only a late step can time out.
            while raft.randomized_election_timeout == e:
                term += 1
                heartbeat()
                await asyncio.sleep(0.03)
            assert (raft.role, raft.lead, raft.term) == (Role.FOLLOWER, "n2", term)
            heartbeat()
            await asyncio.sleep(0)
            # Wait until a burst of e ticks would reach the timeout (but has not yet).
            for _ in range(2000):
                if raft.election_elapsed >= raft.randomized_election_timeout - e:
                    break
                await asyncio.sleep(0.001)
            sent.clear()
            heartbeat()  # arrives at the start of the pause
            time.sleep(0.3)  # the loop is blocked for 30 tick periods
            await asyncio.sleep(0.004)  # one driver pass, less than a tick
            assert MessageType.PRE_VOTE not in sent, sent
            assert (raft.role, raft.lead, raft.term) == (Role.FOLLOWER, "n2", term)
        finally:
            await node.stop("test")

    asyncio.run(main())


def test_a_node_without_its_durable_storage_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 "Also": when raft.storage failed to import, the node ran on MemoryStorage and
    forgot every acknowledged write and vote at its next restart."""
    import sys

    from raft.runtime.backend import StorageUnavailableError

    monkeypatch.setitem(sys.modules, "raft.storage", None)  # the import now fails

    async def main() -> None:
        with pytest.raises(StorageUnavailableError, match=r"importing raft\.storage failed"):
            RaftNode(_config(tmp_path), "n1", b"s" * 32)

    asyncio.run(main())
