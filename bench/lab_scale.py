"""How the lab scales with hosts: ``raftlab testbed up`` + ``site.yml`` for N hosts.

Run as root (it builds a testbed of its own, prefix ``rlhs``, subnet 10.82.16.0/24):
``sudo python -m bench.lab_scale [--once] 5 15 40 100`` appends one row per N to
``bench/results/lab_scale.md``. Not part of ``make bench`` (needs root, takes minutes: about
an hour at 100 hosts on 2 cores). ``--once`` skips the second, idempotence run of site.yml
(at 100 hosts on 2 cores it doubles the time).
Every host is a set of processes on this machine, so the time per host measures the
controller and the hosts sharing its cores, not a network of real machines.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy.testbed import Testbed, TestbedState
from deploy.testbed.plan import HOSTS_MAX

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "lab_scale.md"
HEADER = (
    "# Lab scale: testbed up + site.yml\n\n"
    "`sudo python -m bench.lab_scale N...`: a plain testbed of N hosts (network namespaces\n"
    "with sshd, all on this machine), then `ansible-playbook site.yml` (provision, deploy\n"
    "from the wheelhouse, start, wait for a leader), forks = 100. The hosts and the controller\n"
    "share the machine's cores, so these times reflect those 2 cores; on real machines the\n"
    "hosts work in parallel.\n\n"
    "| date (UTC) | machine | hosts | up (s) | site.yml (s) | site.yml per host (s) | "
    "second site.yml (s) | changed on 2nd run |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


# Above this many voters, every host being a process on the same 2 cores, the default
# timeouts (50 ms ticks, elections after 0.5-1 s) never elect a leader: at 100 voters (94 of
# them started) the nodes were at term 1,126 with no leader after 25 minutes, each vote
# round needing 51 answers from processes that get a core a few percent of the time. Real
# hosts each have their own cores; here the cluster gets slower ticks: heartbeats every
# 0.4 s, elections after 5-10 s.
SLOW_TIMEOUTS_ABOVE = 40
SLOW_TIMEOUTS = {
    "raft_node_tick_ms": "200",
    "raft_node_heartbeat_ticks": "2",
    "raft_node_election_timeout_ticks": "25",
    "raft_node_start_timeout_s": "900",
}
# And patient SSH: at load 70-110 a third of 100 hosts ended `unreachable=1` on one task with
# Ansible's 20 s connect timeout and 3 retries (ansible.cfg).
SLOW_SSH_ENV = {"ANSIBLE_TIMEOUT": "90", "ANSIBLE_SSH_RETRIES": "8"}


def _playbook(
    inventory: Path, project: Path, wheelhouse: Path, extra: dict[str, str], slow: bool
) -> tuple[float, str]:
    t0 = time.monotonic()
    extra_args = [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    proc = subprocess.run(
        [
            shutil.which("ansible-playbook") or "ansible-playbook",
            "-i",
            str(inventory),
            str(REPO / "playbooks" / "site.yml"),
            "-e",
            f"raft_node_project_dir={project}",
            "-e",
            f"raft_node_wheelhouse_dir={wheelhouse}",
            *extra_args,
        ],
        cwd=REPO,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            **(SLOW_SSH_ENV if slow else {}),
        ),
        capture_output=True,
        text=True,
        timeout=7200,
        check=False,
    )
    took = time.monotonic() - t0
    if proc.returncode != 0:
        # The whole output, to tell which task failed on which host (the tail alone shows
        # only the recap).
        log_path = Path(tempfile.mkstemp(prefix="raftlab-scale-site-", suffix=".log")[1])
        log_path.write_text(proc.stdout + proc.stderr)
        raise SystemExit(
            f"site.yml failed (rc {proc.returncode}), output in {log_path}:\n{proc.stdout[-4000:]}"
        )
    return took, proc.stdout


def measure(hosts: int, wheelhouse: Path, second_run: bool = True) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="raftlab-scale-", dir="/var/tmp"))
    state = TestbedState(
        prefix="rlhs",
        style="plain",
        subnet="10.82.16.0/24",
        inner_subnet="10.82.17.0/24",
        hosts=hosts,
        inventory_dir=str(tmp / "inventory"),
    )
    bed = Testbed(tmp / "state")
    try:
        t0 = time.monotonic()
        bed.up(state)
        up_s = time.monotonic() - t0
        slow = hosts > SLOW_TIMEOUTS_ABOVE
        extra = SLOW_TIMEOUTS if slow else {}
        first, _ = _playbook(tmp / "inventory", REPO, wheelhouse, extra, slow)
        second_s, changed_s = "-", "-"
        if second_run:
            second, out = _playbook(tmp / "inventory", REPO, wheelhouse, extra, slow)
            second_s = f"{second:.1f}"
            changed_s = str(
                sum(
                    int(line.split("changed=")[1].split()[0])
                    for line in out.splitlines()
                    if " changed=" in line and "unreachable=" in line
                )
            )
    finally:
        bed.down()
        shutil.rmtree(tmp, ignore_errors=True)
    now = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    machine = f"{os.cpu_count()} cores, {platform.python_version()}"
    return (
        f"| {now} | {machine} | {hosts} | {up_s:.1f} | {first:.1f} | {first / hosts:.2f} | "
        f"{second_s} | {changed_s} |\n"
    )


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(f"usage: python -m bench.lab_scale [--once] [N...]\n{__doc__}")
        return 0
    second_run = "--once" not in argv
    try:
        sizes = [int(a) for a in argv if a != "--once"] or [5, 15]
    except ValueError:
        print(f"lab_scale: host counts must be integers, got {argv}", file=sys.stderr)
        return 2
    if any(not 1 <= n <= HOSTS_MAX for n in sizes):
        print(f"lab_scale: host counts go from 1 to {HOSTS_MAX}", file=sys.stderr)
        return 2
    wheelhouse = Path(tempfile.mkdtemp(prefix="raftlab-scale-wh-", dir="/var/tmp"))
    try:
        for n in sizes:
            row = measure(n, wheelhouse, second_run)
            if not RESULTS.exists():
                RESULTS.write_text(HEADER)
            with open(RESULTS, "a", encoding="utf-8") as f:
                f.write(row)
            print(row, end="", flush=True)
    finally:
        shutil.rmtree(wheelhouse, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
