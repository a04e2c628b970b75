"""Bringing the local testbed up and down: namespaces, links, bridge, sshd, inventory.

Everything ``up`` makes is named from the plan's prefix and recorded in one state directory
before it is made, so ``down`` removes exactly that (and only that), also after an ``up``
that failed half-way. ``up`` is idempotent: what exists and is healthy is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.errors import LabError
from deploy.testbed.inventory import (
    CONTROL_PATH,
    InventoryFiles,
    public_key_text,
    write_inventory,
)
from deploy.testbed.plan import (
    HostPlan,
    TestbedPlan,
    TestbedStyle,
    check_subnet_free,
    parse_routes,
    plan_testbed,
)

DEFAULT_STATE_DIR = Path("/var/lib/raftlab-testbed")
#: The directories each host gets privately (bind-mounted from its directory in the state dir).
PRIVATE_DIRS = ("/opt", "/etc/raftlab", "/var/lib/raftlab", "/var/log/raftlab")
#: Private tmpfs per host: sshd's and the node's pidfiles, Ansible's temporary files.
PRIVATE_TMPFS = ("/run", "/tmp")
#: Commands the testbed drives, and the Debian package providing each.
REQUIRED_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "unshare": "util-linux",
    "mount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}
SSHD_READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HOSTINIT = Path(__file__).with_name("hostinit.py")


class NotRootError(LabError):
    """The testbed needs root (namespaces, links, iptables)."""


class MissingToolError(LabError):
    """A command the testbed drives is not installed."""


class TestbedCommandError(LabError):
    """A command run while building or removing the testbed failed."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.output = output
        super().__init__(f"`{' '.join(argv)}` exited {code}: {output.strip()[:500]}")


class TestbedConflictError(LabError):
    """A testbed with other parameters is already up under this state directory."""

    __test__ = False  # not a pytest test class, despite the name


def _run(argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, input=input_text, check=False, timeout=60
    )
    if check and proc.returncode != 0:
        raise TestbedCommandError(argv, proc.returncode, proc.stderr + proc.stdout)
    return proc.stdout


def _ok(argv: Sequence[str]) -> bool:
    return subprocess.run(list(argv), capture_output=True, check=False, timeout=60).returncode == 0


def _del_link(link: str) -> None:
    """Delete a link; one that is already gone is what we wanted. Deleting a namespace
    removes its veth pair in deferred kernel work, so a host-side link listed a moment ago
    may vanish before this runs."""
    try:
        _run(["ip", "link", "del", link])
    except TestbedCommandError as e:
        if "Cannot find device" not in e.output:
            raise


def find_tool(name: str) -> str | None:
    """The command's path, also looking in the sbin directories a non-login PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def require_root_and_tools() -> dict[str, str]:
    """Refuse clearly when not root or when a tool is missing; the tools' paths otherwise."""
    if os.geteuid() != 0:
        raise NotRootError(
            "the testbed needs root (network namespaces, links, iptables): run it with sudo"
        )
    paths: dict[str, str] = {}
    missing: list[str] = []
    for tool, pkg in REQUIRED_TOOLS.items():
        p = find_tool(tool)
        if p is None:
            missing.append(f"{tool} (Debian package {pkg})")
        else:
            paths[tool] = p
    if missing:
        raise MissingToolError(
            "missing tools: " + ", ".join(missing) + "; install them with apt-get install"
        )
    return paths


@dataclass(slots=True)
class HostProcess:
    """The pids of one host: the ``unshare`` launcher and the host's PID 1 (hostinit)."""

    launcher: int
    init: int


@dataclass(slots=True)
class TestbedState:
    """What ``up`` made, saved as ``state.json`` before it is made (mutable while building)."""

    __test__ = False  # not a pytest test class, despite the name

    prefix: str
    style: str
    subnet: str
    inner_subnet: str
    hosts: int
    inventory_dir: str
    created_inventory_dir: bool = False
    created_mountpoints: list[str] = field(default_factory=list)
    processes: dict[str, HostProcess] = field(default_factory=dict)

    def plan(self) -> TestbedPlan:
        return plan_testbed(
            self.hosts, TestbedStyle(self.style), self.subnet, self.prefix, self.inner_subnet
        )

    def same_parameters(self, other: TestbedState) -> bool:
        return (self.prefix, self.style, self.subnet, self.inner_subnet, self.hosts) == (
            other.prefix,
            other.style,
            other.subnet,
            other.inner_subnet,
            other.hosts,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TestbedState:
        raw = json.loads(text)
        procs = {k: HostProcess(**v) for k, v in raw.pop("processes", {}).items()}
        return cls(**raw, processes=procs)


NEIGH_SYSCTL = Path("/proc/sys/net/ipv4/neigh/default")


def neighbour_thresholds(hosts: int, current: dict[str, int]) -> dict[str, int]:
    """The ARP table limits a testbed of ``hosts`` hosts needs, where they exceed
    ``current`` (``gc_thresh2``/``gc_thresh3`` as read from ``NEIGH_SYSCTL``).

    The kernel keeps one ARP table for all network namespaces, and its hard limit
    ``gc_thresh3`` (1024 by default) counts every namespace's entries. A cluster is a full
    mesh: each host learns its N-1 peers plus the bridge and gateway addresses, and the
    controller learns every host, about (N+2)^2 entries. Past the limit the kernel logs
    "neighbour: arp_cache: neighbor table overflow!" and new entries fail: SSH to a host
    whose entry expired ends in "No route to host" or a connect timeout (three hosts of a
    100-host site.yml run did, once the nodes' mesh filled the table). Only raises."""
    need = (hosts + 2) ** 2
    want = {"gc_thresh2": need, "gc_thresh3": 2 * need}
    return {k: v for k, v in want.items() if v > current.get(k, 0)}


def mounted_in_any_namespace(path: str, proc: Path = Path("/proc")) -> bool:
    """Whether some process on this machine sees a mount at ``path`` (in any mount
    namespace). Removing such a directory from the root namespace would detach the mounts of
    another testbed's hosts (the kernel lazily unmounts them), so ``down`` leaves it."""
    target = os.path.realpath(path)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # the process ended, or is not ours to read
        for line in text.splitlines():
            fields = line.split(" ")
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
                return True
    return False


class Testbed:
    """One testbed, identified by its state directory."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.state_dir = state_dir

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def load(self) -> TestbedState | None:
        """The recorded state, or None when no testbed is up under this state directory."""
        try:
            return TestbedState.from_json(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def _save(self, st: TestbedState) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(st.to_json(), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def host_dir(self, name: str) -> Path:
        return self.state_dir / name

    # ------------------------------------------------------------------ up

    def up(self, wanted: TestbedState) -> TestbedPlan:
        """Create (or complete) the testbed described by ``wanted``; returns its plan."""
        tools = require_root_and_tools()
        plan = wanted.plan()
        state_dir = self.state_dir.resolve()
        for hidden in PRIVATE_DIRS + PRIVATE_TMPFS:
            if state_dir.is_relative_to(hidden):
                raise TestbedConflictError(
                    f"state dir {state_dir} is under {hidden}, which every host mounts "
                    "privately (its sshd could not read its keys): choose another --state-dir"
                )
        routes = parse_routes(json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"])))
        own = [plan.bridge, *(h.veth for h in plan.hosts)]
        if plan.inner_subnet is not None:
            # Our own "unreachable" route for the hosts' private network (see _make_gateway).
            routes = [r for r in routes if not (r.dev == "" and r.network == plan.inner_subnet)]
            check_subnet_free(plan.inner_subnet, routes, own)
        check_subnet_free(plan.subnet, routes, own)
        self._size_neighbour_table(len(plan.hosts) + (1 if plan.gateway else 0))
        st = self.load()
        if st is not None and not st.same_parameters(wanted):
            raise TestbedConflictError(
                f"a testbed is already up in {self.state_dir} with other parameters "
                f"({st.hosts} hosts, style {st.style}, subnet {st.subnet}): "
                "run `raftlab testbed down` first"
            )
        if st is None:
            st = wanted
            inv = Path(st.inventory_dir)
            st.created_inventory_dir = not inv.exists()
        self._save(st)
        files = InventoryFiles(Path(st.inventory_dir))
        self._make_mountpoints(st)
        self._make_keys(plan, files)
        self._make_bridge(plan)
        if plan.gateway is not None:
            self._make_gateway(plan)
        for h in plan.hosts:
            self._make_host_links(plan, h)
        names = ([plan.gateway.name] if plan.gateway else []) + [h.name for h in plan.hosts]
        netns = ([plan.gateway.netns] if plan.gateway else []) + [h.netns for h in plan.hosts]
        addrs = ([str(plan.gateway.outer_address)] if plan.gateway else []) + [
            str(h.address) for h in plan.hosts
        ]
        for name, ns, addr in zip(names, netns, addrs, strict=True):
            self._start_host(st, name, ns, addr, tools["sshd"])
            self._save(st)
        self._wait_sshd(plan)
        host_keys = {
            name: public_key_text(self.host_dir(name) / "ssh_host_ed25519_key.pub")
            for name in names
        }
        write_inventory(plan, files, host_keys)
        return plan

    @staticmethod
    def _size_neighbour_table(hosts: int) -> None:
        """Raise the kernel's ARP table limits for a mesh of ``hosts`` (never lowers them;
        :func:`neighbour_thresholds`). Said on stderr, as it is a machine-wide setting."""
        current: dict[str, int] = {}
        for name in ("gc_thresh2", "gc_thresh3"):
            with contextlib.suppress(OSError, ValueError):
                current[name] = int((NEIGH_SYSCTL / name).read_text())
        for name, value in sorted(neighbour_thresholds(hosts, current).items()):
            try:
                (NEIGH_SYSCTL / name).write_text(f"{value}\n")
            except OSError as exc:
                raise TestbedConflictError(
                    f"{hosts} hosts need net.ipv4.neigh.default.{name} >= {value} (the ARP "
                    f"table all namespaces share; now {current.get(name, '?')}), and setting "
                    f"it failed: {exc}"
                ) from None
            print(
                f"testbed: net.ipv4.neigh.default.{name} {current.get(name, '?')} -> {value} "
                f"(ARP entries for a mesh of {hosts} hosts; not lowered by `down`)",
                file=sys.stderr,
            )

    def _make_mountpoints(self, st: TestbedState) -> None:
        for d in PRIVATE_DIRS:
            if not Path(d).exists():
                Path(d).mkdir(mode=0o755, parents=True)
                if d not in st.created_mountpoints:
                    st.created_mountpoints.append(d)
        self._save(st)

    def _make_keys(self, plan: TestbedPlan, files: InventoryFiles) -> None:
        files.directory.mkdir(parents=True, exist_ok=True)
        if not files.private_key.exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"raftlab-testbed-{plan.prefix}",
                    "-f",
                    str(files.private_key),
                ]
            )
        os.chmod(files.private_key, 0o600)
        auth = self.state_dir / "authorized_keys"
        auth.write_text(files.public_key.read_text(encoding="utf-8"), encoding="utf-8")
        os.chmod(auth, 0o600)

    def _make_bridge(self, plan: TestbedPlan) -> None:
        br = plan.bridge
        if not _ok(["ip", "link", "show", "dev", br]):
            _run(["ip", "link", "add", br, "type", "bridge"])
        cidr = f"{plan.bridge_address}/{plan.subnet.prefixlen}"
        if cidr not in _run(["ip", "-4", "-o", "addr", "show", "dev", br]):
            _run(["ip", "addr", "add", cidr, "dev", br])
        _run(["ip", "link", "set", br, "up"])
        # Bridged traffic between hosts may traverse FORWARD (br_netfilter); accept it in our
        # own chain, jumped to from FORWARD, so a DROP policy elsewhere cannot cut the lab.
        ch = plan.forward_chain
        if not _ok(["iptables", "-w", "-n", "-L", ch]):
            _run(["iptables", "-w", "-N", ch])
        for rule in (["-i", br, "-j", "ACCEPT"], ["-o", br, "-j", "ACCEPT"]):
            if not _ok(["iptables", "-w", "-C", ch, *rule]):
                _run(["iptables", "-w", "-A", ch, *rule])
        if not _ok(["iptables", "-w", "-C", "FORWARD", "-j", ch]):
            _run(["iptables", "-w", "-I", "FORWARD", "1", "-j", ch])

    @staticmethod
    def _ensure_netns(ns: str) -> None:
        if not Path("/run/netns", ns).exists():
            _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    @staticmethod
    def _veth_into(ns: str, our_end: str, our_ns: str | None, address: str, plen: int) -> None:
        """A veth pair: ``our_end`` in ``our_ns`` (None: root), ``eth0`` inside ``ns``."""
        ip_ours = ["ip"] if our_ns is None else ["ip", "-n", our_ns]
        if not _ok([*ip_ours, "link", "show", "dev", our_end]):
            if _ok(["ip", "-n", ns, "link", "show", "dev", "eth0"]):
                _run(["ip", "-n", ns, "link", "del", "eth0"])  # a stale half: start over
            _run(
                [
                    *ip_ours,
                    "link",
                    "add",
                    our_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                ]
            )
        cidr = f"{address}/{plen}"
        if cidr not in _run(["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"]):
            _run(["ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _make_gateway(self, plan: TestbedPlan) -> None:
        gw = plan.gateway
        assert gw is not None and plan.inner_subnet is not None
        self._ensure_netns(gw.netns)
        self._veth_into(gw.netns, gw.veth, None, str(gw.outer_address), plan.subnet.prefixlen)
        _run(["ip", "link", "set", gw.veth, "master", plan.bridge, "up"])
        for extra in gw.outer_addresses[1:]:
            cidr_x = f"{extra}/{plan.subnet.prefixlen}"
            if cidr_x not in _run(
                ["ip", "-n", gw.netns, "-4", "-o", "addr", "show", "dev", "eth0"]
            ):
                _run(["ip", "-n", gw.netns, "addr", "add", cidr_x, "dev", "eth0"])
        ipg = ["ip", "-n", gw.netns]
        if not _ok([*ipg, "link", "show", "dev", gw.inner_bridge]):
            _run([*ipg, "link", "add", gw.inner_bridge, "type", "bridge"])
        cidr = f"{gw.inner_address}/{plan.inner_subnet.prefixlen}"
        if cidr not in _run([*ipg, "-4", "-o", "addr", "show", "dev", gw.inner_bridge]):
            _run([*ipg, "addr", "add", cidr, "dev", gw.inner_bridge])
        _run([*ipg, "link", "set", gw.inner_bridge, "up"])
        # As in a GEE slice, the hosts' private addresses are unreachable from the controller;
        # this route also keeps anything sent there from leaving by the default route.
        _run(["ip", "route", "replace", "unreachable", str(plan.inner_subnet)])
        nsx = ["ip", "netns", "exec", gw.netns]
        _run([*nsx, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        ch = gw.nat_chain
        if not _ok([*nsx, "iptables", "-w", "-t", "nat", "-n", "-L", ch]):
            _run([*nsx, "iptables", "-w", "-t", "nat", "-N", ch])
        for h in plan.hosts:
            rule = [
                "-d",
                str(h.ssh_host),
                "-p",
                "tcp",
                "--dport",
                str(h.ssh_port),
                "-j",
                "DNAT",
                "--to-destination",
                f"{h.address}:22",
            ]
            if not _ok([*nsx, "iptables", "-w", "-t", "nat", "-C", ch, *rule]):
                _run([*nsx, "iptables", "-w", "-t", "nat", "-A", ch, *rule])
        if not _ok([*nsx, "iptables", "-w", "-t", "nat", "-C", "PREROUTING", "-j", ch]):
            _run([*nsx, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", ch])

    def _make_host_links(self, plan: TestbedPlan, h: HostPlan) -> None:
        self._ensure_netns(h.netns)
        if plan.gateway is None:
            self._veth_into(h.netns, h.veth, None, str(h.address), plan.subnet.prefixlen)
            _run(["ip", "link", "set", h.veth, "master", plan.bridge, "up"])
            return
        gw = plan.gateway
        assert plan.inner_subnet is not None
        self._veth_into(h.netns, h.veth, gw.netns, str(h.address), plan.inner_subnet.prefixlen)
        _run(["ip", "-n", gw.netns, "link", "set", h.veth, "master", gw.inner_bridge, "up"])
        _run(["ip", "-n", h.netns, "route", "replace", "default", "via", str(gw.inner_address)])

    def _host_config(self, name: str, address: str, sshd: str) -> Path:
        hd = self.host_dir(name)
        hd.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = hd / "ssh_host_ed25519_key"
        if not key.exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"{name}-host-key",
                    "-f",
                    str(key),
                ]
            )
        sshd_config = hd / "sshd_config"
        sshd_config.write_text(
            "# sshd of one testbed host (written by raftlab testbed up)\n"
            f"ListenAddress {address}\nPort 22\n"
            f"HostKey {key}\n"
            f"AuthorizedKeysFile {self.state_dir / 'authorized_keys'}\n"
            # Also for a non-root (slice) user, who cannot read the root-only state dir:
            # sshd reads the lab key as root through this command.
            f"AuthorizedKeysCommand /bin/cat {self.state_dir / 'authorized_keys'}\n"
            "AuthorizedKeysCommandUser root\n"
            "PidFile /run/sshd.pid\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nUseDNS no\nPrintMotd no\n"
            "MaxStartups 100:30:200\nMaxSessions 64\nLogLevel INFO\n"
            # The key files are ours (0600) but the state dir may sit below a world-writable
            # directory (/var/tmp in the tests), which StrictModes would refuse.
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n",
            encoding="utf-8",
        )
        binds = []
        for d in PRIVATE_DIRS:
            src = hd / ("root" + d.replace("/", "_"))
            src.mkdir(mode=0o755, exist_ok=True)
            binds.append([str(src), d])
        # The host's name resolves locally (sudo and others look it up; without this they
        # wait for DNS, which the namespaces cannot reach).
        etc_hosts = hd / "etc_hosts"
        base = Path("/etc/hosts").read_text(encoding="utf-8") if Path("/etc/hosts").exists() else ""
        etc_hosts.write_text(
            f"{base.rstrip()}\n# raftlab testbed host\n{address}\t{name}\n", encoding="utf-8"
        )
        os.chmod(etc_hosts, 0o644)
        cfg = {
            "hostname": name,
            "binds": binds,
            "file_binds": [[str(etc_hosts), "/etc/hosts"]],
            "tmpfs": list(PRIVATE_TMPFS),
            "mkdirs": ["/run/sshd", "/run/raftlab"],
            "sshd_cmd": [sshd, "-D", "-e", "-f", str(sshd_config)],
            "sshd_log": str(hd / "sshd.log"),
        }
        path = hd / "host.json"
        path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        return path

    def _init_alive(self, proc: HostProcess | None, cfg: Path) -> bool:
        if proc is None:
            return False
        try:
            cmdline = Path(f"/proc/{proc.init}/cmdline").read_bytes()
        except OSError:
            return False
        return str(cfg).encode() in cmdline

    def _start_host(self, st: TestbedState, name: str, ns: str, address: str, sshd: str) -> None:
        cfg = self._host_config(name, address, sshd)
        if self._init_alive(st.processes.get(name), cfg):
            return
        log = open(self.host_dir(name) / "init.log", "ab")  # noqa: SIM115
        try:
            launcher = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "--pid",
                    "--fork",
                    "--mount",
                    "--uts",
                    "--mount-proc",
                    "--propagation",
                    "private",
                    "--",
                    sys.executable,
                    str(HOSTINIT),
                    str(cfg),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 10.0
        init = 0
        while time.monotonic() < deadline and init == 0:
            if launcher.poll() is not None:
                raise TestbedCommandError(
                    ["hostinit", name],
                    launcher.returncode,
                    (self.host_dir(name) / "init.log").read_text(errors="replace")[-800:],
                )
            with contextlib.suppress(OSError):
                kids = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text()
                if kids.split():
                    init = int(kids.split()[0])
            if init == 0:
                time.sleep(0.02)
        if init == 0:
            raise TestbedCommandError(["hostinit", name], -1, "host init did not start in 10 s")
        st.processes[name] = HostProcess(launcher=launcher.pid, init=init)

    def _wait_sshd(self, plan: TestbedPlan) -> None:
        targets = [(h.name, str(h.ssh_host), h.ssh_port) for h in plan.hosts]
        if plan.gateway is not None:
            targets.insert(0, (plan.gateway.name, str(plan.gateway.outer_address), 22))
        deadline = time.monotonic() + SSHD_READY_TIMEOUT_S
        for name, addr, port in targets:
            while not ssh_banner_ok(addr, port):
                if time.monotonic() > deadline:
                    log = self.host_dir(name) / "sshd.log"
                    tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                    raise TestbedCommandError(
                        ["sshd", name], -1, f"no SSH banner on {addr}:{port}; sshd.log: {tail}"
                    )
                time.sleep(0.1)

    # ---------------------------------------------------------------- down

    def down(self) -> bool:
        """Remove everything recorded; False when there was no testbed to remove."""
        st = self.load()
        if st is None:
            return False
        require_root_and_tools()
        plan = st.plan()
        self._close_shared_ssh(plan)
        self._stop_hosts(list(st.processes.values()))
        for ns in plan.namespaces:
            self._kill_netns_processes(ns)
            if Path("/run/netns", ns).exists():
                _run(["ip", "netns", "del", ns])
        for link in [plan.bridge, *(h.veth for h in plan.hosts)] + (
            [plan.gateway.veth] if plan.gateway else []
        ):
            if _ok(["ip", "link", "show", "dev", link]):
                _del_link(link)
        if plan.inner_subnet is not None:
            inner = str(plan.inner_subnet)
            if "unreachable" in _run(["ip", "route", "show", inner], check=False):
                _run(["ip", "route", "del", "unreachable", inner])
        ch = plan.forward_chain
        for _ in range(16):  # every jump we may have inserted, bounded
            if not _ok(["iptables", "-w", "-D", "FORWARD", "-j", ch]):
                break
        if _ok(["iptables", "-w", "-n", "-L", ch]):
            _run(["iptables", "-w", "-F", ch])
            _run(["iptables", "-w", "-X", ch])
        for d in st.created_mountpoints:
            if mounted_in_any_namespace(d):
                continue  # another testbed's hosts still mount their private dir there
            with contextlib.suppress(OSError):
                Path(d).rmdir()  # only if still empty: never remove what someone put there
        inv = Path(st.inventory_dir)
        if st.created_inventory_dir:
            shutil.rmtree(inv, ignore_errors=True)
        else:
            files = InventoryFiles(inv)
            for p in (files.hosts_yml, files.group_vars, files.ssh_config, files.known_hosts):
                p.unlink(missing_ok=True)
        # The hosts' private directories hold venvs (thousands of files): delete them in
        # parallel, the rest after.
        subdirs = [p for p in self.state_dir.iterdir() if p.is_dir()]
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(subdirs)))) as ex:
            list(ex.map(lambda p: shutil.rmtree(p, ignore_errors=True), subdirs))
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return True

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie is dead for our purposes.
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
        return True

    @staticmethod
    def _close_shared_ssh(plan: TestbedPlan) -> None:
        """Ask ssh's shared-connection masters (ControlPersist) for our hosts to exit: once
        the hosts are gone they would hang, and a new testbed at the same addresses would
        inherit them."""
        targets = [(str(h.ssh_host), h.ssh_port) for h in plan.hosts]
        if plan.gateway is not None:
            targets.append((str(plan.gateway.outer_address), 22))
        for host, port in targets:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    [
                        "ssh",
                        "-O",
                        "exit",
                        "-o",
                        f"ControlPath={CONTROL_PATH}",
                        "-p",
                        str(port),
                        "-l",
                        "root",
                        host,
                    ],
                    capture_output=True,
                    timeout=5,
                    check=False,
                )

    def _stop_hosts(self, procs: list[HostProcess]) -> None:
        """SIGTERM every host's PID 1 at once (each stops its processes, bounded), then wait;
        SIGKILL what is left after :data:`STOP_TIMEOUT_S`."""
        inits = [p.init for p in procs if self._is_hostinit(p.init)]
        for pid in inits:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(self._alive(p) for p in inits) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in inits:
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in procs:
            while self._alive(p.launcher) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p.launcher, os.WNOHANG)

    @staticmethod
    def _is_hostinit(pid: int) -> bool:
        try:
            return str(HOSTINIT).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    @staticmethod
    def _kill_netns_processes(ns: str) -> None:
        """Kill what still runs in one of our namespaces (started there by other tools)."""
        if not Path("/run/netns", ns).exists():
            return
        for _ in range(3):
            pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    # -------------------------------------------------------------- status

    def status(self) -> list[HostStatus]:
        """One line of health per host (and the gateway); empty when no testbed is up."""
        st = self.load()
        if st is None:
            return []
        plan = st.plan()
        out: list[HostStatus] = []
        rows: list[tuple[str, str, str, str, int]] = []
        if plan.gateway is not None:
            gw = plan.gateway
            rows.append((gw.name, gw.netns, str(gw.outer_address), str(gw.outer_address), 22))
        rows += [(h.name, h.netns, str(h.address), str(h.ssh_host), h.ssh_port) for h in plan.hosts]
        for name, ns, addr, ssh_host, port in rows:
            proc = st.processes.get(name)
            out.append(
                HostStatus(
                    name=name,
                    netns=ns,
                    address=addr,
                    ssh=f"{ssh_host}:{port}",
                    netns_exists=Path("/run/netns", ns).exists(),
                    init_alive=proc is not None and self._is_hostinit(proc.init),
                    sshd_up=ssh_banner_ok(ssh_host, port),
                    node_pids=node_pids(ns),
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class HostStatus:
    """Health of one testbed host as ``raftlab testbed status`` shows it."""

    name: str
    netns: str
    address: str
    ssh: str
    netns_exists: bool
    init_alive: bool
    sshd_up: bool
    node_pids: tuple[int, ...]


def ssh_banner_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when an SSH server answers with its banner at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def node_pids(netns: str) -> tuple[int, ...]:
    """Pids of ``raft serve`` processes running in network namespace ``netns``."""
    if not Path("/run/netns", netns).exists():
        return ()
    out = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    found: list[int] = []
    for p in out.split():
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and any(a.endswith(b"raft") or a == b"raft.cli" for a in argv):
            found.append(int(p))
    return tuple(found)
