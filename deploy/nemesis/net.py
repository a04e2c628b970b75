"""iptables and tc on a node's host, confined to what the nemesis owns.

Rules live only in the chain :data:`CHAIN` (table ``filter``, jumped from INPUT and OUTPUT)
and in :data:`CHAIN` of table ``mangle`` (jumped from OUTPUT, for packet duplication). Each
rule carries the comment ``raftlab-nemesis-<id>`` of the fault occurrence that added it, so
one occurrence's heal removes exactly its rules; when a chain is empty its jumps and the chain
go. Queueing disciplines are added only as the root qdisc with handle :data:`QDISC_HANDLE`,
and only a root qdisc with that handle is ever deleted. Nothing else is flushed or edited.
"""

from __future__ import annotations

import shlex

from deploy.nemesis.control import ClusterControl

CHAIN = "RAFTLAB-NEMESIS"
#: (table, built-in chains that jump to ours)
JUMPS = (("filter", ("INPUT", "OUTPUT")), ("mangle", ("OUTPUT",)))
QDISC_HANDLE = "4e4d:"
COMMENT_PREFIX = "raftlab-nemesis-"
IPT = "iptables -w"


def comment(fault_id: int) -> str:
    return f"{COMMENT_PREFIX}{fault_id}"


def ensure_chain_script(table: str) -> str:
    """Create our chain in ``table`` and jump to it first from the built-in chains."""
    parts = [f"{IPT} -t {table} -N {CHAIN} 2>/dev/null || true"]
    for t, builtins in JUMPS:
        if t != table:
            continue
        for b in builtins:
            parts.append(
                f"{IPT} -t {t} -C {b} -j {CHAIN} 2>/dev/null || {IPT} -t {t} -I {b} 1 -j {CHAIN}"
            )
    return "; ".join(parts)


def add_rules_script(table: str, fault_id: int, rules: list[str]) -> str:
    """Append ``rules`` (argument strings after ``-A CHAIN``) tagged with the fault's id."""
    tag = f"-m comment --comment {comment(fault_id)}"
    adds = [f"{IPT} -t {table} -A {CHAIN} {r} {tag}" for r in rules]
    return " && ".join([f"{{ {ensure_chain_script(table)}; }}", *adds])


def _drop_chain_if_empty(table: str) -> str:
    unjump = "; ".join(
        f"while {IPT} -t {table} -D {b} -j {CHAIN} 2>/dev/null; do :; done"
        for t, builtins in JUMPS
        if t == table
        for b in builtins
    )
    return (
        f"if {IPT} -t {table} -S {CHAIN} >/dev/null 2>&1 && "
        f"[ $({IPT} -t {table} -S {CHAIN} | grep -c '^-A') -eq 0 ]; then "
        f"{unjump}; {IPT} -t {table} -X {CHAIN}; fi"
    )


def remove_rules_script(table: str, fault_id: int) -> str:
    """Delete the fault's rules from our chain (by their comment), then the chain if empty."""
    c = comment(fault_id)
    return (
        f"{IPT} -t {table} -S {CHAIN} 2>/dev/null | grep -E -- '--comment \"?{c}\"?( |$)' | "
        f"sed 's/^-A /-D /' | while read -r r; do eval {IPT} -t {table} $r; done; "
        + _drop_chain_if_empty(table)
    )


def remove_all_script() -> str:
    """Remove every rule, jump and chain of ours in every table (for heal_cluster)."""
    parts = []
    for table, builtins in JUMPS:
        for b in builtins:
            parts.append(f"while {IPT} -t {table} -D {b} -j {CHAIN} 2>/dev/null; do :; done")
        parts.append(
            f"{IPT} -t {table} -F {CHAIN} 2>/dev/null; {IPT} -t {table} -X {CHAIN} 2>/dev/null"
        )
    return "; ".join(parts) + "; true"


def rules_left_script() -> str:
    """Prints our chains' rules and jumps in all tables (empty when nothing is left)."""
    return "; ".join(f"{IPT} -t {t} -S 2>/dev/null | grep -F -- {CHAIN} || true" for t, _ in JUMPS)


def device_to(control: ClusterControl, node: str, peer_address: str) -> str:
    """The network device ``node``'s host sends to ``peer_address`` through."""
    out = control.run(node, f"ip -o route get {shlex.quote(peer_address)}").stdout.split()
    try:
        return out[out.index("dev") + 1]
    except (ValueError, IndexError):
        raise RuntimeError(f"{node}: no route to {peer_address}: {' '.join(out)}") from None


def qdisc_is_ours_script(dev: str) -> str:
    return f"tc qdisc show dev {shlex.quote(dev)} root | grep -q ' {QDISC_HANDLE} '"


def remove_qdisc_script(dev: str) -> str:
    d = shlex.quote(dev)
    return (
        f"if {qdisc_is_ours_script(dev)}; then tc qdisc del dev {d} root handle {QDISC_HANDLE}; fi"
    )


def remove_all_qdiscs_script() -> str:
    """Delete our root qdisc on every device of the host (and nothing else)."""
    return (
        "for d in $(ls /sys/class/net); do "
        f"if tc qdisc show dev $d root | grep -q ' {QDISC_HANDLE} '; then "
        f"tc qdisc del dev $d root handle {QDISC_HANDLE}; fi; done; true"
    )


def qdiscs_left_script() -> str:
    return (
        "for d in $(ls /sys/class/net); do "
        f"tc qdisc show dev $d root | grep ' {QDISC_HANDLE} ' | sed \"s/^/$d: /\"; done; true"
    )


def probe_netem(control: ClusterControl, node: str) -> tuple[bool, str]:
    """Whether ``tc netem`` works on the host: add it to lo and remove it at once."""
    r = control.run(
        node,
        "tc qdisc add dev lo root handle 4e4e: netem 2>&1 && "
        "tc qdisc del dev lo root handle 4e4e: && echo NETEM-OK",
        check=False,
    )
    if "NETEM-OK" in r.stdout:
        return True, "tc netem works"
    return False, (r.stdout + r.stderr).strip()[:200] or f"exit {r.exit_code}"
