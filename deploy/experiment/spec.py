"""Experiment specs: one YAML file says what to run (docs/experiments.md).

An experiment is data, as in Jepsen: where (cluster), what the clients do (workload), which
faults when (nemesis schedule), how it is judged (checkers), how long the cluster gets to
recover, and the seed that makes the schedule repeatable. The same spec runs on a testbed
(``raftlab run``), on a ``raft cluster up`` cluster, and in the simulator (``raftlab sim
SPEC``).

Loading is strict: unknown fields, wrong types and out-of-range values are refused with a
:class:`SpecError` naming the field (``workload.clients``, ``nemesis[2].kind``) and what is
allowed, so a typo never silently becomes a default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import LabError

__all__ = [
    "CHECKERS",
    "FAULT_KINDS",
    "TARGETS",
    "ClusterSpec",
    "ExperimentSpec",
    "FaultEntry",
    "Model",
    "SpecError",
    "WorkloadPlan",
    "load_spec",
    "parse_spec",
]

FAULT_KINDS: tuple[str, ...] = (
    "kill",
    "pause",
    "restart",
    "partition",
    "loss",
    "duplicate",
    "delay",
    "reorder",
    "rate",
    "clock",
    "disk-fill",
    "disk-corrupt",
    "disk-fsync",
    "membership",
)
"""Fault kinds a spec may name when the nemesis catalogue (``deploy.nemesis.FAULT_KINDS``)
is not importable; when it is, it decides (and checks each kind's ``params``). The simulator
maps those that have a meaning there (``deploy.experiment.simrun``)."""

TARGETS: tuple[str, ...] = ("random", "leader", "minority", "majority", "all")
"""Target selectors; ``nodes:n1,n2`` or a list of node names is also accepted."""

CHECKERS: tuple[str, ...] = ("invariants", "linearizability")

SPEC_VERSION = 1


class SpecError(LabError):
    """A spec is not valid; the message names the file, the field and what is allowed."""


class Model(enum.Enum):
    """What the clients' operations mean, i.e. the linearizability model."""

    REGISTER = "register"
    CAS_REGISTER = "cas-register"
    KV = "kv"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Where the run goes. ``inventory``: an Ansible inventory directory (testbed or real
    hosts); ``local``: a ``raft cluster up`` directory. Both None: the command line says."""

    inventory: str | None = None
    local: str | None = None


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    """The clients. ``rate`` is the total operations per second over all clients; 0 means
    closed loop (each client invokes as soon as its last operation completed)."""

    model: Model = Model.KV
    clients: int = 5
    rate: float = 0.0
    keys: int = 3
    read_share: float = 0.4
    duration_s: float = 30.0
    op_timeout_s: float = 5.0
    values: int = 5


@dataclass(frozen=True, slots=True)
class FaultEntry:
    """One line of the nemesis schedule: fault ``kind`` on ``target``, first at ``start_s``
    (seconds into the workload), lasting ``duration_s``, again every ``interval_s`` (None:
    once) at most ``count`` times while the workload runs; ``params`` are the kind's own
    settings (loss ``probability``, ``delay_ms``, clock ``offset_s``...). ``raw`` is the
    entry as written, what the lab nemesis parses (``deploy.nemesis.parse_fault``)."""

    kind: str
    start_s: float = 0.0
    interval_s: float | None = None
    duration_s: float = 5.0
    target: str = "random"
    count: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def starts(self, until_s: float) -> list[float]:
        """Start times (seconds) before ``until_s``."""
        if self.start_s >= until_s:
            return []
        if self.interval_s is None or self.interval_s <= 0:
            return [self.start_s]
        out: list[float] = []
        t = self.start_s
        limit = self.count if self.count is not None else 10_000
        while t < until_s and len(out) < limit:
            out.append(t)
            t += self.interval_s
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "start_s": self.start_s,
            "interval_s": self.interval_s,
            "duration_s": self.duration_s,
            "count": self.count,
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    name: str
    workload: WorkloadPlan
    nemesis: tuple[FaultEntry, ...] = ()
    cluster: ClusterSpec = ClusterSpec()
    seed: int = 0
    checkers: tuple[str, ...] = CHECKERS
    recovery_s: float = 5.0
    description: str = ""
    source: str = ""
    """The file it was loaded from (for messages and results.json)."""
    raw: Mapping[str, Any] = field(default_factory=dict)
    """The document as written (recorded in results.json)."""

    @property
    def faults_requested(self) -> int:
        """Fault starts the schedule asks for within the workload's duration."""
        return sum(len(f.starts(self.workload.duration_s)) for f in self.nemesis)

    def with_seed(self, seed: int) -> ExperimentSpec:
        return ExperimentSpec(
            name=self.name,
            workload=self.workload,
            nemesis=self.nemesis,
            cluster=self.cluster,
            seed=seed,
            checkers=self.checkers,
            recovery_s=self.recovery_s,
            description=self.description,
            source=self.source,
            raw=self.raw,
        )

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {
            "v": SPEC_VERSION,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "seed": self.seed,
            "cluster": {"inventory": self.cluster.inventory, "local": self.cluster.local},
            "workload": {
                "model": w.model.value,
                "clients": w.clients,
                "rate": w.rate,
                "keys": w.keys,
                "read_share": w.read_share,
                "duration_s": w.duration_s,
                "op_timeout_s": w.op_timeout_s,
                "values": w.values,
            },
            "nemesis": [f.to_json() for f in self.nemesis],
            "checkers": list(self.checkers),
            "recovery_s": self.recovery_s,
        }


# -- validation ------------------------------------------------------------------------------


class _Fields:
    """Reads one mapping field by field, naming ``where.field`` in every error and refusing
    fields nobody read (typos)."""

    def __init__(self, doc: Any, where: str, source: str) -> None:
        self.where = where
        self.source = source
        if not isinstance(doc, Mapping):
            self.fail(where or "spec", f"must be a mapping, got {_kind(doc)}")
        self.doc: Mapping[str, Any] = doc
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, fld: str, msg: str) -> None:
        prefix = f"{self.source}: " if self.source else ""
        raise SpecError(f"{prefix}{fld}: {msg}")

    def get(self, key: str) -> Any:
        self.seen.add(key)
        return self.doc.get(key)

    def has(self, key: str) -> bool:
        return key in self.doc

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        v = self.get(key)
        if v is None:
            if required:
                self.fail(self.name(key), "is required (a string)")
            return default or ""
        if not isinstance(v, str) or not v.strip():
            self.fail(self.name(key), f"must be a non-empty string, got {_kind(v)}")
        return str(v)

    def number(
        self, key: str, default: float, lo: float, hi: float, *, integer: bool = False
    ) -> float:
        v = self.get(key)
        if v is None:
            return default
        kind = "an integer" if integer else "a number"
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (integer and isinstance(v, float))
        ):
            self.fail(self.name(key), f"must be {kind} in [{lo:g}, {hi:g}], got {_kind(v)}")
        if not lo <= v <= hi:
            self.fail(self.name(key), f"must be {kind} in [{lo:g}, {hi:g}], got {v}")
        return float(v)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        return int(self.number(key, default, lo, hi, integer=True))

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        v = self.get(key)
        if v is None:
            return default
        if v not in allowed:
            self.fail(self.name(key), f"must be one of {', '.join(allowed)}; got {v!r}")
        return str(v)

    def done(self) -> None:
        extra = sorted(str(k) for k in self.doc if k not in self.seen)
        if extra:
            self.fail(
                self.name(extra[0]),
                f"unknown field (allowed here: {', '.join(sorted(self.seen))})",
            )


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    return f"{type(v).__name__} {v!r}" if not isinstance(v, Mapping | list) else type(v).__name__


def _cluster(doc: Any, source: str) -> ClusterSpec:
    if doc is None:
        return ClusterSpec()
    if doc == "local":
        return ClusterSpec(local=".raftlab-cluster")
    if isinstance(doc, str):
        return ClusterSpec(inventory=doc)
    f = _Fields(doc, "cluster", source)
    inv = f.string("inventory") or None
    local = f.string("local") or None
    f.done()
    if inv and local:
        f.fail("cluster", "give either inventory or local, not both")
    return ClusterSpec(inventory=inv, local=local)


def _workload(doc: Any, source: str) -> WorkloadPlan:
    f = _Fields(doc if doc is not None else {}, "workload", source)
    model = f.choice("model", "kv", tuple(m.value for m in Model))
    plan = WorkloadPlan(
        model=Model(model),
        clients=f.integer("clients", 5, 1, 1000),
        rate=f.number("rate", 0.0, 0.0, 1_000_000.0),
        keys=f.integer("keys", 3, 1, 1_000_000),
        read_share=f.number("read_share", 0.4, 0.0, 1.0),
        duration_s=f.number("duration_s", 30.0, 0.1, 86_400.0),
        op_timeout_s=f.number("op_timeout_s", 5.0, 0.05, 600.0),
        values=f.integer("values", 5, 1, 1_000_000),
    )
    f.done()
    if plan.model is not Model.KV and f.has("keys") and plan.keys != 1:
        f.fail("workload.keys", f"only the kv model has keys; {plan.model.value} has one register")
    return plan


def _target(f: _Fields, key: str) -> str:
    v = f.get(key)
    if v is None:
        return "random"
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return "nodes:" + ",".join(v)
    if isinstance(v, str) and (v in TARGETS or (v.startswith("nodes:") and len(v) > 6)):
        return v
    f.fail(
        f.name(key),
        f"must be one of {', '.join(TARGETS)}, nodes:n1,n2 or a list of node names; got {v!r}",
    )
    return "random"


def _catalogue() -> tuple[tuple[str, ...], Any]:
    """The nemesis catalogue's kinds and its ``parse_fault`` when installed."""
    import importlib

    nem = importlib.import_module("deploy.nemesis")
    kinds, parse_fault = getattr(nem, "FAULT_KINDS", None), getattr(nem, "parse_fault", None)
    if kinds is None or parse_fault is None:
        return FAULT_KINDS, None
    return tuple(kinds), parse_fault


def _fault(doc: Any, where: str, source: str) -> FaultEntry:
    f = _Fields(doc, where, source)
    kinds, parse_fault = _catalogue()
    kind = f.get("kind")
    if kind not in kinds:
        f.fail(f.name("kind"), f"must be one of {', '.join(kinds)}; got {kind!r}")
    params = f.get("params")
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        f.fail(f.name("params"), "must be a mapping of parameter names to values")
    interval = f.number("interval_s", 0.0, 0.0, 86_400.0)
    count = f.integer("count", 0, 1, 1_000_000) if f.has("count") else None
    entry = FaultEntry(
        kind=str(kind),
        start_s=f.number("start_s", 0.0, 0.0, 86_400.0),
        interval_s=interval if f.has("interval_s") else None,
        duration_s=f.number("duration_s", 5.0, 0.0, 86_400.0),
        target=_target(f, "target"),
        count=count,
        params=dict(params),
        raw=dict(doc),
    )
    f.done()
    if entry.interval_s is not None and entry.interval_s <= entry.duration_s:
        f.fail(
            f.name("interval_s"),
            f"must be longer than duration_s ({entry.duration_s:g}) so one episode heals "
            "before the next starts (leave it out for a single episode)",
        )
    if parse_fault is not None:
        raw = dict(doc)
        if isinstance(raw.get("target"), list):
            raw["target"] = entry.target
        try:
            parsed = parse_fault(raw)
        except LabError as exc:
            f.fail(where, str(exc))
        return FaultEntry(
            kind=entry.kind,
            start_s=entry.start_s,
            interval_s=entry.interval_s,
            duration_s=entry.duration_s,
            target=entry.target,
            count=entry.count,
            params=dict(parsed.params),
            raw=raw,
        )
    return entry


def parse_spec(doc: Any, source: str = "") -> ExperimentSpec:
    """Validate a loaded YAML document; raises :class:`SpecError`."""
    f = _Fields(doc, "", source)
    name = f.string("name", required=True)
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        f.fail(
            "name",
            f"may hold letters, digits, '-', '_' and '.' only (a directory name); got {name!r}",
        )
    schedule = f.get("nemesis")
    if schedule is None:
        schedule = []
    if not isinstance(schedule, list):
        f.fail("nemesis", "must be a list of faults (each with kind, start_s, ...)")
    checkers = f.get("checkers")
    if checkers is None:
        checkers = list(CHECKERS)
    if not isinstance(checkers, list) or not checkers or any(c not in CHECKERS for c in checkers):
        f.fail("checkers", f"must be a non-empty list of {', '.join(CHECKERS)}; got {checkers!r}")
    spec = ExperimentSpec(
        name=name,
        description=f.string("description"),
        cluster=_cluster(f.get("cluster"), source),
        workload=_workload(f.get("workload"), source),
        nemesis=tuple(_fault(x, f"nemesis[{i}]", source) for i, x in enumerate(schedule)),
        seed=f.integer("seed", 0, 0, 2**63 - 1),
        checkers=tuple(dict.fromkeys(str(c) for c in checkers)),
        recovery_s=f.number("recovery_s", 5.0, 0.0, 3600.0),
        source=source,
        raw=dict(doc),
    )
    f.done()
    for i, fe in enumerate(spec.nemesis):
        if fe.start_s >= spec.workload.duration_s:
            f.fail(
                f"nemesis[{i}].start_s",
                f"{fe.start_s:g} is not before the end of the workload "
                f"(workload.duration_s {spec.workload.duration_s:g}): it would never fire",
            )
    return spec


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate ``path`` (YAML, safe loader only)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the spec ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    return parse_spec(doc, str(p))
