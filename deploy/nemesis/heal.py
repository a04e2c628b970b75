"""Healing a node without knowing which faults ran (``raftlab heal``, after a crash).

Each step looks for what a fault leaves behind and undoes only that: a stopped (paused) node
process gets SIGCONT; our iptables chains and jumps, our root qdiscs and our packet delayers go;
a node running under libfaketime (seen in its environment) is restarted without it; the
disk-fill file is deleted; a node that is not running is started. Running it twice does
nothing the second time.
"""

from __future__ import annotations

import os
import shlex

from deploy.nemesis import net
from deploy.nemesis.control import ClusterControl

DELAYER_MARK = "raftlab-nemesis-delayer"
#: A grep pattern matching the mark but not itself (so the shell running it is not found).
_MARK_RE = "[r]aftlab-nemesis-delayer"


def fill_path(control: ClusterControl, node: str) -> str:
    """The file the disk-fill fault writes, beside the node's data directory."""
    return os.path.join(
        os.path.dirname(control.data_dir(node).rstrip("/")), f"raftlab-nemesis-fill-{node}"
    )


def faketime_file(control: ClusterControl, node: str) -> str:
    return os.path.join(control.state_dir(node), f"faketime-{node}")


def shim_dir(control: ClusterControl, node: str) -> str:
    return shlex.quote(f"{control.state_dir(node)}/fsync-shim")


def kill_delayers_script(state_dir: str, fault_id: int | None = None) -> str:
    """Kill our delayer processes (by pidfile, after checking their command line)."""
    sd = shlex.quote(state_dir)
    pattern = f"delayer-{fault_id}.pid" if fault_id is not None else "delayer-*.pid"
    return (
        f'for f in {sd}/{pattern}; do [ -f "$f" ] || continue; p=$(cat "$f"); '
        f'case "$p" in ""|*[!0-9]*) rm -f "$f"; continue ;; esac; '
        f'if tr "\\000" " " < /proc/$p/cmdline 2>/dev/null | grep -q "{_MARK_RE}"; then '
        "kill $p; for i in 1 2 3 4 5 6 7 8 9 10; do "
        "kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
        f'kill -9 $p 2>/dev/null; fi; rm -f "$f"; done; true'
    )


def delayers_left_script(state_dir: str) -> str:
    return (
        "for p in $(ls /proc | grep -E '^[0-9]+$'); do "
        f'tr "\\000" " " < /proc/$p/cmdline 2>/dev/null | grep -q "{_MARK_RE}" && echo $p; '
        "done; true"
    )


def _inspect_script(control: ClusterControl, node: str, pid: int | None) -> str:
    """One shell script printing ``key=value`` lines about everything a fault can leave
    (one SSH round trip per node, however many faults there are)."""
    parts = []
    if pid is not None:
        parts.append(f"echo state=$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -c1)")
        parts.append(
            f"echo faked=$(tr '\\000' '\\n' < /proc/{pid}/environ 2>/dev/null "
            "| grep -c '^LD_PRELOAD=.*faketime')"
        )
        parts.append(
            f"echo shim=$(tr '\\000' '\\n' < /proc/{pid}/environ 2>/dev/null "
            "| grep -c '^RAFTLAB_NEMESIS_FSYNC=')"
        )
    if control.own_network:
        sd = control.state_dir(node)
        parts.append(f"echo rules=$({{ {net.rules_left_script()}; }} | wc -l)")
        parts.append(f"echo qdiscs=$({{ {net.qdiscs_left_script()}; }} | tr '\\n' ';')")
        parts.append(f"echo delayers=$({{ {delayers_left_script(sd)}; }} | tr '\\n' ' ')")
    parts.append(f"test -e {shlex.quote(fill_path(control, node))} && echo fill=1")
    parts.append(f"test -e {shlex.quote(faketime_file(control, node))} && echo ftfile=1")
    shim = shlex.quote(f"{control.state_dir(node)}/fsync-shim")
    parts.append(f"test -e {shim} && echo shimdir=1")
    dropin = getattr(control, "_dropin", None)
    systemd = getattr(control, "systemd", None)
    if dropin is not None and systemd is not None and systemd(node):
        parts.append(f"test -e {shlex.quote(dropin(node))} && echo dropin=1")
    return "; ".join(parts) + "; true"


def inspect_node(control: ClusterControl, node: str) -> list[str]:
    """What of the nemesis is left on ``node``'s host, in words (empty: nothing; the node
    runs and is not stopped)."""
    pid = control.pid(node)
    facts = dict(
        ln.partition("=")[::2]
        for ln in control.run(node, _inspect_script(control, node, pid)).stdout.splitlines()
        if "=" in ln
    )
    left = []
    if pid is None:
        left.append("node not running")
    if facts.get("state") == "T":
        left.append(f"node pid {pid} stopped (paused)")
    if facts.get("faked", "0") not in ("", "0") or facts.get("dropin"):
        left.append("node runs under libfaketime")
    if facts.get("shim", "0") not in ("", "0"):
        left.append("node runs with the fsync shim")
    if facts.get("shimdir"):
        left.append("the fsync shim directory")
    if facts.get("rules", "0").strip() not in ("", "0"):
        left.append(f"iptables chain {net.CHAIN} or its jumps")
    if facts.get("qdiscs", "").strip(" ;"):
        left.append(f"qdiscs {facts['qdiscs'].strip(' ;')}")
    if facts.get("delayers", "").strip():
        left.append(f"packet delayer(s) {facts['delayers'].strip()}")
    if facts.get("fill"):
        left.append("the disk-fill file")
    if facts.get("ftfile"):
        left.append("a faketime file")
    return left


def heal_node(control: ClusterControl, node: str) -> list[str]:
    """Undo everything of ours on ``node``'s host; returns what it did (empty: clean)."""
    left = inspect_node(control, node)
    did: list[str] = []
    if not left:
        return did
    joined = " | ".join(left)
    if "stopped (paused)" in joined:
        pid = control.signal(node, "CONT")
        did.append(f"resumed paused pid {pid}")
    sd = control.state_dir(node)
    if f"iptables chain {net.CHAIN}" in joined:
        control.run(node, net.remove_all_script())
        did.append(f"removed iptables chain {net.CHAIN} and its jumps")
    q = [x for x in left if x.startswith("qdiscs ")]
    if q:
        control.run(node, net.remove_all_qdiscs_script())
        did.append(f"removed {q[0]}")
    d = [x for x in left if x.startswith("packet delayer")]
    if d:
        control.run(node, kill_delayers_script(sd))
        for p in control.run(node, delayers_left_script(sd)).stdout.split():
            # A delayer whose pidfile was lost: still ours by its command line.
            control.run(node, f"kill -9 {int(p)}", check=False)
        did.append(f"stopped {d[0]}")
    if "disk-fill file" in joined:
        control.run(node, f"rm -f {shlex.quote(fill_path(control, node))}")
        did.append("deleted the disk-fill file")
    if "libfaketime" in joined or "node runs with the fsync shim" in left:
        control.stop(node)
        control.start(node)
        did.append("restarted without libfaketime or the fsync shim")
    if "fsync shim directory" in joined:
        control.run(node, f"rm -rf {shim_dir(control, node)}")
        did.append("deleted the fsync shim")
    if "faketime file" in joined:
        control.run(node, f"rm -f {shlex.quote(faketime_file(control, node))}")
        did.append("deleted the faketime file")
    if control.pid(node) is None:
        from deploy.nemesis.membership import has_data, start_joining

        if has_data(control, node):
            control.start(node)
            did.append("started the node")
        else:
            # Wiped (a membership fault cut short): a plain start would bootstrap a cluster
            # of its own from cluster.yml; it joins, and heal_cluster adds it back.
            start_joining(control, node)
            did.append("started the wiped node with --join")
    return did
