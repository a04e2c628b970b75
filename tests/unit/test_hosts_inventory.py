"""Reading hosts from inventories (issue 13 §4 §8): a GEE slicelet imported into an
inventory, Ansible's own view of it (ansible-inventory --list) turned into SSH endpoints with
the slice user, become, ports of several gateways, ProxyJump and known_hosts files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.geeimport import SliceletError, parse_ansible_hosts, read_slicelet, write_inventory
from deploy.remote import Hop, Remote, parse_proxy_jump, read_inventory, ssh_options
from deploy.wheelhouse import WheelhouseBuildError, python_download_args

REPO = Path(__file__).resolve().parents[2]

ANSIBLE_HOSTS = """\
# GEE slicelet slice347
[nodes]
sliver1.site-a.example.net ansible_ssh_host=192.0.2.10 ansible_ssh_port=35001
sliver2.site-a.example.net ansible_ssh_host=192.0.2.10 ansible_ssh_port=35002
sliver3.site-b.example.net ansible_ssh_host=198.51.100.7 ansible_ssh_port=35101

[nodes:vars]
ansible_ssh_user=slice347
"""

SSH_CONFIG = """\
Host sliver1.site-a.example.net
    HostName 192.0.2.10
    Port 35001
    User slice347
    IdentityFile ./id_rsa
Host sliver2.site-a.example.net
    HostName 192.0.2.10
    Port 35002
    User slice347
    IdentityFile ./id_rsa
Host sliver3.site-b.example.net
    HostName 198.51.100.7
    Port 35101
    User slice347
    IdentityFile ./id_rsa
"""

ANSIBLE_CFG = """\
[defaults]
remote_user = slice347
private_key_file = ./id_rsa
host_key_checking = False
"""


def _slicelet(d: Path) -> Path:
    d.mkdir()
    (d / "ansible-hosts").write_text(ANSIBLE_HOSTS)
    (d / "ssh-config").write_text(SSH_CONFIG)
    (d / "ansible.cfg").write_text(ANSIBLE_CFG)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id_rsa")], check=True
    )
    return d


def test_ansible_hosts_group_vars_apply_and_host_vars_win() -> None:
    hosts = parse_ansible_hosts("[g]\na x=1\nb x=2 y=3\n[g:vars]\ny=9\nz=0\n")
    assert hosts == {"a": {"x": "1", "y": "9", "z": "0"}, "b": {"x": "2", "y": "3", "z": "0"}}


def test_import_gee_writes_an_inventory_ansible_and_remote_read_alike(tmp_path: Path) -> None:
    src = _slicelet(tmp_path / "slicelet")
    sl = read_slicelet(src)
    assert [(s.gateway, s.port) for s in sl.slivers] == [
        ("192.0.2.10", 35001),
        ("192.0.2.10", 35002),
        ("198.51.100.7", 35101),
    ]
    assert sl.user == "slice347"
    inv = tmp_path / "inv"
    write_inventory(sl, inv)
    assert (inv / "slice_key").stat().st_mode & 0o777 == 0o600
    doc = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts = doc["all"]["children"]["raft_nodes"]["hosts"]
    assert [h["raft_node_id"] for h in hosts.values()] == ["n1", "n2", "n3"]
    # Ansible's own reading of it, as Remote uses it: slice user, become, gateway ports.
    read = read_inventory(inv)
    ep = read.endpoints["sliver3.site-b.example.net"]
    assert (ep.hostname, ep.port, ep.user, ep.become) == ("198.51.100.7", 35101, "slice347", True)
    assert ep.key_files == (str((inv / "slice_key").resolve()),)
    assert (inv / "known_hosts").resolve() in read.known_hosts
    assert [n.node_id for n in read.nodes] == ["n1", "n2", "n3"]
    # Without a private address in the slicelet, the node address falls back to ansible_host.
    assert read.nodes[0].address == "192.0.2.10"
    remote = Remote(known_hosts=inv / "known_hosts", endpoints=read.endpoints, nodes=read.nodes)
    wrapped = remote.wrap_become("sliver1.site-a.example.net", "systemctl kill raftlab-node")
    assert wrapped == "sudo -n -H -u root -- sh -c 'systemctl kill raftlab-node'"
    assert remote.wrap_become("sliver1.site-a.example.net", "id", become=False) == "id"
    cli = subprocess.run(
        [sys.executable, "-c", "import sys, deploy.cli; sys.exit(deploy.cli.main())", "inventory",
         "import-gee", str(src), "--out", str(tmp_path / "inv2")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "imported 3 slivers (user slice347, gateways 192.0.2.10, 198.51.100.7)" in cli.stdout


def test_import_gee_refuses_a_directory_without_its_files(tmp_path: Path) -> None:
    with pytest.raises(SliceletError, match="no ansible-hosts"):
        read_slicelet(tmp_path)
    (tmp_path / "ansible-hosts").write_text("[nodes]\nh1 ansible_port=2201 ansible_user=s\n")
    with pytest.raises(SliceletError, match="no private key"):
        read_slicelet(tmp_path)


def test_ssh_arguments_and_proxy_jump_are_parsed_as_openssh_does() -> None:
    opts = ssh_options(
        "-o UserKnownHostsFile=/k/known -o StrictHostKeyChecking=yes -J slice@gw:2222,root@b"
    )
    assert opts["userknownhostsfile"] == "/k/known"
    assert parse_proxy_jump(opts["proxyjump"], "me") == (
        Hop("gw", 2222, "slice"),
        Hop("b", 22, "root"),
    )
    assert parse_proxy_jump("gw", "me") == (Hop("gw", 22, "me"),)
    assert ssh_options("-o ProxyJump=u@h")["proxyjump"] == "u@h"
    assert parse_proxy_jump("none", "me") == ()


def test_wheels_are_fetched_for_the_hosts_python() -> None:
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert python_download_args(here) == []
    assert python_download_args("3.12" if here != "3.12" else "3.13")[0].startswith(
        "--python-version=3.1"
    )
    with pytest.raises(WheelhouseBuildError, match=r"MAJOR\.MINOR"):
        python_download_args("three")
