"""Peer transport over TCP: authenticated, length-prefixed frames carrying batches of Raft
messages.

Each node dials every peer once and only sends on that connection; it receives on the
connections peers dial to it. Per-peer send queues are bounded and drop the oldest message
when full: Raft tolerates loss, and a slow peer must not make the node's memory grow. When an
established connection fails its queue is cleared (what it held is stale; Raft resends) and
the core is told the peer is unreachable; reconnection backs off exponentially up to 1 s.
An AppendEntries still queued is replaced by a newer one that carries everything it does
(same term and prevLogIndex/Term, at least its entries): a leader resends its probe on every
heartbeat response, and those identical copies (up to ``max_msg_bytes`` each) otherwise all
reached a follower that was slow to answer (see ``_supersedes``).

Frame body (after the handshake, see :mod:`raft.runtime.auth`): msgpack array of
``[msg_id, message]`` pairs, ``message`` as in :mod:`raft.runtime.codec`. ``msg_id`` is the
event-log id of the send (``""`` when the sender did not record it).

Snapshots do not go on that connection: :mod:`raft.runtime.snapstream` streams them in
chunks over a second connection per peer (hello ``stream: "snap"``), resumable, so a big
snapshot neither hits the frame limit nor delays heartbeats.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from raft.core.types import Message, MessageType
from raft.runtime import auth, framing, snapstream
from raft.runtime.auth import HandshakeRefusedError, RefusalReason
from raft.runtime.codec import CodecError, message_from_wire, message_to_wire, pack, unpack

log = logging.getLogger("raft.runtime.transport")

SEND_QUEUE_MSGS_MAX = 4096
BATCH_BYTES_MAX = 4 << 20
HANDSHAKE_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 1.0
QUEUE_WHILE_DOWN_MAX = 8
"""Messages kept for a peer whose last connection attempt failed (the newest ones)."""
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0

MessageHandler = Callable[[str, Message], None]
"""Called with (msg_id, message) for each authenticated incoming message."""
PeerHandler = Callable[[str], None]
RefusalHandler = Callable[[str, str, str], None]
"""Called with (peer, reason, detail) when a connection is refused."""
SnapshotStatusHandler = Callable[[str, bool], None]
"""Called with (peer, ok) when a snapshot stream to ``peer`` ended (installed, or given up)."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class _Outbound:
    """One peer's queue and the task that keeps a connection to it."""

    def __init__(self, peer: str, addr: Address, queue_max: int) -> None:
        self.peer = peer
        self.addr = addr
        self.queue: collections.deque[tuple[str, Message]] = collections.deque(maxlen=queue_max)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.connected = False
        self.down = False
        """The last attempt to connect (or the connection) failed: queue only a few."""
        self.last_app: tuple[str, Message] | None = None
        """The newest AppendEntries still in ``queue`` (``None`` once sent or dropped)."""
        self.superseded = 0
        self.redial = asyncio.Event()
        """Set when the peer dialled us while we had no connection to it: it is back, so
        end the reconnect backoff now (a restarted follower waited up to 1 s for the
        leader's next attempt before its catch-up could start; issue 12)."""


class PeerTransport:
    def __init__(
        self,
        node_id: str,
        cluster: str,
        secret: bytes,
        peers: dict[str, Address],
        on_message: MessageHandler,
        on_unreachable: PeerHandler,
        on_refused: RefusalHandler,
        queue_max: int = SEND_QUEUE_MSGS_MAX,
        frame_bytes_max: int = framing.FRAME_BYTES_MAX,
        on_snapshot_sent: SnapshotStatusHandler | None = None,
        snapshot_spool_dir: str | None = None,
        snapshot_chunk_bytes: int = snapstream.CHUNK_BYTES_DEFAULT,
        on_stream_event: snapstream.EventHandler | None = None,
        on_peer_learned: Callable[[str, Address], None] | None = None,
        on_peer_closed: PeerHandler | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self._secret = secret
        self._on_message = on_message
        self._on_unreachable = on_unreachable
        self._on_refused = on_refused
        self._on_snapshot_sent = on_snapshot_sent
        self._on_peer_closed = on_peer_closed
        """Called when a peer closes its (current, authenticated) connection to us: EOF or
        reset, most likely its process died (a node hint to campaign early, not an error)."""
        self._frame_max = frame_bytes_max
        self._queue_max = queue_max
        self._out = {p: _Outbound(p, a, queue_max) for p, a in peers.items() if p != node_id}
        self._known = set(peers)
        self._server: asyncio.Server | None = None
        self._inbound: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # -- begin: bounded inbound connections (hardening; issue 10 §4) --
        self._inbound_max = 4 * len(self._known) + 16
        """Open inbound connections, handshaking or not; beyond it new ones are closed."""
        self._inbound_by_peer: dict[str, asyncio.StreamWriter] = {}
        """The one authenticated inbound connection per peer: a newer handshake from the
        same peer (a reconnect, or a replayed hello) closes the older one."""
        # -- end: bounded inbound connections --
        self._closing = False
        self._local_addr: tuple[str, int] | None = None
        self.frames_refused = 0
        # -- begin: snapshot streams (issue 11, raft/runtime/snapstream.py) --
        emit = on_stream_event or (lambda **_: None)
        self._spool_tmp = snapshot_spool_dir is None
        spool = snapshot_spool_dir or tempfile.mkdtemp(prefix=f"raft-snap-{node_id}-")
        self.snapshots = snapstream.SnapshotSender(
            self._dial_stream,
            on_snapshot_sent or (lambda _peer, _ok: None),
            emit,
            snapshot_chunk_bytes,
        )
        self.snapshot_receiver = snapstream.SnapshotReceiver(
            node_id, spool, on_message, emit, frame_bytes_max
        )
        self._snap_inbound_by_peer: dict[str, asyncio.StreamWriter] = {}
        self._cancelling: set[asyncio.Task[None]] = set()
        """One snapshot stream per peer as well: a newer one closes the older."""
        # -- end: snapshot streams --
        # -- begin: membership (issue 11) --
        self._listen = ""
        self._on_peer_learned = on_peer_learned
        self.accept_unknown = False
        """While this node is in no configuration (it waits to join), an authenticated
        hello from an unknown node that says where it listens adds that node as a peer:
        it is the leader that just added us, and we must be able to answer it."""
        # -- end: membership --

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, listen: Address, advertise: Address | None = None) -> None:
        """Listen on ``listen``; ``advertise`` (default: the same) is the address the
        handshake tells peers to dial back (a 1:1-NAT node listens on its private address
        and advertises its public one)."""
        # Dial from our own peer address, so peers (and firewall rules) see who we are.
        self._local_addr = (listen.host, 0) if listen.host not in ("0.0.0.0", "::") else None
        self._listen = str(advertise or listen)
        self._server = await asyncio.start_server(
            self._accept, listen.host, listen.port, backlog=socket.SOMAXCONN
        )
        for out in self._out.values():
            out.task = asyncio.create_task(self._dial_loop(out), name=f"dial-{out.peer}")

    async def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        await self.snapshots.stop()
        tasks = [o.task for o in self._out.values() if o.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for w in list(self._inbound.values()):
            w.close()  # the receive loops see the end of their stream and return
        if self._inbound:
            await asyncio.wait(list(self._inbound), timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._spool_tmp:
            shutil.rmtree(self.snapshot_receiver.spool, ignore_errors=True)

    # -- begin: membership: peers come and go with the configuration (issue 11) -----------

    def add_peer(self, peer: str, addr: Address) -> None:
        """Start talking to ``peer`` at ``addr`` (a new member); a known peer whose address
        changed is redialled. Idempotent."""
        if peer == self.node_id:
            return
        out = self._out.get(peer)
        if out is not None:
            if out.addr == addr:
                return
            self.remove_peer(peer)
        out = _Outbound(peer, addr, self._queue_max)
        self._out[peer] = out
        self._known.add(peer)
        self._inbound_max = 4 * len(self._known) + 16
        if self._server is not None and not self._closing:
            out.task = asyncio.create_task(self._dial_loop(out), name=f"dial-{peer}")

    def remove_peer(self, peer: str) -> None:
        """Stop talking to ``peer`` (removed from the configuration): its queue and
        connection go, and its connections to us are refused from now on. Idempotent."""
        out = self._out.pop(peer, None)
        self._known.discard(peer)
        if out is not None and out.task is not None:
            out.task.cancel()
        inbound = self._inbound_by_peer.get(peer)
        if inbound is not None:
            inbound.close()
        if self.snapshots.active(peer):  # a snapshot stream to a removed node is moot
            with contextlib.suppress(RuntimeError):  # no running loop: nothing streams
                task = asyncio.get_running_loop().create_task(self.snapshots.cancel(peer))
                self._cancelling.add(task)
                task.add_done_callback(self._cancelling.discard)

    def peers(self) -> dict[str, Address]:
        """The peers this node currently dials, by id."""
        return {p: o.addr for p, o in self._out.items()}

    def _maybe_learn(self, hello: auth.Hello) -> None:
        if not (self.accept_unknown and hello.addr):
            return
        try:
            host, _, port = hello.addr.rpartition(":")
            addr = Address(host.strip("[]"), int(port))
        except ValueError:
            return
        if not host or not 0 < addr.port < 65536:
            return
        log.info("learned peer %s at %s from its handshake", hello.node, addr)
        self.add_peer(hello.node, addr)
        if self._on_peer_learned is not None:
            self._on_peer_learned(hello.node, addr)

    # -- end: membership ---------------------------------------------------------------------

    # -- sending ---------------------------------------------------------------------------

    def send(self, msg_id: str, msg: Message) -> bool:
        """Queue ``msg`` for ``msg.to``; False if the destination is unknown. Never blocks;
        a full queue drops its oldest message."""
        out = self._out.get(msg.to)
        if out is None:
            return False
        if msg.type is MessageType.SNAP and msg.snapshot is not None:
            self.snapshots.offer(msg_id, msg)  # its own connection, in chunks
            return True
        if msg.type is MessageType.APP:
            older = out.last_app
            if older is not None and _supersedes(msg, older[1]):
                # The queued copy says nothing the new one does not (issue 12: a slow
                # follower was sent the same 1 MiB probe once per heartbeat response).
                out.queue.remove(older)
                out.superseded += 1
        if len(out.queue) == out.queue.maxlen or (
            out.down and len(out.queue) >= QUEUE_WHILE_DOWN_MAX
        ):
            # Full, or the peer is down: drop the oldest. A leader probes a dead follower
            # with a full AppendEntries every heartbeat; queued, those stale copies (up to
            # max_msg_bytes each) were all sent on reconnect, delaying the catch-up by
            # seconds. Raft resends whatever is lost.
            self._popleft(out)
            out.dropped += 1
        item = (msg_id, msg)
        out.queue.append(item)
        if msg.type is MessageType.APP:
            out.last_app = item
        out.wake.set()
        return True

    @staticmethod
    def _popleft(out: _Outbound) -> tuple[str, Message]:
        item = out.queue.popleft()
        if item is out.last_app:
            out.last_app = None
        return item

    def peer_connected(self, peer: str) -> bool:
        out = self._out.get(peer)
        return out is not None and out.connected

    async def _dial_loop(self, out: _Outbound) -> None:
        failures = 0
        while not self._closing:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, w = await asyncio.wait_for(
                    asyncio.open_connection(
                        out.addr.host, out.addr.port, local_addr=self._local_addr
                    ),
                    CONNECT_TIMEOUT_S,
                )
                writer = w
                sealer = auth.FrameSealer(
                    await asyncio.wait_for(
                        self._dial_handshake(out.peer, reader, w), HANDSHAKE_TIMEOUT_S
                    )
                )
                out.connected = True
                out.down = False
                failures = 0
                await self._pump(out, reader, w, sealer)
            except asyncio.CancelledError:
                raise
            except HandshakeRefusedError as exc:
                self._on_refused(out.peer, exc.reason.value, exc.detail)
            except (OSError, TimeoutError, framing.FrameError) as exc:
                level = logging.INFO if failures == 0 else logging.DEBUG
                log.log(level, "connection to %s (%s) failed: %r", out.peer, out.addr, exc)
            finally:
                if writer is not None:
                    writer.close()
                if out.connected or failures == 0:
                    self._on_unreachable(out.peer)
                if out.connected:
                    out.queue.clear()  # stale after a lost connection; Raft resends
                    out.last_app = None
                out.connected = False
                out.down = True
                while len(out.queue) > QUEUE_WHILE_DOWN_MAX:
                    self._popleft(out)
                    out.dropped += 1
            failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(failures, 6))
            out.redial.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(out.redial.wait(), delay * random.uniform(0.5, 1.0))

    async def _dial_handshake(
        self,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: str = "",
    ) -> bytes:
        """The session key of a connection to ``peer`` (the main one, or a ``stream``)."""
        mine = auth.Hello(
            self.cluster, self.node_id, auth.new_nonce(), to=peer, stream=stream, addr=self._listen
        )
        writer.write(framing.encode_frame(auth.encode_hello(self._secret, mine)))
        await writer.drain()
        frame = await framing.read_frame(reader, auth.HELLO_BYTES_MAX)
        theirs = auth.decode_ack(frame, self._secret, self.cluster, mine.nonce)
        if theirs.node != peer:
            raise HandshakeRefusedError(
                RefusalReason.UNKNOWN_NODE, f"expected {peer}, answered {theirs.node}", peer
            )
        if theirs.stream != stream:
            raise HandshakeRefusedError(
                RefusalReason.BAD_VERSION, f"{peer} does not serve {stream!r} streams", peer
            )
        return auth.session_key(self._secret, mine, theirs)

    async def _dial_stream(
        self, peer: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """A snapshot stream connection to ``peer`` (snapstream's dialer)."""
        out = self._out.get(peer)
        if out is None or self._closing:
            raise ConnectionRefusedError(f"{peer} is not a peer")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(out.addr.host, out.addr.port, local_addr=self._local_addr),
            CONNECT_TIMEOUT_S,
        )
        try:
            key = await asyncio.wait_for(
                self._dial_handshake(peer, reader, writer, snapstream.STREAM_NAME),
                HANDSHAKE_TIMEOUT_S,
            )
        except BaseException:
            writer.close()
            raise
        return reader, writer, key

    async def _pump(
        self,
        out: _Outbound,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sealer: auth.FrameSealer,
    ) -> None:
        limit = self._frame_max - auth.MAC_BYTES - 64
        while not self._closing:
            # The acceptor never writes after its ack: EOF or a closed transport means the
            # connection is gone (asyncio's drain() does not raise on a closed transport).
            if writer.is_closing() or reader.at_eof():
                raise ConnectionResetError(f"connection to {out.peer} closed")
            if not out.queue:
                out.wake.clear()
                await out.wake.wait()
                continue
            batch: list[bytes] = []
            size = 0
            while out.queue:
                msg_id, msg = out.queue[0]
                wire = pack([msg_id, message_to_wire(msg)])
                if batch and size + len(wire) > min(limit, BATCH_BYTES_MAX):
                    break
                self._popleft(out)
                if len(wire) > limit:
                    log.warning("dropping %s to %s: %d bytes", msg.type.value, out.peer, len(wire))
                    continue
                batch.append(wire)
                size += len(wire)
            if not batch:
                continue
            body = _array_header(len(batch)) + b"".join(batch)
            writer.write(framing.encode_frame(sealer.seal(body), self._frame_max))
            await writer.drain()

    # -- receiving -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._inbound) >= self._inbound_max:
            writer.close()  # flooded (e.g. replayed hellos): refuse before reading anything
            return
        task = asyncio.current_task()
        if task is not None:
            self._inbound[task] = writer
        peer = "?"
        receiving = closed_by_peer = False
        try:
            peername = writer.get_extra_info("peername")
            peer = f"{peername[0]}:{peername[1]}" if peername else "?"
            try:
                frame = await asyncio.wait_for(
                    framing.read_frame(reader, auth.HELLO_BYTES_MAX), HANDSHAKE_TIMEOUT_S
                )
                hello = auth.decode_hello(frame, self._secret, self.cluster)
            except TimeoutError:
                raise HandshakeRefusedError(RefusalReason.TIMEOUT, "no handshake in time") from None
            except framing.FrameError as exc:
                raise HandshakeRefusedError(RefusalReason.BAD_FRAME, str(exc)) from None
            if hello.node not in self._known and hello.node != self.node_id:
                self._maybe_learn(hello)
            if hello.node not in self._known or hello.node == self.node_id:
                raise HandshakeRefusedError(
                    RefusalReason.UNKNOWN_NODE, f"node {hello.node!r} is not a peer"
                )
            if hello.to != self.node_id:
                raise HandshakeRefusedError(
                    RefusalReason.WRONG_DESTINATION, f"hello meant for {hello.to!r}"
                )
            if hello.stream not in ("", snapstream.STREAM_NAME):
                raise HandshakeRefusedError(
                    RefusalReason.BAD_VERSION, f"unknown stream {hello.stream!r:.40}", hello.node
                )
            peer = hello.node
            mine = auth.Hello(self.cluster, self.node_id, auth.new_nonce(), stream=hello.stream)
            writer.write(framing.encode_frame(auth.encode_ack(self._secret, hello.nonce, mine)))
            await writer.drain()
            key = auth.session_key(self._secret, hello, mine)
            if hello.stream:
                await self._serve_snapshot_stream(peer, reader, writer, key)
                return
            opener = auth.FrameOpener(key)
            older = self._inbound_by_peer.get(peer)
            if older is not None and older is not writer:
                older.close()
            self._inbound_by_peer[peer] = writer
            back = self._out.get(peer)
            if back is not None and not back.connected:
                back.redial.set()  # it is up again: dial it now, not after the backoff
            receiving = True
            await self._receive(peer, reader, opener)
        except HandshakeRefusedError as exc:
            self.frames_refused += 1
            self._on_refused(exc.peer or peer, exc.reason.value, exc.detail)
        except (framing.ConnectionClosedError, OSError):
            closed_by_peer = receiving
        except framing.FrameError as exc:
            self.frames_refused += 1
            self._on_refused(peer, RefusalReason.BAD_FRAME.value, str(exc))
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            if self._inbound_by_peer.get(peer) is writer:
                del self._inbound_by_peer[peer]
                # Not when we closed it: for a newer connection from the same peer, for
                # remove_peer, or stopping.
                if (
                    closed_by_peer
                    and not self._closing
                    and peer in self._known
                    and self._on_peer_closed is not None
                ):
                    self._on_peer_closed(peer)
            if task is not None:
                self._inbound.pop(task, None)

    async def _serve_snapshot_stream(
        self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes
    ) -> None:
        older = self._snap_inbound_by_peer.get(peer)
        if older is not None and older is not writer:
            older.close()
        self._snap_inbound_by_peer[peer] = writer
        try:
            await self.snapshot_receiver.serve(peer, reader, writer, key)
        except snapstream.StreamError as exc:
            raise HandshakeRefusedError(RefusalReason.BAD_MESSAGE, str(exc), peer) from None
        finally:
            if self._snap_inbound_by_peer.get(peer) is writer:
                del self._snap_inbound_by_peer[peer]

    async def _receive(
        self, peer: str, reader: asyncio.StreamReader, opener: auth.FrameOpener
    ) -> None:
        while True:
            frame = await framing.read_frame(reader, self._frame_max)
            body = opener.open(frame)
            try:
                batch = unpack(body, self._frame_max)
                if not isinstance(batch, list):
                    raise CodecError("frame body must be an array")
                decoded: list[tuple[str, Message]] = []
                for item in batch:
                    if not (isinstance(item, list) and len(item) == 2):
                        raise CodecError("batch item must be [id, message]")
                    msg_id = item[0]
                    if not isinstance(msg_id, str) or len(msg_id) > 256:
                        raise CodecError("message id must be a short string")
                    decoded.append((msg_id, message_from_wire(item[1])))
            except CodecError as exc:
                raise HandshakeRefusedError(RefusalReason.BAD_MESSAGE, str(exc), peer) from None
            for msg_id, msg in decoded:
                if msg.sender != peer or msg.to != self.node_id:
                    raise HandshakeRefusedError(
                        RefusalReason.BAD_MESSAGE,
                        f"message {msg.sender}->{msg.to} on the {peer}->{self.node_id} link",
                        peer,
                    )
                self._on_message(msg_id, msg)


def _supersedes(new: Message, old: Message) -> bool:
    """Whether AppendEntries ``new`` makes ``old`` (same sender and destination, queued
    earlier) redundant: the same term and (prevLogIndex, prevLogTerm), so the follower
    checks the same point of its log; entries from the same index on, at least as many
    (within one term a leader's log only grows: the shared ones are the same entries);
    a commit index at least as high; the same context (an ``APPEND_TAIL`` marker).
    Dropping ``old`` then loses nothing a follower could learn from it; the Raft core
    tolerates lost and reordered messages anyway, so this is about bytes, not safety."""
    return (
        old.type is MessageType.APP
        and new.term == old.term
        and new.index == old.index
        and new.log_term == old.log_term
        and len(new.entries) >= len(old.entries)
        and new.commit >= old.commit
        and new.context == old.context
    )


def _array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (items packed separately follow)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")
