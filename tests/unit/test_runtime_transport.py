"""The peer transport between two in-process endpoints on loopback: delivery, refusal of a
wrong secret and of garbage, and that a refused connection leaves the acceptor serving."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from raft.core.types import Entry, Message, MessageType
from raft.runtime.transport import Address, PeerTransport

SECRET = b"t" * 32


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Endpoint:
    def __init__(self, nid: str, peers: dict[str, Address], secret: bytes = SECRET) -> None:
        self.got: list[tuple[str, Message]] = []
        self.unreachable: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.closed_by: list[str] = []
        self.arrived = asyncio.Event()
        self.t = PeerTransport(
            nid,
            "lab",
            secret,
            peers,
            on_message=self._msg,
            on_unreachable=self.unreachable.append,
            on_refused=lambda p, r, d: self.refused.append((p, r)),
            on_peer_closed=self.closed_by.append,
        )

    def _msg(self, msg_id: str, m: Message) -> None:
        self.got.append((msg_id, m))
        self.arrived.set()


async def _wait(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _peers() -> dict[str, Address]:
    return {
        "n1": Address("127.0.0.1", _free_port("127.0.0.1")),
        "n2": Address("127.0.0.2", _free_port("127.0.0.2")),
    }


async def _started_pair() -> tuple[Endpoint, Endpoint]:
    """n1 and n2, both listening (not necessarily connected yet)."""
    peers = _peers()
    a, b = Endpoint("n1", peers), Endpoint("n2", peers)
    await a.t.start(peers["n1"])
    await b.t.start(peers["n2"])
    return a, b


def test_messages_delivered_in_order_with_ids() -> None:
    async def main() -> None:
        a, b = await _started_pair()
        try:
            # Once a dial failed (b may not have listened yet), only a few messages wait for
            # the peer: wait for the connection before the burst.
            await _wait(lambda: a.t.peer_connected("n2"), 10.0)
            for i in range(50):
                m = Message(
                    type=MessageType.APP,
                    to="n2",
                    sender="n1",
                    index=i,
                    entries=(Entry(i + 1, 1, b"x" * i),),
                )
                assert a.t.send(f"n1:0:{i}", m)
            await _wait(lambda: len(b.got) == 50)
            assert [m.index for _, m in b.got] == list(range(50))
            assert b.got[7][0] == "n1:0:7"
            assert not a.t.send("x", Message(type=MessageType.APP, to="n9", sender="n1"))
            assert a.refused == [] and b.refused == []
        finally:
            await a.t.stop()
            await b.t.stop()

    asyncio.run(main())


def test_a_peer_closing_its_connection_is_reported_but_our_own_stop_is_not() -> None:
    """A peer's process that dies closes its connections (EOF): the node is told at once,
    which lets a follower of a crashed leader campaign early. Closing our own transport
    reports nothing."""

    async def main() -> None:
        a, b = await _started_pair()
        try:
            await _wait(lambda: a.t.peer_connected("n2") and b.t.peer_connected("n1"), 10.0)
            assert a.t.send("n1:0:1", Message(type=MessageType.HEARTBEAT, to="n2", sender="n1"))
            await _wait(lambda: len(b.got) == 1)
            assert b.closed_by == [] and a.closed_by == []
            await a.t.stop()
            await _wait(lambda: b.closed_by == ["n1"])
        finally:
            await b.t.stop()
        await asyncio.sleep(0.1)
        assert a.closed_by == []  # a stopped first: b's connection closing is not news
        assert b.closed_by == ["n1"]

    asyncio.run(main())


def test_wrong_secret_refused_on_both_sides() -> None:
    async def main() -> None:
        peers = _peers()
        a = Endpoint("n1", peers, secret=b"w" * 32)
        b = Endpoint("n2", peers)
        await b.t.start(peers["n2"])
        await a.t.start(peers["n1"])
        try:
            a.t.send("", Message(type=MessageType.HEARTBEAT, to="n2", sender="n1"))
            await _wait(lambda: b.refused and a.refused)
            assert ("n1", "bad_mac") in b.refused or b.refused[0][1] == "bad_mac"
            assert b.got == []
        finally:
            await a.t.stop()
            await b.t.stop()

    asyncio.run(main())


def test_garbage_and_impersonation_refused_acceptor_keeps_serving() -> None:
    async def main() -> None:
        peers = _peers()
        a, b = Endpoint("n1", peers), Endpoint("n2", peers)
        await b.t.start(peers["n2"])
        try:
            host, port = peers["n2"].host, peers["n2"].port
            for payload in (
                b"\x00\x00\x00\x05hello",
                struct.pack(">I", 1 << 31),
                b"GET / HTTP/1.1\r\n\r\n",
            ):
                r, w = await asyncio.open_connection(host, port)
                w.write(payload)
                await w.drain()
                data = await asyncio.wait_for(r.read(), 5.0)  # server closes
                assert data == b""
                w.close()
            await _wait(lambda: len(b.refused) >= 3)
            # A genuine peer still gets through afterwards.
            await a.t.start(peers["n1"])
            a.t.send("id1", Message(type=MessageType.HEARTBEAT, to="n2", sender="n1"))
            await _wait(lambda: len(b.got) == 1)
        finally:
            await a.t.stop()
            await b.t.stop()

    asyncio.run(main())


def test_unreachable_reported_and_queue_bounded() -> None:
    async def main() -> None:
        peers = _peers()
        a = Endpoint("n1", peers)
        a.t = PeerTransport(
            "n1",
            "lab",
            SECRET,
            peers,
            on_message=lambda i, m: None,
            on_unreachable=a.unreachable.append,
            on_refused=lambda p, r, d: None,
            queue_max=10,
        )
        await a.t.start(peers["n1"])  # n2 never listens
        try:
            for i in range(100):
                a.t.send("", Message(type=MessageType.APP, to="n2", sender="n1", index=i))
            assert len(a.t._out["n2"].queue) <= 10
            await _wait(lambda: "n2" in a.unreachable)
        finally:
            await a.t.stop()

    asyncio.run(main())


def test_replayed_hellos_are_not_held_open() -> None:
    """Issue 10 §4: a recorded hello passes the MAC check, so replaying it on many
    connections kept every one of them open for good. Only the newest authenticated
    connection per peer stays open, and a flood beyond the inbound cap is closed at once."""
    from raft.runtime import auth, framing

    async def main() -> None:
        peers = _peers()
        a = Endpoint("n1", peers)
        await a.t.start(peers["n1"])
        hello = framing.encode_frame(
            auth.encode_hello(SECRET, auth.Hello("lab", "n2", auth.new_nonce(), to="n1"))
        )
        conns = []
        try:
            for _ in range(40):
                r, w = await asyncio.open_connection(peers["n1"].host, peers["n1"].port)
                w.write(hello)  # the same recorded hello every time
                conns.append((r, w))
            closed = 0
            for r, _w in conns[:-1]:  # the newest may stay: it could be the real n2
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(r.read(), 5.0)  # the ack, then EOF once closed
                    closed += r.at_eof()
            assert closed == len(conns) - 1
        finally:
            for _r, w in conns:
                w.close()
            await a.t.stop()

    asyncio.run(main())


def test_queue_for_a_down_peer_keeps_only_the_newest_messages() -> None:
    """A leader probes a dead follower with a full AppendEntries every heartbeat: queued
    without bound, those stale copies were all sent when it came back, and its catch-up
    took ~10 s longer (measured). Once a connection attempt failed, only the newest
    QUEUE_WHILE_DOWN_MAX messages wait."""
    from raft.runtime.transport import QUEUE_WHILE_DOWN_MAX

    async def main() -> None:
        peers = _peers()
        a = Endpoint("n1", peers)
        await a.t.start(peers["n1"])  # n2 never listens
        try:
            await _wait(lambda: "n2" in a.unreachable)
            for i in range(200):
                m = Message(type=MessageType.APP, to="n2", sender="n1", index=i)
                assert a.t.send(f"n1:0:{i}", m)
            queued = [m.index for _, m in a.t._out["n2"].queue]
            assert queued == list(range(200 - QUEUE_WHILE_DOWN_MAX, 200))
        finally:
            await a.t.stop()

    asyncio.run(main())


def test_a_peer_that_dials_in_ends_the_reconnect_backoff(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 (catch-up): the leader's reconnect attempts to a dead follower back off up
    to a second, so a restarted follower waited for the next attempt before its catch-up
    could start. Its own (authenticated) connection to us says it is back: we dial it at
    once. The backoff is made a minute long here, so only that path can deliver."""
    from raft.runtime import transport

    monkeypatch.setattr(transport, "BACKOFF_MIN_S", 60.0)
    monkeypatch.setattr(transport, "BACKOFF_MAX_S", 60.0)

    async def main() -> None:
        peers = _peers()
        a, b = Endpoint("n1", peers), Endpoint("n2", peers)
        await a.t.start(peers["n1"])
        try:
            await _wait(lambda: "n2" in a.unreachable)  # n1 is now sleeping in its backoff
            await b.t.start(peers["n2"])  # n2 comes up and dials n1
            await _wait(lambda: "n2" in a.t._inbound_by_peer, timeout=20.0)
            a.t.send("n1:0:1", Message(type=MessageType.HEARTBEAT, to="n2", sender="n1"))
            await _wait(lambda: bool(b.got), timeout=20.0)
            assert [i for i, _ in b.got] == ["n1:0:1"]
        finally:
            await b.t.stop()
            await a.t.stop()

    asyncio.run(main())


def _app(prev: int, n: int, *, commit: int = 0, term: int = 2, size: int = 1) -> Message:
    """An AppendEntries from n1 to n2 after index ``prev`` carrying ``n`` entries."""
    ents = tuple(Entry(index=prev + k, term=term, data=b"x" * size) for k in range(1, n + 1))
    return Message(
        type=MessageType.APP,
        to="n2",
        sender="n1",
        term=term,
        log_term=term,
        index=prev,
        entries=ents,
        commit=commit,
    )


def test_a_queued_probe_is_replaced_by_its_resend_not_sent_twice(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 (catch-up): a leader resends its probe (the same prevLogIndex and up to
    max_msg_bytes of entries) on every heartbeat response. While the follower was
    restarting, the copies piled up in its queue and all reached it (measured: five 1 MiB
    copies in one 4 MiB frame, then one more, for a 2.7 MB backlog), each read, decoded
    and stepped before the new entries. A queued copy is now replaced by the resend; the
    heartbeats between them, and appends at other indexes, still go out in order."""
    from raft.runtime import transport

    monkeypatch.setattr(transport, "BACKOFF_MIN_S", 60.0)
    monkeypatch.setattr(transport, "BACKOFF_MAX_S", 60.0)

    async def main() -> None:
        peers = _peers()
        a, b = Endpoint("n1", peers), Endpoint("n2", peers)
        await a.t.start(peers["n1"])
        try:
            await _wait(lambda: "n2" in a.unreachable)  # n2 is down: messages wait
            hb = Message(type=MessageType.HEARTBEAT, to="n2", sender="n1", term=2)
            for k in range(3):  # probe, heartbeat, probe again (commit moved), ...
                assert a.t.send(f"n1:0:a{k}", _app(10, 4, commit=10 + k, size=1000))
                assert a.t.send(f"n1:0:h{k}", hb)
            await b.t.start(peers["n2"])  # n2 is back: it dials n1, n1 dials it
            await _wait(lambda: len(b.got) >= 4, timeout=20.0)
            await asyncio.sleep(0.2)  # nothing else is on its way
            assert [i for i, _ in b.got] == ["n1:0:h0", "n1:0:h1", "n1:0:a2", "n1:0:h2"]
            assert b.got[2][1].commit == 12  # the newest copy, with its commit index
            assert a.t._out["n2"].superseded == 2
        finally:
            await b.t.stop()
            await a.t.stop()

    asyncio.run(main())


def test_only_a_covering_append_replaces_a_queued_one() -> None:
    """The replacement drops nothing a follower needs: an append at another index (the
    pipeline), of another term, with fewer entries or a lower commit is queued beside the
    earlier one, and an append already taken off the queue is not looked for."""
    from raft.runtime.transport import _supersedes

    base = _app(10, 4, commit=10)
    assert _supersedes(_app(10, 4, commit=10), base)
    assert _supersedes(_app(10, 6, commit=11), base)  # more entries, newer commit
    assert not _supersedes(_app(14, 2, commit=10), base)  # the next batch of a pipeline
    assert not _supersedes(_app(10, 3, commit=10), base)  # fewer entries
    assert not _supersedes(_app(10, 4, commit=9), base)
    assert not _supersedes(_app(10, 4, commit=10, term=3), base)

    async def main() -> None:
        peers = _peers()
        a = Endpoint("n1", peers)
        a.t = PeerTransport(
            "n1",
            "lab",
            SECRET,
            peers,
            on_message=lambda i, m: None,
            on_unreachable=a.unreachable.append,
            on_refused=lambda p, r, d: None,
            queue_max=3,
        )
        await a.t.start(peers["n1"])  # n2 never listens
        try:
            await _wait(lambda: "n2" in a.unreachable)
            sent = [_app(10, 4), _app(14, 2), _app(16, 1), _app(17, 1), _app(17, 1, commit=5)]
            for k, m in enumerate(sent):
                assert a.t.send(f"n1:0:{k}", m)
            out = a.t._out["n2"]
            # (10, 4) fell off the bounded queue; the commit-5 copy replaced (17, 1).
            assert [(m.index, m.commit) for _, m in out.queue] == [(14, 0), (16, 0), (17, 5)]
            assert out.superseded == 1
            # The newest append falls off the queue: its resend is queued, not looked for.
            for k in range(3):
                hb = Message(type=MessageType.HEARTBEAT, to="n2", sender="n1", commit=k)
                assert a.t.send(f"n1:0:h{k}", hb)
            assert a.t.send("n1:0:9", _app(17, 1, commit=5))
            assert [m.type for _, m in out.queue] == [MessageType.HEARTBEAT] * 2 + [MessageType.APP]
            assert out.superseded == 1
        finally:
            await a.t.stop()

    asyncio.run(main())
