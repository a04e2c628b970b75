"""How the controller reaches nodes it cannot dial (issue 13 §3 §4): the nemesis reads its
hosts the way Ansible does (``ansible-inventory --list``), each node's ports are reached
directly or through an SSH tunnel as the inventory's ``raft_lab_access`` says, and a client
that dials tunnels follows leader hints (which name the nodes' own addresses) to the
tunnels. No SSH here: the Remote is a fake or never connects."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from deploy.nemesis import InventoryControl
from deploy.remote import CommandResult, Hop, InventoryError, NodeAccess, Remote, read_inventory
from raft.runtime.client import RaftClient
from raft.runtime.protocol import Request, Response, Status
from raft.runtime.transport import Address

# An INI inventory with group_vars and host_vars directories, a ProxyJump and become: what
# a user writes for machines behind a bastion. The old nemesis read only a YAML hosts.yml.
HOSTS_INI = """\
[raft_nodes]
node1.example.org ansible_host=10.0.0.11 raft_node_id=n1
node2.example.org ansible_host=10.0.0.12 raft_node_id=n2
node3.example.org ansible_host=10.0.0.13 raft_node_id=n3

[raft_nodes:vars]
raft_node_service_manager=systemd
"""

GROUP_VARS = """\
ansible_user: slice
ansible_become: true
ansible_ssh_common_args: -o ProxyJump=slice@203.0.113.5:2222 -o UserKnownHostsFile={kh}
raft_lab_access: tunnel
raft_node_client_port: 7101
"""


def _ini_inventory(tmp: Path) -> Path:
    inv = tmp / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts").write_text(HOSTS_INI)
    kh = tmp / "known_hosts"
    kh.write_text("")
    (inv / "group_vars" / "all.yml").write_text(GROUP_VARS.format(kh=kh))
    # host_vars win over group vars, as in Ansible.
    (inv / "host_vars" / "node3.example.org.yml").write_text(
        "ansible_become: false\nraft_node_address: 192.0.2.13\nraft_lab_access: direct\n"
    )
    return inv


class RecordingRemote:
    """Records commands; tunnels are fake local ports (one per node and port)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, bool | None]] = []
        self.forwards: list[tuple[str, str]] = []

    def run(
        self,
        host: str,
        command: str,
        *,
        check: bool = True,
        timeout_s: float = 60.0,
        become: bool | None = None,
    ) -> CommandResult:
        self.commands.append((host, command, become))
        return CommandResult(host, command, 0, "", "")

    def wrap_become(self, host: str, cmd: str, become: bool | None = None) -> str:
        return cmd

    def node_endpoint(self, host: str, kind: str = "client") -> tuple[str, int]:
        self.forwards.append((host, kind))
        return ("127.0.0.1", 40000 + len(self.forwards))


def test_inventory_control_reads_hosts_as_ansible_does(tmp_path: Path) -> None:
    inv = _ini_inventory(tmp_path)
    c = InventoryControl(inv)  # the real Remote: built from the same reading, never dialled
    assert c.nodes() == ["node1.example.org", "node2.example.org", "node3.example.org"]
    assert [c.address(n) for n in c.nodes()] == ["10.0.0.11", "10.0.0.12", "192.0.2.13"]
    assert c.systemd("node1.example.org")  # [raft_nodes:vars], no SSH needed to decide
    remote = c.remote
    assert isinstance(remote, Remote)
    ep1 = remote.endpoint("node1.example.org")
    assert (ep1.user, ep1.become, ep1.jump) == ("slice", True, (Hop("203.0.113.5", 2222, "slice"),))
    assert remote.endpoint("node3.example.org").become is False  # host_vars win
    assert c._become("node1.example.org") and not c._become("node3.example.org")
    nodes = {n.node_id: n for n in remote.nodes}
    assert nodes["n1"].access is NodeAccess.TUNNEL and nodes["n3"].access is NodeAccess.DIRECT
    assert nodes["n1"].port("client") == 7101


def test_become_and_systemd_from_the_inventory_reach_the_commands(tmp_path: Path) -> None:
    inv = _ini_inventory(tmp_path)
    remote = RecordingRemote()
    c = InventoryControl(inv, remote=remote)
    c.kill("node1.example.org")
    c.kill("node3.example.org")
    by_host = {h: (cmd, become) for h, cmd, become in remote.commands}
    assert by_host["node1.example.org"][1] is True
    assert by_host["node3.example.org"][1] is False
    assert "systemctl kill -s KILL raftlab-node.service" in by_host["node1.example.org"][0]


def test_tunnelled_nodes_give_clients_tunnels_and_a_map_for_leader_hints(tmp_path: Path) -> None:
    inv = _ini_inventory(tmp_path)
    remote = RecordingRemote()
    c = InventoryControl(inv, remote=remote)
    addrs, amap = c.client_endpoints()
    assert addrs == [Address("127.0.0.1", p) for p in (40001, 40002, 40003)]
    # Leader hints name the advertised address (raft_node_address:client port).
    assert amap[Address("10.0.0.11", 7101)] == Address("127.0.0.1", 40001)
    assert amap[Address("192.0.2.13", 7101)] == Address("127.0.0.1", 40003)
    c.client_endpoints()  # decided once: no second tunnel
    assert len(remote.forwards) == 3
    assert c.http_address("node2.example.org") == Address("127.0.0.1", 40004)


def test_remote_node_endpoint_follows_raft_lab_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = _ini_inventory(tmp_path)
    read = read_inventory(inv)
    remote = Remote(
        known_hosts=tmp_path / "known_hosts", endpoints=read.endpoints, nodes=read.nodes
    )
    probed: list[tuple[str, int]] = []
    forwarded: list[tuple[str, int]] = []

    def probe(host: str, port: int, timeout_s: float = 1.0) -> bool:
        probed.append((host, port))
        return True

    def forward(self: Remote, host: str, port: int, address: str | None = None) -> tuple[str, int]:
        forwarded.append((host, port))
        return ("127.0.0.1", 45000)

    monkeypatch.setattr("deploy.remote.tcp_reachable", probe)
    monkeypatch.setattr(Remote, "forward", forward)
    # tunnel: no probe even though the address would answer; direct: the address, no probe.
    assert remote.node_endpoint("n1", "http") == ("127.0.0.1", 45000)
    assert remote.node_endpoint("n3", "client") == ("192.0.2.13", 7101)
    assert probed == [] and forwarded == [("node1.example.org", 7002)]


def test_a_bad_access_value_is_refused_naming_the_variable(tmp_path: Path) -> None:
    inv = _ini_inventory(tmp_path)
    (inv / "host_vars" / "node1.example.org.yml").write_text("raft_lab_access: ssh\n")
    with pytest.raises(InventoryError, match=r"node1.example.org: raft_lab_access is 'ssh'"):
        read_inventory(inv)


def test_a_leader_hint_is_followed_to_its_tunnel() -> None:
    """The nodes name the leader by its own (private) client address; a client that reached
    the follower through a tunnel must go to the leader's tunnel, not the private address
    (which it cannot dial: every op would wait for a connect timeout)."""
    follower = Address("127.0.0.1", 41001)
    leader_private = Address("10.0.0.12", 7001)
    leader_tunnel = Address("127.0.0.1", 41002)
    dialled: list[Address] = []

    async def attempt(addr: Address, req: Request) -> Response:
        dialled.append(addr)
        if addr == follower:
            return Response(req.id, Status.NOT_LEADER, leader=str(leader_private))
        if addr == leader_tunnel:
            return Response(req.id, Status.OK, value="v")
        raise ConnectionRefusedError(f"cannot reach {addr}")

    async def main() -> Any:
        client = RaftClient(
            [follower], token=b"", address_map={leader_private: leader_tunnel}, op_timeout_s=3
        )
        client._attempt = attempt  # type: ignore[method-assign]
        return await client.get("k")

    resp = asyncio.run(main())
    assert resp.status is Status.OK and resp.value == "v"
    assert dialled == [follower, leader_tunnel]
