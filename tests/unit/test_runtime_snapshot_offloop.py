"""Snapshots taken off the event loop: the state machines' snapshot views (a consistent,
cheap capture serialised later in another thread, byte for byte the old format), and the node
(a single-node cluster in-process, real DiskStorage): while a snapshot file is being written
the node goes on committing, the snapshot is not current and nothing is compacted until the
file is durable, at most one snapshot is in flight, and ``take_snapshot`` returns its index."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from single_node import single_node_config, wait_leader

from raft.machines import KV, Register, snapshot_view_of
from raft.machines.codec import decode_result, encode_command, packb
from raft.runtime.config import ClusterConfig
from raft.runtime.node import RaftNode
from raft.runtime.sessions import Applier, encode_entry, encode_open
from raft.storage.snapshots import SnapshotStore


def _put(m: Any, i: int, key: str, value: object) -> None:
    assert decode_result(m.apply(i, encode_command("put", key, value))).status.value == "ok"


def test_kv_view_is_the_state_when_taken_in_the_old_format() -> None:
    kv = KV()
    for i in range(20000):  # several sort runs, merged
        _put(kv, i, f"k{(i * 7919) % 20000:05d}", [i, {"x": "y" * (i % 5)}])
    old_format = packb({"machine": "kv", "items": [[k, kv.get(k)] for k in sorted(kv._data)]})
    view = kv.snapshot_view()
    _put(kv, 20001, "k00000", "changed")
    _put(kv, 20002, "new", 1)
    assert view() == old_format
    again = KV()
    again.restore(view())
    assert again.get("k00000") == [0, {"x": ""}] and again.get("new") is None
    assert len(again) == 20000 and again.state_bytes > 0


def test_register_view_and_fallback_for_machines_without_a_view() -> None:
    reg = Register()
    _put(reg, 1, "", "a")
    view = reg.snapshot_view()
    _put(reg, 2, "", "b")
    assert view() == packb({"machine": "register", "value": "a"})

    class Plain:  # a user machine with only the base protocol: snapshot() runs at once
        def __init__(self) -> None:
            self.calls = 0

        def snapshot(self) -> bytes:
            self.calls += 1
            return b"state-%d" % self.calls

    plain = Plain()
    fallback = snapshot_view_of(plain)  # type: ignore[arg-type]
    assert plain.calls == 1 and fallback() == b"state-1" and plain.calls == 1


def test_applier_view_holds_sessions_and_machine_as_of_capture() -> None:
    ap = Applier(KV())
    kh = b"h" * 32
    opened = decode_result(ap.apply(1, encode_open(kh))).value
    assert isinstance(opened, str)
    ap.apply(2, encode_entry(opened, 1, encode_command("put", "k", "v1"), kh))
    view = ap.snapshot_view()
    ap.apply(3, encode_entry(opened, 2, encode_command("put", "k", "v2"), kh))
    back = Applier(KV())
    back.restore(view())
    assert back.session_seq(opened) == 1 and ap.session_seq(opened) == 2
    assert decode_result(back.machine.query(encode_command("get", "k"))).value == "v1"


def test_snapshot_store_serialises_concurrent_writers(tmp_path: Path) -> None:
    from raft.core.types import ConfState, Snapshot, SnapshotMeta

    store = SnapshotStore(str(tmp_path))
    cs = ConfState(voters=frozenset({"n1"}))
    errors: list[BaseException] = []

    def write(lo: int) -> None:
        try:
            for i in range(lo, lo + 40, 2):
                store.save(Snapshot(SnapshotMeta(i, 1, cs), b"x" * 1000), durable=False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(lo,)) for lo in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors  # one gc never unlinks a file the other is deleting
    assert [i for i, _, _ in store.files()] == [39, 40]


def _config(tmp_path: Path) -> ClusterConfig:
    return single_node_config(tmp_path, snapshot_entries=1_000_000)  # only take_snapshot


def test_node_snapshot_file_is_written_while_the_node_commits(tmp_path: Path) -> None:
    async def main() -> None:
        node = RaftNode(_config(tmp_path), "n1", b"s" * 32)
        await node.start()
        try:
            await wait_leader(node)
            for i in range(30):
                await asyncio.wait_for(node.propose("", 0, encode_command("put", f"k{i}", i)), 5)
            storage: Any = node.storage
            real_write = storage.write_snapshot_file
            entered, release = threading.Event(), threading.Event()

            def slow_write(snap: Any) -> None:
                entered.set()
                assert release.wait(10)
                real_write(snap)

            storage.write_snapshot_file = slow_write
            first = storage.first_index()
            taking = asyncio.create_task(node.take_snapshot())
            assert await asyncio.to_thread(entered.wait, 10)
            captured = node.state.applied
            # The file is being written: the node goes on committing meanwhile, and the
            # snapshot is neither current nor used to compact yet.
            for i in range(30, 40):
                await asyncio.wait_for(node.propose("", 0, encode_command("put", f"k{i}", i)), 5)
            assert node.state.applied > captured
            assert storage.snapshot().meta.index == 0 and storage.first_index() == first
            second = asyncio.create_task(node.take_snapshot())  # waits for the first one
            await asyncio.sleep(0.05)
            assert node._snapshot_job is not None and not second.done()
            release.set()
            assert await asyncio.wait_for(taking, 10) == captured
            newer = await asyncio.wait_for(second, 10)
            assert newer == node.state.applied > captured  # everything applied by then
            assert storage.snapshot().meta.index == newer
            assert await node.take_snapshot() == newer  # nothing new: no new snapshot
        finally:
            await node.stop("test")
        text = (tmp_path / "log" / "events.jsonl").read_text()
        lines = [json.loads(x) for x in text.splitlines()]
        created = [e for e in lines if e["ev"] == "snapshot" and e["action"] == "create"]
        assert [e["index"] for e in created] == [captured, newer]
        assert all(e["bytes"] > 0 and 0 <= e["loop_ms"] <= e["ms"] for e in created)

        restarted = RaftNode(_config(tmp_path), "n1", b"s" * 32)  # restores off the loop
        await restarted.start()
        try:
            got = decode_result(restarted.machine.query(encode_command("get", "k39")))
            assert got.value == 39 and restarted.state.applied >= newer
        finally:
            await restarted.stop("test")

    asyncio.run(main())
