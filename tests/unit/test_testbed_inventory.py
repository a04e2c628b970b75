"""Generated inventory and SSH files: what Ansible, testinfra and ssh will read."""

from __future__ import annotations

from pathlib import Path

import paramiko
import yaml

from deploy.testbed.inventory import (
    InventoryFiles,
    known_hosts_name,
    render_group_vars,
    render_hosts_yml,
    render_known_hosts,
    render_ssh_config,
    write_inventory,
)
from deploy.testbed.plan import TestbedPlan, TestbedStyle, plan_testbed

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz1x2M9NQ0c5ZbC8S0wJfM3V7yN9dGQwqz1m3Yq8aB{}"


def keys(plan: TestbedPlan) -> dict[str, str]:
    names = [h.name for h in plan.hosts] + (["gw"] if plan.gateway else [])
    return {n: KEY.format(i) for i, n in enumerate(names)}


def test_hosts_yml_has_the_raft_nodes_group_with_ids() -> None:
    plan = plan_testbed(4)
    doc = yaml.safe_load(render_hosts_yml(plan))
    hosts = doc["all"]["children"]["raft_nodes"]["hosts"]
    assert list(hosts) == ["h1", "h2", "h3", "h4"]
    assert [v["raft_node_id"] for v in hosts.values()] == ["n1", "n2", "n3", "n4"]
    assert hosts["h2"]["ansible_host"] == "10.77.0.12" == hosts["h2"]["raft_node_address"]
    assert "gateways" not in doc["all"]["children"]


def test_gee_inventory_dials_gateway_ports_and_keeps_inner_addresses() -> None:
    plan = plan_testbed(3, TestbedStyle.GEE)
    text = render_hosts_yml(plan)
    assert "GEE" in text  # the comment explaining the layout
    doc = yaml.safe_load(text)
    hosts = doc["all"]["children"]["raft_nodes"]["hosts"]
    # Two gateway addresses, as slivers behind the gateways of two sites.
    assert [v["ansible_host"] for v in hosts.values()] == ["10.77.0.2", "10.77.0.3", "10.77.0.2"]
    assert [v["ansible_port"] for v in hosts.values()] == [2201, 2202, 2203]
    assert hosts["h3"]["raft_node_address"] == "10.78.0.13"
    gw = doc["all"]["children"]["gateways"]["hosts"]["gw"]
    assert gw["ansible_host"] == "10.77.0.2" and gw["ansible_port"] == 22


def test_group_vars_pin_host_keys_and_use_the_lab_key(tmp_path: Path) -> None:
    files = InventoryFiles(tmp_path)
    doc = yaml.safe_load(render_group_vars(plan_testbed(2), files))
    assert doc["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    args = doc["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in args
    assert "StrictHostKeyChecking=yes" in args
    assert "StrictHostKeyChecking=no" not in args
    # A dead session is noticed (and the task retried) instead of waited on forever.
    assert "ServerAliveInterval=15" in args and "ServerAliveCountMax=4" in args


def test_ssh_config_resolves_each_host_with_paramiko(tmp_path: Path) -> None:
    files = InventoryFiles(tmp_path)
    cfg = paramiko.SSHConfig.from_text(render_ssh_config(plan_testbed(3, TestbedStyle.GEE), files))
    h2 = cfg.lookup("h2")
    assert (h2["hostname"], h2["port"], h2["user"]) == ("10.77.0.3", "2202", "root")
    assert h2["identityfile"] == [str(tmp_path / "id_ed25519")]
    assert h2["stricthostkeychecking"] == "yes"
    assert (h2["serveraliveinterval"], h2["serveralivecountmax"]) == ("15", "4")
    assert cfg.lookup("gw")["port"] == "22"


def test_known_hosts_lines_use_bracketed_ports_and_load_in_paramiko(tmp_path: Path) -> None:
    plan = plan_testbed(2, TestbedStyle.GEE)
    text = render_known_hosts(plan, keys(plan))
    lines = text.splitlines()
    assert lines[0].startswith("10.77.0.2 ssh-ed25519 ")
    assert lines[1].startswith("[10.77.0.2]:2201 ssh-ed25519 ")
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    path = tmp_path / "known_hosts"
    path.write_text(text)
    hk = paramiko.HostKeys(str(path))
    assert "[10.77.0.3]:2202" in hk and "10.77.0.2" in hk


def test_write_inventory_writes_every_file(tmp_path: Path) -> None:
    plan = plan_testbed(3)
    files = InventoryFiles(tmp_path / "inv")
    write_inventory(plan, files, keys(plan))
    for p in (files.hosts_yml, files.group_vars, files.ssh_config, files.known_hosts):
        assert p.is_file(), p
    assert not list((tmp_path / "inv").glob("*.tmp"))
