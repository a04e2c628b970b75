"""InventoryControl without SSH: commands run through a fake Remote, either executed by a
local shell (to prove the pid checks on real processes) or only recorded (systemd, become).

Regression (issue 10, "Also"): the old nemesis ran ``kill -9 "$(cat pidfile)"``, killing
whatever process had inherited a stale pid; now a pid is signalled only if its command line
is the node's ``raft serve --id <id> --config <config_dir>/cluster.yml``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy.nemesis import InventoryControl, inventory_host_vars, inventory_hosts
from deploy.remote import CommandResult


class ShellRemote:
    """Runs each command in a local shell; remembers them."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(
        self, host: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        self.commands.append(command)
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert not check or p.returncode == 0, (command, p.stderr)
        return CommandResult(host, command, p.returncode, p.stdout, p.stderr)


class RecordingRemote(ShellRemote):
    """Only records; answers MainPID queries with nothing running."""

    def run(
        self, host: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        self.commands.append(command)
        return CommandResult(host, command, 0, "", "")


def _inventory(tmp: Path, **group_vars: object) -> Path:
    inv = tmp / "inv"
    (inv / "group_vars").mkdir(parents=True)
    hosts = {
        "all": {
            "children": {
                "raft_nodes": {
                    "hosts": {
                        "h1": {"raft_node_id": "n1", "ansible_host": "127.0.0.1"},
                        "h2": {"raft_node_address": "10.0.0.2", "raft_node_pidfile": "/x.pid"},
                    }
                }
            }
        }
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return inv


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[InventoryControl, ShellRemote, Path]]:
    inv = _inventory(
        tmp_path,
        raft_node_pidfile=str(tmp_path / "node.pid"),
        raft_node_config_dir=str(tmp_path / "etc"),
        raft_node_service_manager="pidfile",
    )
    remote = ShellRemote()
    yield InventoryControl(inv, remote=remote), remote, tmp_path


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])


def _state(pid: int, wait_s: float = 5.0) -> str:
    """The process state letter, once it is T or Z (or after ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    state = "?"
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1]
        if state in "TZ":
            break
        time.sleep(0.02)
    return state


def test_inventory_variables_are_layered_like_ansible(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, raft_node_pidfile="/group.pid", ansible_become=True)
    v = inventory_host_vars(inv)
    assert v["h1"]["raft_node_pidfile"] == "/group.pid"
    assert v["h2"]["raft_node_pidfile"] == "/x.pid"  # host vars win
    assert v["h1"]["raft_node_service_name"] == "raftlab-node"  # role default
    assert inventory_hosts(inv) == {"h1": "127.0.0.1", "h2": "10.0.0.2"}


def test_a_recycled_pid_in_the_pidfile_is_never_signalled(
    local: tuple[InventoryControl, ShellRemote, Path],
) -> None:
    c, _remote, tmp = local
    decoy = _spawn("some", "other", "program")
    try:
        (tmp / "node.pid").write_text(f"{decoy.pid}\n")
        assert c.pid("h1") is None
        assert c.signal("h1", "STOP") is None
        c.kill("h1")
        assert decoy.poll() is None and _state(decoy.pid, 0.5) != "T"
    finally:
        decoy.kill()
        decoy.wait()


def test_the_node_process_is_found_and_signalled(
    local: tuple[InventoryControl, ShellRemote, Path],
) -> None:
    c, _remote, tmp = local
    node = _spawn("serve", "--id", "n1", "--config", f"{tmp}/etc/cluster.yml")
    other = _spawn("serve", "--id", "n2", "--config", f"{tmp}/etc/cluster.yml")
    try:
        (tmp / "node.pid").write_text(f"{other.pid}\n")
        assert c.pid("h1") is None  # another node's process is not this node
        (tmp / "node.pid").write_text(f"{node.pid}\n")
        assert c.pid("h1") == node.pid
        assert c.signal("h1", "STOP") == node.pid and _state(node.pid) == "T"
        assert c.signal("h1", "CONT") == node.pid
        c.kill("h1")
        assert node.wait(timeout=10) == -9
    finally:
        for p in (node, other):
            p.kill()
            p.wait()


def test_systemd_hosts_use_systemctl_and_become_uses_sudo(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, raft_node_service_manager="systemd", ansible_become=True)
    remote = RecordingRemote()
    c = InventoryControl(inv, remote=remote)
    c.kill("h1")
    c.signal("h1", "STOP")
    c.start("h1", {"FAKETIME_TIMESTAMP_FILE": "/run/x"})
    c.start("h1")
    joined = "\n".join(remote.commands)
    assert all(cmd.startswith("sudo -n sh -c ") for cmd in remote.commands)
    assert "systemctl show -p MainPID --value raftlab-node.service" in joined
    assert "systemctl kill -s KILL raftlab-node.service" in joined
    assert "systemctl stop raftlab-node.service" in joined
    assert "systemctl kill --kill-whom=main -s STOP raftlab-node.service" in joined
    assert "Environment=" in joined and "FAKETIME_TIMESTAMP_FILE=/run/x" in joined
    assert "50-raftlab-nemesis.conf" in joined and "systemctl daemon-reload" in joined
    assert "raftlab-node.pid" not in joined  # no pidfile under systemd
    assert remote.commands[-1].count("rm -f") == 1  # a start without env drops the drop-in
