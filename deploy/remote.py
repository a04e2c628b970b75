"""Remote execution on lab hosts over SSH (paramiko): run, upload, download, forward.

One small interface, as in Jepsen's control layer. Hosts come from an Ansible inventory
(``ansible-inventory --list``: address, port, user, key, ``become``, ProxyJump in
``ansible_ssh_common_args``, the raft node's address and ports) or from an OpenSSH
``ssh_config``. Every host key is verified against known_hosts files (the inventory's
``UserKnownHostsFile`` and the user's ``~/.ssh/known_hosts``): an unknown or changed key is
refused (:class:`paramiko.RejectPolicy`), never trusted, also for jump hosts.

:meth:`Remote.forward` opens SSH port forwards (``direct-tcpip``) to a node's ports, so the
workload and the nemesis reach nodes that have only private addresses (a GEE slice) from the
controller; :func:`node_endpoints` gives each node's client/http endpoint, direct when the
controller reaches it, else through such a tunnel.

Failures raise :class:`RemoteCommandError` carrying host, command, exit code and output;
connection attempts are retried a bounded number of times, each retry saying why.
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from deploy.errors import LabError

#: The inventory group whose hosts run raft nodes (the raft_node role's default).
NODE_GROUP = "raft_nodes"
#: The role's default ports (docs/testbed.md): peer, client, HTTP.
DEFAULT_PORTS = {"peer": 7000, "client": 7001, "http": 7002}
#: How long a direct TCP probe of a node's port may take before a tunnel is used instead.
PROBE_TIMEOUT_S = 1.0
#: The inventory variable that says how the controller reaches the nodes' ports.
ACCESS_VAR = "raft_lab_access"


class NodeAccess(enum.Enum):
    """How the controller (workload clients, leader probes) reaches a node's ports: the
    inventory's ``raft_lab_access`` (docs/testbed.md, "Reaching the nodes")."""

    #: Dial the node's address when a TCP probe of it succeeds, else tunnel.
    AUTO = "auto"
    #: Always dial the node's address (plain testbed, hosts on the controller's network).
    DIRECT = "direct"
    #: Always through an SSH tunnel over the host's connection (GEE slices, private clouds).
    TUNNEL = "tunnel"

    @staticmethod
    def parse(value: object, where: str) -> NodeAccess:
        try:
            return NodeAccess(str(value or "auto").strip().lower())
        except ValueError:
            choices = ", ".join(a.value for a in NodeAccess)
            raise InventoryError(
                f"{where}: {ACCESS_VAR} is {value!r}, not one of {choices}"
            ) from None


class RemoteError(LabError):
    """Something went wrong talking to a remote host."""


class InventoryError(RemoteError):
    """An inventory could not be read, or lacks what is needed to reach a host."""


class RemoteConnectError(RemoteError):
    """Could not open an SSH session to a host (after the allowed retries)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(f"cannot connect to {host} ({address}): {reason}")


class RemoteCommandError(RemoteError):
    """A command exited non-zero (or timed out: exit code -1) on a host."""

    def __init__(self, host: str, command: str, exit_code: int, stdout: str, stderr: str) -> None:
        self.host = host
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        out = (stderr.strip() or stdout.strip())[-800:]
        super().__init__(f"{host}: `{command}` exited {exit_code}: {out}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command did on one host."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Hop:
    """One ProxyJump hop (``user@host:port``); the target's keys authenticate it too."""

    hostname: str
    port: int
    user: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to connect, resolved from the inventory or the ssh config."""

    host: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    #: ProxyJump hops, the first one dialled first.
    jump: tuple[Hop, ...] = ()
    #: Run commands through ``sudo -n`` (Ansible's ``become``) unless ``user`` is already
    #: ``become_user``.
    become: bool = False
    become_user: str = "root"


@dataclass(frozen=True, slots=True)
class NodeHost:
    """A raft node of the inventory: where the other nodes and clients reach it."""

    host: str  # inventory name
    node_id: str
    address: str  # raft_node_address: the node's own address (private in a GEE slice)
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    access: NodeAccess = NodeAccess.AUTO
    #: Where the node's ports listen on its host (raft_node_listen_address), when that is
    #: not ``address``: tunnels dial this (``address`` may be a 1:1-NAT public address).
    listen: str = ""

    @property
    def local_address(self) -> str:
        """The address to dial from the node's own host (a tunnel's far end)."""
        return self.address if self.listen in ("", "0.0.0.0", "::") else self.listen

    def port(self, kind: str) -> int:
        if kind not in self.ports:
            raise InventoryError(f"no {kind!r} port (one of {', '.join(sorted(self.ports))})")
        return self.ports[kind]


Log = Callable[[str], None]


def _no_log(_msg: str) -> None:
    return None


# ----------------------------------------------------------------------- inventory reading


def parse_proxy_jump(text: str, default_user: str) -> tuple[Hop, ...]:
    """Hops of an OpenSSH ProxyJump value (``[user@]host[:port],...``; ``none``: none)."""
    if text.strip().lower() in ("", "none"):
        return ()
    hops: list[Hop] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(?:ssh://)?(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?", part)
        if not m:
            raise InventoryError(f"bad ProxyJump hop {part!r} (expected [user@]host[:port])")
        hops.append(Hop(m[2].strip("[]"), int(m[3] or 22), m[1] or default_user))
    return tuple(hops)


def ssh_options(args: str) -> dict[str, str]:
    """``-o Key=Value`` / ``-o Key Value`` / ``-J hops`` / ``-i key`` / ``-p port`` of an ssh
    argument string (``ansible_ssh_common_args``), keys lowercased."""
    out: dict[str, str] = {}
    words = shlex.split(args)
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w == "-o" and nxt:
            key, _, value = nxt.replace("=", " ", 1).partition(" ")
            out[key.strip().lower()] = value.strip()
            i += 2
        elif w.startswith("-o") and len(w) > 2:
            key, _, value = w[2:].replace("=", " ", 1).partition(" ")
            out[key.strip().lower()] = value.strip()
            i += 1
        elif w in ("-J", "-i", "-p") and nxt:
            out[{"-J": "proxyjump", "-i": "identityfile", "-p": "port"}[w]] = nxt
            i += 2
        else:
            i += 1
    return out


def _render(value: object, inventory_dir: Path, what: str) -> str:
    """The few templates inventories use in connection settings: ``{{ inventory_dir }}``
    and ``~``; anything else templated is refused with the variable named."""
    text = re.sub(r"\{\{\s*inventory_dir\s*\}\}", str(inventory_dir), str(value))
    if "{{" in text:
        raise InventoryError(f"{what}: cannot resolve the template in {text!r} outside Ansible")
    return text


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def load_ansible_inventory(inventory: Path) -> dict[str, Any]:
    """``ansible-inventory -i INVENTORY --list`` as JSON (group_vars and host_vars applied)."""
    exe = shutil.which("ansible-inventory")
    if exe is None:
        raise InventoryError("ansible-inventory is not installed (pip install ansible-core)")
    proc = subprocess.run(
        [exe, "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )
    if proc.returncode != 0:
        raise InventoryError(
            f"ansible-inventory -i {inventory} --list failed: {proc.stderr.strip()[-600:]}"
        )
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"ansible-inventory printed no JSON for {inventory}: {exc}") from exc
    return data


def group_hosts(data: Mapping[str, Any], group: str) -> list[str]:
    """The hosts of ``group`` and of its children, in inventory order, without repeats."""
    out: list[str] = []
    seen_groups: set[str] = set()

    def walk(g: str) -> None:
        if g in seen_groups:
            return
        seen_groups.add(g)
        entry = data.get(g, {})
        for h in entry.get("hosts", []):
            if h not in out:
                out.append(h)
        for child in entry.get("children", []):
            walk(child)

    walk(group)
    return out


def _inventory_dir(inventory: Path) -> Path:
    return inventory if inventory.is_dir() else inventory.parent


@dataclass(frozen=True, slots=True)
class Inventory:
    """What :class:`Remote` and the lab need from an Ansible inventory."""

    endpoints: Mapping[str, Endpoint]
    nodes: tuple[NodeHost, ...]
    known_hosts: tuple[Path, ...]
    #: Every host's variables as Ansible resolves them (group_vars, host_vars, precedence).
    hostvars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def read_inventory(inventory: Path, group: str = NODE_GROUP) -> Inventory:
    """Hosts, users, keys, become, jump hosts, known_hosts files and raft nodes of an Ansible
    inventory (a directory or a file), as Ansible itself resolves them."""
    data = load_ansible_inventory(inventory)
    inv_dir = _inventory_dir(inventory).resolve()
    hostvars: Mapping[str, Mapping[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    all_hosts = group_hosts(data, "all")
    endpoints: dict[str, Endpoint] = {}
    known: list[Path] = []
    for h in all_hosts:
        v = hostvars.get(h, {})
        opts = ssh_options(
            " ".join(
                _render(v.get(k, ""), inv_dir, f"{h}: {k}")
                for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
            )
        )
        user = str(v.get("ansible_user") or v.get("ansible_ssh_user") or getpass.getuser())
        key = v.get("ansible_ssh_private_key_file") or opts.get("identityfile")
        endpoints[h] = Endpoint(
            host=h,
            hostname=str(v.get("ansible_host") or v.get("ansible_ssh_host") or h),
            port=int(
                str(v.get("ansible_port") or v.get("ansible_ssh_port") or opts.get("port", 22))
            ),
            user=user,
            key_files=(os.path.expanduser(_render(key, inv_dir, f"{h}: key")),) if key else (),
            jump=parse_proxy_jump(opts.get("proxyjump", ""), user),
            become=_truthy(v.get("ansible_become", False)),
            become_user=str(v.get("ansible_become_user") or "root"),
        )
        for kh in opts.get("userknownhostsfile", "").split():
            p = Path(os.path.expanduser(kh))
            if p not in known:
                known.append(p)
    nodes: list[NodeHost] = []
    for h in group_hosts(data, group):
        v = hostvars.get(h, {})
        ports = {k: int(v.get(f"raft_node_{k}_port", p)) for k, p in DEFAULT_PORTS.items()}
        nodes.append(
            NodeHost(
                host=h,
                node_id=str(v.get("raft_node_id") or h),
                address=str(v.get("raft_node_address") or endpoints[h].hostname),
                ports=ports,
                access=NodeAccess.parse(v.get(ACCESS_VAR), f"{inventory}: {h}"),
                listen=str(v.get("raft_node_listen_address") or ""),
            )
        )
    ids = [n.node_id for n in nodes]
    if len(set(ids)) != len(ids):
        raise InventoryError(f"{inventory}: raft_node_id values repeat: {sorted(ids)}")
    user_kh = Path.home() / ".ssh" / "known_hosts"
    if user_kh.is_file() and user_kh not in known:
        known.append(user_kh)
    return Inventory(
        endpoints=endpoints,
        nodes=tuple(nodes),
        known_hosts=tuple(known),
        hostvars={h: dict(hostvars.get(h, {})) for h in all_hosts},
    )


def endpoints_from_ssh_config(ssh_config: Path) -> tuple[dict[str, Endpoint], list[Path]]:
    """Endpoints of every named host of an OpenSSH config, and its UserKnownHostsFiles."""
    cfg = paramiko.SSHConfig.from_path(str(ssh_config))
    hosts = sorted(h for h in cfg.get_hostnames() if not any(c in h for c in "*?!"))
    out: dict[str, Endpoint] = {}
    known: list[Path] = []
    for h in hosts:
        c = cfg.lookup(h)
        user = str(c.get("user", getpass.getuser()))
        hops: list[Hop] = []
        for hop in parse_proxy_jump(str(c.get("proxyjump", "")), user):
            # A hop may name another Host of the same config.
            hc = cfg.lookup(hop.hostname)
            hops.append(
                Hop(
                    str(hc.get("hostname", hop.hostname)),
                    int(str(hc.get("port", hop.port))),
                    str(hc.get("user", hop.user)),
                )
            )
        out[h] = Endpoint(
            host=h,
            hostname=str(c.get("hostname", h)),
            port=int(c.get("port", 22)),
            user=user,
            key_files=tuple(str(p) for p in c.get("identityfile", [])),
            jump=tuple(hops),
        )
        for kh in str(c.get("userknownhostsfile", "")).split():
            p = Path(os.path.expanduser(kh))
            if p not in known:
                known.append(p)
    return out, known


# ---------------------------------------------------------------------------- forwarding


class _Forward:
    """A local listening socket whose connections are tunnelled (direct-tcpip) over one SSH
    transport to ``target``; bounded: at most ``conns_max`` connections at once."""

    def __init__(
        self, transport_of: Callable[[], paramiko.Transport], target: tuple[str, int]
    ) -> None:
        self._transport_of = transport_of
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.local: tuple[str, int] = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._conns_max = 256
        threading.Thread(target=self._accept, daemon=True, name=f"fwd-{target}").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if len(self._conns) >= self._conns_max:
                    conn.close()
                    continue
                self._conns.add(conn)
            threading.Thread(target=self._pump, args=(conn, peer), daemon=True).start()

    def _pump(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        chan: paramiko.Channel | None = None
        try:
            chan = self._transport_of().open_channel("direct-tcpip", self.target, peer, timeout=10)
            while not self._closed.is_set():
                ready, _, _ = select.select([conn, chan], [], [], 0.5)  # type: ignore[type-var]
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            pass  # the client sees its connection closed, as with a refused port
        finally:
            if chan is not None:
                chan.close()
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


# -------------------------------------------------------------------------------- Remote


class Remote:
    """SSH sessions to the hosts of an inventory; one cached connection per host.

    Thread-safe: :meth:`run_all` uses one thread per host (bounded by ``parallel_max``).
    """

    def __init__(
        self,
        ssh_config: Path | None = None,
        known_hosts: Path | Sequence[Path] | None = None,
        *,
        endpoints: Mapping[str, Endpoint] | None = None,
        nodes: Sequence[NodeHost] = (),
        connect_retries: int = 3,
        retry_delay_s: float = 1.0,
        connect_timeout_s: float = 10.0,
        parallel_max: int = 16,
        log: Log = _no_log,
    ) -> None:
        found: list[Path] = []
        eps: dict[str, Endpoint] = dict(endpoints or {})
        if ssh_config is not None:
            from_cfg, found = endpoints_from_ssh_config(ssh_config)
            eps = {**from_cfg, **eps}
        if known_hosts is None:
            files = found
        elif isinstance(known_hosts, Path):
            files = [known_hosts]
        else:
            files = list(known_hosts)
        if not files:
            raise RemoteError(
                "no known_hosts file: give one, or pin the hosts in ~/.ssh/known_hosts"
            )
        for kh in files:
            if not kh.is_file():
                raise RemoteError(f"known_hosts file {kh} does not exist")
        self._endpoints = eps
        self.nodes: tuple[NodeHost, ...] = tuple(nodes)
        self._known_hosts = tuple(files)
        self._connect_retries = connect_retries
        self._retry_delay_s = retry_delay_s
        self._connect_timeout_s = connect_timeout_s
        self._parallel_max = parallel_max
        self._log = log
        self._clients: dict[str, list[paramiko.SSHClient]] = {}
        self._forwards: dict[tuple[str, str, int], _Forward] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_inventory(
        cls, inventory: Path, *, read: Inventory | None = None, **kwargs: Any
    ) -> Remote:
        """For an Ansible inventory (a directory or file): hosts, users, keys, ``become``,
        ProxyJump and known_hosts as ``ansible-inventory --list`` resolves them, plus the raft
        nodes of group ``raft_nodes`` (for :meth:`forward` and :func:`node_endpoints`).
        ``read``: the inventory already read (no second ``ansible-inventory`` call)."""
        group = kwargs.pop("group", NODE_GROUP)
        inv = read if read is not None else read_inventory(inventory, group)
        return cls(
            known_hosts=kwargs.pop("known_hosts", inv.known_hosts),
            endpoints=inv.endpoints,
            nodes=inv.nodes,
            **kwargs,
        )

    def hosts(self) -> list[str]:
        """The host names this Remote can reach."""
        return sorted(self._endpoints)

    def endpoint(self, host: str) -> Endpoint:
        try:
            return self._endpoints[host]
        except KeyError:
            raise RemoteError(
                f"unknown host {host!r} (known: {', '.join(self.hosts()) or 'none'})"
            ) from None

    def node(self, host_or_id: str) -> NodeHost:
        """The raft node on inventory host (or with node id) ``host_or_id``."""
        for n in self.nodes:
            if host_or_id in (n.host, n.node_id):
                return n
        raise RemoteError(f"no raft node {host_or_id!r} in the inventory")

    # ----------------------------------------------------------------- connecting

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for kh in self._known_hosts:
            client.load_host_keys(str(kh))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    def _connect_once(self, ep: Endpoint) -> list[paramiko.SSHClient]:
        """One attempt: the jump hosts' clients, then the target's (last)."""
        chain: list[paramiko.SSHClient] = []
        sock: paramiko.Channel | None = None
        hops = [*ep.jump, Hop(ep.hostname, ep.port, ep.user)]
        try:
            for i, hop in enumerate(hops):
                client = self._new_client()
                chain.append(client)
                client.connect(
                    hop.hostname,
                    port=hop.port,
                    username=hop.user,
                    key_filename=list(ep.key_files) or None,  # type: ignore[arg-type]
                    timeout=self._connect_timeout_s,
                    banner_timeout=self._connect_timeout_s,
                    auth_timeout=self._connect_timeout_s,
                    allow_agent=not ep.key_files,
                    look_for_keys=not ep.key_files,
                    sock=sock,
                )
                if i + 1 < len(hops):
                    transport = client.get_transport()
                    assert transport is not None
                    nxt = hops[i + 1]
                    sock = transport.open_channel(
                        "direct-tcpip",
                        (nxt.hostname, nxt.port),
                        ("127.0.0.1", 0),
                        timeout=self._connect_timeout_s,
                    )
        except BaseException:
            for c in chain:
                c.close()
            raise
        return chain

    def _connect(self, host: str) -> list[paramiko.SSHClient]:
        ep = self.endpoint(host)
        via = "".join(f" via {h.user}@{h.hostname}:{h.port}" for h in ep.jump)
        address = f"{ep.user}@{ep.hostname}:{ep.port}{via}"
        known = ", ".join(map(str, self._known_hosts))
        last = ""
        for attempt in range(1, self._connect_retries + 1):
            try:
                return self._connect_once(ep)
            except paramiko.BadHostKeyException as exc:
                raise RemoteConnectError(
                    host, address, f"host key mismatch ({exc}); refusing to connect"
                ) from exc
            except paramiko.AuthenticationException as exc:
                raise RemoteConnectError(host, address, f"authentication failed: {exc}") from exc
            except paramiko.SSHException as exc:
                if "not found in known_hosts" in str(exc):
                    raise RemoteConnectError(
                        host, address, f"host key not in {known}; refusing ({exc})"
                    ) from exc
                last = f"SSH error: {exc}"
            except (TimeoutError, OSError) as exc:
                last = f"network error: {exc}"
            if attempt < self._connect_retries:
                self._log(
                    f"retry {attempt + 1}/{self._connect_retries} connecting to {host} "
                    f"({address}) because {last}"
                )
                time.sleep(self._retry_delay_s * attempt)
        raise RemoteConnectError(host, address, f"{last} (after {self._connect_retries} tries)")

    def _client(self, host: str) -> paramiko.SSHClient:
        with self._lock:
            chain = self._clients.get(host)
        if chain:
            transport = chain[-1].get_transport()
            if transport is not None and transport.is_active():
                return chain[-1]
            for c in chain:
                c.close()
        chain = self._connect(host)
        with self._lock:
            self._clients[host] = chain
        return chain[-1]

    def _transport(self, host: str) -> paramiko.Transport:
        transport = self._client(host).get_transport()
        if transport is None:
            raise RemoteConnectError(host, self.endpoint(host).hostname, "no SSH transport")
        return transport

    # ------------------------------------------------------------------- commands

    def wrap_become(self, host: str, cmd: str, become: bool | None = None) -> str:
        """``cmd`` as the host's ``become`` says: through ``sudo -n`` (never prompting: a
        password-protected sudo fails clearly instead of hanging) unless the SSH user
        already is the become user."""
        ep = self.endpoint(host)
        if not (ep.become if become is None else become) or ep.user == ep.become_user:
            return cmd
        return f"sudo -n -H -u {shlex.quote(ep.become_user)} -- sh -c {shlex.quote(cmd)}"

    def run(
        self,
        host: str,
        command: str | list[str],
        *,
        check: bool = True,
        timeout_s: float = 120.0,
        become: bool | None = None,
    ) -> CommandResult:
        """Run ``command`` (a shell string, or argv quoted for the shell) on ``host``, with
        privileges as the inventory's ``become`` says (or as ``become`` overrides)."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        full = self.wrap_become(host, cmd, become)
        client = self._client(host)
        try:
            _stdin, stdout, stderr = client.exec_command(full, timeout=timeout_s)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except TimeoutError as exc:
            raise RemoteCommandError(host, cmd, -1, "", f"timed out after {timeout_s} s") from exc
        result = CommandResult(host, cmd, code, out, err)
        if check and code != 0:
            raise RemoteCommandError(host, cmd, code, out, err)
        return result

    def upload(self, host: str, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy a local file to ``remote`` on ``host`` (optionally setting its mode), as the
        SSH user (no become: upload to a place that user may write)."""
        try:
            with self._client(host).open_sftp() as sftp:
                sftp.put(str(local), remote)
                if mode is not None:
                    sftp.chmod(remote, mode)
        except OSError as exc:
            raise RemoteCommandError(host, f"upload {local} -> {remote}", -1, "", str(exc)) from exc

    def download(self, host: str, remote: str, local: Path) -> None:
        """Copy ``remote`` on ``host`` to a local file (parent directories created)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._client(host).open_sftp() as sftp:
                sftp.get(remote, str(local))
        except OSError as exc:
            raise RemoteCommandError(
                host, f"download {remote} -> {local}", -1, "", str(exc)
            ) from exc

    def run_all(
        self,
        hosts: Iterable[str],
        command: str | list[str],
        *,
        check: bool = True,
        timeout_s: float = 120.0,
        become: bool | None = None,
    ) -> dict[str, CommandResult]:
        """Run ``command`` on every host in parallel; with ``check`` the first failure (in host
        order) is raised after all have finished."""
        names = list(hosts)
        with ThreadPoolExecutor(max_workers=max(1, min(self._parallel_max, len(names)))) as ex:
            futures = {
                h: ex.submit(self.run, h, command, check=False, timeout_s=timeout_s, become=become)
                for h in names
            }
        results = {h: f.result() for h, f in futures.items()}
        if check:
            for r in results.values():
                if not r.ok:
                    raise RemoteCommandError(r.host, r.command, r.exit_code, r.stdout, r.stderr)
        return results

    # ------------------------------------------------------------------ forwarding

    def forward(self, host: str, port: int, address: str | None = None) -> tuple[str, int]:
        """A local ``(127.0.0.1, port)`` whose connections reach ``address:port`` as seen from
        ``host`` (default: the raft node address of ``host``), tunnelled over the host's SSH
        connection (``direct-tcpip``, as ``ssh -L``). Reused for the same target; open until
        :meth:`close`."""
        if address is None:
            address = self.node(host).local_address
        key = (host, address, port)
        with self._lock:
            fwd = self._forwards.get(key)
        if fwd is None:
            self._transport(host)  # connect now: errors surface here, not in a client later
            fwd = _Forward(lambda: self._transport(host), (address, port))
            with self._lock:
                self._forwards[key] = fwd
        return fwd.local

    def node_endpoint(self, host_or_id: str, kind: str = "client") -> tuple[str, int]:
        """Where the controller reaches a node's ``kind`` port (client, http, peer), as the
        node's ``raft_lab_access`` says: its address (``direct``), a tunnel through its
        host's SSH connection (``tunnel``), or (``auto``) the address when a TCP connection
        to it succeeds, else the tunnel."""
        n = self.node(host_or_id)
        port = n.port(kind)
        if n.access is NodeAccess.DIRECT or (
            n.access is NodeAccess.AUTO and tcp_reachable(n.address, port)
        ):
            return (n.address, port)
        return self.forward(n.host, port)

    def node_endpoints(self, kind: str = "client") -> dict[str, tuple[str, int]]:
        """node id -> reachable ``(host, port)`` of every raft node (see node_endpoint)."""
        return {n.node_id: self.node_endpoint(n.host, kind) for n in self.nodes}

    # --------------------------------------------------------------------- closing

    def close(self) -> None:
        with self._lock:
            forwards = list(self._forwards.values())
            self._forwards.clear()
            chains = list(self._clients.values())
            self._clients.clear()
        for f in forwards:
            f.close()
        for chain in chains:
            for c in reversed(chain):
                c.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tcp_reachable(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def node_endpoints(
    inventory: Path, kind: str = "client", **remote_kwargs: Any
) -> Iterator[dict[str, tuple[str, int]]]:
    """node id -> ``(host, port)`` the controller can use for each raft node's ``kind`` port
    (client, http, peer) of an inventory: the node's address when reachable, else an SSH
    tunnel through the node's host. The tunnels close when the block ends::

        with node_endpoints(Path("inventories/gee")) as eps:
            cluster = ",".join(f"{h}:{p}" for h, p in eps.values())
    """
    with Remote.from_inventory(inventory, **remote_kwargs) as remote:
        yield remote.node_endpoints(kind)


def cluster_arg(endpoints: Mapping[str, tuple[str, int]]) -> str:
    """``host:port,...`` (the ``--cluster`` argument of ``raft client``) of endpoints."""
    return ",".join(f"{h}:{p}" for h, p in endpoints.values())
