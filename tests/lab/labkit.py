"""Helpers of the lab tests: a testbed of their own (own prefix, subnet and state dir, so a
user's testbed is untouched), ansible-playbook runs with their recap parsed, and the check
that teardown left nothing behind."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.testbed import Testbed, TestbedPlan, TestbedState
from deploy.testbed.bed import PRIVATE_DIRS

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_TIMEOUT_S = 600  # generous: the CI machine may be busy
_RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def require_root() -> None:
    """Lab tests must run (CI runs them as root); elsewhere they fail saying why."""
    if os.geteuid() != 0:
        pytest.fail(
            "lab tests need root (network namespaces, veth, iptables, sshd): "
            "run `sudo python -m pytest -m lab` (CI runs them as root)",
            pytrace=False,
        )


@dataclass
class Lab:
    """A testbed brought up for one test module."""

    bed: Testbed
    plan: TestbedPlan
    inventory: Path
    project: Path
    wheelhouse: Path
    existed_before: tuple[str, ...]

    def playbook(self, name: str, *extra: str) -> PlaybookRun:
        cmd = [
            shutil.which("ansible-playbook") or "ansible-playbook",
            "-i",
            str(self.inventory),
            str(REPO / "playbooks" / name),
            "-e",
            f"raft_node_project_dir={self.project}",
            "-e",
            f"raft_node_wheelhouse_dir={self.wheelhouse}",
            *extra,
        ]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT_S,
            check=False,
        )
        return PlaybookRun(name, proc.returncode, proc.stdout + proc.stderr)

    def client_addresses(self) -> str:
        return ",".join(f"{h.address}:7001" for h in self.plan.hosts)


@dataclass(frozen=True)
class PlaybookRun:
    name: str
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m[0]: {
                "ok": int(m[1]),
                "changed": int(m[2]),
                "unreachable": int(m[3]),
                "failed": int(m[4]),
            }
            for m in _RECAP.findall(self.output)
        }

    def assert_ok(self) -> None:
        assert self.rc == 0, f"{self.name} failed (rc {self.rc}):\n{self.output[-6000:]}"
        recap = self.recap()
        assert recap, f"{self.name}: no PLAY RECAP in output:\n{self.output[-3000:]}"
        assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap


def snapshot_project(dest: Path) -> Path:
    """A frozen copy of the sources the wheel is built from (others may edit the tree)."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("raft", "deploy"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=ignore)
    return dest


def lab_tmpdir(name: str) -> Path:
    """A scratch directory outside /tmp: each host mounts its own /tmp, and its sshd must
    still see the state directory."""
    return Path(tempfile.mkdtemp(prefix=f"raftlab-{name}-", dir="/var/tmp"))


def bring_up(tmp: Path, state: TestbedState) -> Lab:
    require_root()
    existed = tuple(d for d in PRIVATE_DIRS if Path(d).exists())
    bed = Testbed(tmp / "state")
    plan = bed.up(state)
    return Lab(
        bed=bed,
        plan=plan,
        inventory=Path(state.inventory_dir),
        project=snapshot_project(tmp / "project"),
        wheelhouse=tmp / "wheelhouse",
        existed_before=existed,
    )


def leftovers(lab: Lab) -> list[str]:
    """Everything of this testbed still on the machine (empty when down cleaned up)."""
    prefix = lab.plan.prefix
    found: list[str] = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if ln.startswith(prefix + "-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [
        f"link {ln.split(':')[1].strip()}"
        for ln in links.splitlines()
        if ln.split(":")[1].strip().startswith(prefix + "-")
    ]
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    found += [f"iptables {ln}" for ln in rules.splitlines() if lab.plan.forward_chain in ln]
    state_dir = str(lab.bed.state_dir)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state_dir in cmdline and int(pid) != os.getpid():
            found.append(f"process {pid}: {cmdline[:120]}")
    if lab.plan.inner_subnet is not None:
        inner = str(lab.plan.inner_subnet)
        routes = subprocess.run(["ip", "route", "show", inner], capture_output=True, text=True)
        found += [f"route {ln}" for ln in routes.stdout.splitlines() if ln.strip()]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {ln}" for ln in mounts.splitlines() if state_dir in ln or f"/{prefix}-" in ln]
    found += [f"state dir {state_dir}"] if lab.bed.state_dir.exists() else []
    found += [f"inventory {lab.inventory}"] if lab.inventory.exists() else []
    found += [
        f"mountpoint {d}" for d in PRIVATE_DIRS if d not in lab.existed_before and Path(d).exists()
    ]
    return found


def raft_cli(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raft.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
    )


def run_testinfra(lab: Lab) -> subprocess.CompletedProcess[str]:
    """The testinfra host checks (tests/infra) through the lab's own inventory, as a user
    runs them: ``pytest --hosts=ansible://raft_nodes --ansible-inventory=...``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests" / "infra"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--hosts=ansible://raft_nodes",
            f"--ansible-inventory={lab.inventory / 'hosts.yml'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT_S,
        check=False,
    )


def module_lab(
    name: str,
    prefix: str,
    subnet: str,
    inner_subnet: str,
    *,
    deploy: bool = True,
    token_env: bool = False,
    hosts: int = 3,
) -> Iterator[Lab]:
    """The body of a lab module's testbed fixture: bring up a plain testbed of its own,
    deploy it with site.yml (``deploy``), and tear everything down afterwards. With
    ``token_env`` the cluster secret the role keeps next to the inventory is exported as
    ``RAFT_CLIENT_TOKEN_FILE`` (the role turns client authentication on)."""
    tmp = lab_tmpdir(name)
    state = TestbedState(
        prefix=prefix,
        style="plain",
        subnet=subnet,
        inner_subnet=inner_subnet,
        hosts=hosts,
        inventory_dir=str(tmp / "inventory"),
    )
    old_token = os.environ.get("RAFT_CLIENT_TOKEN_FILE")
    if token_env:
        os.environ["RAFT_CLIENT_TOKEN_FILE"] = str(tmp / "inventory" / "secret")
    try:
        lab = bring_up(tmp, state)
        if deploy:
            lab.playbook("site.yml").assert_ok()
        yield lab
    finally:
        if token_env:
            if old_token is None:
                os.environ.pop("RAFT_CLIENT_TOKEN_FILE", None)
            else:
                os.environ["RAFT_CLIENT_TOKEN_FILE"] = old_token
        Testbed(tmp / "state").down()
        shutil.rmtree(tmp, ignore_errors=True)


#: ``raftlab`` of this tree, as a subprocess (the installed entry point may be another tree's).
RAFTLAB = [sys.executable, "-c", "import sys, deploy.cli; sys.exit(deploy.cli.main())"]


def raftlab(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """``raftlab ARGS`` run from the repository, output captured."""
    return subprocess.run(
        [*RAFTLAB, *args], capture_output=True, text=True, timeout=timeout_s, check=False, cwd=REPO
    )


def add_slice_user(user: str, home: Path, sudoers: Path) -> None:
    """A non-root login with passwordless sudo, as a GEE slice or a cloud image has. The
    testbed's hosts share the machine's /etc/passwd and sudoers: remove_slice_user undoes
    both."""
    subprocess.run(
        ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-p", "*", user],
        check=True,
        capture_output=True,
    )
    home.mkdir(mode=0o755, exist_ok=True)
    pw = pwd.getpwnam(user)
    shutil.chown(home, pw.pw_uid, pw.pw_gid)
    sudoers.parent.mkdir(mode=0o755, exist_ok=True)
    sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)


def remove_slice_user(user: str, home: Path, sudoers: Path) -> None:
    sudoers.unlink(missing_ok=True)
    subprocess.run(["userdel", user], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
