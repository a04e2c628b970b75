"""The fault catalogue: for each kind, how to break, how to heal, how to see it took effect.

A fault starts with :func:`start_fault`, which returns an :class:`Active` holding the targets,
the mechanism used, what was observed, and a ``heal`` function that undoes exactly that
occurrence (and returns what it observed). Everything runs in threads (blocking SSH or
subprocess calls); :class:`deploy.nemesis.runner.Nemesis` schedules them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deploy.nemesis.control import ClusterControl, NotSupportedError
from deploy.nemesis.spec import NETWORK_KINDS, FaultSpec

Observation = dict[str, Any]


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


# -- process faults --------------------------------------------------------------------------


def _wait_gone(control: ClusterControl, node: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if control.pid(node) is None:
            return True
        time.sleep(0.1)
    return False


def _start_all(control: ClusterControl, nodes: list[str]) -> Observation:
    pids = {}
    for n in nodes:
        control.start(n)
        pids[n] = control.pid(n)
    return {"pids": pids, "running": all(p is not None for p in pids.values())}


@starter("kill")
def _kill(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control
    before = {n: c.pid(n) for n in targets}
    for n in targets:
        c.kill(n)
    gone = {n: _wait_gone(c, n) for n in targets}
    return Active(
        ctx.id,
        spec,
        targets,
        _process_mechanism(c, targets, "SIGKILL"),
        {"pids": before, "gone": gone},
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
    pids = {n: c.signal(n, "STOP") for n in targets}
    states = {n: _proc_state(c, n, p) if p else "-" for n, p in pids.items()}

    def heal() -> Observation:
        out: Observation = {}
        for n in targets:
            p = c.signal(n, "CONT")
            out[n] = _proc_state(c, n, p) if p else "-"
        return {"states": out}

    return Active(
        ctx.id,
        spec,
        targets,
        _process_mechanism(c, targets, "SIGSTOP"),
        {"pids": pids, "states": states},
        heal,
    )


@starter("restart")
def _restart(ctx: FaultContext, spec: FaultSpec, targets: list[str]) -> Active:
    c = ctx.control
    before = {n: c.pid(n) for n in targets}
    for n in targets:
        c.stop(n)
    return Active(
        ctx.id,
        spec,
        targets,
        "graceful stop (SIGTERM), start",
        {"pids": before, "gone": {n: c.pid(n) is None for n in targets}},
        lambda: _start_all(c, targets),
    )
