"""What a fault is, declaratively: :class:`FaultSpec`, parsed from a dict by :func:`parse_fault`.

A schedule is a list of specs. Each names a fault kind from :data:`FAULT_KINDS`, which nodes
it hits (:class:`Target`), kind-specific parameters, when it first starts (``start_s`` after
the run starts), how long each occurrence lasts (``duration_s``) and, optionally, how often
it comes back (``interval_s``, at most ``count`` times). Bad input is refused with an error
naming the field and the allowed values, so an experiment file fails before any fault fires.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from deploy.errors import LabError


class FaultSpecError(LabError):
    """A fault description is invalid; the message names the field and what is allowed."""


class TargetKind(StrEnum):
    """How a fault chooses its nodes when it starts."""

    RANDOM = "random"  # one node, chosen with the nemesis's seeded rng
    LEADER = "leader"  # the node that leads when the fault starts
    MINORITY = "minority"  # floor((n-1)/2) random nodes (at least one)
    MAJORITY = "majority"  # floor(n/2)+1 random nodes
    ALL = "all"
    NODES = "nodes"  # named nodes: ``nodes:n1,n2`` or ``{"nodes": [...]}``


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    nodes: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind is TargetKind.NODES:
            return "nodes:" + ",".join(self.nodes)
        return self.kind.value


class PartitionMode(StrEnum):
    """The partition shapes of Jepsen's combined nemesis."""

    ISOLATE = "isolate"  # the targets cannot talk to anyone (target=leader: isolate leader)
    HALVES = "halves"  # a random split into a minority and a majority
    RING = "ring"  # each node sees a majority, no two nodes see the same majority
    BRIDGE = "bridge"  # two halves that only one bridge node joins
    ONE_WAY = "one-way"  # the targets do not hear the others; the others still hear them
    GROUPS = "groups"  # params.groups: [[n1, n2], [n3], ...]


class ClockMode(StrEnum):
    STEP = "step"  # the wall clock jumps by offset_s for the fault's duration
    STROBE = "strobe"  # the wall clock flips between 0 and offset_s every period_s


class FsyncMode(StrEnum):
    SLOW = "slow"  # each affected fsync/fdatasync sleeps delay_ms first
    FAIL = "fail"  # each affected call raises EIO


class CorruptMode(StrEnum):
    BITFLIP = "bitflip"
    TRUNCATE = "truncate"


class CorruptFile(StrEnum):
    WAL = "wal"
    SNAPSHOT = "snapshot"


class Mechanism(StrEnum):
    """How packet faults are made; ``auto`` probes for ``tc netem`` once per host."""

    AUTO = "auto"
    NETEM = "netem"
    FALLBACK = "fallback"


# Allowed parameters per kind: name -> (type, default). Types: float, int, bool, or an Enum.
_P = dict[str, tuple[Any, Any]]
_PARAMS: dict[str, _P] = {
    "kill": {},
    "pause": {},
    "restart": {},
    "partition": {"mode": (PartitionMode, PartitionMode.ISOLATE), "groups": (list, None)},
    "loss": {"probability": (float, 0.2), "mechanism": (Mechanism, Mechanism.AUTO)},
    "duplicate": {"probability": (float, 0.2), "mechanism": (Mechanism, Mechanism.AUTO)},
    "delay": {
        "delay_ms": (float, 50.0),
        "jitter_ms": (float, 0.0),
        "mechanism": (Mechanism, Mechanism.AUTO),
    },
    "reorder": {
        "probability": (float, 0.25),
        "delay_ms": (float, 20.0),
        "mechanism": (Mechanism, Mechanism.AUTO),
    },
    "rate": {"kbit": (int, 1000), "mechanism": (Mechanism, Mechanism.AUTO)},
    "clock": {
        "mode": (ClockMode, ClockMode.STEP),
        "offset_s": (float, 30.0),
        "period_s": (float, 1.0),
        "monotonic": (bool, False),
    },
    "disk-fill": {"leave_bytes": (int, 0)},
    "disk-fsync": {
        "mode": (FsyncMode, FsyncMode.SLOW),
        "delay_ms": (float, 200.0),
        "probability": (float, 1.0),
        "after_s": (float, 3.0),
    },
    "disk-corrupt": {
        "file": (CorruptFile, CorruptFile.WAL),
        "mode": (CorruptMode, CorruptMode.BITFLIP),
        "bytes": (int, 1),
    },
    # Remove the targets from the configuration, stop (and wipe) them; heal starts them with
    # ``raft serve --join`` and adds them back (deploy/nemesis/membership.py).
    "membership": {
        "wipe": (bool, True),
        "transfer": (bool, False),
        "timeout_s": (float, 60.0),
    },
}

#: The fault catalogue (docs/nemesis.md).
FAULT_KINDS: tuple[str, ...] = tuple(_PARAMS)
#: Faults that need a network namespace or host of each node's own (not a ``raft cluster up``).
NETWORK_KINDS = frozenset({"partition", "loss", "duplicate", "delay", "reorder", "rate"})
#: Kinds known but not available yet, with the reason.
_NOT_YET: dict[str, str] = {}
#: Targets a membership fault may have: it removes its targets from the configuration, so the
#: rest must keep a majority of the original members (one node, or a minority).
MEMBERSHIP_TARGETS = frozenset(
    {TargetKind.RANDOM, TargetKind.LEADER, TargetKind.MINORITY, TargetKind.NODES}
)

_FIELDS = ("kind", "target", "params", "start_s", "duration_s", "interval_s", "count")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault of a schedule (see the module docstring). ``params`` holds every parameter
    of the kind with defaults filled in (enum values as their strings)."""

    kind: str
    target: Target = Target(TargetKind.RANDOM)
    params: Mapping[str, Any] = field(default_factory=dict)
    start_s: float = 0.0
    duration_s: float = 5.0
    interval_s: float | None = None
    count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": str(self.target),
            "params": dict(self.params),
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "count": self.count,
        }


def _allowed(values: Sequence[str]) -> str:
    return ", ".join(values)


def parse_target(raw: Any, where: str = "target") -> Target:
    """``random|leader|minority|majority|all``, ``nodes:n1,n2``, ``{"nodes": [...]}`` or a
    list of node names."""
    names = [k.value for k in TargetKind if k is not TargetKind.NODES]
    if isinstance(raw, list):
        raw = {"nodes": raw}
    if isinstance(raw, Mapping):
        if set(raw) != {"nodes"}:
            raise FaultSpecError(f"{where}: a mapping must be {{nodes: [names]}}, got {dict(raw)}")
        nodes = raw["nodes"]
        if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
            raise FaultSpecError(f"{where}.nodes: a non-empty list of node names, got {nodes!r}")
        return Target(TargetKind.NODES, tuple(nodes))
    if not isinstance(raw, str):
        raise FaultSpecError(
            f"{where}: {raw!r} is not a target; allowed: {_allowed(names)}, nodes:NAME[,NAME...]"
        )
    if raw.startswith("nodes:"):
        nodes_t = tuple(n.strip() for n in raw[len("nodes:") :].split(",") if n.strip())
        if not nodes_t:
            raise FaultSpecError(f"{where}: {raw!r} names no node (nodes:n1,n2)")
        return Target(TargetKind.NODES, nodes_t)
    try:
        kind = TargetKind(raw)
    except ValueError:
        raise FaultSpecError(
            f"{where}: {raw!r} is not a target; allowed: {_allowed(names)}, nodes:NAME[,NAME...]"
        ) from None
    if kind is TargetKind.NODES:
        raise FaultSpecError(f"{where}: write nodes:NAME[,NAME...]")
    return Target(kind)


def _number(raw: Any, where: str, *, minimum: float = 0.0, integer: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise FaultSpecError(f"{where}: {raw!r} is not a number")
    if not math.isfinite(raw) or raw < minimum:
        raise FaultSpecError(f"{where}: {raw!r} must be a finite number >= {minimum:g}")
    if integer and int(raw) != raw:
        raise FaultSpecError(f"{where}: {raw!r} must be a whole number")
    return float(raw)


def _param(kind: str, name: str, typ: Any, raw: Any) -> Any:
    where = f"params.{name}"
    if isinstance(typ, type) and issubclass(typ, Enum):
        allowed = [m.value for m in typ]
        if raw not in allowed:
            raise FaultSpecError(f"{where}: {raw!r} is not allowed; allowed: {_allowed(allowed)}")
        return raw
    if typ is bool:
        if not isinstance(raw, bool):
            raise FaultSpecError(f"{where}: {raw!r} must be true or false")
        return raw
    if typ is list:
        if not isinstance(raw, list):
            raise FaultSpecError(f"{where}: {raw!r} must be a list")
        return raw
    if typ is int:
        return int(_number(raw, where, integer=True))
    value = _number(raw, where, minimum=-math.inf if name == "offset_s" else 0.0)
    if name == "probability" and not 0.0 < value <= 1.0:
        raise FaultSpecError(f"{where}: {raw!r} must be in (0, 1]")
    if name == "period_s" and value <= 0:
        raise FaultSpecError(f"{where}: {raw!r} must be > 0")
    return value


def _check_params(kind: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise FaultSpecError(f"params: must be a mapping, got {raw!r}")
    allowed = _PARAMS[kind]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        names = _allowed(sorted(allowed)) if allowed else "(none)"
        raise FaultSpecError(f"params: unknown {', '.join(unknown)} for {kind}; allowed: {names}")
    out: dict[str, Any] = {}
    for name, (typ, default) in allowed.items():
        value = _param(kind, name, typ, raw[name]) if name in raw else default
        out[name] = value.value if isinstance(value, Enum) else value
    if kind == "partition":
        _check_groups(out)
    if kind == "rate" and out["kbit"] < 8:
        raise FaultSpecError(f"params.kbit: {out['kbit']} must be at least 8")
    if kind == "membership" and out["timeout_s"] < 1.0:
        raise FaultSpecError(f"params.timeout_s: {out['timeout_s']:g} must be at least 1")
    if kind == "clock" and out["monotonic"] and out["mode"] == ClockMode.STROBE.value:
        raise FaultSpecError(
            "params.monotonic: a strobed monotonic clock would run backwards; "
            "only mode: step may fake the monotonic clock"
        )
    return out


def _check_groups(p: dict[str, Any]) -> None:
    groups = p["groups"]
    if p["mode"] != PartitionMode.GROUPS.value:
        if groups is not None:
            raise FaultSpecError("params.groups: only with mode: groups")
        return
    if (
        not isinstance(groups, list)
        or len(groups) < 2
        or not all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups)
    ):
        raise FaultSpecError(
            "params.groups: mode groups needs at least two non-empty lists of node names, "
            "e.g. [[n1, n2], [n3]]"
        )
    seen = [n for g in groups for n in g]
    if len(seen) != len(set(seen)):
        raise FaultSpecError(f"params.groups: a node is in two groups: {groups}")


def parse_fault(raw: Mapping[str, Any]) -> FaultSpec:
    """A :class:`FaultSpec` from a dict (one entry of an experiment's nemesis schedule)."""
    if not isinstance(raw, Mapping):
        raise FaultSpecError(f"a fault must be a mapping with {_allowed(_FIELDS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise FaultSpecError(f"unknown field(s) {', '.join(unknown)}; allowed: {_allowed(_FIELDS)}")
    kind = raw.get("kind")
    if kind in _NOT_YET:
        raise FaultSpecError(f"kind: {kind}: {_NOT_YET[kind]}")
    if kind not in _PARAMS:
        raise FaultSpecError(f"kind: {kind!r} is not a fault; allowed: {_allowed(FAULT_KINDS)}")
    target = parse_target(raw.get("target", "random"))
    if kind == "membership" and target.kind not in MEMBERSHIP_TARGETS:
        allowed = _allowed(sorted(k.value for k in MEMBERSHIP_TARGETS))
        raise FaultSpecError(
            f"target: membership cannot remove {target.kind.value} nodes (the rest must keep "
            f"the cluster going); allowed: {allowed}"
        )
    params = _check_params(kind, raw.get("params"))
    start = _number(raw.get("start_s", 0.0), "start_s")
    duration = _number(raw.get("duration_s", 5.0), "duration_s")
    interval = raw.get("interval_s")
    interval_s = None if interval is None else _number(interval, "interval_s")
    if interval_s is not None and interval_s <= duration:
        raise FaultSpecError(
            f"interval_s: {interval_s:g} must be longer than duration_s ({duration:g}): "
            "one occurrence heals before the next starts"
        )
    count_raw = raw.get("count")
    count = None if count_raw is None else int(_number(count_raw, "count", integer=True))
    if count is not None and count < 1:
        raise FaultSpecError(f"count: {count} must be at least 1")
    return FaultSpec(kind, target, params, start, duration, interval_s, count)


def parse_schedule(raw: Any) -> list[FaultSpec]:
    """A list of faults; an error names the entry (``nemesis[2].params.probability: ...``)."""
    if not isinstance(raw, list):
        raise FaultSpecError(f"the nemesis schedule must be a list of faults, got {raw!r}")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(parse_fault(item))
        except FaultSpecError as exc:
            raise FaultSpecError(f"nemesis[{i}].{exc}") from None
    return out


def select_targets(
    target: Target, nodes: Sequence[str], leader: str | None, rng: random.Random
) -> list[str]:
    """The nodes a fault hits now. Raises :class:`FaultSpecError` for an unknown node name;
    returns [] for ``leader`` when no leader is known (the caller skips that occurrence)."""
    ordered = sorted(nodes)
    n = len(ordered)
    if target.kind is TargetKind.NODES:
        unknown = [x for x in target.nodes if x not in ordered]
        if unknown:
            raise FaultSpecError(
                f"target: unknown node(s) {', '.join(unknown)}; the cluster has {_allowed(ordered)}"
            )
        return list(target.nodes)
    if target.kind is TargetKind.ALL:
        return ordered
    if target.kind is TargetKind.LEADER:
        return [leader] if leader is not None else []
    if target.kind is TargetKind.RANDOM:
        return [rng.choice(ordered)] if ordered else []
    size = max(1, (n - 1) // 2) if target.kind is TargetKind.MINORITY else n // 2 + 1
    return sorted(rng.sample(ordered, min(size, n)))
