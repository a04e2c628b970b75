"""Membership in the runtime (docs/membership.md): admin request validation, the address book
in contexts and snapshots, the transport's add/remove peer API, and the admin operations of a
real in-process node through its client port (one change at a time, clear refusals, the
grown configuration surviving a restart although cluster.yml lists one node)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from single_node import cluster_config

from raft.core.confchange import decode_conf_change, encode_conf_change
from raft.core.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    Message,
    MessageType,
)
from raft.machines import load_machine
from raft.runtime import auth
from raft.runtime.client import RaftClient
from raft.runtime.config import ClusterConfig, NodeAddresses
from raft.runtime.members import (
    MemberAddrs,
    MembersError,
    book_from_wire,
    book_to_wire,
    check_addresses_free,
    decode_context,
    encode_context,
)
from raft.runtime.node import RaftNode
from raft.runtime.protocol import (
    OP_MEMBER_ADD_LEARNER,
    OP_MEMBER_LIST,
    OP_MEMBER_PROMOTE,
    OP_MEMBER_REMOVE,
    OP_SNAPSHOT_NOW,
    OP_TRANSFER_LEADER,
    BadRequestError,
    Request,
    Status,
    parse_admin,
)
from raft.runtime.server import ClientServer
from raft.runtime.sessions import Applier
from raft.runtime.transport import Address, PeerTransport

A = {"peer": "127.0.0.9:7000", "client": "127.0.0.9:7001", "http": None}


def _req(op: str, key: str | None = None, value: Any = None) -> Request:
    return Request(id=7, op=op, key=key, value=value, timeout_ms=9000)


# -- validation -----------------------------------------------------------------------------


def test_admin_requests_are_validated_with_errors_naming_the_problem() -> None:
    ok = parse_admin(_req(OP_MEMBER_ADD_LEARNER, "n9", A))
    assert ok.node == "n9" and ok.addrs == MemberAddrs(
        Address("127.0.0.9", 7000), Address("127.0.0.9", 7001)
    )
    assert ok.timeout_s == 9.0
    assert parse_admin(_req(OP_TRANSFER_LEADER)).node == ""
    cases = [
        (_req(OP_MEMBER_REMOVE), "needs the node id"),
        (_req(OP_MEMBER_PROMOTE, "../etc"), "bad node id"),
        (_req(OP_MEMBER_LIST, "n1"), "takes no 'key'"),
        (_req(OP_SNAPSHOT_NOW, value=1), "takes no 'value'"),
        (_req(OP_MEMBER_ADD_LEARNER, "n9"), "expected {peer, client, http}"),
        (_req(OP_MEMBER_ADD_LEARNER, "n9", {**A, "peer": "nohost"}), "peer: expected 'host:port'"),
        (_req(OP_MEMBER_ADD_LEARNER, "n9", {**A, "port": 1}), "unknown field(s) port"),
        (_req(OP_MEMBER_ADD_LEARNER, "n9", {**A, "client": "h:70000"}), "port in 1..65535"),
    ]
    for req, why in cases:
        with pytest.raises(BadRequestError, match=None) as info:
            parse_admin(req)
        assert why in str(info.value), (req, str(info.value))


def test_address_book_round_trips_and_refuses_garbage() -> None:
    book = {"n4": MemberAddrs(Address("h", 1), Address("h", 2), Address("h", 3))}
    assert decode_context(encode_context(book)) == book
    assert book_from_wire(book_to_wire(book)) == book
    assert decode_context("") == {}
    for bad in ("[1]", "{", '{"members": {"n1": 3}}', '{"members": {"": {}}}'):
        with pytest.raises(MembersError):
            decode_context(bad)
    with pytest.raises(MembersError, match="already used by n4"):
        check_addresses_free(book, "n5", MemberAddrs(Address("h", 9), Address("h", 2)))
    check_addresses_free(book, "n4", book["n4"])  # its own addresses are no clash


def test_conf_change_context_is_carried_and_old_entries_encode_as_before() -> None:
    plain = ConfChange((ConfChangeSingle(ConfChangeType.ADD_LEARNER, "n4"),))
    assert b"context" not in encode_conf_change(plain)
    withctx = ConfChange(plain.changes, context='{"members":{}}')
    assert decode_conf_change(encode_conf_change(withctx)) == withctx


def test_snapshot_carries_the_book_and_older_snapshots_restore_without_one() -> None:
    ap = Applier(load_machine("kv"))
    data = ap.snapshot(members={"n1": A})
    other = Applier(load_machine("kv"))
    other.restore(data)
    assert other.restored_members == {"n1": A}
    other.restore(ap.snapshot())
    assert other.restored_members is None


def test_hello_carries_the_dialers_address() -> None:
    secret = b"s" * 32
    h = auth.Hello("c", "n1", auth.new_nonce(), to="n2", addr="127.0.0.1:7000")
    assert auth.decode_hello(auth.encode_hello(secret, h), secret, "c") == h


# -- transport ---------------------------------------------------------------------------------


def _free(host: str) -> Address:
    with socket.socket() as s:
        s.bind((host, 0))
        return Address(host, int(s.getsockname()[1]))


def test_transport_adds_learns_and_removes_peers() -> None:
    """A joining node (knows nobody, accepts unknown authenticated peers) learns the leader
    from its hello and can answer; a removed peer's messages are refused."""

    async def main() -> None:
        secret = b"x" * 32
        a1, a2 = _free("127.0.0.1"), _free("127.0.0.2")
        got1: list[Message] = []
        got2: list[Message] = []
        refused1: list[tuple[str, str]] = []
        learned: list[str] = []
        t1 = PeerTransport(
            "n1",
            "lab",
            secret,
            {"n1": a1},
            lambda i, m: got1.append(m),
            lambda p: None,
            lambda p, r, d: refused1.append((p, r)),
        )
        t2 = PeerTransport(
            "n2",
            "lab",
            secret,
            {"n2": a2},
            lambda i, m: got2.append(m),
            lambda p: None,
            lambda p, r, d: None,
            on_peer_learned=lambda p, a: learned.append(p),
        )
        t2.accept_unknown = True
        await t1.start(a1)
        await t2.start(a2)
        try:
            assert not t1.send("", Message(MessageType.HEARTBEAT, to="n2", sender="n1"))
            t1.add_peer("n2", a2)
            t1.add_peer("n2", a2)  # idempotent
            assert t1.send("", Message(MessageType.HEARTBEAT, to="n2", sender="n1", term=1))
            for _ in range(300):
                if got2 and learned:
                    break
                await asyncio.sleep(0.01)
            assert got2 and learned == ["n1"] and t2.peers() == {"n1": a1}
            t2.send("", Message(MessageType.HEARTBEAT_RESP, to="n1", sender="n2", term=1))
            for _ in range(300):
                if got1:
                    break
                await asyncio.sleep(0.01)
            assert got1 and got1[0].sender == "n2"
            t1.remove_peer("n2")
            assert t1.peers() == {}
            got1.clear()
            for _ in range(300):  # n2 redials; n1 no longer knows it and refuses
                t2.send("", Message(MessageType.HEARTBEAT_RESP, to="n1", sender="n2", term=1))
                if any(r == "unknown_node" for _, r in refused1):
                    break
                await asyncio.sleep(0.01)
            assert any(r == "unknown_node" for _, r in refused1)
            assert not got1
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())


# -- a real node through its client port -----------------------------------------------------


def _config(tmp_path: Path) -> ClusterConfig:
    a = NodeAddresses(_free("127.0.0.1"), _free("127.0.0.1"), _free("127.0.0.1"))
    return ClusterConfig(
        cluster="unit",
        nodes={"n1": a},
        data_dir=str(tmp_path / "data"),
        log_dir=str(tmp_path / "log"),
        tick_ms=10,
    )


async def _serving(cfg: ClusterConfig) -> tuple[RaftNode, ClientServer]:
    node = RaftNode(cfg, "n1", b"s" * 32)
    await node.start()
    server = ClientServer(node)
    await server.start()
    for _ in range(500):
        if node.is_leader():
            break
        await asyncio.sleep(0.01)
    return node, server


def test_admin_operations_on_a_node_one_change_at_a_time_and_durable(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    addr = cfg.nodes["n1"].client
    n2 = {"peer": "127.0.0.2:1", "client": "127.0.0.2:2", "http": "127.0.0.2:3"}
    n3 = {"peer": "127.0.0.3:1", "client": "127.0.0.3:2", "http": None}

    async def first() -> None:
        node, server = await _serving(cfg)
        try:
            async with RaftClient([addr], op_timeout_s=20, attempt_timeout_s=15) as c:
                view = (await c.admin(OP_MEMBER_LIST)).value
                assert view["leader"] == "n1" and [m["id"] for m in view["members"]] == ["n1"]
                # Two changes sent together: the first is proposed, the second refused.
                r1, r2 = await asyncio.gather(
                    c.admin(OP_MEMBER_ADD_LEARNER, "n2", n2),
                    c.admin(OP_MEMBER_ADD_LEARNER, "n3", n3),
                )
                assert r1.status is Status.OK, r1
                assert r2.status is Status.FAIL
                assert "another configuration change is in progress" in r2.error
                roles = {m["id"]: m["role"] for m in r1.value["members"]}
                assert roles == {"n1": "voter", "n2": "learner"}
                again = await c.admin(OP_MEMBER_ADD_LEARNER, "n2", n2)
                assert again.status is Status.FAIL and "n2 is already a member" in again.error
                clash = await c.admin(OP_MEMBER_ADD_LEARNER, "n3", {**n3, "client": n2["peer"]})
                assert clash.status is Status.FAIL and "already used by n2" in clash.error
                for op, key, why in (
                    (OP_MEMBER_REMOVE, "n7", "n7 is not a member"),
                    (OP_MEMBER_REMOVE, "n1", "only voter"),
                    (OP_TRANSFER_LEADER, "n2", "n2 is not a voter"),
                    (OP_TRANSFER_LEADER, None, "no other voter"),
                    (OP_MEMBER_PROMOTE, "n1", "n1 is already a voter"),
                ):
                    r = await c.admin(op, key)
                    assert r.status is Status.FAIL and why in r.error, (op, r)
                bad = await c.admin(OP_MEMBER_REMOVE)
                assert bad.status is Status.BAD_REQUEST and "needs the node id" in bad.error
            # n2 never runs: promoting it is refused once the request's deadline (about
            # 3 s here, the CLI's --timeout) is near.
            async with RaftClient([addr], op_timeout_s=6, attempt_timeout_s=3) as c:
                r = await c.admin(OP_MEMBER_PROMOTE, "n2")
            assert r.status is Status.FAIL and "n2 is not caught up after" in r.error
            assert "(match 0 of" in r.error
            snap = await RaftClient([addr]).admin(OP_SNAPSHOT_NOW)
            assert snap.status is Status.OK and snap.value["index"] >= 2
        finally:
            await server.stop()
            await node.stop()

    asyncio.run(first())

    async def restarted() -> None:
        # cluster.yml still lists n1 alone: the durable configuration wins.
        node, server = await _serving(cfg)
        try:
            st = node.status()
            assert st["voters"] == ["n1"] and st["learners"] == ["n2"] and st["conf_index"] >= 2
            assert node.address_of("n2") == MemberAddrs(
                Address("127.0.0.2", 1), Address("127.0.0.2", 2), Address("127.0.0.2", 3)
            )
            assert "n2" in node.transport.peers()
            async with RaftClient([addr], op_timeout_s=20, attempt_timeout_s=15) as c:
                r = await c.admin(OP_MEMBER_REMOVE, "n2")
            assert r.status is Status.OK and [m["id"] for m in r.value["members"]] == ["n1"]
            assert "n2" not in node.transport.peers() and node.address_of("n2") is None
        finally:
            await server.stop()
            await node.stop()

    asyncio.run(restarted())


def test_a_follower_keeps_the_leader_its_older_snapshot_does_not_name(tmp_path: Path) -> None:
    """Lab (membership fault, fresh clone): n3 was removed and re-added; n5, removed, wiped
    and re-added later, installed a snapshot taken while n3 was out. Its configuration then
    lacked its leader n3, the transport refused n3's connections, and n5 never received the
    entries that re-add n3 (match 0 for 60 s). The leader a node follows stays a peer; other
    non-members are still dropped."""
    cfg = cluster_config(tmp_path, ("n3", "n4", "n5"))
    node = RaftNode(cfg, "n5", b"s" * 32)
    node.transport.add_peer("n3", cfg.nodes["n3"].peer)
    node.transport.add_peer("n9", _free("127.0.0.1"))
    node.state.conf = ConfState(voters=frozenset({"n4", "n5"}))  # the old snapshot's
    node.state.leader = "n3"
    node._sync_peers()
    assert set(node.transport.peers()) == {"n3", "n4"}
    node.state.leader = "n4"  # once it follows a member, the non-member goes
    node._sync_peers()
    assert set(node.transport.peers()) == {"n4"}
