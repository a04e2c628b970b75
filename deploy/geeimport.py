"""Import a GEE slicelet into an Ansible inventory (``raftlab inventory import-gee DIR``).

A GEE slicelet comes as a tarball holding ``ansible-hosts`` (an INI inventory of the
slivers), ``ssh-config`` (one ``Host`` per sliver: the gateway's address and the sliver's
forwarded SSH port, the slice user, the key), ``ansible.cfg`` (``remote_user``,
``private_key_file``) and the slice's private key. Slivers are reached on forwarded ports of
one or more gateway addresses, as the slice user (not root), so the inventory turns on
``become``. The import is pure file work: nothing is dialled, and no host key is trusted
on first use (known_hosts is left for the user to fill from the slicelet's fingerprints,
e.g. ``ssh-keyscan -p PORT GATEWAY`` checked against them).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import paramiko
import yaml

from deploy.errors import LabError

#: Names a slicelet's private key goes by, when neither ssh-config nor ansible.cfg names it.
KEY_NAMES = ("id_rsa", "id_ed25519", "id_ecdsa")


class SliceletError(LabError):
    """The slicelet directory lacks a file, or a file says something we cannot use."""


@dataclass(frozen=True, slots=True)
class Sliver:
    """One node of the slice, as the slicelet's files describe it."""

    name: str
    gateway: str  # the address the controller dials
    port: int  # the sliver's forwarded SSH port on that gateway
    user: str
    address: str | None  # the sliver's own address, when the files give it


@dataclass(frozen=True, slots=True)
class Slicelet:
    slivers: tuple[Sliver, ...]
    key: Path
    user: str


def _kv_words(words: list[str], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        if "=" not in w:
            raise SliceletError(f"{where}: expected key=value, got {w!r}")
        k, v = w.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_ansible_hosts(text: str, path: str = "ansible-hosts") -> dict[str, dict[str, str]]:
    """Host -> variables of an INI inventory (every group; ``[g:vars]`` applied to g's
    hosts, host line variables winning)."""
    hosts: dict[str, dict[str, str]] = {}
    members: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, str]] = {}
    section = "ungrouped"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            section = m[1].strip()
            continue
        where = f"{path}:{n}"
        words = shlex.split(line, comments=True)
        if section.endswith(":vars"):
            group_vars.setdefault(section[:-5], {}).update(_kv_words(words, where))
        elif section.endswith(":children"):
            continue
        else:
            name, rest = words[0], words[1:]
            hosts.setdefault(name, {}).update(_kv_words(rest, where))
            members.setdefault(section, []).append(name)
    for group, gv in group_vars.items():
        for h in members.get(group, []) if group != "all" else list(hosts):
            hosts[h] = {**gv, **hosts[h]}
    return hosts


def _first(d: dict[str, str], *keys: str) -> str | None:
    for k in keys:
        if d.get(k):
            return d[k]
    return None


def read_slicelet(directory: Path) -> Slicelet:
    """The slivers, key and user of an unpacked slicelet directory."""
    hosts_file = directory / "ansible-hosts"
    if not hosts_file.is_file():
        raise SliceletError(f"{directory}: no ansible-hosts file (is this an unpacked slicelet?)")
    hosts = parse_ansible_hosts(hosts_file.read_text(encoding="utf-8"), str(hosts_file))
    if not hosts:
        raise SliceletError(f"{hosts_file}: lists no hosts")
    ssh_cfg = paramiko.SSHConfig()
    if (directory / "ssh-config").is_file():
        ssh_cfg = paramiko.SSHConfig.from_path(str(directory / "ssh-config"))
    cfg = configparser.ConfigParser(interpolation=None)
    if (directory / "ansible.cfg").is_file():
        cfg.read(directory / "ansible.cfg", encoding="utf-8")
    default_user = cfg.get("defaults", "remote_user", fallback="") or None
    key_name = cfg.get("defaults", "private_key_file", fallback="") or None
    slivers: list[Sliver] = []
    for name, v in hosts.items():
        sc = ssh_cfg.lookup(name)
        gateway = _first(v, "ansible_host", "ansible_ssh_host") or str(sc.get("hostname", name))
        port_text = _first(v, "ansible_port", "ansible_ssh_port") or str(sc.get("port", "22"))
        user = (
            _first(v, "ansible_user", "ansible_ssh_user")
            or (str(sc["user"]) if "user" in sc else None)
            or default_user
        )
        if user is None:
            raise SliceletError(
                f"{directory}: no slice user for {name} (ansible_user, ssh-config User or "
                "ansible.cfg remote_user)"
            )
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise SliceletError(f"{directory}: {name}: bad SSH port {port_text!r}")
        key_name = key_name or _first(v, "ansible_ssh_private_key_file", "ansible_private_key_file")
        if key_name is None and sc.get("identityfile"):
            key_name = str(sc["identityfile"][0])
        slivers.append(
            Sliver(
                name=name,
                gateway=gateway,
                port=int(port_text),
                user=user,
                address=_first(v, "raft_node_address", "private_ip"),
            )
        )
    key = _find_key(directory, key_name)
    users = {s.user for s in slivers}
    if len(users) != 1:
        raise SliceletError(f"{directory}: slivers use several users {sorted(users)}; expected one")
    return Slicelet(slivers=tuple(slivers), key=key, user=users.pop())


def _find_key(directory: Path, named: str | None) -> Path:
    candidates: list[Path] = []
    if named:
        p = Path(os.path.expanduser(named))
        candidates += [p if p.is_absolute() else directory / p, directory / p.name]
    candidates += [directory / n for n in KEY_NAMES]
    candidates += sorted(directory.glob("*.pem")) + sorted(directory.glob("*key*"))
    for c in candidates:
        if c.is_file() and not c.name.endswith(".pub"):
            head = c.read_text(encoding="utf-8", errors="replace")[:100]
            if "PRIVATE KEY" in head:
                return c
    raise SliceletError(
        f"{directory}: no private key found (looked for {named or 'a key'}, "
        f"{', '.join(KEY_NAMES)}, *.pem)"
    )


def write_inventory(slicelet: Slicelet, dest: Path, group: str = "raft_nodes") -> list[Path]:
    """An inventory directory for the slice: hosts.yml, group_vars/all.yml, the key (0600)
    and an empty known_hosts to fill. Returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    key = dest / "slice_key"
    shutil.copyfile(slicelet.key, key)
    os.chmod(key, 0o600)
    hosts: dict[str, dict[str, object]] = {}
    for i, s in enumerate(slicelet.slivers, 1):
        hv: dict[str, object] = {
            "ansible_host": s.gateway,
            "ansible_port": s.port,
            "raft_node_id": f"n{i}",
        }
        if s.address:
            hv["raft_node_address"] = s.address
        hosts[s.name] = hv
    gateways = sorted({s.gateway for s in slicelet.slivers})
    header = (
        "# Imported from a GEE slicelet by `raftlab inventory import-gee`.\n"
        f"# {len(hosts)} slivers on forwarded SSH ports of {len(gateways)} gateway address(es):\n"
        + "".join(f"#   {g}\n" for g in gateways)
        + "# raft_node_address: each sliver's own address, the one the other nodes use; set it\n"
        "# where the slicelet does not say (`ssh -F ssh-config HOST hostname -I`).\n"
    )
    hosts_yml = dest / "hosts.yml"
    hosts_yml.write_text(
        header
        + "---\n"
        + yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}, sort_keys=False),
        encoding="utf-8",
    )
    gv: dict[str, object] = {
        "ansible_user": slicelet.user,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(key.resolve()),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={(dest / 'known_hosts').resolve()} "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        ),
        "raft_node_manage_os_packages": False,
        # The slivers' own addresses are private: workload clients and leader probes go
        # through SSH tunnels over the slivers' connections (docs/testbed.md).
        "raft_lab_access": "tunnel",
    }
    gv_file = dest / "group_vars" / "all.yml"
    gv_file.parent.mkdir(exist_ok=True)
    gv_file.write_text(
        "# The slice user (not root) with sudo: the role runs with become.\n"
        "# Host keys: fill known_hosts from the slicelet's fingerprints ([gateway]:port key).\n"
        "---\n" + yaml.safe_dump(gv, sort_keys=False),
        encoding="utf-8",
    )
    kh = dest / "known_hosts"
    if not kh.exists():
        kh.write_text("", encoding="utf-8")
    return [hosts_yml, gv_file, key, kh]
