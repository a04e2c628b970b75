"""``cluster.yml``: loading and validation (see docs/interfaces.md).

Every mistake raises :class:`ConfigFileError` naming the file and the field. Paths may contain
``{id}``, replaced by the node id; relative paths are taken from the file's directory. A
node's data lives in ``<data_dir>/<id>/`` (``data_dir`` without ``{id}`` gets the id
appended, so nodes sharing a host and a file never share a data directory).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from raft.runtime.transport import Address

CONFIG_VERSION = 1
_NODE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
"""Node ids name directories: no leading dot (so never ``.`` or ``..``), no slash."""
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_PLUGIN_MACHINE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
BUILTIN_MACHINE_NAMES = ("kv", "register")
"""Mirrors raft.machines.BUILTIN_MACHINES (config stays importable without the machines)."""

TICK_MS_RANGE = (1, 10_000)
ELECTION_TIMEOUT_TICKS_RANGE = (2, 10_000)
ELECTION_TIMEOUT_MS_MAX = 600_000
HEARTBEAT_TICKS_RANGE = (1, 9_999)
SNAPSHOT_ENTRIES_RANGE = (1, 1_000_000_000)
SNAPSHOT_CHUNK_BYTES_RANGE = (4096, 8 << 20)
"""Mirrors raft.runtime.snapstream.CHUNK_BYTES_RANGE."""
CLIENT_CONNECTIONS_RANGE = (1, 1_000_000)
CLIENT_IDLE_TIMEOUT_S_RANGE = (1, 86_400)


class ConfigFileError(ValueError):
    """cluster.yml (or a flag overriding it) is invalid; the message names the field."""


class FsyncMode(enum.Enum):
    ALWAYS = "always"
    """fsync once per Ready that holds entries or hard state (the default; what Raft needs)."""
    BATCH = "batch"
    """Let storage group syncs; may lose the last acknowledged writes on power loss."""
    NEVER = "never"
    """No fsync at all: for benchmarks of everything else. Loses data on a crash."""


class ReadMode(enum.Enum):
    READ_INDEX = "read_index"
    """Linearizable: the leader confirms it still leads (a heartbeat round) before serving."""
    LEASE = "lease"
    """Leader serves under its lease; linearizable only while clock drift is bounded."""
    LOCAL = "local"
    """Any node serves from its own state at once: may be stale."""


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    """Where the other nodes and clients reach a node (its advertised addresses) and, when
    that differs (a 1:1-NAT cloud: the public address is not on any interface of the host),
    the address its ports listen on: ``listen`` ("" = the advertised hosts, "0.0.0.0" or
    the host's private address)."""

    peer: Address
    client: Address
    http: Address
    listen: str = ""

    def bind(self, advertised: Address) -> Address:
        """The address to listen on for one of this node's advertised addresses."""
        return Address(self.listen, advertised.port) if self.listen else advertised


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster: str
    nodes: dict[str, NodeAddresses]
    machine: str = "kv"
    secret_file: str = "/etc/raftlab/secret"
    data_dir: str = "/var/lib/raftlab"
    log_dir: str = "/var/log/raftlab"
    fsync: FsyncMode = FsyncMode.ALWAYS
    read_mode: ReadMode = ReadMode.READ_INDEX
    tick_ms: int = 50
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_entries: int = 10000
    snapshot_chunk_bytes: int = 1 << 20
    """Bytes per chunk of a streamed InstallSnapshot (raft/runtime/snapstream.py)."""
    client_auth: bool = False
    """Require clients to authenticate (HMAC challenge over the client token)."""
    client_token_file: str = ""
    """The client token; empty: the cluster secret (``secret_file``)."""
    client_connections_max: int = 1024
    """Client connections per node (also capped below the open-file limit)."""
    client_idle_timeout_s: int = 60
    """A client connection with no request completed or pending for this long is closed."""
    path: str = field(default="", compare=False)

    def node_data_dir(self, node_id: str) -> str:
        if "{id}" in self.data_dir:
            return self.data_dir.replace("{id}", node_id)
        return os.path.join(self.data_dir, node_id)

    def node_log_dir(self, node_id: str) -> str:
        return self.log_dir.replace("{id}", node_id)

    def with_overrides(self, **changes: Any) -> ClusterConfig:
        """A copy with flag overrides applied (None values are ignored)."""
        clean: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        try:
            if "fsync" in clean and isinstance(clean["fsync"], str):
                clean["fsync"] = FsyncMode(clean["fsync"])
            if "read_mode" in clean and isinstance(clean["read_mode"], str):
                clean["read_mode"] = ReadMode(clean["read_mode"])
            if "machine" in clean:
                check_machine(clean["machine"], "--machine")
        except ValueError as exc:
            raise ConfigFileError(str(exc)) from None
        return replace(self, **clean)


def parse_address(text: object, what: str) -> Address:
    if not isinstance(text, str) or ":" not in text:
        raise ConfigFileError(f"{what}: expected 'host:port', got {text!r}")
    host, _, port_s = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ConfigFileError(f"{what}: expected 'host:port' with a port in 1..65535, got {text!r}")
    return Address(host, int(port_s))


def parse_address_list(text: str, what: str = "--cluster") -> list[Address]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigFileError(f"{what}: no addresses given")
    return [parse_address(p, what) for p in parts]


def _enum(cls: type[enum.Enum], value: object, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = " | ".join(str(m.value) for m in cls)
        raise ConfigFileError(f"{what}: {value!r} is not one of {allowed}") from None


def _pos_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigFileError(f"{what}: expected a positive integer, got {value!r}")
    return value


def _int_in(value: object, bounds: tuple[int, int], what: str) -> int:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigFileError(f"{what}: expected an integer in {lo}..{hi}, got {value!r}")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigFileError(f"{what}: expected true or false, got {value!r}")
    return value


def check_machine(value: str, what: str) -> str:
    """A built-in machine name or the documented plugin form ``package.module:Class``."""
    if value in BUILTIN_MACHINE_NAMES or _PLUGIN_MACHINE.match(value):
        return value
    raise ConfigFileError(
        f"{what}: {value!r} is neither a built-in machine ({', '.join(BUILTIN_MACHINE_NAMES)}) "
        "nor a plugin 'package.module:Class'"
    )


def check_node_id(nid: object, what: str) -> str:
    if not isinstance(nid, str) or not _NODE_ID.match(nid):
        raise ConfigFileError(
            f"{what}: bad node id {nid!r} (1-64 of letters, digits, _ . -; not starting with "
            "a dot or dash: ids name directories)"
        )
    return nid


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigFileError(f"{what}: expected a non-empty string, got {value!r}")
    return value


_KNOWN = {
    "version",
    "cluster",
    "machine",
    "secret_file",
    "data_dir",
    "log_dir",
    "fsync",
    "read_mode",
    "tick_ms",
    "election_timeout_ticks",
    "heartbeat_ticks",
    "snapshot_entries",
    "snapshot_chunk_bytes",
    "client_auth",
    "client_token_file",
    "client_connections_max",
    "client_idle_timeout_s",
    "nodes",
}


def _listen(value: object, what: str) -> str:
    """A node's listen address: an IP address (``0.0.0.0``, ``::`` or one of the host's),
    or absent ("": listen on the advertised addresses)."""
    if value is None or value == "":
        return ""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigFileError(
            f"{what}: expected an IP address to listen on (0.0.0.0, or one of the host's), "
            f"got {value!r}"
        ) from None


def parse_config(doc: object, path: str = "cluster.yml") -> ClusterConfig:
    """Validate a decoded cluster.yml document."""
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(doc) - _KNOWN)
    if unknown:
        raise ConfigFileError(f"{path}: unknown field(s) {', '.join(map(str, unknown))}")
    version = doc.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigFileError(f"{path}: version {version!r} is not supported (expected 1)")
    base = os.path.dirname(os.path.abspath(path))

    def _path(key: str, default: str) -> str:
        value = _str(doc.get(key, default), f"{path}: {key}")
        return value if os.path.isabs(value) else os.path.join(base, value)

    nodes_doc = doc.get("nodes")
    if not isinstance(nodes_doc, dict) or not nodes_doc:
        raise ConfigFileError(
            f"{path}: nodes: expected a non-empty mapping of node id to addresses"
        )
    nodes: dict[str, NodeAddresses] = {}
    listeners: dict[Address, str] = {}
    for nid, addrs in nodes_doc.items():
        check_node_id(nid, f"{path}: nodes")
        if not isinstance(addrs, dict):
            raise ConfigFileError(f"{path}: nodes.{nid}: expected {{peer, client, http}}")
        extra = sorted(set(addrs) - {"peer", "client", "http", "listen"})
        if extra:
            raise ConfigFileError(f"{path}: nodes.{nid}: unknown field(s) {', '.join(extra)}")
        nodes[nid] = NodeAddresses(
            peer=parse_address(addrs.get("peer"), f"{path}: nodes.{nid}.peer"),
            client=parse_address(addrs.get("client"), f"{path}: nodes.{nid}.client"),
            http=parse_address(addrs.get("http"), f"{path}: nodes.{nid}.http"),
            listen=_listen(addrs.get("listen"), f"{path}: nodes.{nid}.listen"),
        )
        for port in ("peer", "client", "http"):
            addr: Address = getattr(nodes[nid], port)
            other = listeners.setdefault(addr, f"nodes.{nid}.{port}")
            if other != f"nodes.{nid}.{port}":
                raise ConfigFileError(
                    f"{path}: nodes.{nid}.{port}: address {addr} is already used by {other}"
                )
    cluster = _str(doc.get("cluster", "raftlab"), f"{path}: cluster")
    if not _CLUSTER_NAME.match(cluster):
        raise ConfigFileError(f"{path}: cluster: {cluster!r} is not a name (letters, digits, _.-)")
    cfg = ClusterConfig(
        cluster=cluster,
        nodes=nodes,
        machine=check_machine(
            _str(doc.get("machine", "kv"), f"{path}: machine"), f"{path}: machine"
        ),
        secret_file=_path("secret_file", "/etc/raftlab/secret"),
        data_dir=_path("data_dir", "/var/lib/raftlab"),
        log_dir=_path("log_dir", "/var/log/raftlab"),
        fsync=_enum(FsyncMode, doc.get("fsync", "always"), f"{path}: fsync"),
        read_mode=_enum(ReadMode, doc.get("read_mode", "read_index"), f"{path}: read_mode"),
        tick_ms=_int_in(doc.get("tick_ms", 50), TICK_MS_RANGE, f"{path}: tick_ms"),
        election_timeout_ticks=_int_in(
            doc.get("election_timeout_ticks", 10),
            ELECTION_TIMEOUT_TICKS_RANGE,
            f"{path}: election_timeout_ticks",
        ),
        heartbeat_ticks=_int_in(
            doc.get("heartbeat_ticks", 1), HEARTBEAT_TICKS_RANGE, f"{path}: heartbeat_ticks"
        ),
        snapshot_entries=_int_in(
            doc.get("snapshot_entries", 10000), SNAPSHOT_ENTRIES_RANGE, f"{path}: snapshot_entries"
        ),
        snapshot_chunk_bytes=_int_in(
            doc.get("snapshot_chunk_bytes", 1 << 20),
            SNAPSHOT_CHUNK_BYTES_RANGE,
            f"{path}: snapshot_chunk_bytes",
        ),
        client_auth=_bool(doc.get("client_auth", False), f"{path}: client_auth"),
        client_token_file=(
            _path("client_token_file", "") if doc.get("client_token_file") is not None else ""
        ),
        client_connections_max=_int_in(
            doc.get("client_connections_max", 1024),
            CLIENT_CONNECTIONS_RANGE,
            f"{path}: client_connections_max",
        ),
        client_idle_timeout_s=_int_in(
            doc.get("client_idle_timeout_s", 60),
            CLIENT_IDLE_TIMEOUT_S_RANGE,
            f"{path}: client_idle_timeout_s",
        ),
        path=os.path.abspath(path),
    )
    if cfg.heartbeat_ticks >= cfg.election_timeout_ticks:
        raise ConfigFileError(f"{path}: heartbeat_ticks must be below election_timeout_ticks")
    if cfg.tick_ms * cfg.election_timeout_ticks > ELECTION_TIMEOUT_MS_MAX:
        raise ConfigFileError(
            f"{path}: tick_ms x election_timeout_ticks = "
            f"{cfg.tick_ms * cfg.election_timeout_ticks} ms exceeds {ELECTION_TIMEOUT_MS_MAX} ms"
        )
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (plain YAML keeps the last one, which
    silently dropped a node defined twice)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, list | dict):
                continue  # unhashable: the base constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        out: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return out


def load_config(path: str) -> ClusterConfig:
    try:
        with open(path, encoding="utf-8") as f:
            loader = _UniqueKeyLoader(f)  # a SafeLoader: no Python objects from the file
            try:
                doc = loader.get_single_data()
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(doc, path)


def render_config(cfg: ClusterConfig) -> str:
    """cluster.yml text for ``cfg`` (what ``raft cluster up`` writes)."""
    doc: dict[str, Any] = {
        "version": CONFIG_VERSION,
        "cluster": cfg.cluster,
        "machine": cfg.machine,
        "secret_file": cfg.secret_file,
        "data_dir": cfg.data_dir,
        "log_dir": cfg.log_dir,
        "fsync": cfg.fsync.value,
        "read_mode": cfg.read_mode.value,
        "tick_ms": cfg.tick_ms,
        "election_timeout_ticks": cfg.election_timeout_ticks,
        "heartbeat_ticks": cfg.heartbeat_ticks,
        "snapshot_entries": cfg.snapshot_entries,
        "snapshot_chunk_bytes": cfg.snapshot_chunk_bytes,
        "client_auth": cfg.client_auth,
        **({"client_token_file": cfg.client_token_file} if cfg.client_token_file else {}),
        "client_connections_max": cfg.client_connections_max,
        "client_idle_timeout_s": cfg.client_idle_timeout_s,
        "nodes": {
            nid: {
                "peer": str(a.peer),
                "client": str(a.client),
                "http": str(a.http),
                **({"listen": a.listen} if a.listen else {}),
            }
            for nid, a in cfg.nodes.items()
        },
    }
    out: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    return out
