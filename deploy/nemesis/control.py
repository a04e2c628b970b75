"""Where the nodes run, as the nemesis sees it: :class:`ClusterControl`.

Two implementations: the node processes of a ``raft cluster up`` directory
(:class:`LocalControl`, every node on this machine's loopback) and hosts deployed by the
``raft_node`` role, reached over SSH through an inventory (:class:`InventoryControl`; the
local netns testbed is such an inventory). Every operation that signals a node first proves
the pid is still that node (its command line is ``raft serve`` with the node's id and config),
so a recycled pid is never hit (issue 10, "Also"). Under systemd the inventory uses
``systemctl kill``/``systemctl start``; ``become`` from the inventory makes commands run
through ``sudo -n``. The inventory is read as Ansible reads it (``ansible-inventory --list``),
and the nodes' ports are reached through SSH tunnels where the controller cannot dial them
(``raft_lab_access``: a GEE slice).
"""

from __future__ import annotations

import os
import shlex
import signal as _signal
import subprocess
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from deploy.errors import LabError
from deploy.remote import CommandResult, Inventory, Remote, RemoteCommandError, read_inventory
from raft.runtime.http import fetch_json
from raft.runtime.transport import Address

#: Directory on each node's host where the nemesis keeps what it must find again to heal
#: (delayer pidfiles, faketime files, the disk-fill file's name). Under /run: gone on reboot.
HOST_STATE_DIR = "/run/raftlab-nemesis"


class NotSupportedError(LabError):
    """A fault that cannot be made on this kind of cluster (the message says why)."""


class ClusterControl(Protocol):
    """What faults need from a cluster: its nodes, its leader, and host-level operations on
    each node's host (run a command as root, signal/kill/start the node process)."""

    #: "local" (``raft cluster up``) or "inventory" (hosts over SSH).
    kind: str
    #: Whether each node has a network stack of its own (iptables/tc faults make sense).
    own_network: bool

    def nodes(self) -> list[str]: ...

    def leader(self) -> str | None: ...

    def address(self, node: str) -> str:
        """The IP address the other nodes use to reach ``node``."""
        ...

    def run(
        self, node: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        """Run a shell command on the node's host, as root (through become/sudo if needed)."""
        ...

    def upload(self, node: str, local: Path, remote: str) -> None: ...

    def pid(self, node: str) -> int | None:
        """The node's pid, only if that process really is the node (else None)."""
        ...

    def signal(self, node: str, sig: str) -> int | None:
        """Send ``sig`` (e.g. "KILL", "STOP", "CONT") to the node process if it is running;
        the pid signalled, or None when it was not running."""
        ...

    def kill(self, node: str) -> None:
        """SIGKILL the node and keep it down (no supervisor restart) until :meth:`start`."""
        ...

    def stop(self, node: str) -> None:
        """Stop the node gracefully (SIGTERM, then SIGKILL after a grace period)."""
        ...

    def start(self, node: str, env: Mapping[str, str] | None = None) -> None:
        """Start the node if it is not running, with extra environment variables."""
        ...

    def environ(self, node: str) -> dict[str, str]:
        """The running node's environment (empty when not running)."""
        ...

    def data_dir(self, node: str) -> str: ...

    def log_dir(self, node: str) -> str:
        """Where the node writes events.jsonl."""
        ...

    def state_dir(self, node: str) -> str:
        """Where the nemesis keeps its files on the node's host."""
        ...


def _local_run(host: str, command: str, check: bool, timeout_s: float) -> CommandResult:
    try:
        proc = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise RemoteCommandError(host, command, -1, "", f"timed out after {timeout_s} s") from None
    result = CommandResult(host, command, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise RemoteCommandError(host, command, proc.returncode, proc.stdout, proc.stderr)
    return result


def _sig(sig: str) -> _signal.Signals:
    try:
        return _signal.Signals["SIG" + sig.upper().removeprefix("SIG")]
    except KeyError:
        raise LabError(f"unknown signal {sig!r}") from None


class LocalControl:
    """The node processes of a ``raft cluster up`` directory, named by node id. All nodes
    share this machine's network namespace (127.0.0.x), so network faults are refused."""

    kind = "local"
    own_network = False

    def __init__(self, cluster_dir: str) -> None:
        from raft.runtime.localcluster import LocalCluster

        self.lc = LocalCluster(cluster_dir)
        self.cluster_dir = os.path.abspath(cluster_dir)

    def nodes(self) -> list[str]:
        return list(self.lc.config().nodes)

    def leader(self) -> str | None:
        return self.lc.leader()

    def address(self, node: str) -> str:
        return self.lc.config().nodes[node].peer.host

    def run(
        self, node: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        return _local_run(node, command, check, timeout_s)

    def upload(self, node: str, local: Path, remote: str) -> None:
        if os.path.abspath(local) != os.path.abspath(remote):
            import shutil

            shutil.copyfile(local, remote)

    def pid(self, node: str) -> int | None:
        return self.lc.running().get(node)

    def signal(self, node: str, sig: str) -> int | None:
        pid = self.pid(node)
        if pid is None:
            return None
        os.kill(pid, _sig(sig))
        return pid

    def kill(self, node: str) -> None:
        self.lc.stop_node(node, _signal.SIGKILL)

    def stop(self, node: str) -> None:
        pid = self.pid(node)
        if pid is not None:
            os.kill(pid, _signal.SIGCONT)  # a paused node must be able to act on SIGTERM
        self.lc.stop_node(node, _signal.SIGTERM)

    def start(self, node: str, env: Mapping[str, str] | None = None) -> None:
        if self.pid(node) is None:
            self.lc.start_node(node, env=dict(env or {}))

    def environ(self, node: str) -> dict[str, str]:
        pid = self.pid(node)
        if pid is None:
            return {}
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return {}
        return _parse_environ(raw.decode(errors="replace"))

    def data_dir(self, node: str) -> str:
        return self.lc.config().node_data_dir(node)

    def log_dir(self, node: str) -> str:
        return self.lc.config().node_log_dir(node)

    def state_dir(self, node: str) -> str:
        return os.path.join(self.cluster_dir, "nemesis", node)


def _parse_environ(text: str) -> dict[str, str]:
    out = {}
    for item in text.split("\0"):
        k, sep, v = item.partition("=")
        if sep:
            out[k] = v
    return out


# -- inventories ---------------------------------------------------------------------------

#: The role defaults the nemesis needs (playbooks/roles/raft_node/defaults/main.yml).
ROLE_DEFAULTS: dict[str, Any] = {
    "raft_node_install_dir": "/opt/raftlab",
    "raft_node_config_dir": "/etc/raftlab",
    "raft_node_data_dir": "/var/lib/raftlab",
    "raft_node_log_dir": "/var/log/raftlab",
    "raft_node_service_name": "raftlab-node",
    "raft_node_pidfile": "/run/raftlab/raftlab-node.pid",
    "raft_node_service_manager": "auto",
    "raft_node_peer_port": 7000,
    "raft_node_client_port": 7001,
    "raft_node_http_port": 7002,
    "ansible_become": False,
}


def inventory_host_vars(
    inventory: Path, group: str = "raft_nodes", read: Inventory | None = None
) -> dict[str, dict[str, Any]]:
    """Per host of ``group``: the role defaults the nemesis needs, overridden by the host's
    variables as Ansible resolves them (``ansible-inventory --list``: group_vars, host_vars,
    every inventory source and format, Ansible's precedence), so the nemesis sees the hosts,
    users, ``become`` and jump hosts the playbooks saw. ``raft_node_id`` and
    ``raft_node_address`` get the role's defaults (the host name; ``ansible_host``)."""
    inv = read if read is not None else read_inventory(inventory, group)
    if not inv.nodes:
        raise LabError(f"{inventory}: no hosts in group {group!r}")
    out: dict[str, dict[str, Any]] = {}
    for n in inv.nodes:
        merged: dict[str, Any] = {**ROLE_DEFAULTS, **inv.hostvars.get(n.host, {})}
        merged["raft_node_id"] = n.node_id
        merged["raft_node_address"] = n.address
        out[n.host] = merged
    return out


def inventory_hosts(inventory: Path) -> dict[str, str]:
    """Host name -> node address of the ``raft_nodes`` group (``raft_node_address``, else
    ``ansible_host``, else the host name, as the role does)."""
    return {h: str(v["raft_node_address"]) for h, v in inventory_host_vars(inventory).items()}


def inventory_client_addresses(inventory: Path) -> str:
    """``address:client_port,...`` of the inventory's nodes (as the nodes advertise them)."""
    return ",".join(
        f"{v['raft_node_address']}:{v['raft_node_client_port']}"
        for v in inventory_host_vars(inventory).values()
    )


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("yes", "true", "1"))


#: How long a leader probe waits for a node's /status: longer through a tunnel (a fresh
#: SSH channel per request on a possibly busy gateway).
STATUS_TIMEOUT_S = {"direct": 0.5, "tunnel": 2.0}


class InventoryControl:
    """Nodes deployed by the ``raft_node`` role, named by inventory host. The leader is found
    over HTTP ``/status``; everything else goes over SSH (:class:`deploy.remote.Remote`)."""

    kind = "inventory"
    own_network = True

    def __init__(self, inventory_dir: Path | str, remote: Any = None) -> None:
        self.inventory_dir = Path(inventory_dir)
        read = read_inventory(self.inventory_dir)
        self.vars = inventory_host_vars(self.inventory_dir, read=read)
        if remote is None:
            remote = Remote.from_inventory(self.inventory_dir, read=read)
        self.remote = remote
        self._systemd: dict[str, bool] = {}
        self._endpoints: dict[tuple[str, str], Address] = {}
        self._lock = threading.Lock()

    def nodes(self) -> list[str]:
        return list(self.vars)

    def _v(self, node: str, name: str) -> Any:
        try:
            return self.vars[node][name]
        except KeyError:
            raise LabError(f"unknown node {node!r} (have {', '.join(self.vars)})") from None

    def address(self, node: str) -> str:
        return str(self._v(node, "raft_node_address"))

    def endpoint(self, node: str, kind: str = "client") -> Address:
        """Where the controller reaches the node's ``kind`` port (client, http): the node's
        address, or an SSH tunnel to it when the inventory's ``raft_lab_access`` says so (or,
        ``auto``, when the address does not answer): deploy.remote.Remote.node_endpoint.
        Decided once per node and port; the tunnels stay open until :meth:`close`."""
        key = (node, kind)
        with self._lock:
            got = self._endpoints.get(key)
        if got is None:
            if hasattr(self.remote, "node_endpoint"):
                host, port = self.remote.node_endpoint(node, kind)
                got = Address(str(host), int(port))
            else:
                got = Address(self.address(node), int(self._v(node, f"raft_node_{kind}_port")))
            with self._lock:
                got = self._endpoints.setdefault(key, got)
        return got

    def tunnelled(self, node: str, kind: str = "client") -> bool:
        """Whether the controller reaches the node's ``kind`` port through a tunnel."""
        return self.endpoint(node, kind).host != self.address(node)

    def client_endpoints(self) -> tuple[list[Address], dict[Address, Address]]:
        """The client addresses the controller uses, and the map from each node's advertised
        client address (what leader hints name) to it, for RaftClient's ``address_map``."""
        addrs: list[Address] = []
        amap: dict[Address, Address] = {}
        for node in self.vars:
            reach = self.endpoint(node, "client")
            advertised = Address(self.address(node), int(self._v(node, "raft_node_client_port")))
            addrs.append(reach)
            if reach != advertised:
                amap[advertised] = reach
        return addrs, amap

    def leader(self) -> str | None:
        leaders = set()
        for host in self.vars:
            try:
                a = self.endpoint(host, "http")
                timeout = STATUS_TIMEOUT_S["tunnel" if self.tunnelled(host, "http") else "direct"]
                st = fetch_json(a.host, a.port, "/status", timeout)
            except (OSError, ValueError, LabError):
                continue
            if isinstance(st, dict) and st.get("role") == "leader":
                leaders.add(host)
        return next(iter(leaders)) if len(leaders) == 1 else None

    def http_address(self, node: str) -> Address:
        """Where the controller reaches the node's HTTP port (maybe a tunnel)."""
        return self.endpoint(node, "http")

    def run(
        self, node: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        if hasattr(self.remote, "wrap_become"):
            # A Remote that applies the inventory's become itself (deploy.remote with become
            # support): ask for root whatever the inventory's default is.
            result: CommandResult = self.remote.run(
                node, command, check=check, timeout_s=timeout_s, become=self._become(node)
            )
            return result
        if self._become(node):
            command = f"sudo -n sh -c {shlex.quote(command)}"
        result = self.remote.run(node, command, check=check, timeout_s=timeout_s)
        return result

    def _become(self, node: str) -> bool:
        return _truthy(self._v(node, "ansible_become"))

    def upload(self, node: str, local: Path, remote: str) -> None:
        if self._become(node):
            tmp = f"/tmp/.raftlab-nemesis-{os.getpid()}-{Path(remote).name}"
            self.remote.upload(node, local, tmp)
            self.run(node, f"install -m 0755 {shlex.quote(tmp)} {shlex.quote(remote)}; rm -f {tmp}")
        else:
            self.remote.upload(node, local, remote, mode=0o755)

    def systemd(self, node: str) -> bool:
        """Whether the role put the node under systemd (its own rule: service_manager, or
        auto and the host runs systemd)."""
        if node not in self._systemd:
            mgr = str(self._v(node, "raft_node_service_manager"))
            if mgr in ("systemd", "pidfile"):
                self._systemd[node] = mgr == "systemd"
            else:
                r = self.run(
                    node, "test -d /run/systemd/system && command -v systemctl", check=False
                )
                self._systemd[node] = r.ok
        return self._systemd[node]

    def prepare(self) -> None:
        """Open every host's SSH session and learn its service manager now, in parallel, so
        that the first fault of a run starts on time (a session through a gateway can take
        seconds to open on a busy machine)."""
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(self.vars)))) as ex:
            list(ex.map(self.systemd, self.vars))

    def _unit(self, node: str) -> str:
        return shlex.quote(str(self._v(node, "raft_node_service_name")) + ".service")

    def _pid_script(self, node: str) -> str:
        """Shell that sets ``pid`` to the node's pid only if its cmdline is the node."""
        config = f"{self._v(node, 'raft_node_config_dir')}/cluster.yml"
        node_id = str(self._v(node, "raft_node_id"))
        if self.systemd(node):
            read = f"pid=$(systemctl show -p MainPID --value {self._unit(node)} 2>/dev/null)"
        else:
            read = f"pid=$(cat {shlex.quote(str(self._v(node, 'raft_node_pidfile')))} 2>/dev/null)"
        want = shlex.quote(f" serve --id {node_id} --config {config}")
        return (
            f'{read}; case "$pid" in ""|0|*[!0-9]*) pid= ;; esac; '
            f'if [ -n "$pid" ]; then c=$(tr "\\000" " " < /proc/$pid/cmdline 2>/dev/null); '
            f'case "$c" in *{want}*) ;; *) pid= ;; esac; fi'
        )

    def pid(self, node: str) -> int | None:
        out = self.run(node, self._pid_script(node) + '; echo "$pid"').stdout.strip()
        return int(out) if out.isdigit() else None

    def signal(self, node: str, sig: str) -> int | None:
        name = _sig(sig).name.removeprefix("SIG")
        script = self._pid_script(node) + '; [ -n "$pid" ] || exit 0; '
        if self.systemd(node):
            script += f"systemctl kill --kill-whom=main -s {name} {self._unit(node)}; "
        else:
            script += f"kill -s {name} $pid; "
        out = self.run(node, script + 'echo "$pid"').stdout.strip()
        return int(out) if out.isdigit() else None

    def kill(self, node: str) -> None:
        script = self._pid_script(node) + '; [ -n "$pid" ] || exit 0; '
        if self.systemd(node):
            # SIGKILL, then stop so that Restart=on-failure does not bring it back early.
            script += (
                f"systemctl kill -s KILL {self._unit(node)}; systemctl stop {self._unit(node)}"
            )
        else:
            # Wait (bounded) until it is gone or a zombie its parent has yet to reap.
            script += (
                "kill -s KILL $pid; for i in $(seq 200); do "
                "s=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -c1); "
                '[ -z "$s" ] || [ "$s" = Z ] && break; sleep 0.05; done'
            )
        self.run(node, script, timeout_s=30)

    def stop(self, node: str) -> None:
        if self.systemd(node):
            self.run(node, f"systemctl stop {self._unit(node)}", timeout_s=60)
        else:
            self.signal(node, "CONT")
            self.run(node, f"{self._control_script(node)} stop", timeout_s=60)

    def _control_script(self, node: str) -> str:
        name = self._v(node, "raft_node_service_name")
        return shlex.quote(f"{self._v(node, 'raft_node_install_dir')}/bin/{name}")

    def _dropin(self, node: str) -> str:
        name = self._v(node, "raft_node_service_name")
        return f"/run/systemd/system/{name}.service.d/50-raftlab-nemesis.conf"

    def start(self, node: str, env: Mapping[str, str] | None = None) -> None:
        env = dict(env or {})
        if self.systemd(node):
            dropin = shlex.quote(self._dropin(node))
            if env:
                lines = "[Service]\n" + "".join(
                    f'Environment="{k}={v}"\n' for k, v in sorted(env.items())
                )
                script = (
                    f"mkdir -p $(dirname {dropin}) && printf %s {shlex.quote(lines)} > {dropin}"
                )
            else:
                script = f"rm -f {dropin}"
            script += f" && systemctl daemon-reload && systemctl start {self._unit(node)}"
            self.run(node, script, timeout_s=60)
            return
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
        self.run(node, f"{prefix} {self._control_script(node)} start".strip(), timeout_s=60)

    def environ(self, node: str) -> dict[str, str]:
        out = self.run(
            node,
            self._pid_script(node) + '; [ -n "$pid" ] && cat /proc/$pid/environ || true',
        ).stdout
        return _parse_environ(out)

    def data_dir(self, node: str) -> str:
        return f"{self._v(node, 'raft_node_data_dir')}/{self._v(node, 'raft_node_id')}"

    def log_dir(self, node: str) -> str:
        return str(self._v(node, "raft_node_log_dir")).replace(
            "{id}", str(self._v(node, "raft_node_id"))
        )

    def state_dir(self, node: str) -> str:
        return HOST_STATE_DIR

    def close(self) -> None:
        """Close the SSH sessions and tunnels (endpoints are decided again afterwards)."""
        with self._lock:
            self._endpoints.clear()
        close = getattr(self.remote, "close", None)
        if close is not None:
            close()
