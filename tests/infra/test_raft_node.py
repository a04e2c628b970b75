"""What a deployed raft node host must look like (testinfra, through the Ansible inventory).

Run by tests/lab after site.yml; by hand:
``pytest tests/infra --hosts=ansible://raft_nodes --ansible-inventory=inventories/local/hosts.yml``
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

VENV = "/opt/raftlab/venv"
CONFIG = "/etc/raftlab/cluster.yml"
SECRET = "/etc/raftlab/secret"
EVENTS = "/var/log/raftlab/events.jsonl"
PORTS = {"peer": 7000, "client": 7001, "http": 7002}

STATUS_SCRIPT = (
    "import json, sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


_VARS: dict[str, dict[str, Any]] = {}
UNIT = "/etc/systemd/system/raftlab-node.service"
CONTROL_SCRIPT = "/opt/raftlab/bin/raftlab-node"


def _systemd(host: Any) -> bool:
    """The role supervises the node with systemd where the host runs it (PID 1 is systemd),
    else with the pidfile control script; the two are exclusive."""
    return bool(host.file("/run/systemd/system").is_directory)


def _vars(host: Any) -> dict[str, Any]:
    """The host's inventory variables (asked once per host: it runs ansible-inventory)."""
    key = str(host.backend.get_pytest_id())
    if key not in _VARS:
        _VARS[key] = host.ansible.get_variables()
    return _VARS[key]


def _address(host: Any) -> str:
    """The node's address as the role computes it: raft_node_address, else ansible_host,
    else the inventory name (a real inventory need not set it)."""
    v = _vars(host)
    return str(v.get("raft_node_address") or v.get("ansible_host") or v["inventory_hostname"])


def _node_id(host: Any) -> str:
    v = _vars(host)
    return str(v.get("raft_node_id") or v["inventory_hostname"])


def _status(host: Any) -> dict[str, Any]:
    addr = _address(host)
    out = host.check_output(
        "python3 -c %s %s",
        STATUS_SCRIPT,
        f"http://{addr}:{PORTS['http']}/status",
    )
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_raftlab_and_its_dependencies_are_installed_in_the_venv(host: Any) -> None:
    assert host.file(f"{VENV}/bin/raft").is_file
    cmd = host.run(
        f"{VENV}/bin/python -c 'import raft, msgpack, yaml, crc32c; print(raft.__file__)'"
    )
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().startswith(f"{VENV}/lib/")
    pip = host.run(f"{VENV}/bin/pip show raftlab")
    assert pip.rc == 0 and "Name: raftlab" in pip.stdout


def test_config_is_present_with_right_owner_and_mode(host: Any) -> None:
    cfg = host.file(CONFIG)
    assert cfg.is_file and cfg.user == "root" and cfg.group == "root" and cfg.mode == 0o644
    secret = host.file(SECRET)
    assert secret.is_file and secret.user == "root"
    if _systemd(host):  # readable by the node's own user, nobody else
        assert secret.group == "raftlab" and secret.mode == 0o640
    else:
        assert secret.mode == 0o600
    # (Read as root: testinfra runs commands through sudo where the inventory says become.)
    assert len(secret.content_string.strip()) >= 32


def test_config_lists_every_node_of_the_group(host: Any) -> None:
    v = _vars(host)
    doc = yaml.safe_load(host.file(CONFIG).content_string)
    group = v["groups"]["raft_nodes"]
    assert len(doc["nodes"]) == len(group)
    me = doc["nodes"][_node_id(host)]
    assert me["peer"] == f"{_address(host)}:{PORTS['peer']}"
    assert doc["secret_file"] == SECRET


def test_node_process_is_running_under_its_supervisor(host: Any) -> None:
    systemd = _systemd(host)
    procs = [
        p
        for p in host.process.filter(user="raftlab" if systemd else "root")
        if "serve" in p.args and f"--id {_node_id(host)}" in p.args
    ]
    assert len(procs) == 1, [p.args for p in procs]
    if systemd:
        svc = host.service("raftlab-node")
        assert svc.is_running and svc.is_enabled
        assert host.file(UNIT).contains("^User=raftlab")
        assert not host.file(CONTROL_SCRIPT).exists
    else:
        assert not host.file(UNIT).exists
        st = host.run(f"{CONTROL_SCRIPT} status")
        assert st.rc == 0 and "running" in st.stdout, st.stdout + st.stderr


@pytest.mark.parametrize("kind", ["peer", "client", "http"])
def test_node_ports_are_listening_on_the_node_address(host: Any, kind: str) -> None:
    # raft_node_listen_address (1:1 NAT) when set, else the advertised address.
    addr = str(_vars(host).get("raft_node_listen_address") or _address(host))
    assert host.socket(f"tcp://{addr}:{PORTS[kind]}").is_listening


def test_event_log_is_being_written(host: Any) -> None:
    f = host.file(EVENTS)
    assert f.is_file and f.size > 0
    kinds = {json.loads(line)["ev"] for line in f.content_string.splitlines() if line.strip()}
    assert {"start", "role"} <= kinds
    first = json.loads(f.content_string.splitlines()[0])
    assert first["ev"] == "start" and first["v"] == 1 and first["node"] == _node_id(host)


def test_node_reports_a_leader(host: Any) -> None:
    st = _status(host)
    assert st["id"] == _node_id(host)
    assert st["role"] in ("leader", "follower")
    assert st["leader"]


def test_exactly_one_leader_and_every_node_agrees(host: Any) -> None:
    # Asked from this host (inside the cluster's network, also behind a GEE gateway).
    doc = yaml.safe_load(host.file(CONFIG).content_string)
    statuses = [
        json.loads(
            host.check_output("python3 -c %s %s", STATUS_SCRIPT, f"http://{n['http']}/status")
        )
        for n in doc["nodes"].values()
    ]
    leaders = [s["id"] for s in statuses if s["role"] == "leader"]
    assert len(leaders) == 1, statuses
    assert {s["leader"] for s in statuses} == {leaders[0]}
