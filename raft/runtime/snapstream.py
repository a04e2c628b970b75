"""InstallSnapshot streamed in bounded chunks over a connection of its own, resumable.

A snapshot used to travel as one peer frame, which capped every state machine at the frame
limit and stalled the heartbeats queued behind it. Here the leader's ``SNAP`` message (a
:class:`raft.core.types.Message` holding the whole :class:`Snapshot`) is sent on a separate,
authenticated peer connection (hello ``stream: "snap"``), so heartbeats and appends to that
peer keep flowing on the main one:

    dialer (leader)                          acceptor (follower)
    offer [index, term, total]        ->     opens or resumes its partial file
                                      <-     at [offset]          (what it already holds)
    chunk [offset] + bytes            ->     appends at offset (refused elsewhere)
                                      <-     at [offset]          (one per chunk)
    ...   (at most WINDOW_CHUNKS unacknowledged)
    done [crc32c, message]            ->     checks size and checksum of the whole file,
                                             hands the node the core's SNAP message
                                      <-     ok | bad [reason]

Every frame is MACed with the connection's session key (replies with a key derived from it),
so a flipped bit in flight closes the connection before anything is written; the end-to-end
CRC32C catches a partial file damaged at rest. The receiver spools to
``<data_dir>/snap-incoming/<index>-<term>-<total>-<sender>.part``, so memory holds one chunk
at a time until the end (the state machine is in memory anyway), and a dropped connection, or
a restart of the receiver, costs only the chunk in flight: the next offer of the same
(sender, index, term, size) resumes at the file's length. An offer of anything else discards
that sender's partial, and any partial of an older index.

The sender reports the outcome to the core (``report_snapshot``) once the receiver answered
``ok`` (installed hand-off done) or after it gave up (:data:`ATTEMPTS_WITHOUT_PROGRESS_MAX`
connections in a row that moved nothing); the core then resends the snapshot, which resumes.
Repeated ``SNAP`` messages for the snapshot already streaming are merged into it (the core
re-sends one every few election timeouts while a long transfer runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from raft.core.types import Message, MessageType, Snapshot
from raft.runtime import framing
from raft.runtime.codec import CodecError, message_from_wire, message_to_wire, pack, unpack
from raft.storage.checksum import crc32c

log = logging.getLogger("raft.runtime.snapstream")

STREAM_NAME = "snap"
"""The ``stream`` field of the hello that opens a snapshot connection."""
CHUNK_BYTES_DEFAULT = 1 << 20
CHUNK_BYTES_RANGE = (4096, 8 << 20)
"""Bounds of ``snapshot_chunk_bytes`` (cluster.yml): a chunk frame stays far below the 16 MiB
peer frame limit."""
WINDOW_CHUNKS = 4
"""Chunks sent but not yet acknowledged; bounds what sits in socket buffers."""
REPLY_TIMEOUT_S = 15.0
"""No reply for this long: the connection is considered dead and is redialled."""
ATTEMPTS_WITHOUT_PROGRESS_MAX = 3
BACKOFF_S = (0.05, 1.0)
SPOOL_DIR = "snap-incoming"
TEST_FAULT_ENV = "RAFTLAB_TEST_SNAPSTREAM"
"""Tests only: ``cut_after=N`` (the sender drops its connection once, after N chunks) and
``chunk_delay_ms=D`` (a pause after each chunk, to make a transfer last)."""
_MAC_BYTES = 32
_HEADER_BYTES_MAX = 1 << 20
"""A frame header (the ``done`` one carries the SNAP message's configuration)."""
_SEQ = struct.Struct(">Q")
_HLEN = struct.Struct(">H")
_INT_MAX = 2**63 - 1
_PART = re.compile(r"^(\d{20})-(\d{20})-(\d{20})-([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\.part$")

StatusHandler = Callable[[str, bool], None]
"""(peer, ok): the snapshot sent to ``peer`` was installed there (ok) or given up."""
EventHandler = Callable[..., None]
"""Keyword fields of one ``snapshot_stream`` event (docs/formats.md)."""
Dialer = Callable[[str], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]]]
"""Opens an authenticated snapshot connection to a peer: (reader, writer, session key)."""
Deliver = Callable[[str, Message], None]


class StreamError(Exception):
    """The other side broke the stream protocol, or a transfer failed; the text says how."""


# -- frames --------------------------------------------------------------------------------


class _Mac:
    """HMAC-SHA256 over ``seq64 + body`` (the scheme of raft.runtime.auth.FrameSealer), fed
    in parts so a chunk is never copied into one body to be sealed."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seq = 0

    def mac(self, *parts: bytes | memoryview) -> bytes:
        h = hmac.new(self._key, _SEQ.pack(self._seq), hashlib.sha256)
        for p in parts:
            h.update(p)
        self._seq += 1
        return h.digest()


def reply_key(session_key: bytes) -> bytes:
    """Replies are sealed with their own key: a frame cannot be reflected back."""
    return hmac.new(session_key, b"snap-reply", hashlib.sha256).digest()


def write_frame(
    writer: asyncio.StreamWriter, sealer: _Mac, header: list[Any], payload: memoryview | bytes = b""
) -> None:
    """``len | hlen | header | payload | mac``: the payload is handed to the transport as is."""
    head = pack(header)
    prefix = _HLEN.pack(len(head)) + head
    mac = sealer.mac(prefix, payload)
    size = len(prefix) + len(payload) + _MAC_BYTES
    writer.write(struct.pack(">I", size) + prefix)
    if payload:
        writer.write(payload)
    writer.write(mac)


async def read_frame(
    reader: asyncio.StreamReader, opener: _Mac, max_bytes: int
) -> tuple[list[Any], memoryview]:
    """The next frame's (header, payload); StreamError when it does not verify or parse."""
    frame = await framing.read_frame(reader, max_bytes)
    if len(frame) < _HLEN.size + _MAC_BYTES:
        raise StreamError("snapshot stream frame too short")
    view = memoryview(frame)
    body, mac = view[:-_MAC_BYTES], view[-_MAC_BYTES:]
    if not hmac.compare_digest(opener.mac(body), mac):
        raise StreamError("snapshot stream frame MAC mismatch")
    (hlen,) = _HLEN.unpack_from(body, 0)
    if _HLEN.size + hlen > len(body):
        raise StreamError("snapshot stream frame header runs past the frame")
    try:
        header = unpack(bytes(body[_HLEN.size : _HLEN.size + hlen]), _HEADER_BYTES_MAX)
    except CodecError as exc:
        raise StreamError(f"snapshot stream header: {exc}") from None
    if not (isinstance(header, list) and header and isinstance(header[0], str)):
        raise StreamError("snapshot stream header must be [kind, ...]")
    return header, body[_HLEN.size + hlen :]


def _int(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT_MAX:
        raise StreamError(f"snapshot stream: {what} must be a non-negative integer")
    return v


def _fields(header: list[Any], kind: str, n: int) -> list[Any]:
    if header[0] != kind or len(header) != n:
        raise StreamError(f"snapshot stream: expected {kind!r} with {n - 1} fields")
    return header


# -- sender --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Faults:
    cut_after: int = 0
    chunk_delay_s: float = 0.0

    @staticmethod
    def from_env() -> _Faults:
        spec = os.environ.get(TEST_FAULT_ENV, "")
        out = _Faults()
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = item.partition("=")
            if key == "cut_after" and value.isdigit():
                out = replace(out, cut_after=int(value))
            elif key == "chunk_delay_ms" and value.isdigit():
                out = replace(out, chunk_delay_s=int(value) / 1000.0)
            else:
                raise ValueError(f"{TEST_FAULT_ENV}: cannot parse {item!r}")
        return out


@dataclass(slots=True)
class _Outgoing:
    peer: str
    msg: Message
    """The newest SNAP message for this snapshot (its term and header go out with ``done``)."""
    msg_id: str = ""
    task: asyncio.Task[None] | None = None
    acked: int = -1
    """The receiver's last acknowledged offset on the current connection (-1: none yet)."""

    @property
    def snap(self) -> Snapshot:
        assert self.msg.snapshot is not None
        return self.msg.snapshot


class SnapshotSender:
    """One stream task per peer, at most; see the module docstring."""

    def __init__(
        self,
        dial: Dialer,
        on_status: StatusHandler,
        emit: EventHandler,
        chunk_bytes: int = CHUNK_BYTES_DEFAULT,
    ) -> None:
        lo, hi = CHUNK_BYTES_RANGE
        if not lo <= chunk_bytes <= hi:
            raise ValueError(f"snapshot chunk of {chunk_bytes} bytes is outside {lo}..{hi}")
        self._dial = dial
        self._on_status = on_status
        self._emit = emit
        self.chunk_bytes = chunk_bytes
        self._streams: dict[str, _Outgoing] = {}
        self._faults = _Faults.from_env()
        self._chunks_sent = 0
        self.bytes_sent = 0
        self.resumed = 0

    def offer(self, msg_id: str, msg: Message) -> None:
        """Stream ``msg`` (a SNAP) to ``msg.to``; never blocks. A stream already running to
        that peer keeps going: for the same snapshot it takes the newer message header, for
        another one it finishes first (its outcome is reported, and the core resends)."""
        if msg.type is not MessageType.SNAP or msg.snapshot is None:
            raise ValueError("only SNAP messages are streamed")
        cur = self._streams.get(msg.to)
        if cur is not None and cur.task is not None and not cur.task.done():
            if (cur.snap.meta.index, cur.snap.meta.term) == (
                msg.snapshot.meta.index,
                msg.snapshot.meta.term,
            ):
                cur.msg, cur.msg_id = msg, msg_id
            return
        out = _Outgoing(msg.to, msg, msg_id)
        out.task = asyncio.create_task(self._run(out), name=f"snapstream-{msg.to}")
        self._streams[msg.to] = out

    def active(self, peer: str) -> bool:
        cur = self._streams.get(peer)
        return cur is not None and cur.task is not None and not cur.task.done()

    async def cancel(self, peer: str) -> None:
        """Stop streaming to ``peer`` (removed from the cluster, or the node stops)."""
        cur = self._streams.pop(peer, None)
        if cur is not None and cur.task is not None:
            cur.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await cur.task

    async def stop(self) -> None:
        for peer in list(self._streams):
            await self.cancel(peer)

    def abandon(self) -> int:
        """Cancel every stream without waiting (this node stopped leading: its snapshots
        would be refused as stale). Partials stay on the receivers; returns how many."""
        n = 0
        for out in self._streams.values():
            if out.task is not None and not out.task.done():
                out.task.cancel()
                n += 1
        self._streams.clear()
        return n

    async def _run(self, out: _Outgoing) -> None:
        snap = out.snap
        data = memoryview(snap.data)
        total = len(data)
        crc = await asyncio.to_thread(crc32c, data)
        base = {"peer": out.peer, "index": snap.meta.index, "sterm": snap.meta.term, "total": total}
        stalls = 0
        while True:
            start = out.acked = -1
            try:
                reader, writer, key = await self._dial(out.peer)
                try:
                    sealer, opener = _Mac(key), _Mac(reply_key(key))
                    write_frame(writer, sealer, ["offer", snap.meta.index, snap.meta.term, total])
                    start = out.acked = await self._at(reader, opener)
                    if start > total:
                        raise StreamError(f"receiver holds {start} of {total} bytes")
                    if start > 0:
                        self.resumed += 1
                    self._emit(action="resume" if start else "start", offset=start, **base)
                    await self._send_chunks(out, reader, writer, sealer, opener, start)
                    header = message_to_wire(replace(out.msg, snapshot=replace(snap, data=b"")))
                    write_frame(writer, sealer, ["done", crc, header, out.msg_id])
                    await writer.drain()
                    verdict = await self._verdict(reader, opener)
                finally:
                    writer.close()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, framing.FrameError, StreamError) as exc:
                moved = out.acked > start
                stalls = 0 if moved else stalls + 1
                self._emit(action="cut", offset=max(out.acked, 0), error=_why(exc), **base)
                log.info("snapshot stream to %s cut at %d/%d: %s", out.peer, out.acked, total, exc)
                if stalls >= ATTEMPTS_WITHOUT_PROGRESS_MAX:
                    why = f"gave up after {stalls} connections without progress: {_why(exc)}"
                    return self._finish(out, False, why, base)
                lo, hi = BACKOFF_S
                await asyncio.sleep(min(hi, lo * 2**stalls) * random.uniform(0.5, 1.0))
                continue
            except Exception as exc:  # the handshake refused, or a bug: report, never hang
                return self._finish(out, False, _why(exc), base)
            if verdict == "ok":
                return self._finish(out, True, "", base)
            # The receiver found the whole file damaged and discarded it: start over, once
            # or twice, then let the core decide.
            self._emit(action="rejected", error=verdict, **base)
            stalls += 1
            if stalls >= ATTEMPTS_WITHOUT_PROGRESS_MAX:
                return self._finish(out, False, verdict, base)

    def _finish(self, out: _Outgoing, ok: bool, error: str, base: dict[str, Any]) -> None:
        if self._streams.get(out.peer) is out:
            del self._streams[out.peer]
        self._emit(action="done" if ok else "failed", **({"error": error} if error else {}), **base)
        self._on_status(out.peer, ok)

    async def _send_chunks(
        self,
        out: _Outgoing,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sealer: _Mac,
        opener: _Mac,
        offset: int,
    ) -> None:
        """Chunks from ``offset`` to the end (``out.acked`` follows the receiver)."""
        data = memoryview(out.snap.data)
        total = len(data)
        n = self.chunk_bytes
        while offset < total:
            piece = data[offset : offset + n]
            write_frame(writer, sealer, ["chunk", offset], piece)
            offset += len(piece)
            self.bytes_sent += len(piece)
            self._chunks_sent += 1
            await writer.drain()
            if self._faults.cut_after and self._chunks_sent == self._faults.cut_after:
                writer.transport.abort()  # tests: a connection lost mid-transfer
                raise ConnectionResetError("test fault: snapshot stream cut")
            if self._faults.chunk_delay_s:
                await asyncio.sleep(self._faults.chunk_delay_s)
            while offset - out.acked >= WINDOW_CHUNKS * n:
                out.acked = await self._at(reader, opener)

    async def _reply(self, reader: asyncio.StreamReader, opener: _Mac) -> list[Any]:
        header, _ = await asyncio.wait_for(read_frame(reader, opener, 64 << 10), REPLY_TIMEOUT_S)
        return header

    async def _at(self, reader: asyncio.StreamReader, opener: _Mac) -> int:
        header = await self._reply(reader, opener)
        if header[0] == "bad":
            raise StreamError(f"receiver refused: {header[1:]!r:.200}")
        return _int(_fields(header, "at", 2)[1], "offset")

    async def _verdict(self, reader: asyncio.StreamReader, opener: _Mac) -> str:
        """``ok`` or the receiver's reason for rejecting the whole snapshot."""
        while True:
            header = await self._reply(reader, opener)
            if header[0] == "at":
                continue  # acknowledgements of the last chunks
            if header[0] == "ok":
                return "ok"
            if header[0] == "bad" and len(header) == 2 and isinstance(header[1], str):
                return header[1][:500] or "rejected"
            raise StreamError(f"unexpected reply {header[0]!r:.40}")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# -- receiver ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartId:
    index: int
    term: int
    total: int
    sender: str

    def file_name(self) -> str:
        return f"{self.index:020d}-{self.term:020d}-{self.total:020d}-{self.sender}.part"


def list_partials(spool: str) -> list[tuple[PartId, str]]:
    try:
        names = os.listdir(spool)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _PART.match(name)
        if m:
            pid = PartId(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4))
            out.append((pid, os.path.join(spool, name)))
    return sorted(out, key=lambda p: (p[0].index, p[0].sender))


class _Partial:
    """An open partial file; ``offset`` is how many bytes of the snapshot it holds."""

    def __init__(self, pid: PartId, path: str) -> None:
        self.pid = pid
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(self.fd).st_size
        if size > pid.total:  # cannot be ours: start over
            os.ftruncate(self.fd, 0)
            size = 0
        self.offset = size

    def write(self, offset: int, data: memoryview) -> None:
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], offset + done)
        self.offset = offset + len(data)

    def read_verified(self, crc: int) -> bytes:
        """The whole snapshot, or StreamError (and the file removed) if its CRC32C differs."""
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) != self.pid.total:
            raise StreamError(f"partial file holds {len(data)} bytes, expected {self.pid.total}")
        got = crc32c(data)
        if got != crc:
            raise StreamError(
                f"snapshot {self.pid.index}/{self.pid.term} checksum mismatch "
                f"(crc32c {got:#010x}, sender says {crc:#010x}): discarded, restarting"
            )
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class SnapshotReceiver:
    """Serves snapshot connections: spools, verifies, delivers the core's SNAP message."""

    def __init__(
        self,
        node_id: str,
        spool_dir: str,
        deliver: Deliver,
        emit: EventHandler,
        frame_max: int = framing.FRAME_BYTES_MAX,
    ) -> None:
        self.node_id = node_id
        self.spool = spool_dir
        self._deliver = deliver
        self._emit = emit
        self._frame_max = frame_max
        self.bytes_received = 0
        self.rejected = 0

    def _open(self, pid: PartId) -> tuple[_Partial, list[PartId]]:
        """The partial for ``pid``, resumed if it exists; the sender's other partials and
        every partial of an older index are deleted (stale) and returned."""
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        stale = []
        for other, path in list_partials(self.spool):
            if other != pid and (other.sender == pid.sender or other.index < pid.index):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                stale.append(other)
        return _Partial(pid, os.path.join(self.spool, pid.file_name())), stale

    async def serve(
        self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes
    ) -> None:
        """Until the connection ends; StreamError (the caller logs a refusal) on a protocol
        violation. A partial is kept across connections."""
        opener, sealer = _Mac(key), _Mac(reply_key(key))
        part: _Partial | None = None
        try:
            while True:
                header, payload = await read_frame(reader, opener, self._frame_max)
                kind = header[0]
                if kind == "offer":
                    _, index, term, total = _fields(header, "offer", 4)
                    pid = PartId(
                        _int(index, "index"), _int(term, "term"), _int(total, "total"), peer
                    )
                    if part is not None:
                        part.close()
                    opened, stale = await asyncio.to_thread(self._open, pid)
                    part = opened
                    for old in stale:
                        self._emit(
                            action="discard",
                            role="receiver",
                            peer=old.sender,
                            index=old.index,
                            sterm=old.term,
                            offset=0,
                        )
                    self._emit(
                        action="resume" if opened.offset else "start",
                        role="receiver",
                        peer=peer,
                        index=pid.index,
                        sterm=pid.term,
                        total=pid.total,
                        offset=opened.offset,
                    )
                    write_frame(writer, sealer, ["at", opened.offset])
                elif kind == "chunk":
                    offset = _int(_fields(header, "chunk", 2)[1], "offset")
                    if part is None:
                        raise StreamError("chunk before offer")
                    if offset != part.offset or offset + len(payload) > part.pid.total:
                        raise StreamError(
                            f"chunk at {offset}+{len(payload)}, expected {part.offset} "
                            f"(of {part.pid.total})"
                        )
                    try:
                        await asyncio.to_thread(part.write, offset, payload)
                    except OSError as exc:
                        # Disk full (or failing): free what the partial took, so spooling
                        # never starves the log, and tell the sender why.
                        part.remove()
                        reason = f"cannot spool the snapshot in {self.spool}: {exc}"
                        self._emit(
                            action="rejected",
                            role="receiver",
                            peer=peer,
                            index=part.pid.index,
                            sterm=part.pid.term,
                            error=reason,
                        )
                        part = None
                        write_frame(writer, sealer, ["bad", reason])
                        await writer.drain()
                        return
                    self.bytes_received += len(payload)
                    write_frame(writer, sealer, ["at", part.offset])
                elif kind == "done":
                    _, crc, wire, msg_id = _fields(header, "done", 4)
                    if part is None:
                        raise StreamError("done before offer")
                    if not isinstance(msg_id, str) or len(msg_id) > 256:
                        raise StreamError("done: message id must be a short string")
                    verdict = await self._finish(peer, part, _int(crc, "crc"), wire, msg_id)
                    part = None
                    write_frame(writer, sealer, ["ok"] if verdict is None else ["bad", verdict])
                else:
                    raise StreamError(f"unknown snapshot stream frame {kind!r:.40}")
                await writer.drain()
        finally:
            if part is not None:
                part.close()

    async def _finish(
        self, peer: str, part: _Partial, crc: int, wire: object, msg_id: str
    ) -> str | None:
        """Verify the whole file and deliver it; None, or why it was rejected."""
        pid = part.pid
        base = {"role": "receiver", "peer": peer, "index": pid.index, "sterm": pid.term}
        if part.offset != pid.total:
            raise StreamError(f"done at {part.offset} of {pid.total} bytes")
        try:
            msg = message_from_wire(wire)
        except CodecError as exc:
            raise StreamError(f"done: {exc}") from None
        snap = msg.snapshot
        if (
            msg.type is not MessageType.SNAP
            or snap is None
            or snap.data
            or (snap.meta.index, snap.meta.term) != (pid.index, pid.term)
            or msg.sender != peer
            or msg.to != self.node_id
        ):
            raise StreamError("done: the message does not match the offered snapshot")
        part.close()
        try:
            data = await asyncio.to_thread(part.read_verified, crc)
        except StreamError as exc:
            self.rejected += 1
            part.remove()
            self._emit(action="rejected", error=str(exc), **base)
            log.warning("snapshot from %s rejected: %s", peer, exc)
            return str(exc)
        self._deliver(msg_id, replace(msg, snapshot=replace(snap, data=data)))
        part.remove()
        self._emit(action="received", total=pid.total, **base)
        for old, path in list_partials(self.spool):  # other senders' older snapshots
            if old.index <= pid.index:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                self._emit(action="discard", role="receiver", peer=old.sender, index=old.index)
        return None
