"""The peer handshake and per-frame MACs."""

from __future__ import annotations

import msgpack
import pytest

from raft.runtime import auth
from raft.runtime.auth import FrameOpener, FrameSealer, HandshakeRefusedError, Hello, RefusalReason

SECRET = b"s" * 32
CLUSTER = "lab"


def _handshake(
    dialer_secret: bytes = SECRET, acceptor_secret: bytes = SECRET
) -> tuple[bytes, bytes]:
    mine = Hello(CLUSTER, "n1", auth.new_nonce(), to="n2")
    hello = auth.decode_hello(auth.encode_hello(dialer_secret, mine), acceptor_secret, CLUSTER)
    theirs = Hello(CLUSTER, "n2", auth.new_nonce())
    ack = auth.encode_ack(acceptor_secret, hello.nonce, theirs)
    got = auth.decode_ack(ack, dialer_secret, CLUSTER, mine.nonce)
    return auth.session_key(dialer_secret, mine, got), auth.session_key(
        acceptor_secret, hello, theirs
    )


def test_handshake_accepts_and_agrees_on_key() -> None:
    k1, k2 = _handshake()
    assert k1 == k2
    assert _handshake()[0] != k1  # fresh nonces -> fresh key


def _refusal(frame: bytes, secret: bytes = SECRET, cluster: str = CLUSTER) -> RefusalReason:
    with pytest.raises(HandshakeRefusedError) as info:
        auth.decode_hello(frame, secret, cluster)
    return info.value.reason


def test_wrong_secret_refused() -> None:
    frame = auth.encode_hello(b"x" * 32, Hello(CLUSTER, "n1", auth.new_nonce(), "n2"))
    assert _refusal(frame) is RefusalReason.BAD_MAC


def test_wrong_cluster_refused() -> None:
    frame = auth.encode_hello(SECRET, Hello("other", "n1", auth.new_nonce(), "n2"))
    assert _refusal(frame) is RefusalReason.BAD_CLUSTER


def _forged(fields: dict[str, object]) -> bytes:
    body = msgpack.packb(
        {
            "magic": "RAFTLAB",
            "v": 1,
            "cluster": CLUSTER,
            "node": "n1",
            "to": "n2",
            "nonce": b"n" * 16,
        }
        | fields,
        use_bin_type=True,
    )
    return body + auth._mac(SECRET, b"hello", body)


def test_wrong_version_and_magic_refused() -> None:
    assert _refusal(_forged({"v": 2})) is RefusalReason.BAD_VERSION
    assert _refusal(_forged({"magic": "HTTP"})) is RefusalReason.BAD_MAGIC
    assert _refusal(_forged({"nonce": b"short"})) is RefusalReason.BAD_FRAME
    assert _refusal(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 40) in (
        RefusalReason.BAD_FRAME,
        RefusalReason.BAD_MAGIC,
    )
    assert _refusal(b"tiny") is RefusalReason.BAD_FRAME


def test_ack_bound_to_the_hello() -> None:
    ack = auth.encode_ack(SECRET, b"a" * 16, Hello(CLUSTER, "n2", auth.new_nonce()))
    with pytest.raises(HandshakeRefusedError) as info:
        auth.decode_ack(ack, SECRET, CLUSTER, b"b" * 16)  # replayed to another dialer
    assert info.value.reason is RefusalReason.BAD_MAC


def test_frames_authenticated_in_order() -> None:
    key = b"k" * 32
    sealer = FrameSealer(key)
    frames = [sealer.seal(f"body{i}".encode()) for i in range(3)]
    opener = FrameOpener(key)
    assert opener.open(frames[0]) == b"body0"
    with pytest.raises(HandshakeRefusedError):  # replay of frame 0
        opener.open(frames[0])
    opener = FrameOpener(key)
    with pytest.raises(HandshakeRefusedError):  # reordered
        opener.open(frames[1])
    tampered = bytearray(frames[0])
    tampered[0] ^= 1
    with pytest.raises(HandshakeRefusedError):
        FrameOpener(key).open(bytes(tampered))
    with pytest.raises(HandshakeRefusedError):
        FrameOpener(b"other" * 8).open(frames[0])


def test_load_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "secret"
    p.write_text("  " + "a" * 40 + "\n")
    assert auth.load_secret(str(p)) == b"a" * 40
    p.write_text("short")
    with pytest.raises(ValueError, match="shorter"):
        auth.load_secret(str(p))
