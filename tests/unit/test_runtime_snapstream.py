"""Streamed InstallSnapshot (raft/runtime/snapstream.py) between two in-process transports on
loopback: chunking and reassembly, resume after a dropped connection and after a receiver
restart, stale partials discarded, a damaged partial rejected with a clear error and the
transfer restarted, a tampered chunk refused before it is written, and heartbeats delivered
while a slow transfer runs on its own connection."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_runtime_transport import _free_port, _wait

from raft.core.types import ConfState, Message, MessageType, Snapshot, SnapshotMeta
from raft.runtime import snapstream
from raft.runtime.snapstream import PartId, StreamError, list_partials
from raft.runtime.transport import Address, PeerTransport

SECRET = b"s" * 32
CHUNK = 4096
SIZE = 25 * CHUNK + 123  # 26 chunks, the last one short


def _data(size: int = SIZE, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _snap_msg(data: bytes, index: int = 40, term: int = 3, msg_term: int = 5) -> Message:
    meta = SnapshotMeta(
        index=index, term=term, conf_state=ConfState(voters=frozenset({"n1", "n2"}))
    )
    return Message(
        type=MessageType.SNAP, to="n2", sender="n1", term=msg_term, snapshot=Snapshot(meta, data)
    )


class Node:
    """One transport endpoint recording what the node would see."""

    def __init__(self, nid: str, peers: dict[str, Address], spool: Path) -> None:
        self.got: list[tuple[str, Message]] = []
        self.status: list[tuple[str, bool]] = []
        self.events: list[dict[str, Any]] = []
        self.refused: list[tuple[str, str, str]] = []
        self.t = PeerTransport(
            nid,
            "lab",
            SECRET,
            peers,
            on_message=lambda i, m: self.got.append((i, m)),
            on_unreachable=lambda p: None,
            on_refused=lambda p, r, d: self.refused.append((p, r, d)),
            on_snapshot_sent=lambda p, ok: self.status.append((p, ok)),
            snapshot_spool_dir=str(spool),
            snapshot_chunk_bytes=CHUNK,
            on_stream_event=lambda **f: self.events.append(f),
        )

    def actions(self, role: str = "") -> list[tuple[str, int]]:
        return [
            (e["action"], e.get("offset", -1)) for e in self.events if (e.get("role", "") == role)
        ]

    def snaps(self) -> list[Message]:
        return [m for _, m in self.got if m.type is MessageType.SNAP]


async def _pair(tmp: Path) -> tuple[Node, Node, dict[str, Address]]:
    peers = {
        "n1": Address("127.0.0.1", _free_port("127.0.0.1")),
        "n2": Address("127.0.0.2", _free_port("127.0.0.2")),
    }
    a, b = Node("n1", peers, tmp / "a"), Node("n2", peers, tmp / "b")
    await a.t.start(peers["n1"])
    await b.t.start(peers["n2"])
    return a, b, peers


async def _stop(*nodes: Node) -> None:
    for n in nodes:
        await n.t.stop()


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def _with_pair(tmp: Path, body: Callable[[Node, Node], Awaitable[None]]) -> None:
    """Run ``body`` with two started endpoints n1 -> n2; always stop both."""

    async def main() -> None:
        a, b, _ = await _pair(tmp)
        try:
            await body(a, b)
        finally:
            await _stop(a, b)

    _run(main())


def test_snapshot_streamed_in_chunks_and_reassembled(tmp_path: Path) -> None:
    async def main(a: Node, b: Node) -> None:
        data = _data()
        a.t.send("n1:0:7", _snap_msg(data))
        await _wait(lambda: a.status, 20)
        assert a.status == [("n2", True)]
        (got,) = b.got
        assert got[0] == "n1:0:7"  # the event-log id travels with the stream
        m = got[1]
        assert m.type is MessageType.SNAP and (m.sender, m.to, m.term) == ("n1", "n2", 5)
        assert m.snapshot is not None and m.snapshot.data == data
        assert m.snapshot.meta == _snap_msg(data).snapshot.meta  # type: ignore[union-attr]
        assert b.t.snapshot_receiver.bytes_received == len(data)
        assert a.actions() == [("start", 0), ("done", -1)]
        assert [x for x, _ in b.actions("receiver")] == ["start", "received"]
        assert list_partials(str(tmp_path / "b")) == []  # spool cleaned after hand-off

    _with_pair(tmp_path, main)


def test_dropped_connection_resumes_at_the_receivers_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(snapstream.TEST_FAULT_ENV, "cut_after=10")

    async def main(a: Node, b: Node) -> None:
        data = _data()
        a.t.send("", _snap_msg(data))
        await _wait(lambda: a.status, 20)
        assert a.status == [("n2", True)]
        assert b.snaps()[0].snapshot.data == data  # type: ignore[union-attr]
        acts = a.actions()
        assert [x for x, _ in acts] == ["start", "cut", "resume", "done"]
        resumed_at = acts[2][1]
        assert 0 < resumed_at <= 10 * CHUNK and resumed_at % CHUNK == 0
        recv = b.actions("receiver")
        assert ("resume", resumed_at) in recv
        # Only the chunks lost in flight were sent twice, not the whole snapshot.
        assert b.t.snapshot_receiver.bytes_received == len(data)
        assert a.t.snapshots.bytes_sent <= len(data) + snapstream.WINDOW_CHUNKS * CHUNK
        assert a.t.snapshots.resumed == 1

    _with_pair(tmp_path, main)


def _preload(spool: Path, pid: PartId, content: bytes) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / pid.file_name()
    path.write_bytes(content)
    return path


def test_partial_kept_across_a_receiver_restart_is_resumed(tmp_path: Path) -> None:
    data = _data()
    held = 7 * CHUNK
    _preload(tmp_path / "b", PartId(40, 3, len(data), "n1"), data[:held])

    async def main(a: Node, b: Node) -> None:
        a.t.send("", _snap_msg(data))
        await _wait(lambda: a.status, 20)
        assert b.snaps()[0].snapshot.data == data  # type: ignore[union-attr]
        assert ("resume", held) in a.actions()
        assert b.t.snapshot_receiver.bytes_received == len(data) - held

    _with_pair(tmp_path, main)


def test_stale_partials_are_discarded(tmp_path: Path) -> None:
    data = _data()
    spool = tmp_path / "b"
    same_sender_other = _preload(spool, PartId(40, 2, len(data), "n1"), b"x" * 100)
    older_other_sender = _preload(spool, PartId(30, 2, 999, "n3"), b"y" * 100)
    newer_other_sender = _preload(spool, PartId(50, 4, 999, "n3"), b"z" * 100)
    same_index_other_sender = _preload(spool, PartId(40, 3, 999, "n3"), b"w" * 100)

    async def main(a: Node, b: Node) -> None:
        a.t.send("", _snap_msg(data))
        await _wait(lambda: a.status, 20)
        assert b.snaps()[0].snapshot.data == data  # type: ignore[union-attr]
        assert ("start", 0) in a.actions()  # nothing of the other snapshot reused
        discarded = [e["index"] for e in b.events if e["action"] == "discard"]
        assert sorted(discarded) == [30, 40, 40]  # the last once n1's was installed

    _with_pair(tmp_path, main)
    assert not same_sender_other.exists() and not older_other_sender.exists()
    assert newer_other_sender.exists()  # another sender's newer snapshot may still come
    assert not same_index_other_sender.exists()


def test_damaged_partial_is_rejected_and_the_transfer_restarts(tmp_path: Path) -> None:
    data = _data()
    held = 5 * CHUNK
    bad = bytearray(data[:held])
    bad[1234] ^= 0x01  # damaged at rest: only the end-to-end checksum can tell
    _preload(tmp_path / "b", PartId(40, 3, len(data), "n1"), bytes(bad))

    async def main(a: Node, b: Node) -> None:
        a.t.send("", _snap_msg(data))
        await _wait(lambda: a.status, 20)
        assert a.status == [("n2", True)]
        snaps = b.snaps()
        assert len(snaps) == 1 and snaps[0].snapshot.data == data  # type: ignore[union-attr]
        rejected = [e for e in b.events if e["action"] == "rejected"]
        assert len(rejected) == 1 and "checksum mismatch" in rejected[0]["error"]
        assert b.t.snapshot_receiver.rejected == 1
        acts = [x for x, _ in a.actions()]
        assert acts == ["resume", "rejected", "start", "done"]

    _with_pair(tmp_path, main)


def test_heartbeats_flow_while_a_slow_snapshot_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(snapstream.TEST_FAULT_ENV, "chunk_delay_ms=40")  # ~1 s transfer

    async def main(a: Node, b: Node) -> None:
        await _wait(lambda: a.t.peer_connected("n2"), 10.0)
        a.t.send("", _snap_msg(_data()))
        beats = 0
        while not b.snaps():
            a.t.send("", Message(type=MessageType.HEARTBEAT, to="n2", sender="n1", term=5))
            beats += 1
            await asyncio.sleep(0.05)
            assert beats < 1000
        kinds = [m.type for _, m in b.got]
        first_snap = kinds.index(MessageType.SNAP)
        assert kinds[:first_snap].count(MessageType.HEARTBEAT) >= 10

    _with_pair(tmp_path, main)


def test_same_snapshot_offered_again_joins_the_running_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(snapstream.TEST_FAULT_ENV, "chunk_delay_ms=20")

    async def main(a: Node, b: Node) -> None:
        data = _data()
        a.t.send("", _snap_msg(data, msg_term=5))
        await asyncio.sleep(0.1)
        assert a.t.snapshots.active("n2")
        a.t.send("id2", _snap_msg(data, msg_term=6))  # the core re-sent it in a new term
        await _wait(lambda: a.status, 20)
        (snap,) = b.snaps()
        assert snap.term == 6  # the newest header went out with the data
        assert b.got[0][0] == "id2"
        assert [x for x, _ in a.actions()].count("start") == 1

    _with_pair(tmp_path, main)


# -- frames and the receiver's checks, without sockets ------------------------------------


def _frames(key: bytes, *frames: tuple[list[Any], bytes]) -> bytes:
    class _W:
        buf = bytearray()

        def write(self, b: bytes | memoryview) -> None:
            self.buf += b

    w = _W()
    sealer = snapstream._Mac(key)
    for header, payload in frames:
        snapstream.write_frame(w, sealer, header, payload)  # type: ignore[arg-type]
    return bytes(w.buf)


def test_a_tampered_chunk_is_refused_before_it_is_written(tmp_path: Path) -> None:
    key = b"k" * 32
    raw = bytearray(_frames(key, (["offer", 40, 3, 10000], b""), (["chunk", 0], b"a" * 4096)))
    raw[-100] ^= 0x04  # one bit flipped in the chunk's payload, in flight
    written = _receive(tmp_path, key, bytes(raw))
    assert isinstance(written[0], StreamError) and "MAC mismatch" in str(written[0])
    ((_pid, path),) = list_partials(str(tmp_path))
    assert os.path.getsize(path) == 0  # the offer opened it; nothing of the chunk written


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([(["chunk", 0], b"x")], "chunk before offer"),
        ([(["offer", 40, 3, 10], b""), (["chunk", 4], b"x")], "expected 0"),
        ([(["offer", 40, 3, 10], b""), (["chunk", 0], b"x" * 11)], "expected 0"),
        ([(["offer", 40, 3, -1], b"")], "total must be a non-negative integer"),
        ([(["offer", 40, 3, 1], b""), (["chunk", 0], b"x"), (["done", 1, [], ""], b"")], "done:"),
        ([(["nope"], b"")], "unknown snapshot stream frame"),
    ],
)
def test_receiver_refuses_protocol_violations(
    tmp_path: Path, frames: list[tuple[list[Any], bytes]], error: str
) -> None:
    key = b"k" * 32
    exc, delivered = _receive(tmp_path, key, _frames(key, *frames))
    assert isinstance(exc, StreamError) and error in str(exc), exc
    assert delivered == []


def _receive(spool: Path, key: bytes, raw: bytes) -> tuple[BaseException | None, list[Message]]:
    delivered: list[Message] = []

    async def main() -> BaseException | None:
        rx = snapstream.SnapshotReceiver(
            "n2", str(spool), lambda i, m: delivered.append(m), lambda **f: None
        )
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()

        class _W:
            def write(self, b: bytes | memoryview) -> None:
                pass

            async def drain(self) -> None:
                pass

        try:
            await rx.serve("n1", reader, _W(), key)  # type: ignore[arg-type]
        except Exception as exc:
            return exc
        return None

    return asyncio.run(main()), delivered


def test_chunk_size_is_bounded() -> None:
    for bad in (100, 64 << 20):
        with pytest.raises(ValueError, match="outside"):
            snapstream.SnapshotSender(None, None, None, bad)  # type: ignore[arg-type]


def test_chunk_size_in_cluster_yml_is_validated() -> None:
    from raft.runtime.config import ConfigFileError, parse_config

    doc: dict[str, Any] = {
        "nodes": {"n1": {"peer": "h:1", "client": "h:2", "http": "h:3"}},
        "snapshot_chunk_bytes": 65536,
    }
    assert parse_config(doc).snapshot_chunk_bytes == 65536
    with pytest.raises(ConfigFileError, match=r"snapshot_chunk_bytes: expected an integer in"):
        parse_config({**doc, "snapshot_chunk_bytes": 100})


def test_sender_gives_up_on_an_unreachable_peer_and_reports_failure(tmp_path: Path) -> None:
    async def main() -> None:
        peers = {
            "n1": Address("127.0.0.1", _free_port("127.0.0.1")),
            "n2": Address("127.0.0.2", _free_port("127.0.0.2")),  # nobody listens
        }
        a = Node("n1", peers, tmp_path / "a")
        await a.t.start(peers["n1"])
        try:
            a.t.send("", _snap_msg(_data()))
            await _wait(lambda: a.status, 20)
            assert a.status == [("n2", False)]  # the core probes and resends later
            acts = [x for x, _ in a.actions()]
            assert acts == ["cut"] * snapstream.ATTEMPTS_WITHOUT_PROGRESS_MAX + ["failed"]
            assert not a.t.snapshots.active("n2")
        finally:
            await _stop(a)

    _run(main())


def test_abandoned_streams_stop_and_the_partial_stays_for_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(snapstream.TEST_FAULT_ENV, "chunk_delay_ms=20")

    async def main(a: Node, b: Node) -> None:
        a.t.send("", _snap_msg(_data()))
        await _wait(lambda: b.t.snapshot_receiver.bytes_received >= 3 * CHUNK, 20)
        assert a.t.snapshots.abandon() == 1  # the node stopped leading
        await asyncio.sleep(0.3)
        assert not a.t.snapshots.active("n2") and a.status == [] and b.snaps() == []
        ((pid, path),) = list_partials(str(tmp_path / "b"))
        assert pid.sender == "n1" and os.path.getsize(path) >= 3 * CHUNK

    _with_pair(tmp_path, main)


def test_a_spool_write_failure_frees_the_partial_and_tells_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Any, offset: int, data: memoryview) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapstream._Partial, "write", full)

    async def main(a: Node, b: Node) -> None:
        a.t.send("", _snap_msg(_data()))
        await _wait(lambda: a.status, 20)
        assert a.status == [("n2", False)] and b.snaps() == []
        cuts = [e for e in a.events if e["action"] == "cut"]
        assert cuts and all("No space left on device" in e["error"] for e in cuts)
        assert list_partials(str(tmp_path / "b")) == []  # nothing left taking space

    _with_pair(tmp_path, main)
