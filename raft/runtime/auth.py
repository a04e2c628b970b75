"""Peer authentication: a versioned handshake with HMAC-SHA256 over the cluster secret, then a
per-connection session key that authenticates every frame.

Handshake (each message is one frame: msgpack body followed by a 32-byte HMAC):

1. dialer -> acceptor ``hello``: ``{"magic": "RAFTLAB", "v": 1, "cluster", "node", "to",
   "nonce", "addr"}``, MAC = HMAC(secret, b"hello" + body). ``addr`` (optional) is the
   dialer's own peer address, so a node that joins a cluster learns where to answer.
2. acceptor -> dialer ``ack``: ``{"magic", "v", "cluster", "node", "nonce"}``, MAC =
   HMAC(secret, b"ack" + hello_nonce + body) (binds the answer to this hello).
3. session key = HMAC(secret, b"session" + dialer_nonce + acceptor_nonce + dialer + acceptor).

Each later frame is ``body + HMAC(session_key, seq + body)`` where ``seq`` is the frame's
64-bit position in the stream, so frames cannot be forged, reordered, replayed or spliced in
from another connection. Connections are one-way: the dialer sends, the acceptor receives
(except snapshot streams, hello ``stream: "snap"``: raft/runtime/snapstream.py seals the
acceptor's replies with a key of their own).
"""

from __future__ import annotations

import enum
import hmac
import os
import struct
from dataclasses import dataclass

from raft.runtime.codec import CodecError, pack, unpack

MAGIC = "RAFTLAB"
PROTOCOL_VERSION = 1
MAC_BYTES = 32
NONCE_BYTES = 16
HELLO_BYTES_MAX = 4096
SECRET_BYTES_MIN = 16

_SEQ = struct.Struct(">Q")


class RefusalReason(enum.Enum):
    """Why a peer connection was refused (the ``reason`` of a ``peer_refused`` event)."""

    BAD_FRAME = "bad_frame"
    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    BAD_CLUSTER = "bad_cluster"
    BAD_MAC = "bad_mac"
    UNKNOWN_NODE = "unknown_node"
    WRONG_DESTINATION = "wrong_destination"
    BAD_MESSAGE = "bad_message"
    TIMEOUT = "timeout"


class HandshakeRefusedError(Exception):
    """The other side failed authentication or spoke another protocol."""

    def __init__(self, reason: RefusalReason, detail: str, peer: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.peer = peer


def _mac(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 of the concatenated parts (one call into OpenSSL: every peer frame is
    sealed and opened with it)."""
    return hmac.digest(key, b"".join(parts), "sha256")


@dataclass(frozen=True, slots=True)
class Hello:
    cluster: str
    node: str
    nonce: bytes
    to: str = ""
    stream: str = ""
    """Empty for the main connection; ``"snap"`` for a snapshot stream
    (raft/runtime/snapstream.py), which the acceptor serves beside the main one."""
    addr: str = ""
    """The sender's peer listen address ("host:port"; hello only, optional)."""


def _stream_field(hello: Hello) -> dict[str, str]:
    return {"stream": hello.stream} if hello.stream else {}


def encode_hello(secret: bytes, hello: Hello) -> bytes:
    body = pack(
        {
            "magic": MAGIC,
            "v": PROTOCOL_VERSION,
            "cluster": hello.cluster,
            "node": hello.node,
            "to": hello.to,
            "nonce": hello.nonce,
            **_stream_field(hello),
            **({"addr": hello.addr} if hello.addr else {}),
        }
    )
    return body + _mac(secret, b"hello", body)


def encode_ack(secret: bytes, hello_nonce: bytes, ack: Hello) -> bytes:
    body = pack(
        {
            "magic": MAGIC,
            "v": PROTOCOL_VERSION,
            "cluster": ack.cluster,
            "node": ack.node,
            "nonce": ack.nonce,
            **_stream_field(ack),
        }
    )
    return body + _mac(secret, b"ack", hello_nonce, body)


def _decode(frame: bytes, secret: bytes, label: bytes, bound: bytes, cluster: str) -> Hello:
    if len(frame) <= MAC_BYTES:
        raise HandshakeRefusedError(RefusalReason.BAD_FRAME, "handshake frame too short")
    body, mac = frame[:-MAC_BYTES], frame[-MAC_BYTES:]
    try:
        obj = unpack(body, HELLO_BYTES_MAX)
    except CodecError as exc:
        raise HandshakeRefusedError(RefusalReason.BAD_FRAME, str(exc)) from None
    if not isinstance(obj, dict) or obj.get("magic") != MAGIC:
        raise HandshakeRefusedError(RefusalReason.BAD_MAGIC, "not a raftlab peer handshake")
    if obj.get("v") != PROTOCOL_VERSION:
        raise HandshakeRefusedError(
            RefusalReason.BAD_VERSION,
            f"protocol version {obj.get('v')!r}, this node speaks {PROTOCOL_VERSION}",
        )
    node = obj.get("node")
    nonce = obj.get("nonce")
    to = obj.get("to", "")
    stream = obj.get("stream", "")
    addr = obj.get("addr", "")
    if (
        not isinstance(node, str)
        or not isinstance(to, str)
        or not isinstance(stream, str)
        or not isinstance(addr, str)
        or not isinstance(nonce, bytes)
        or len(nonce) != NONCE_BYTES
    ):
        raise HandshakeRefusedError(RefusalReason.BAD_FRAME, "handshake fields malformed")
    if not hmac.compare_digest(mac, _mac(secret, label, bound, body)):
        raise HandshakeRefusedError(RefusalReason.BAD_MAC, "handshake MAC does not verify", node)
    if obj.get("cluster") != cluster:
        raise HandshakeRefusedError(
            RefusalReason.BAD_CLUSTER, f"cluster {obj.get('cluster')!r} is not {cluster!r}", node
        )
    return Hello(cluster=cluster, node=node, nonce=nonce, to=to, stream=stream, addr=addr)


def decode_hello(frame: bytes, secret: bytes, cluster: str) -> Hello:
    """Verify a hello; HandshakeRefusedError names what was wrong."""
    return _decode(frame, secret, b"hello", b"", cluster)


def decode_ack(frame: bytes, secret: bytes, cluster: str, hello_nonce: bytes) -> Hello:
    return _decode(frame, secret, b"ack", hello_nonce, cluster)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def session_key(secret: bytes, dialer: Hello, acceptor: Hello) -> bytes:
    return _mac(
        secret,
        b"session",
        dialer.nonce,
        acceptor.nonce,
        dialer.node.encode(),
        b"\0",
        acceptor.node.encode(),
    )


class FrameSealer:
    """Appends the per-frame MAC (sender side)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seq = 0

    def seal(self, body: bytes) -> bytes:
        mac = _mac(self._key, _SEQ.pack(self._seq), body)
        self._seq += 1
        return body + mac


class FrameOpener:
    """Checks and strips the per-frame MAC (receiver side)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seq = 0

    def open(self, frame: bytes) -> bytes:
        if len(frame) <= MAC_BYTES:
            raise HandshakeRefusedError(RefusalReason.BAD_FRAME, "frame shorter than its MAC")
        body, mac = frame[:-MAC_BYTES], frame[-MAC_BYTES:]
        if not hmac.compare_digest(mac, _mac(self._key, _SEQ.pack(self._seq), body)):
            raise HandshakeRefusedError(RefusalReason.BAD_MAC, f"frame {self._seq} MAC mismatch")
        self._seq += 1
        return body


def load_secret(path: str) -> bytes:
    """The cluster secret from ``path`` (surrounding whitespace stripped). Raises ValueError
    when it is shorter than SECRET_BYTES_MIN bytes."""
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < SECRET_BYTES_MIN:
        raise ValueError(f"secret in {path} is shorter than {SECRET_BYTES_MIN} bytes")
    return secret


# -- client port authentication (docs/runtime.md, "Client authentication") ----------------

CLIENT_AUTH_CONTEXT = b"raftlab-client-auth"


def client_auth_mac(token: bytes, nonce: bytes) -> bytes:
    """What a client proves it holds the token with: HMAC(token, context + server nonce).
    The nonce is fresh per connection, so a recorded answer is worthless elsewhere, and the
    token itself never crosses the network."""
    return _mac(token, CLIENT_AUTH_CONTEXT, nonce)


def check_client_auth(token: bytes, nonce: bytes, mac: object) -> bool:
    return isinstance(mac, bytes) and hmac.compare_digest(client_auth_mac(token, nonce), mac)
