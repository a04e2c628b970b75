"""The fault catalogue: for each kind, how to break, how to heal, how to see it took effect.

A fault starts with :func:`start_fault`, which returns an :class:`Active` holding the targets,
the mechanism used, what was observed, and a ``heal`` function that undoes exactly that
occurrence (and returns what it observed). Everything runs in threads (blocking SSH or
subprocess calls); :class:`deploy.nemesis.runner.Nemesis` schedules them.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deploy.nemesis import net
from deploy.nemesis.control import ClusterControl, NotSupportedError
from deploy.nemesis.spec import NETWORK_KINDS, FaultSpec, FaultSpecError

Observation = dict[str, Any]
T = TypeVar("T")
U = TypeVar("U")

FANOUT_MAX = 16
"""Hosts a fault works on at the same time."""


@dataclass(slots=True)
class Active:
    """One occurrence of a fault that is in effect until :attr:`heal` runs."""

    id: int
    spec: FaultSpec
    targets: list[str]
    mechanism: str
    observed: Observation
    heal: Callable[[], Observation]
    started_at: float = field(default_factory=time.monotonic)
    #: Extra facts recorded with the start (partition groups, files corrupted...).
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FaultContext:
    """What a fault needs besides its spec: the cluster, the seeded rng, a unique id."""

    control: ClusterControl
    rng: random.Random
    id: int
    #: Set while the run should stop (periodic faults such as the clock strobe watch it).
    stop: threading.Event = field(default_factory=threading.Event)
    #: Per-host facts probed once (e.g. whether ``tc netem`` works there).
    probes: dict[tuple[str, str], Any] = field(default_factory=dict)


Starter = Callable[[FaultContext, FaultSpec, list[str]], Active]
_STARTERS: dict[str, Starter] = {}


def starter(kind: str) -> Callable[[Starter], Starter]:
    def deco(fn: Starter) -> Starter:
        _STARTERS[kind] = fn
        return fn

    return deco


def start_fault(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Break the cluster as ``spec`` says, on ``targets``; refuse faults that make no sense
    on this kind of cluster with :class:`NotSupportedError` before touching anything."""
    if spec.kind in NETWORK_KINDS and not ctx.control.own_network:
        raise NotSupportedError(
            f"{spec.kind}: every node of a `raft cluster up` cluster shares this machine's "
            "loopback network, so iptables/tc rules would hit the machine itself; network "
            "faults need the testbed or real hosts (an inventory)"
        )
    try:
        fn = _STARTERS[spec.kind]
    except KeyError:
        raise NotSupportedError(f"{spec.kind}: not implemented") from None
    return fn(ctx, spec, targets)


def each(c: ClusterControl, nodes: Iterable[str], fn: Callable[[str], T]) -> dict[str, T]:
    """``fn(node)`` for every node, at the same time when the nodes are reached over SSH.
    A command there costs a round trip plus the start of the login shell (a third of a
    second on the testbed, more through a gateway), so a partition of five hosts applied one
    host after the other took 2-5 s and cut the hosts off at different moments. Results in
    the nodes' order; every call ends before the first failure is raised. Nodes of a local
    cluster are done in turn (no SSH to wait for; their process table is shared)."""
    nodes = list(nodes)
    if len(nodes) <= 1 or getattr(c, "kind", "") != "inventory":
        return {n: fn(n) for n in nodes}
    with ThreadPoolExecutor(max_workers=min(FANOUT_MAX, len(nodes))) as ex:
        futures = {n: ex.submit(fn, n) for n in nodes}
    for f in futures.values():
        exc = f.exception()
        if exc is not None:
            raise exc
    return {n: f.result() for n, f in futures.items()}


def _columns(got: dict[str, tuple[T, U]], a: str, b: str) -> Observation:
    """``{node: (x, y)}`` as the observation ``{a: {node: x}, b: {node: y}}``."""
    return {a: {n: x for n, (x, _) in got.items()}, b: {n: y for n, (_, y) in got.items()}}


# -- process faults --------------------------------------------------------------------------


def _wait_gone(control: ClusterControl, node: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if control.pid(node) is None:
            return True
        time.sleep(0.1)
    return False


def _start_all(control: ClusterControl, nodes: list[str]) -> Observation:
    def start(n: str) -> int | None:
        control.start(n)
        return control.pid(n)

    pids = each(control, nodes, start)
    return {"pids": pids, "running": all(p is not None for p in pids.values())}


@starter("kill")
def _kill(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control

    def kill(n: str) -> tuple[int | None, bool]:
        before = c.pid(n)
        c.kill(n)
        return before, _wait_gone(c, n)

    got = each(c, targets, kill)
    return Active(
        ctx.id,
        spec,
        targets,
        _process_mechanism(c, targets, "SIGKILL"),
        _columns(got, "pids", "gone"),
        lambda: _start_all(c, targets),
    )


def _process_mechanism(c: ClusterControl, targets: list[str], what: str) -> str:
    systemd = getattr(c, "systemd", None)
    if systemd is not None and targets and systemd(targets[0]):
        return f"systemctl kill -s {what.removeprefix('SIG')}"
    return what


def _proc_state(c: ClusterControl, node: str, pid: int) -> str:
    """The process state letter from /proc/<pid>/stat (T = stopped)."""
    out = c.run(node, f"cat /proc/{pid}/stat", check=False).stdout
    rest = out.rpartition(") ")[2]
    return rest[:1] or "?"


@starter("pause")
def _pause(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control

    def send(sig: str) -> Callable[[str], tuple[int | None, str]]:
        def one(n: str) -> tuple[int | None, str]:
            p = c.signal(n, sig)
            return p, _proc_state(c, n, p) if p else "-"

        return one

    got = each(c, targets, send("STOP"))

    def heal() -> Observation:
        return {"states": _columns(each(c, targets, send("CONT")), "pids", "states")["states"]}

    return Active(
        ctx.id,
        spec,
        targets,
        _process_mechanism(c, targets, "SIGSTOP"),
        _columns(got, "pids", "states"),
        heal,
    )


@starter("restart")
def _restart(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control

    def stop(n: str) -> tuple[int | None, bool]:
        before = c.pid(n)
        c.stop(n)
        return before, c.pid(n) is None

    got = each(c, targets, stop)
    return Active(
        ctx.id,
        spec,
        targets,
        "graceful stop (SIGTERM), start",
        _columns(got, "pids", "gone"),
        lambda: _start_all(c, targets),
    )


# -- network partitions ----------------------------------------------------------------------


def partition_blocks(
    mode: str,
    nodes: list[str],
    targets: list[str],
    groups: list[list[str]] | None,
    rng: random.Random,
) -> tuple[dict[str, set[str]], list[list[str]]]:
    """Who stops hearing whom: ``blocked[a]`` is the set of nodes ``a`` no longer receives
    from. Also the groups (components) for the record. Pure, so it is unit-tested."""
    ordered = sorted(nodes)
    blocked: dict[str, set[str]] = {n: set() for n in ordered}

    def split(parts: list[list[str]]) -> None:
        where = {n: i for i, p in enumerate(parts) for n in p}
        for a in ordered:
            for b in ordered:
                if a != b and where.get(a, -1) != where.get(b, -2):
                    blocked[a].add(b)

    if mode == "isolate":
        rest = [n for n in ordered if n not in targets]
        parts = [[t] for t in targets] + ([rest] if rest else [])
        split(parts)
        return blocked, parts
    if mode == "one-way":
        rest = [n for n in ordered if n not in targets]
        for t in targets:
            blocked[t] |= set(rest)
        return blocked, [list(targets), rest]
    if mode == "groups":
        assert groups is not None
        unknown = [n for g in groups for n in g if n not in ordered]
        if unknown:
            raise ValueError(f"params.groups: unknown node(s) {', '.join(unknown)}")
        named = {n for g in groups for n in g}
        rest = [n for n in ordered if n not in named]
        parts = [list(g) for g in groups] + ([rest] if rest else [])
        split(parts)
        return blocked, parts
    shuffled = list(ordered)
    rng.shuffle(shuffled)
    n = len(shuffled)
    if mode == "halves":
        parts = [sorted(shuffled[: n // 2]), sorted(shuffled[n // 2 :])]
        split(parts)
        return blocked, parts
    if mode == "bridge":
        half = (n - 1) // 2
        left, bridge, right = shuffled[:half], shuffled[half], shuffled[half + 1 :]
        split([[*left, bridge], right])
        for r in right:  # the bridge hears (and is heard by) both sides
            blocked[bridge].discard(r)
            blocked[r].discard(bridge)
        return blocked, [sorted(left), [bridge], sorted(right)]
    if mode == "ring":
        # Each node hears the nodes within ring distance d: a majority, different for each.
        d = max(1, ((n // 2) + 1) // 2)
        for i, a in enumerate(shuffled):
            for j, b in enumerate(shuffled):
                dist = min((i - j) % n, (j - i) % n)
                if dist > d:
                    blocked[a].add(b)
        views = [
            sorted(shuffled[(i + k) % n] for k in range(-d, d + 1) if abs(k) < n) for i in range(n)
        ]
        return blocked, [sorted(set(v)) for v in views]
    raise ValueError(f"unknown partition mode {mode!r}")


def rules_of(listing: str, fault_id: int) -> int:
    """How many lines of ``iptables -S`` output carry exactly this fault's comment (not a
    later fault's whose id starts with the same digits: 1 is not 12)."""
    tag = re.compile(rf'--comment "?{re.escape(net.comment(fault_id))}"?( |$)')
    return sum(1 for ln in listing.splitlines() if tag.search(ln))


def _rules_fault(
    ctx: FaultContext,
    spec: FaultSpec,
    targets: list[str],
    per_node: dict[str, list[str]],
    mechanism: str,
    table: str = "filter",
    detail: dict[str, Any] | None = None,
    extra_heal: Callable[[str], None] | None = None,
) -> Active:
    """Install iptables rules on each node (tagged with the fault id), all nodes at once,
    one command per node that also lists what is in place; heal removes them likewise."""
    c = ctx.control
    installed = [n for n, rules in per_node.items() if rules]
    listing = f"{{ {net.IPT} -t {table} -S {net.CHAIN} 2>/dev/null || true; }}"

    def heal_one(n: str) -> int:
        out = c.run(n, f"{{ {net.remove_rules_script(table, ctx.id)}; }} && {listing}").stdout
        if extra_heal is not None:
            extra_heal(n)
        return rules_of(out, ctx.id)

    def heal() -> Observation:
        return {"rules_left": each(c, installed, heal_one)}

    def install(n: str) -> int:
        add = net.add_rules_script(table, ctx.id, per_node[n])
        return rules_of(c.run(n, f"{add} && {listing}").stdout, ctx.id)

    try:
        observed = {"rules": each(c, installed, install)}
    except Exception:
        heal()
        raise
    return Active(ctx.id, spec, targets, mechanism, observed, heal, detail=detail or {})


@starter("partition")
def _partition(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control
    nodes = c.nodes()
    try:
        blocked, parts = partition_blocks(
            str(spec.params["mode"]), nodes, targets, spec.params.get("groups"), ctx.rng
        )
    except ValueError as exc:
        raise FaultSpecError(str(exc)) from None
    addr = {n: c.address(n) for n in nodes}
    rules = {a: [f"-s {addr[b]} -j DROP" for b in sorted(bs)] for a, bs in blocked.items()}
    affected = sorted(a for a, bs in blocked.items() if bs)
    return _rules_fault(
        ctx,
        spec,
        affected,
        rules,
        "iptables",
        detail={"groups": parts, "mode": spec.params["mode"]},
    )


# -- packet faults ---------------------------------------------------------------------------


def _netem_ok(ctx: FaultContext, node: str) -> tuple[bool, str]:
    key = (node, "netem")
    if key not in ctx.probes:
        ctx.probes[key] = net.probe_netem(ctx.control, node)
    result: tuple[bool, str] = ctx.probes[key]
    return result


def _use_netem(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> bool:
    """netem when asked or (auto) when every target's kernel has it."""
    mech = spec.params.get("mechanism", "auto")
    if mech == "fallback":
        return False
    probes = each(ctx.control, targets, lambda n: _netem_ok(ctx, n))
    ok = all(p[0] for p in probes.values())
    if mech == "netem" and not ok:
        why = "; ".join(f"{n}: {p[1]}" for n, p in probes.items() if not p[0])
        raise NotSupportedError(f"{spec.kind}: mechanism netem asked for, but {why}")
    return ok


def _peers(c: ClusterControl, node: str) -> list[str]:
    return [c.address(p) for p in c.nodes() if p != node]


def _qdisc_fault(
    ctx: FaultContext, spec: FaultSpec, targets: list[str], qdisc: str, mechanism: str
) -> Active:
    """A root qdisc (handle 4e4d:) on the device each target uses to reach its peers."""
    c = ctx.control
    devs: dict[str, str] = {}  # node -> device with our qdisc (set from the workers)

    def heal_one(n: str) -> bool:
        d = devs[n]
        c.run(n, net.remove_qdisc_script(d))
        return c.run(n, net.qdisc_is_ours_script(d), check=False).ok

    def heal() -> Observation:
        return {"qdisc_left": each(c, list(devs), heal_one)}

    def add(n: str) -> str | None:
        peers = _peers(c, n)
        if not peers:
            return None
        d = net.device_to(c, n, peers[0])
        if c.run(n, net.qdisc_is_ours_script(d), check=False).ok:
            raise NotSupportedError(
                f"{spec.kind}: {n} already has a nemesis qdisc on {d} (one rate/netem "
                "fault per host at a time)"
            )
        devs[n] = d  # before the add: a heal after a failed add is harmless
        return c.run(
            n,
            f"tc qdisc add dev {d} root handle {net.QDISC_HANDLE} {qdisc} && "
            f"tc qdisc show dev {d} root",
        ).stdout.strip()

    try:
        got = each(c, targets, add)
    except Exception:
        heal()
        raise
    shown = {n: s for n, s in got.items() if s is not None}
    return Active(ctx.id, spec, targets, mechanism, {"qdisc": shown}, heal)


def _random_rule_fault(
    ctx: FaultContext, spec: FaultSpec, targets: list[str], netem: str, rule: str, mech: str
) -> Active:
    """netem ``<netem> P%`` where available, else one iptables rule per peer with the
    ``statistic`` match; ``rule`` is formatted with ``{a}`` (the peer's address) and ``{p}``."""
    p = float(spec.params["probability"])
    if _use_netem(ctx, spec, targets):
        return _qdisc_fault(ctx, spec, targets, f"netem {netem} {p * 100:.3f}%", "netem")
    c = ctx.control
    stat = f"-m statistic --mode random --probability {p:.6f}"
    rules = {n: [rule.format(a=a, stat=stat) for a in _peers(c, n)] for n in targets}
    table = "mangle" if "TEE" in rule else "filter"
    return _rules_fault(ctx, spec, targets, rules, mech, table=table)


@starter("loss")
def _loss(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Packets from the peers are dropped on arrival at each target."""
    return _random_rule_fault(
        ctx, spec, targets, "loss", "-s {a} {stat} -j DROP", "iptables-statistic"
    )


@starter("duplicate")
def _duplicate(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Packets from each target to a peer are cloned (TEE) to that peer as well."""
    return _random_rule_fault(
        ctx, spec, targets, "duplicate", "-d {a} {stat} -j TEE --gateway {a}", "iptables-tee"
    )


DELAYER_NAME = "raftlab-nemesis-delayer.py"
QUEUE_BASE = 4700


def _delayer_fault(
    ctx: FaultContext,
    spec: FaultSpec,
    targets: list[str],
    delay_ms: float,
    jitter: float,
    reorder: float,
) -> Active:
    """Packets from each target to its peers go through NFQUEUE to a userspace delayer
    (deploy/nemesis/delayer.py) started on the target's host."""
    from pathlib import Path

    from deploy.nemesis.heal import kill_delayers_script

    c = ctx.control
    queue = QUEUE_BASE + ctx.id % 1000
    local = Path(__file__).with_name("delayer.py")
    started: list[str] = []

    def stop_delayer(n: str) -> None:
        c.run(n, kill_delayers_script(c.state_dir(n), ctx.id))

    seeds = {n: ctx.rng.randrange(1 << 30) for n in targets}  # drawn in order: reproducible

    def start(n: str) -> None:
        sd = c.state_dir(n)
        c.run(n, f"mkdir -p {sd} && chmod 0700 {sd}")
        script = f"{sd}/{DELAYER_NAME}"
        c.upload(n, local, script)
        pidfile = f"{sd}/delayer-{ctx.id}.pid"
        started.append(n)  # from here on a stop is due, whatever the start does
        c.run(
            n,
            f"rm -f {pidfile}; setsid nohup python3 {script} --queue {queue} "
            f"--delay-ms {delay_ms} --jitter-ms {jitter} --reorder {reorder} --seed {seeds[n]} "
            f"--pidfile {pidfile} > {sd}/delayer-{ctx.id}.log 2>&1 < /dev/null & "
            f"for i in $(seq 50); do [ -s {pidfile} ] && exit 0; sleep 0.1; done; "
            f"cat {sd}/delayer-{ctx.id}.log >&2; exit 1",
        )

    try:
        each(c, targets, start)
    except Exception:
        for n in started:
            stop_delayer(n)
        raise
    rules = {
        n: [f"-d {a} -j NFQUEUE --queue-num {queue} --queue-bypass" for a in _peers(c, n)]
        for n in targets
    }
    try:
        a = _rules_fault(
            ctx,
            spec,
            targets,
            rules,
            "nfqueue-delayer",
            detail={"queue": queue},
            extra_heal=stop_delayer,
        )
    except Exception:
        for n in started:
            stop_delayer(n)
        raise
    return a


@starter("delay")
def _delay(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    d, j = float(spec.params["delay_ms"]), float(spec.params["jitter_ms"])
    if _use_netem(ctx, spec, targets):
        return _qdisc_fault(ctx, spec, targets, f"netem delay {d}ms {j}ms", "netem")
    return _delayer_fault(ctx, spec, targets, d, j, 0.0)


@starter("reorder")
def _reorder(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    p, d = float(spec.params["probability"]), float(spec.params["delay_ms"])
    if _use_netem(ctx, spec, targets):
        q = f"netem delay {d}ms reorder {p * 100:.3f}%"
        return _qdisc_fault(ctx, spec, targets, q, "netem")
    return _delayer_fault(ctx, spec, targets, d, 0.0, p)


@starter("rate")
def _rate(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    kbit = int(spec.params["kbit"])
    burst = max(3200, kbit * 1000 // 8 // 20)  # bytes: >= two MTUs, or 50 ms at the rate
    return _qdisc_fault(
        ctx, spec, targets, f"tbf rate {kbit}kbit burst {burst} latency 200ms", "tbf"
    )


# -- clock -----------------------------------------------------------------------------------

FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def _faketime_lib(c: ClusterControl, node: str) -> str:
    tries = " ".join(FAKETIME_LIBS)
    out = c.run(node, f"for f in {tries}; do [ -f $f ] && echo $f && break; done; true").stdout
    if not out.strip():
        raise NotSupportedError(
            f"clock: libfaketime is not installed on {node} (Debian package libfaketime)"
        )
    return out.split()[0]


def _offset_text(offset_s: float) -> str:
    """A libfaketime relative offset (``+30``, ``-1.5``)."""
    return f"{offset_s:+.3f}".rstrip("0").rstrip(".")


def _write_faketime(c: ClusterControl, node: str, path: str, offset_s: float) -> None:
    c.run(node, f"printf '%s\\n' {_offset_text(offset_s)} > {path}.tmp && mv {path}.tmp {path}")


def clock_skew(c: ClusterControl, node: str, lib: str, path: str) -> float:
    """Seconds the clock seen through the faketime file is ahead of the host's clock."""
    out = c.run(
        node,
        f"date +%s.%N; LD_PRELOAD={lib} FAKETIME_TIMESTAMP_FILE={path} FAKETIME_NO_CACHE=1 "
        "date +%s.%N; date +%s.%N",
    ).stdout.split()
    real = (float(out[0]) + float(out[2])) / 2
    return round(float(out[1]) - real, 3)


@starter("clock")
def _clock(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Restart each target under libfaketime reading its offset from a file on the host (so
    a strobe only rewrites the file); heal restarts it without libfaketime."""
    from deploy.nemesis.heal import faketime_file

    c = ctx.control
    offset = float(spec.params["offset_s"])
    strobe = spec.params["mode"] == "strobe"
    files: dict[str, str] = {}
    libs: dict[str, str] = {}
    for n in targets:
        libs[n] = _faketime_lib(c, n)
        sd = c.state_dir(n)
        c.run(n, f"mkdir -p {sd} && chmod 0700 {sd}")
        files[n] = faketime_file(c, n)
        _write_faketime(c, n, files[n], offset)
    restarted: list[str] = []

    def heal() -> Observation:
        done.set()
        if strober is not None:
            strober.join(timeout=10)
        out = {}
        for n in restarted:
            c.stop(n)
            c.start(n)
            out[n] = "faketime" in c.environ(n).get("LD_PRELOAD", "")
        for n, f in files.items():
            c.run(n, f"rm -f {f}")
        return {"still_faked": out}

    done = threading.Event()
    strober: threading.Thread | None = None
    try:
        for n in targets:
            env = {
                "LD_PRELOAD": libs[n],
                "FAKETIME_TIMESTAMP_FILE": files[n],
                "FAKETIME_CACHE_DURATION": "1",
            }
            if not spec.params["monotonic"]:
                env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            c.stop(n)
            restarted.append(n)
            c.start(n, env)
    except Exception:
        heal()
        raise
    skew = {n: clock_skew(c, n, libs[n], files[n]) for n in targets}
    faked = {n: "faketime" in c.environ(n).get("LD_PRELOAD", "") for n in targets}
    if strobe:
        period = float(spec.params["period_s"])

        def flip() -> None:
            on = True
            while not done.wait(period) and not ctx.stop.is_set():
                on = not on
                for n in targets:
                    # A strobe step lost is not worth stopping the run for.
                    with contextlib.suppress(Exception):
                        _write_faketime(c, n, files[n], offset if on else 0.0)

        strober = threading.Thread(target=flip, name=f"clock-strobe-{ctx.id}", daemon=True)
        strober.start()
    return Active(ctx.id, spec, targets, "libfaketime", {"skew_s": skew, "faked": faked}, heal)


# -- disk ------------------------------------------------------------------------------------


def _avail(c: ClusterControl, node: str, path: str) -> int:
    out = c.run(node, f"df -B1 --output=avail {path} | tail -1").stdout.strip()
    return int(out)


@starter("disk-fill")
def _disk_fill(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """A file beside the data directory takes all free space but ``leave_bytes``."""
    from deploy.nemesis.heal import fill_path

    c = ctx.control
    leave = int(spec.params["leave_bytes"])
    paths = {n: fill_path(c, n) for n in targets}

    def heal() -> Observation:
        return {
            "avail_bytes": {
                n: (c.run(n, f"rm -f {p}") and _avail(c, n, c.data_dir(n)))
                for n, p in paths.items()
            }
        }

    try:
        for n, p in paths.items():
            size = _avail(c, n, c.data_dir(n)) - leave
            if size > 0:
                # fallocate is instant; dd where the filesystem has no fallocate.
                c.run(
                    n,
                    f"fallocate -l {size} {p} 2>/dev/null || "
                    f"dd if=/dev/zero of={p} bs=1M count={size // (1 << 20) + 1} 2>/dev/null; true",
                    timeout_s=300,
                )
    except Exception:
        heal()
        raise
    avail = {n: _avail(c, n, c.data_dir(n)) for n in targets}
    return Active(ctx.id, spec, targets, "fallocate", {"avail_bytes": avail}, heal)


def _newest(c: ClusterControl, node: str, which: str) -> str | None:
    sub, pat = ("wal", "*.wal") if which == "wal" else ("snap", "*.snap")
    d = f"{c.data_dir(node)}/{sub}"
    out = c.run(node, f"ls -1 {d}/{pat} 2>/dev/null | sort | tail -1", check=False).stdout
    return out.strip() or None


CORRUPT_SCRIPT = (
    "import os,sys\n"
    "p,mode,off,n=sys.argv[1],sys.argv[2],int(sys.argv[3]),int(sys.argv[4])\n"
    "if mode=='truncate':\n"
    "    os.truncate(p,max(0,os.path.getsize(p)-n))\n"
    "else:\n"
    "    with open(p,'r+b') as f:\n"
    "        for i in range(n):\n"
    "            f.seek(off+i); b=f.read(1); f.seek(off+i); f.write(bytes([b[0]^0x10]))\n"
)


def _start_report(
    c: ClusterControl, node: str, events: str, after: int, timeout_s: float = 15.0
) -> dict[str, Any] | None:
    """The ``recovery`` report of the node's first start event after line ``after`` of its
    events.jsonl (None when the process is gone or never logged its start)."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = c.run(node, f"tail -n +{after + 1} {events} 2>/dev/null", check=False).stdout
        for line in out.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("ev") == "start":
                rec = ev.get("recovery")
                return rec if isinstance(rec, dict) else {}
        if c.pid(node) is None:
            time.sleep(0.5)
            if c.pid(node) is None:
                return None
        time.sleep(0.2)
    return None


@starter("disk-corrupt")
def _disk_corrupt(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Jepsen's file-corruption nemesis: with a minority down (SIGKILL), flip bits in or cut
    the end of its newest WAL segment or snapshot, restart it, and record whether the node
    refused to start or came back (repaired, or the damage was tolerated)."""
    import shlex

    c = ctx.control
    n_all = len(c.nodes())
    if len(targets) > (n_all - 1) // 2:
        raise NotSupportedError(
            f"disk-corrupt: {len(targets)} of {n_all} nodes is not a minority; corrupting a "
            "majority may lose acknowledged writes by design (target: minority or one node)"
        )
    which, mode, nbytes = spec.params["file"], spec.params["mode"], int(spec.params["bytes"])
    for n in targets:
        c.kill(n)
    damaged: dict[str, dict[str, Any]] = {}
    for n in targets:
        path = _newest(c, n, str(which))
        if path is None:
            damaged[n] = {"file": None, "why": f"no {which} file in {c.data_dir(n)}"}
            continue
        size = int(c.run(n, f"stat -c %s {shlex.quote(path)}").stdout.strip())
        count = max(1, min(nbytes, size))
        # Within the last 4 KiB, where the newest records are (a torn or rotted tail).
        lo = max(0, size - 4096)
        off = ctx.rng.randrange(lo, max(lo + 1, size - count + 1))
        c.run(
            n,
            f"python3 -c {shlex.quote(CORRUPT_SCRIPT)} {shlex.quote(path)} {mode} {off} {count}",
        )
        damaged[n] = {
            "file": path,
            "size": size,
            "offset": off if mode == "bitflip" else None,
            "bytes": count,
        }

    def heal() -> Observation:
        outcome: dict[str, str] = {}
        recovery: dict[str, Any] = {}
        for n in targets:
            events = f"{c.log_dir(n)}/events.jsonl"
            seen = c.run(n, f"cat {events} 2>/dev/null | wc -l", check=False).stdout.strip()
            if c.pid(n) is None:
                try:
                    c.start(n)
                except Exception as exc:
                    outcome[n] = f"refused: {str(exc)[-300:]}"
                    continue
            rec = _start_report(c, n, events, int(seen or 0))
            if c.pid(n) is None or rec is None:
                outcome[n] = "refused (exited after start)"
                continue
            recovery[n] = rec
            repaired = rec.get("torn_tail") or rec.get("removed_files") or rec.get("repaired")
            outcome[n] = "repaired" if repaired else "started (damage not seen)"
        return {"outcome": outcome, "recovery": recovery}

    return Active(
        ctx.id,
        spec,
        targets,
        f"{mode} {which}",
        {"down": {n: c.pid(n) is None for n in targets}},
        heal,
        detail={"damaged": damaged},
    )


FSYNC_ENV = "RAFTLAB_NEMESIS_FSYNC"
#: Imported by the node's Python at start (``PYTHONPATH`` points at its directory): wraps
#: ``os.fsync``/``os.fdatasync`` so that a share of the calls sleeps or fails with EIO, and
#: counts the calls it affected (one byte each) in a file the nemesis reads.
FSYNC_SHIM = '''"""raftlab nemesis: slow or failing fsync for this process (see docs/nemesis.md)."""
import errno
import os
import random
import time

_mode, _ms, _p, _after, _count = os.environ.get(
    "RAFTLAB_NEMESIS_FSYNC", "slow:0:0:0:"
).split(":", 4)
_t0 = time.monotonic()


def _wrap(real):
    def call(fd):
        if time.monotonic() - _t0 >= float(_after) and random.random() < float(_p):
            if _count:
                with open(_count, "ab") as f:
                    f.write(b"x")
            if _mode == "fail":
                raise OSError(errno.EIO, "fsync failed (raftlab nemesis disk-fsync)")
            time.sleep(float(_ms) / 1000.0)
        return real(fd)

    return call


os.fsync = _wrap(os.fsync)
os.fdatasync = _wrap(os.fdatasync)
'''


def fsync_shim_dir(c: ClusterControl, node: str) -> str:
    return f"{c.state_dir(node)}/fsync-shim"


@starter("disk-fsync")
def _disk_fsync(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Restart each target with a ``sitecustomize`` that slows (``delay_ms``) or fails (EIO)
    a share of its fsync/fdatasync calls from ``after_s`` after its start (so that it first
    opens its storage); heal restarts it without. It acts on the node's
    own calls (the kernel's fsync is untouched), which is what the node can observe."""
    import shlex
    import tempfile
    from pathlib import Path

    c = ctx.control
    mode, ms = spec.params["mode"], float(spec.params["delay_ms"])
    p, after = float(spec.params["probability"]), float(spec.params["after_s"])
    counts = {n: f"{fsync_shim_dir(c, n)}/affected" for n in targets}
    restarted: list[str] = []

    def affected(n: str) -> int:
        out = c.run(n, f"stat -c %s {shlex.quote(counts[n])} 2>/dev/null || echo 0").stdout
        return int(out.strip() or 0)

    def heal() -> Observation:
        seen = {n: affected(n) for n in restarted}
        for n in restarted:
            c.stop(n)
            c.start(n)
        for n in targets:
            c.run(n, f"rm -rf {shlex.quote(fsync_shim_dir(c, n))}")
        return {"calls_affected": seen}

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "sitecustomize.py"
        local.write_text(FSYNC_SHIM, encoding="utf-8")
        try:
            for n in targets:
                d = fsync_shim_dir(c, n)
                c.run(n, f"mkdir -p {shlex.quote(d)} && chmod 0755 {shlex.quote(d)}")
                c.upload(n, local, f"{d}/sitecustomize.py")
                c.run(n, f": > {shlex.quote(counts[n])}")
                path = ":".join(x for x in (d, c.environ(n).get("PYTHONPATH")) if x)
                c.stop(n)
                restarted.append(n)
                shim = f"{mode}:{ms:g}:{p:g}:{after:g}:{counts[n]}"
                c.start(n, {"PYTHONPATH": path, FSYNC_ENV: shim})
        except Exception:
            heal()
            raise
    shimmed = {n: FSYNC_ENV in c.environ(n) for n in targets}
    return Active(ctx.id, spec, targets, "python sitecustomize shim", {"shimmed": shimmed}, heal)


# -- membership ------------------------------------------------------------------------------


@starter("membership")
def _membership(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    """Remove the targets from the configuration, stop and (``wipe``) wipe them; heal starts
    them with ``--join`` and adds them back until the voters are the original ones
    (deploy/nemesis/membership.py)."""
    from deploy.nemesis import membership as m

    c = ctx.control
    timeout = float(spec.params["timeout_s"])
    admin = m.MemberAdmin.for_control(c)
    addrs = m.node_addrs(c)
    ids = {a.id: n for n, a in addrs.items()}
    t0 = time.monotonic()
    try:
        before = m.wait_configuration(
            admin, lambda _c: True, "configuration", time.monotonic() + timeout
        )
    except m.MembershipError as exc:
        raise NotSupportedError(f"membership: {exc}") from None
    target_ids = [addrs[t].id for t in targets]
    steps = m.plan_break(
        before, target_ids, wipe=bool(spec.params["wipe"]), transfer=bool(spec.params["transfer"])
    )
    original = before.voters
    done: list[str] = []

    def heal() -> Observation:
        h0 = time.monotonic()
        try:
            conf: m.Configuration | None = admin.configuration()
        except m.MembershipError:
            conf = None
        heal_done: list[str] = []
        seen = m.run_steps(c, admin, m.plan_heal(original, conf), ids, timeout, heal_done)
        return {
            "steps": heal_done,
            "voters": seen.get("voters"),
            "restored": set(original) <= set(seen.get("voters") or ()),
            "seconds": round(time.monotonic() - h0, 2),
        }

    try:
        seen = m.run_steps(c, admin, steps, ids, timeout, done)
    except Exception as exc:
        try:  # put back what was taken out; the error that stopped the break is the one told
            heal()
        except Exception as heal_exc:
            raise m.MembershipError(f"{exc} (and healing failed: {heal_exc})") from exc
        raise
    observed = {
        "voters_before": list(original),
        "leader_before": before.leader,
        "steps": done,
        "seconds": round(time.monotonic() - t0, 2),
        **seen,
    }
    return Active(ctx.id, spec, targets, "raft member remove/add (--join)", observed, heal)
