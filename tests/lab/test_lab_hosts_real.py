"""Real-host code paths on the local testbed (issue 13 §4): a GEE-style testbed used as a
"real" inventory written by hand, as a user would for machines behind a bastion: the hosts'
private addresses reached through a jump host (ProxyJump via the gateway), a non-root login
user with sudo (become), no systemd (pidfile supervisor), host keys from the inventory's
known_hosts or the user's ~/.ssh/known_hosts. site.yml and the testinfra suite run through
it, and deploy.remote reaches the hosts (with become) and the nodes' ports (through SSH
tunnels) from the controller, which cannot reach those addresses itself. Needs root."""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    Lab,
    add_slice_user,
    bring_up,
    lab_tmpdir,
    raft_cli,
    remove_slice_user,
    run_testinfra,
)

from deploy.remote import Remote, cluster_arg
from deploy.testbed import Testbed, TestbedState

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

USER = "rlhslice"
SUDOERS = Path("/etc/sudoers.d/rlh-slice")


def _add_slice_user(home: Path) -> None:
    add_slice_user(USER, home, SUDOERS)


def _remove_slice_user(home: Path) -> None:
    remove_slice_user(USER, home, SUDOERS)


def _write_real_inventory(lab: Lab, dest: Path, known_hosts_in_inventory: bool) -> Path:
    """hosts.yml of a "real" inventory: private addresses, jump host, slice user, become."""
    assert lab.plan.gateway is not None
    gw = str(lab.plan.gateway.outer_address)
    state = lab.bed.load()
    assert state is not None
    key = Path(state.inventory_dir) / "id_ed25519"  # the testbed's lab key
    kh = dest / "known_hosts"
    lines = []
    for name, addr in [("gw", gw)] + [(h.name, str(h.address)) for h in lab.plan.hosts]:
        typ, b64 = (lab.bed.host_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{addr} {typ} {b64}")
    dest.mkdir(parents=True, exist_ok=True)
    kh.write_text("\n".join(lines) + "\n")
    # OpenSSH hands only -F (not -i) to the ProxyJump hop: the hop's key comes from a config.
    cfg = dest / "ssh_config"
    cfg.write_text(
        f"Host {gw}\n    IdentityFile {key}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {kh}\n    StrictHostKeyChecking yes\n"
    )
    common = f"-F {cfg} -o ProxyJump={USER}@{gw} -o StrictHostKeyChecking=yes"
    if known_hosts_in_inventory:
        common += f" -o UserKnownHostsFile={kh}"
    doc = {
        "all": {
            "vars": {
                "ansible_user": USER,
                "ansible_become": True,
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": common,
                "raft_node_secret_src": str(dest / "secret"),
            },
            "children": {
                "raft_nodes": {
                    "hosts": {
                        f"node{h.index}.example.org": {
                            "ansible_host": str(h.address),
                            "raft_node_id": h.node_id,
                        }
                        for h in lab.plan.hosts
                    }
                }
            },
        }
    }
    (dest / "hosts.yml").write_text(json.dumps(doc, indent=2))
    return dest


@pytest.fixture(scope="module")
def real() -> Iterator[tuple[Lab, Path]]:
    tmp = lab_tmpdir("real")
    home = Path(f"/var/tmp/{USER}-home")
    state = TestbedState(
        prefix="rlhr",
        style="gee",
        subnet="10.82.1.0/24",
        inner_subnet="10.82.2.0/24",
        hosts=3,
        inventory_dir=str(tmp / "inventory"),
    )
    # The role turns client authentication on: clients prove they hold the cluster secret.
    old_token = os.environ.get("RAFT_CLIENT_TOKEN_FILE")
    os.environ["RAFT_CLIENT_TOKEN_FILE"] = str(tmp / "real" / "secret")
    try:
        _add_slice_user(home)
        lab = bring_up(tmp, state)
        inv = _write_real_inventory(lab, tmp / "real", known_hosts_in_inventory=True)
        lab.inventory = inv
        yield lab, tmp
    finally:
        if old_token is None:
            os.environ.pop("RAFT_CLIENT_TOKEN_FILE", None)
        else:
            os.environ["RAFT_CLIENT_TOKEN_FILE"] = old_token
        Testbed(tmp / "state").down()
        _remove_slice_user(home)
        shutil.rmtree(tmp, ignore_errors=True)


def test_site_deploys_as_a_sudo_user_through_a_jump_host(real: tuple[Lab, Path]) -> None:
    lab, _ = real
    with pytest.raises(OSError):  # the controller cannot reach the hosts' addresses
        socket.create_connection((str(lab.plan.hosts[0].address), 22), timeout=1.0).close()
    lab.playbook("site.yml").assert_ok()


def test_testinfra_passes_without_systemd_through_sudo(real: tuple[Lab, Path]) -> None:
    proc = run_testinfra(lab=real[0])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_remote_honours_become_jump_host_and_tunnels_to_the_nodes(
    real: tuple[Lab, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, tmp = real
    # Host keys from the user's ~/.ssh/known_hosts only (not named by the inventory).
    inv = _write_real_inventory(lab, tmp / "real-userkh", known_hosts_in_inventory=False)
    home = tmp / "controller-home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(inv / "known_hosts", home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    with Remote.from_inventory(inv) as remote:
        assert [n.node_id for n in remote.nodes] == ["n1", "n2", "n3"]
        assert remote.run("node1.example.org", "id -un").stdout.strip() == "root"
        plain = remote.run("node2.example.org", "id -un", become=False)
        assert plain.stdout.strip() == USER
        status = remote.run("node3.example.org", "/opt/raftlab/bin/raftlab-node status")
        assert "running" in status.stdout
        https = remote.node_endpoints("http")
        assert all(h == "127.0.0.1" for h, _ in https.values()), https
        roles = {}
        for nid, (h, p) in https.items():
            with urllib.request.urlopen(f"http://{h}:{p}/status", timeout=5) as r:
                roles[nid] = json.loads(r.read())["role"]
        assert sorted(roles.values()) == ["follower", "follower", "leader"]
        leader = next(n for n, r in roles.items() if r == "leader")
        client = remote.node_endpoint(leader, "client")
        put = raft_cli("client", "--cluster", cluster_arg({leader: client}), "put", "rk", "rv")
        assert put.returncode == 0, put.stderr
        got = raft_cli("client", "--cluster", cluster_arg({leader: client}), "get", "rk")
        assert got.stdout.strip() == "rv", got.stderr
