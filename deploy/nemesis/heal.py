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


def heal_node(control: ClusterControl, node: str) -> list[str]:
    """Undo everything of ours on ``node``'s host; returns what it did (empty: clean)."""
    did: list[str] = []
    pid = control.pid(node)
    if pid is not None:
        st = control.run(node, f"cat /proc/{pid}/stat", check=False).stdout.rpartition(") ")[2]
        if st[:1] == "T":
            control.signal(node, "CONT")
            did.append(f"resumed paused pid {pid}")
    if control.own_network:
        sd = control.state_dir(node)
        left = control.run(node, net.rules_left_script()).stdout.strip()
        if left:
            control.run(node, net.remove_all_script())
            did.append(f"removed iptables chain {net.CHAIN} and its jumps")
        q = control.run(node, net.qdiscs_left_script()).stdout.strip()
        if q:
            control.run(node, net.remove_all_qdiscs_script())
            did.append(f"removed qdiscs {q.replace(chr(10), '; ')}")
        d = control.run(node, delayers_left_script(sd)).stdout.split()
        if d:
            control.run(node, kill_delayers_script(sd))
            left_d = control.run(node, delayers_left_script(sd)).stdout.split()
            for p in left_d:  # a delayer whose pidfile was lost: still ours by its cmdline
                control.run(node, f"kill -9 {int(p)}", check=False)
            did.append(f"stopped packet delayer(s) {', '.join(d)}")
    fill = shlex.quote(fill_path(control, node))
    if control.run(node, f"test -e {fill}", check=False).ok:
        control.run(node, f"rm -f {fill}")
        did.append("deleted the disk-fill file")
    env = control.environ(node)
    faked = "faketime" in env.get("LD_PRELOAD", "")
    dropin = getattr(control, "_dropin", None)
    systemd = getattr(control, "systemd", None)
    dropin_left = False
    if dropin is not None and systemd is not None and systemd(node):
        dropin_left = control.run(node, f"test -e {shlex.quote(dropin(node))}", check=False).ok
    if faked or dropin_left:
        control.stop(node)
        control.start(node)
        did.append("restarted without libfaketime")
    ft = shlex.quote(faketime_file(control, node))
    if control.run(node, f"test -e {ft}", check=False).ok:
        control.run(node, f"rm -f {ft}")
    if control.pid(node) is None:
        control.start(node)
        did.append("started the node")
    return did
