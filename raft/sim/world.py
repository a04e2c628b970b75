"""The simulated world: N real :class:`raft.core.RawNode` instances driven exactly like the
runtime drives them, under a seeded, hostile network, disk and clock.

One ``random.Random(seed)`` decides everything (latencies, losses, faults, client operations,
each node's election jitter via a generator derived from it), and events with equal times are
ordered by insertion, so a seed replays bit for bit (also across processes: nothing iterates
a hash-ordered set).

Virtual time is an integer count of units, :data:`SUBTICKS` per tick. Each node ticks every
``SUBTICKS`` units (another period while its clock is skewed). A run lasts
``SimConfig.steps`` ticks: a chaos phase in which the nemesis starts and stops faults, then,
``liveness_bound_ticks`` plus a margin before the end, every fault heals and the liveness
monitor expects a leader and a committed proposal within the bound.

With crash faults on, the world also aims crashes where Raft is fragile (right after a node
grants a vote, wins an election or appends as leader), and a :data:`Script` can drive a
targeted scenario (the tests replay the paper's Figure 8 this way).

Driving a node (same order as the runtime, ``Ready``'s docstring): send ``messages``; persist
the snapshot, entries and hard state to the node's :class:`SimDisk`, fsync when
``must_sync``; only then send ``persisted_messages``; apply ``committed_entries`` to the real
state machine (:mod:`raft.machines`); serve read states; ``advance``.
"""

from __future__ import annotations

import enum
import heapq
import random
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raft.core import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Config,
    ConfState,
    EntryType,
    Message,
    MessageType,
    NodeId,
    RawNode,
    Ready,
    Role,
    decode_conf_change,
)
from raft.core.confchange import apply_conf_change
from raft.core.errors import (
    CompactedError,
    ConfChangeError,
    NotLeaderError,
    ProposalDroppedError,
    UnavailableError,
)
from raft.core.readonly import ReadOnlyOption
from raft.machines import KV, Register, StateMachine, codec
from raft.sim.clients import ClientPool, Workload
from raft.sim.conformance import Conformance
from raft.sim.disk import SimDisk
from raft.sim.events import WorldObserver
from raft.sim.faults import (
    ALL_FAULTS,
    FaultKind,
    Nemesis,
    NemesisTiming,
    format_faults,
    parse_faults,
)
from raft.sim.invariants import Invariant, LivenessMonitor, SafetyChecker, Violation
from raft.sim.network import Network

SUBTICKS = 100
"""World time units per tick."""
NS_PER_UNIT = 100_000
"""Virtual nanoseconds per unit in client histories (a tick is 10 ms)."""
NODES_MIN = 3
NODES_MAX = 7
TRACE_TAIL = 40
"""Trace lines kept for a violation report when the full trace is off."""
BACKLOG_MAX = 2000
"""Messages queued for a paused node; more are lost (a full socket buffer)."""

_EV_TICK = 0
_EV_MSG = 1
_EV_CLIENT = 2
_EV_NEMESIS = 3
_EV_HEAL = 4
_EV_LIVENESS = 5
_EV_SNAP_REPORT = 6
_EV_CRASH = 7
_EV_RESTART = 8
_EV_SCRIPT = 9
_EV_DECOMMISSION = 10
_EV_CONN_LOST = 11

CRASH_AFTER_VOTE_P = 0.4
"""With crash faults on, chance that a node that just granted a vote crashes right after
(FoundationDB-style "buggify": aim faults where the protocol is fragile)."""
CRASH_AFTER_ELECTED_P = 0.15
"""With crash faults on, chance that a node crashes right after winning an election."""
CRASH_AFTER_LEADER_APPEND_P = 0.01
"""With crash faults on, chance that a leader crashes right after persisting new entries."""
CRASH_IN_JOINT_P = 0.3
"""With crash faults on, chance that a node that just entered a joint configuration crashes
right after (membership changes aimed at their weak moment)."""
PARTITION_IN_JOINT_P = 0.3
"""With partition faults on, chance that the leader is cut off with a minority right after it
enters a joint configuration."""
LATE_HOLD_ELECTIONS = (2, 15)
"""A late message is held for this many election timeouts (uniform)."""
STALE_RING = 256
"""Messages remembered for stale replays (the ``late`` fault re-delivers a few of them)."""
INFLATION_MAX = (2, 3)
"""Term rises allowed in the stable window after heal, with and without pre-vote."""


class ReadMode(enum.Enum):
    """How the leader confirms a read (``Config.read_only``)."""

    INDEX = "index"  # ReadIndex with a heartbeat round (safe whatever the clocks do)
    LEASE = "lease"  # the check-quorum lease, no round (safe only with bounded clock drift)


class Drift(enum.Enum):
    """Clock skew on seeds that use lease reads."""

    BOUNDED = "bounded"  # within the bound the lease assumes: lease reads must stay correct
    BEYOND = "beyond"  # far beyond it, lease reads forced on: violations are expected


class SimConfigError(ValueError):
    """A simulator setting is out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated run. ``steps`` is the run's length in ticks of virtual time."""

    seed: int
    nodes: int = 5
    faults: frozenset[FaultKind] = ALL_FAULTS
    steps: int = 300
    trace: bool = False
    workload: Workload = Workload.REGISTER
    clients: int = 3
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 1
    liveness_bound_ticks: int = 100
    """After healing, a leader and a committed proposal are due within this many ticks."""
    lincheck: bool = True
    """Check the client history with raft.lincheck at the end of the run."""
    lincheck_timeout_s: float = 10.0
    max_msg_bytes: int | None = None
    """Bytes of entries per AppendEntries; None lets the seed choose (1, 200 or 1 MiB)."""
    pre_vote: bool | None = None
    """None lets the seed choose (on for 3 seeds in 4)."""
    check_quorum: bool | None = None
    """None lets the seed choose (on for 3 seeds in 4)."""
    fault_gap_ticks: tuple[int, int] = (2, 25)
    """Ticks between two fault starts (uniform in the closed range)."""
    fault_duration_ticks: tuple[int, int] = (3, 50)
    """How long a fault lasts (uniform in the closed range)."""
    open_loop: bool | None = None
    """Clients issue requests whether or not earlier ones completed; None lets the seed
    choose (1 seed in 3)."""
    read_mode: ReadMode | None = None
    """None lets the seed choose: lease on half the check-quorum seeds, ReadIndex otherwise."""
    drift: Drift = Drift.BOUNDED
    buggify: bool = True
    """Per-seed random fault mix and weights (some kinds off, the rest weighted 1-8)."""
    snapshot_every: int | None = None
    """Applied entries between the driver's snapshots (0: never); None lets the seed choose,
    down to every entry (aggressive compaction)."""
    max_events: int = 2_000_000
    """Event budget: a seed that needs more is reported as a livelock."""
    max_wall_s: float = 300.0
    """Wall-clock budget of one seed: more is reported as a livelock."""

    def __post_init__(self) -> None:
        if not NODES_MIN <= self.nodes <= NODES_MAX:
            raise SimConfigError(f"nodes must be in {NODES_MIN}..{NODES_MAX}, got {self.nodes}")
        if self.seed < 0:
            raise SimConfigError(f"seed must be >= 0, got {self.seed}")
        if self.liveness_bound_ticks < 4 * self.election_timeout_ticks:
            raise SimConfigError(
                "liveness_bound_ticks must be at least 4 election timeouts, got "
                f"{self.liveness_bound_ticks}"
            )
        if self.steps < self.calm_ticks + 20:
            raise SimConfigError(
                f"steps must be at least {self.calm_ticks + 20} (liveness bound "
                f"{self.liveness_bound_ticks} + margin + some chaos), got {self.steps}"
            )
        for name in ("fault_gap_ticks", "fault_duration_ticks"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise SimConfigError(f"{name} must be a range 1 <= lo <= hi, got ({lo}, {hi})")
        if self.clients < 0:
            raise SimConfigError(f"clients must be >= 0, got {self.clients}")
        if self.max_events < 1000 or self.max_wall_s <= 0:
            raise SimConfigError(
                f"max_events must be >= 1000 and max_wall_s > 0, got {self.max_events}, "
                f"{self.max_wall_s}"
            )

    @property
    def calm_ticks(self) -> int:
        """Ticks at the end of the run with every fault healed."""
        return self.liveness_bound_ticks + 10

    def to_json(self) -> dict[str, Any]:
        """Plain values only (how the swarm hands a config to a worker process)."""
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "faults": format_faults(self.faults),
            "steps": self.steps,
            "trace": self.trace,
            "workload": self.workload.value,
            "clients": self.clients,
            "election_timeout_ticks": self.election_timeout_ticks,
            "heartbeat_ticks": self.heartbeat_ticks,
            "liveness_bound_ticks": self.liveness_bound_ticks,
            "lincheck": self.lincheck,
            "lincheck_timeout_s": self.lincheck_timeout_s,
            "max_msg_bytes": self.max_msg_bytes,
            "pre_vote": self.pre_vote,
            "check_quorum": self.check_quorum,
            "fault_gap_ticks": list(self.fault_gap_ticks),
            "fault_duration_ticks": list(self.fault_duration_ticks),
            "open_loop": self.open_loop,
            "read_mode": None if self.read_mode is None else self.read_mode.value,
            "drift": self.drift.value,
            "buggify": self.buggify,
            "snapshot_every": self.snapshot_every,
            "max_events": self.max_events,
            "max_wall_s": self.max_wall_s,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SimConfig:
        return cls(
            seed=int(obj["seed"]),
            nodes=int(obj["nodes"]),
            faults=parse_faults(str(obj["faults"])),
            steps=int(obj["steps"]),
            trace=bool(obj["trace"]),
            workload=Workload(obj["workload"]),
            clients=int(obj["clients"]),
            election_timeout_ticks=int(obj["election_timeout_ticks"]),
            heartbeat_ticks=int(obj["heartbeat_ticks"]),
            liveness_bound_ticks=int(obj["liveness_bound_ticks"]),
            lincheck=bool(obj["lincheck"]),
            lincheck_timeout_s=float(obj["lincheck_timeout_s"]),
            max_msg_bytes=None if obj["max_msg_bytes"] is None else int(obj["max_msg_bytes"]),
            pre_vote=None if obj["pre_vote"] is None else bool(obj["pre_vote"]),
            check_quorum=None if obj["check_quorum"] is None else bool(obj["check_quorum"]),
            fault_gap_ticks=(int(obj["fault_gap_ticks"][0]), int(obj["fault_gap_ticks"][1])),
            fault_duration_ticks=(
                int(obj["fault_duration_ticks"][0]),
                int(obj["fault_duration_ticks"][1]),
            ),
            open_loop=None if obj["open_loop"] is None else bool(obj["open_loop"]),
            read_mode=None if obj["read_mode"] is None else ReadMode(obj["read_mode"]),
            drift=Drift(obj["drift"]),
            buggify=bool(obj["buggify"]),
            snapshot_every=None if obj["snapshot_every"] is None else int(obj["snapshot_every"]),
            max_events=int(obj["max_events"]),
            max_wall_s=float(obj["max_wall_s"]),
        )

    def replay_command(self) -> str:
        """The command line that replays this run with a trace."""
        workload = (
            "" if self.workload is Workload.REGISTER else f" --workload {self.workload.value}"
        )
        extra = workload
        if self.clients != 3:
            extra += f" --clients {self.clients}"
        if self.drift is Drift.BEYOND:
            extra += " --lease-drift beyond"
        if not self.buggify:
            extra += " --no-buggify"
        return (
            f"raftlab sim --seed {self.seed} --nodes {self.nodes} "
            f"--faults {format_faults(self.faults)} --steps {self.steps}{extra} --trace"
        )


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a run did and whether it broke anything. JSON-ready via :meth:`to_json`."""

    seed: int
    steps: int
    events: int
    elections: int
    commits: int
    client_ops: int
    client_ok: int
    faults: int
    violation: Violation | None
    trace_tail: tuple[str, ...]
    trace: tuple[str, ...] = ()
    lincheck: str = "skipped"
    leader_after_heal_ticks: float | None = None
    commit_after_heal_ticks: float | None = None
    membership_changes: int = 0
    """Configuration changes applied (each joint step counts)."""
    late_messages: int = 0
    """Messages held for many election timeouts, plus stale replays."""
    snapshots_installed: int = 0

    @property
    def ok(self) -> bool:
        return self.violation is None

    def to_json(self) -> dict[str, Any]:
        v = self.violation
        return {
            "seed": self.seed,
            "steps": self.steps,
            "events": self.events,
            "elections": self.elections,
            "commits": self.commits,
            "client_ops": self.client_ops,
            "client_ok": self.client_ok,
            "faults": self.faults,
            "violation": None
            if v is None
            else {"invariant": v.invariant.value, "node": v.node, "detail": v.detail},
            "trace_tail": list(self.trace_tail),
            "trace": list(self.trace),
            "lincheck": self.lincheck,
            "leader_after_heal_ticks": self.leader_after_heal_ticks,
            "commit_after_heal_ticks": self.commit_after_heal_ticks,
            "membership_changes": self.membership_changes,
            "late_messages": self.late_messages,
            "snapshots_installed": self.snapshots_installed,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SimResult:
        v = obj["violation"]
        violation = (
            None
            if v is None
            else Violation(Invariant(v["invariant"]), str(v["node"]), str(v["detail"]))
        )
        return cls(
            seed=int(obj["seed"]),
            steps=int(obj["steps"]),
            events=int(obj["events"]),
            elections=int(obj["elections"]),
            commits=int(obj["commits"]),
            client_ops=int(obj["client_ops"]),
            client_ok=int(obj["client_ok"]),
            faults=int(obj["faults"]),
            violation=violation,
            trace_tail=tuple(obj["trace_tail"]),
            trace=tuple(obj["trace"]),
            lincheck=str(obj["lincheck"]),
            leader_after_heal_ticks=obj["leader_after_heal_ticks"],
            commit_after_heal_ticks=obj["commit_after_heal_ticks"],
            membership_changes=int(obj.get("membership_changes", 0)),
            late_messages=int(obj.get("late_messages", 0)),
            snapshots_installed=int(obj.get("snapshots_installed", 0)),
        )


@dataclass(slots=True)
class _Node:
    id: NodeId
    disk: SimDisk
    raw: RawNode | None = None
    machine: StateMachine = field(default_factory=Register)
    incarnation: int = 0
    paused: bool = False
    backlog: list[Message] = field(default_factory=list)
    period: int = SUBTICKS
    base_period: int = SUBTICKS
    """The node's normal tick period (another one with ``Drift.BEYOND``)."""
    term: int = 0
    role: Role = Role.FOLLOWER
    leader: NodeId = ""
    commit: int = 0
    applied: int = 0
    conf: ConfState = field(default_factory=ConfState)
    """The configuration as of ``applied`` (what the node's snapshots record)."""
    decommissioned: bool = False
    """Removed from the cluster and powered off (restarted only when re-added)."""
    keep_until: int = 0
    """A node being re-added stays up until then even while its addition is pending."""
    elected_term: int = 0
    """Term whose election the quorum check has judged."""
    checked_commit: tuple[int, int] = (0, 0)
    """(term, commit index) the leader's commit quorum check has judged."""


@dataclass(slots=True)
class _Probe:
    node: NodeId
    index: int
    term: int


DiskFactory = Callable[[], SimDisk]
ScriptAction = Callable[["World"], None]
Script = Sequence[tuple[float, ScriptAction]]
"""A targeted scenario: (time in ticks, action on the world), e.g. Figure 8 of the paper.
Actions use the world's public methods (crash, restart, campaign, propose, network, ...)."""
MessageFilter = Callable[[Message], bool]
_TICK = Message(type=MessageType.HUP)
"""Stands for a tick in the conformance check (a local input, term 0)."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _destination(m: Message) -> NodeId:
    return m.to


def _fmt_msg(m: Message) -> str:
    parts = [f"{m.sender}->{m.to} {m.type.value} t{m.term}"]
    if m.index or m.log_term:
        parts.append(f"i{m.index}/lt{m.log_term}")
    if m.entries:
        parts.append(f"ents[{m.entries[0].index}..{m.entries[-1].index}]")
    if m.commit:
        parts.append(f"c{m.commit}")
    if m.reject:
        parts.append(f"reject(hint {m.reject_hint})")
    if m.snapshot is not None:
        parts.append(f"snap@{m.snapshot.meta.index}")
    return " ".join(parts)


class World:
    """One simulated run; :meth:`run` returns its :class:`SimResult`."""

    def __init__(
        self,
        config: SimConfig,
        *,
        disk_factory: DiskFactory = SimDisk,
        script: Script = (),
    ) -> None:
        self.config = config
        self._script = list(script)
        self.message_filter: MessageFilter | None = None
        self.observer: WorldObserver | None = None
        """When set, sees what each node does (raft.sim.events writes node event logs)."""
        """When set, messages it returns True for are lost (scripts use it to aim losses)."""
        self.rng = random.Random(config.seed)
        rng = self.rng
        self.now = 0
        self._end = config.steps * SUBTICKS
        self._heal_at = (config.steps - config.calm_ticks) * SUBTICKS
        self._queue: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._ids = [f"n{i + 1}" for i in range(config.nodes)]
        self._voters = tuple(self._ids)
        self._conf_state = ConfState(voters=frozenset(self._ids))
        self.network = Network(rng, latency_min=2, latency_max=SUBTICKS // 3)
        self.checker = SafetyChecker()
        self.liveness = LivenessMonitor(self._heal_at, config.liveness_bound_ticks * SUBTICKS)
        self._trace_all = config.trace
        self._trace: deque[tuple[int, str, Any]] | list[tuple[int, str, Any]] = (
            [] if config.trace else deque(maxlen=TRACE_TAIL)
        )
        self.violation: Violation | None = None
        self.events = 0
        # Per-seed variety in how the core is configured (all from the one rng).
        # Overrides are applied after the draws so they never shift the seed's other choices.
        self._max_msg_bytes = rng.choice((1, 200, 1 << 20))
        self._max_inflight = rng.choice((1, 4, 256))
        # Pre-vote and check-quorum off half the time each: without them a deposed leader
        # keeps accepting proposals and builds a long conflicting suffix.
        self._pre_vote = rng.random() < 0.5
        self._check_quorum = rng.random() < 0.5
        # Aggressive compaction on some seeds: snapshots every 1-3 entries, nothing kept, so
        # followers with conflicting suffixes get snapshots instead of entries.
        self._snapshot_every = rng.choice((0, 0, 1, 3, 8, 25))
        self._compact_keep = rng.choice((0, 2, 10))
        self._open_loop = rng.random() < 1 / 3
        self._sticky = rng.random() < 0.5
        lease = rng.random() < 0.5
        self._auto_leave_p = rng.choice((0.5, 1.0))
        if config.max_msg_bytes is not None:
            self._max_msg_bytes = config.max_msg_bytes
        if config.pre_vote is not None:
            self._pre_vote = config.pre_vote
        if config.check_quorum is not None:
            self._check_quorum = config.check_quorum
        if config.snapshot_every is not None:
            self._snapshot_every = config.snapshot_every
        if config.open_loop is not None:
            self._open_loop = config.open_loop
        if config.drift is Drift.BEYOND:
            # Evidence mode: lease reads with clocks far outside the lease's assumption, and
            # open-loop clients, so a client stuck at a cut-off leader blocks no other.
            self._check_quorum = True
            self.read_mode = ReadMode.LEASE
            self._open_loop = True
        elif config.read_mode is not None:
            self.read_mode = config.read_mode
        else:
            self.read_mode = ReadMode.LEASE if lease and self._check_quorum else ReadMode.INDEX
        if self.read_mode is ReadMode.LEASE and not self._check_quorum:
            raise SimConfigError("read_mode lease needs check_quorum (the lease comes from it)")
        self._machine_cls: type[StateMachine] = (
            Register if config.workload is Workload.REGISTER else KV
        )
        self._nodes = {nid: _Node(id=nid, disk=disk_factory()) for nid in self._ids}
        self._conf = self._conf_state
        """The latest configuration any node applied (committed), and its index."""
        self._conf_index = 0
        self._min_voters = 2 if config.nodes <= 4 else 3
        e = config.election_timeout_ticks * SUBTICKS
        faults = config.faults
        delay_ticks, jitter_ticks = 8, 4
        skew = (0.5, 2.0)
        if self.read_mode is ReadMode.LEASE and config.drift is Drift.BEYOND:
            skew = (3.0, 10.0)  # a slowed leader believes in its lease for far too long
        elif self.read_mode is ReadMode.LEASE:
            # Within what a lease assumes (thesis §6.4.1): clock drift of a few percent,
            # message delay well below an election timeout, no process pauses (a paused
            # leader's clock stops: unbounded drift) and no messages from long ago.
            skew = (0.97, 1.03)
            delay_ticks, jitter_ticks = 1, 1
            faults = faults - {FaultKind.PAUSE, FaultKind.LATE}
        timing = NemesisTiming(
            gap_min=config.fault_gap_ticks[0] * SUBTICKS,
            gap_max=config.fault_gap_ticks[1] * SUBTICKS,
            duration_min=config.fault_duration_ticks[0] * SUBTICKS,
            duration_max=config.fault_duration_ticks[1] * SUBTICKS,
        )
        self.nemesis = Nemesis(
            faults,
            rng,
            self,
            timing,
            SUBTICKS,
            buggify=config.buggify,
            skew_range=skew,
            late_hold=(LATE_HOLD_ELECTIONS[0] * e, LATE_HOLD_ELECTIONS[1] * e),
            max_delay_ticks=delay_ticks,
            max_jitter_ticks=jitter_ticks,
            lease_attack=config.drift is Drift.BEYOND,
        )
        self.network.late_cap = self._heal_at
        if config.drift is Drift.BEYOND:
            # Every clock runs fast for good and the skew fault slows one (often the leader)
            # down 3-10x: followers stop honouring a leader's lease long before the
            # leader's own clock says it ran out.
            for n in self._nodes.values():
                n.base_period = n.period = max(1, int(SUBTICKS * rng.uniform(0.15, 0.5)))
        self.conformance = Conformance(self._check_quorum)
        self._stale: deque[Message] = deque(maxlen=STALE_RING)
        self._inflation_base: int | None = None
        self._conf_changes = 0
        self._replayed = 0
        self._snapshots_installed = 0
        self._budget_hit = False
        self.clients = ClientPool(
            rng,
            config.workload,
            config.clients,
            self._ids,
            NS_PER_UNIT,
            timeout=30 * SUBTICKS,
            open_loop=self._open_loop,
            sticky=self._sticky,
            leader_bias=0.3 if config.drift is Drift.BEYOND else 0.9,
        )
        self.clients.on_event = self._note
        self._probe: _Probe | None = None
        self._targeted_crashes = FaultKind.CRASH in config.faults
        # -- disk faults (issue 10): a fixed minority, drawn from its own rng so enabling
        # them does not shift the seed's other choices.
        self._disk_fault_nodes = tuple(
            sorted(random.Random(config.seed ^ 0xD15C).sample(self._ids, (config.nodes - 1) // 2))
        )
        self._dirty: list[_Node] = []
        self._note(
            f"world seed={config.seed} nodes={config.nodes} faults={format_faults(config.faults)} "
            f"max_msg_bytes={self._max_msg_bytes} max_inflight={self._max_inflight} "
            f"pre_vote={self._pre_vote} check_quorum={self._check_quorum} "
            f"snapshot_every={self._snapshot_every} keep={self._compact_keep} "
            f"read={self.read_mode.value} open_loop={self._open_loop} sticky={self._sticky} "
            f"mix=[{self.nemesis.describe()}]"
        )

    # -- queue ---------------------------------------------------------------------------
    def _at(self, t: int, kind: int, arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, arg))

    # -- trace ---------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self._trace.append((self.now, "note", text))
        if self.observer is not None:
            self.observer.on_note(self.now, text)

    def note(self, text: str) -> None:
        self._note(text)

    def trace_lines(self, last: int | None = None) -> list[str]:
        items = list(self._trace)
        if last is not None:
            items = items[-last:]
        return [self._fmt(item) for item in items]

    @staticmethod
    def _fmt(item: tuple[int, str, Any]) -> str:
        t, kind, what = item
        when = f"{t / SUBTICKS:9.2f}"
        if kind == "recv":
            return f"{when}  recv {_fmt_msg(what)}"
        if kind == "drop":
            return f"{when}  lost {_fmt_msg(what)}"
        return f"{when}  {what}"

    # -- the run -------------------------------------------------------------------------
    def run(self) -> SimResult:
        rng = self.rng
        for node in self._nodes.values():
            self._start_node(node)
            self._at(rng.randint(0, SUBTICKS - 1), _EV_TICK, node.id)
        if self.config.faults:
            self._at(rng.randint(5, 20) * SUBTICKS, _EV_NEMESIS, None)
        if self.config.clients:
            self._at(rng.randint(1, 5) * SUBTICKS, _EV_CLIENT, None)
        self._at(self._heal_at, _EV_HEAL, None)
        for k, (when, _) in enumerate(self._script):
            self._at(int(when * SUBTICKS), _EV_SCRIPT, k)
        self._at(self.liveness.deadline, _EV_LIVENESS, None)
        queue = self._queue
        nodes = self._nodes
        end = self._end
        max_events = self.config.max_events
        wall_end = time.monotonic() + self.config.max_wall_s
        while queue and self.violation is None:
            t, _, kind, arg = heapq.heappop(queue)
            if t > end:
                break
            self.now = t
            self.events += 1
            if not self.events & 1023 and (self.events > max_events or time.monotonic() > wall_end):
                self._livelock()
                break
            if kind == _EV_MSG:
                self._deliver(arg)
            elif kind == _EV_TICK:
                node = nodes[arg]
                self._at(t + node.period, _EV_TICK, arg)
                if node.raw is not None and not node.paused:
                    self._input(node, node.raw.tick, _TICK)
                    if t >= self._heal_at:
                        if self.liveness.commit_at is None:
                            self._liveness_probe()
                        else:
                            self._check_inflation()
            elif kind == _EV_CLIENT:
                self.clients.expire(t)
                if t < end - 5 * SUBTICKS:
                    self.clients.issue(t, self)
                self._drain_dirty()
                self._at(t + rng.randint(SUBTICKS // 5, SUBTICKS), _EV_CLIENT, None)
            elif kind == _EV_NEMESIS:
                if t < self._heal_at:
                    self.nemesis.step(t)
                    self._drain_dirty()
                    self._at(t + self.nemesis.next_gap(), _EV_NEMESIS, None)
            elif kind == _EV_HEAL:
                self._note("nemesis heal all")
                for nid in self._ids:
                    if not self._is_member(nid):
                        self._decommission(nid, force=self._removal_applied_by_all(nid))
                    elif self._nodes[nid].decommissioned:
                        # Every member runs after the heal (heal_all restarts it below).
                        self._nodes[nid].decommissioned = False
                self.nemesis.heal_all()
                self.message_filter = None
                self._drain_dirty()
            elif kind == _EV_DECOMMISSION:
                self._decommission(arg)
            elif kind == _EV_LIVENESS:
                self._set_violation(self.liveness.check(t))
            elif kind == _EV_CRASH:
                node_id, down_for = arg
                if t < self._heal_at and nodes[node_id].raw is not None:
                    self.crash(node_id)
                    self._at(t + down_for, _EV_RESTART, node_id)
            elif kind == _EV_RESTART:
                if nodes[arg].raw is None:
                    self.restart(arg)
                    self._drain_dirty()
            elif kind == _EV_SCRIPT:
                when, action = self._script[arg]
                self._note(f"script step {arg} at {when}")
                action(self)
                self._drain_dirty()
            elif kind == _EV_SNAP_REPORT:
                self._report_snapshot(*arg)
            elif kind == _EV_CONN_LOST:
                self._connection_lost(*arg)
        lincheck = "skipped"
        if self.violation is None and self.config.lincheck and self.config.clients:
            lincheck = self._lincheck()
        lv = self.liveness
        return SimResult(
            seed=self.config.seed,
            steps=self.config.steps,
            events=self.events,
            elections=self.checker.elections,
            commits=self.checker.commit_index,
            client_ops=self.clients.invoked,
            client_ok=self.clients.ok,
            faults=self.nemesis.started,
            violation=self.violation,
            trace_tail=tuple(self.trace_lines(TRACE_TAIL)),
            trace=tuple(self.trace_lines()) if self._trace_all else (),
            lincheck=lincheck,
            leader_after_heal_ticks=None
            if lv.leader_at is None
            else (lv.leader_at - lv.healed_at) / SUBTICKS,
            commit_after_heal_ticks=None
            if lv.commit_at is None
            else (lv.commit_at - lv.healed_at) / SUBTICKS,
            membership_changes=self._conf_changes,
            late_messages=self.network.late + self._replayed,
            snapshots_installed=self._snapshots_installed,
        )

    def _livelock(self) -> None:
        why = (
            f"event budget {self.config.max_events}"
            if self.events > self.config.max_events
            else f"wall-clock budget {self.config.max_wall_s:.0f}s"
        )
        self._set_violation(
            Violation(
                Invariant.LIVELOCK,
                "",
                f"seed {self.config.seed} exceeded its {why} at tick {self.now / SUBTICKS:.1f} "
                f"({self.events} events, {self.network.sent} messages)",
            )
        )

    def _check_inflation(self) -> None:
        """Once a leader committed after the heal, and a couple of election timeouts later,
        the voters' terms must stay put: a rising term is a node disrupting a healthy
        cluster (a few rises are allowed for a legitimate re-election)."""
        lv = self.liveness
        if lv.commit_at is None:
            return
        if self.now < lv.commit_at + 2 * self.config.election_timeout_ticks * SUBTICKS:
            return
        voters = self._conf.voters | self._conf.voters_outgoing
        top = max((n.term for n in self._nodes.values() if n.id in voters), default=0)
        if self._inflation_base is None:
            self._inflation_base = top
            return
        allowed = INFLATION_MAX[0] if self._pre_vote else INFLATION_MAX[1]
        if top - self._inflation_base > allowed:
            who = max((n for n in self._nodes.values() if n.id in voters), key=lambda n: n.term)
            self._set_violation(
                Violation(
                    Invariant.TERM_INFLATION,
                    who.id,
                    f"terms rose from {self._inflation_base} to {top} on a healed cluster "
                    f"that had a leader (more than {allowed} rises; pre_vote={self._pre_vote})",
                )
            )

    def _lincheck(self) -> str:
        from raft.lincheck import Verdict, check_history

        res = check_history(
            self.clients.history,
            model=self.config.workload.model,
            timeout_s=self.config.lincheck_timeout_s,
        )
        if res.verdict is Verdict.NOT_LINEARIZABLE:
            self._set_violation(
                Violation(
                    Invariant.LINEARIZABILITY,
                    "",
                    f"client history ({len(self.clients.history)} events) is not "
                    f"linearizable: {_clip(str(res.counterexample), 400)}",
                )
            )
        return str(res.verdict.value)

    def _set_violation(self, v: Violation | None) -> None:
        if v is not None and self.violation is None:
            self.violation = v
            self._note(f"VIOLATION {v}")

    # -- driving one node ----------------------------------------------------------------
    def _input(self, node: _Node, fn: Callable[[], object], m: Message | None = None) -> None:
        """Feed one input to the node, then do all the work its Readys ask for. With ``m``
        (the message stepped, or :data:`_TICK`) the conformance checks judge the step."""
        raw = node.raw
        token = Conformance.before_step(raw) if m is not None and raw is not None else None
        try:
            fn()
        except NotLeaderError:
            pass
        except Exception as exc:
            self._core_error(node, exc)
            return
        if token is not None and raw is not None and m is not None:
            self._set_violation(self.conformance.after_step(node.id, raw, m, token))
        self._check_leader(node)
        self._drain(node)

    def _check_leader(self, node: _Node) -> None:
        """Judge a leader's decisions by the configuration in effect right now: its election
        needs durable votes from a majority of each half; each commit advance needs the
        entry held by a majority of each half."""
        raw = node.raw
        if raw is None:
            return
        r = raw.raft
        if r.role is not Role.LEADER:
            return
        voters = r.trk.voters
        halves = (voters.incoming, voters.outgoing) if voters.outgoing else (voters.incoming,)
        term = r.term
        commit = r.raft_log.committed
        if node.elected_term != term:
            node.elected_term = term
            node.checked_commit = (term, commit)
            self._set_violation(self.checker.on_elected(node.id, term, halves))
            return
        if node.checked_commit[0] == term and commit <= node.checked_commit[1]:
            return
        node.checked_commit = (term, commit)
        try:
            entry_term = r.raft_log.term(commit)
        except (CompactedError, UnavailableError):
            return
        holders = frozenset(
            x for x in voters.ids() if x in self._nodes and self._holds(x, commit, entry_term)
        )
        self._set_violation(
            self.checker.check_commit_quorum(node.id, term, commit, halves, holders)
        )

    def _holds(self, node: NodeId, index: int, term: int) -> bool:
        disk = self._nodes[node].disk
        if disk.recovering and disk.lost.get(index) == term:
            return True  # acknowledged, then lost to a disk fault: recovery keeps the ack good
        try:
            return disk.term(index) == term
        except CompactedError:
            return True  # in its snapshot: it committed the index (only committed is snapshotted)
        except UnavailableError:
            return False

    def _core_error(self, node: _Node, exc: BaseException) -> None:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        self._set_violation(
            Violation(
                Invariant.CORE_ERROR,
                node.id,
                f"{type(exc).__name__}: {exc} ({where.filename}:{where.lineno})",
            )
        )

    def _drain_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for node in dirty:
            if node.raw is not None:
                self._drain(node)

    def _drain(self, node: _Node) -> None:
        raw = node.raw
        if raw is None:
            return
        try:
            while raw.has_ready():
                rd = raw.ready()
                self._handle_ready(node, raw, rd)
                if self.violation is not None:
                    return
                raw.advance(rd)
                self._check_leader(node)
        except Exception as exc:
            self._core_error(node, exc)
            return
        self._set_violation(
            self.checker.on_state(
                node.id, node.incarnation, node.term, node.role, node.commit, node.disk
            )
        )
        self._set_violation(self.conformance.check_acks(node.id, raw))
        if node.role is Role.LEADER and self.now >= self._heal_at:
            self.liveness.leader_seen(self.now)
        self._maybe_snapshot(node)

    def _handle_ready(self, node: _Node, raw: RawNode, rd: Ready) -> None:
        disk = node.disk
        checker = self.checker
        obs = self.observer
        if obs is not None:
            obs.on_ready(self.now, node.id, rd)
        ss = rd.soft_state
        if ss is not None:
            if ss.role is not node.role or ss.leader != node.leader:
                self._note(f"{node.id} {ss.role.value} (leader {ss.leader or '-'})")
                if ss.role is Role.LEADER and self._targeted_crashes:
                    self._maybe_crash_soon(node, CRASH_AFTER_ELECTED_P, "after winning")
            node.role = ss.role
            node.leader = ss.leader
        hs = rd.hard_state
        if hs is not None:
            node.term = hs.term
            node.commit = hs.commit
            if hs.vote:
                self._set_violation(checker.on_vote(node.id, hs.term, hs.vote))
        leader_term = node.term if node.role is Role.LEADER else None
        if leader_term is not None:
            self._set_violation(checker.on_role(node.id, node.term, node.role))
        if rd.messages:
            self._send(node, rd.messages)
        snap = rd.snapshot
        if snap is not None:
            self._set_violation(checker.on_snapshot_installed(node.id, leader_term, snap))
            disk.apply_snapshot(snap)
            self._snapshots_installed += 1
            self._note(f"{node.id} install snapshot @{snap.meta.index} t{snap.meta.term}")
        if rd.entries:
            self._append(node, leader_term, rd)
        if hs is not None:
            disk.set_hard_state(hs)
        if rd.must_sync:
            disk.sync()
        if disk.recovering and any(ev.ev == "recovered" for ev in rd.events):
            disk.clear_recovering()  # -- disk faults: caught up, and that is persisted
        if rd.persisted_messages:
            for m in rd.persisted_messages:
                self.conformance.on_sent(node.id, raw, m)
            self._send(node, rd.persisted_messages)
            if self._targeted_crashes:
                for m in rd.persisted_messages:
                    if m.type is MessageType.VOTE_RESP and not m.reject:
                        self._maybe_crash_soon(node, CRASH_AFTER_VOTE_P, "after voting")
        if self._targeted_crashes and leader_term is not None and rd.entries:
            self._maybe_crash_soon(node, CRASH_AFTER_LEADER_APPEND_P, "after appending")
        if snap is not None:
            node.machine.restore(snap.data)
            node.applied = snap.meta.index
            node.conf = snap.meta.conf_state
            checker.on_machine_restored(node.id, node.incarnation, snap.meta.index)
        if rd.committed_entries:
            self._apply(node, raw, rd)
        if rd.read_states:
            for rs in rd.read_states:
                self.clients.on_read_state(node.id, rs, self.now, self)
        if obs is not None:
            obs.on_ready_done(self.now, node.id, rd)

    def _maybe_crash_soon(self, node: _Node, p: float, why: str) -> None:
        rng = self.rng
        if self.now >= self._heal_at or rng.random() >= p:
            return
        when = self.now + rng.randint(1, SUBTICKS // 2)
        down_for = rng.randint(SUBTICKS // 5, 3 * SUBTICKS)
        self._note(f"nemesis will crash {node.id} {why}")
        self._at(when, _EV_CRASH, (node.id, down_for))

    def _append(self, node: _Node, leader_term: int | None, rd: Ready) -> None:
        disk = node.disk
        ents = rd.entries
        first = ents[0].index
        last = disk.last_index()
        prev_term: int | None = None
        if first - 1 >= disk.first_index() - 1 and first - 1 <= last:
            prev_term = disk.term(first - 1)
        overwritten: int | None = None
        if first <= last:
            lo = max(first, disk.first_index())
            for i in range(lo, last + 1):
                k = i - first
                if k >= len(ents) or ents[k].term != disk.term(i):
                    overwritten = i
                    break
        self._set_violation(
            self.checker.on_append(node.id, leader_term, ents, prev_term, overwritten)
        )
        disk.append(list(ents))
        if overwritten is not None:
            self._note(f"{node.id} truncate from {overwritten}")
        self._note(f"{node.id} persist [{first}..{ents[-1].index}] t{ents[-1].term}")

    def _apply(self, node: _Node, raw: RawNode, rd: Ready) -> None:
        checker = self.checker
        clients = self.clients
        probe = self._probe
        for e in rd.committed_entries:
            self._set_violation(checker.on_apply(node.id, node.incarnation, e))
            if e.type is EntryType.CONF_CHANGE:
                node.conf = raw.apply_conf_change(decode_conf_change(e.data))
                self._check_leader(node)
                self._conf_applied(node, e.index)
                result = b""
            elif e.data:
                result = node.machine.apply(e.index, e.data)
            else:
                result = b""
            node.applied = e.index
            if self.observer is not None:
                self.observer.on_apply(self.now, node.id, e, result)
            clients.on_applied(node.id, e, result, self.now)
            if probe is not None and probe.node == node.id and probe.index == e.index:
                if probe.term == e.term:
                    self.liveness.probe_committed(self.now)
                    self._note(f"liveness probe committed at {e.index}")
                self._probe = probe = None
        self._note(f"{node.id} apply ..{node.applied}")
        clients.serve_reads(node.id, self.now, self)

    def _maybe_snapshot(self, node: _Node) -> None:
        every = self._snapshot_every
        if not every:
            return
        disk = node.disk
        snap_index = disk.snapshot().meta.index
        if node.applied - snap_index < every or node.applied > disk.last_index():
            return
        disk.create_snapshot(node.applied, node.conf, node.machine.snapshot())
        disk.compact(max(snap_index, node.applied - self._compact_keep))
        self._note(f"{node.id} snapshot @{node.applied}")

    def _send(self, node: _Node, msgs: Sequence[Message]) -> None:
        # Stable sort by destination: per-link order is the core's, the order across links
        # does not depend on how the core iterates its (hash-ordered) peer sets.
        now = self.now
        net = self.network
        flt = self.message_filter
        if len(msgs) > 1:
            msgs = sorted(msgs, key=_destination)
        stale = self._stale
        for m in msgs:
            stale.append(m)
            if flt is not None and flt(m):
                self._trace.append((now, "drop", m))
                continue
            arrivals = net.route(m.sender, m.to, now)
            if not arrivals:
                self._trace.append((now, "drop", m))
            for t in arrivals:
                self._at(t, _EV_MSG, m)
            if m.type is MessageType.SNAP:
                # The transport reports how a snapshot transfer ended (etcd ReportSnapshot).
                when = max(arrivals) if arrivals else now + SUBTICKS
                self._at(when + 1, _EV_SNAP_REPORT, (m.sender, m.to, bool(arrivals)))

    def _report_snapshot(self, sender: NodeId, to: NodeId, ok: bool) -> None:
        node = self._nodes[sender]
        raw = node.raw
        if raw is not None and not node.paused:
            self._input(node, lambda: raw.report_snapshot(to, ok), _TICK)

    def _connection_lost(self, crashed: NodeId, to: NodeId) -> None:
        """``to``'s driver sees the crashed node's connection close (runtime: the transport's
        ``on_peer_closed``)."""
        node = self._nodes[to]
        raw = node.raw
        if raw is not None and not node.paused:
            self._input(node, lambda: raw.report_connection_lost(crashed), _TICK)

    def _deliver(self, m: Message) -> None:
        node = self._nodes[m.to]
        if node.raw is None:
            self._trace.append((self.now, "drop", m))
            return
        if node.paused:
            if len(node.backlog) < BACKLOG_MAX:
                node.backlog.append(m)
            return
        self._trace.append((self.now, "recv", m))
        if self.observer is not None:
            self.observer.on_recv(self.now, m)
        raw = node.raw
        self._input(node, lambda: raw.step(m), m)

    # -- lifecycle (used by the nemesis) --------------------------------------------------
    def _start_node(self, node: _Node) -> None:
        disk = node.disk
        hs, _ = disk.initial_state()
        snap = disk.snapshot()
        node.machine = self._machine_cls()
        applied = 0
        if not snap.is_empty():
            node.machine.restore(snap.data)
            applied = snap.meta.index
        node.incarnation += 1
        node.applied = applied
        _, stored_conf = disk.initial_state()
        node.conf = stored_conf if stored_conf.voters else self._conf_state
        node.elected_term = 0
        self.conformance.forget(node.id)
        node.term = hs.term
        node.commit = hs.commit
        node.role = Role.FOLLOWER
        node.leader = ""
        node.paused = False
        node.backlog = []
        cfg = Config(
            id=node.id,
            voters=self._voters,
            election_timeout_ticks=self.config.election_timeout_ticks,
            heartbeat_ticks=self.config.heartbeat_ticks,
            pre_vote=self._pre_vote,
            check_quorum=self._check_quorum,
            max_msg_bytes=self._max_msg_bytes,
            max_inflight_msgs=self._max_inflight,
            applied=applied,
            recovering=disk.recovering,  # -- disk faults: the storage reported a loss
            read_only=ReadOnlyOption.LEASE_BASED
            if self.read_mode is ReadMode.LEASE
            else ReadOnlyOption.SAFE,
        )
        self.checker.on_restart(node.id, node.incarnation, applied)
        try:
            node.raw = RawNode(cfg, disk, rng=random.Random(self.rng.getrandbits(64)))
        except Exception as exc:
            node.raw = None
            self._core_error(node, exc)
            return
        if self.observer is not None:
            self.observer.on_start(self.now, node.id, hs, applied, disk, self._voters)
        self._dirty.append(node)

    def node_ids(self) -> Sequence[NodeId]:
        return self._ids

    def leader_hint(self) -> NodeId | None:
        best: _Node | None = None
        for node in self._nodes.values():
            if (
                node.raw is not None
                and node.role is Role.LEADER
                and (best is None or node.term > best.term)
            ):
                best = node
        return None if best is None else best.id

    def leader_seen_by(self, node: NodeId) -> NodeId | None:
        n = self._nodes[node]
        if n.raw is None or not n.leader:
            return None
        return n.leader

    def is_up(self, node: NodeId) -> bool:
        return self._nodes[node].raw is not None

    def is_paused(self, node: NodeId) -> bool:
        return self._nodes[node].paused

    def disk_fault_nodes(self) -> Sequence[NodeId]:
        return self._disk_fault_nodes

    def _recovering_minority(self, cs: ConfState, extra: NodeId | None = None) -> bool:
        """Whether every half of ``cs`` keeps a majority of voters that are not in
        protocol-aware recovery (with ``extra`` counted as recovering too). Recovering
        nodes do not vote, and only a leader brings them back: a configuration whose
        majority is recovering waits for an operator (docs/storage.md), so the simulated
        operator neither reconfigures into one nor lets a disk fault make one."""
        for half in (cs.voters, cs.voters_outgoing):
            if not half:
                continue
            down = sum(1 for x in half if x == extra or self._nodes[x].disk.recovering)
            if len(half) - down < len(half) // 2 + 1:
                return False
        return True

    def _membership_settled(self) -> bool:
        """Every member has applied the latest configuration and every removed node is
        powered off: no node still counts on a voter that is gone or about to go."""
        for nid in self._ids:
            n = self._nodes[nid]
            if self._unapplied_conf_change(n):
                return False  # proposed, not applied yet: it may still take effect
            if self._is_member(nid):
                if n.conf != self._conf:
                    return False
            elif not n.decommissioned:
                return False
        return True

    def _unapplied_conf_change(self, n: _Node) -> bool:
        """Whether ``n``'s log holds a configuration change past the latest one applied
        anywhere (one that may still commit, on any node that holds it)."""
        disk = n.disk
        lo = max(self._conf_index + 1, disk.first_index())
        hi = disk.last_index()
        if lo > hi:
            return False
        try:
            ents = disk.entries(lo, hi + 1)
        except (CompactedError, UnavailableError):
            return True  # cannot tell: assume a change is under way
        return any(e.type is EntryType.CONF_CHANGE for e in ents)

    def crash(self, node: NodeId, *, disk_fault: bool = False) -> None:
        n = self._nodes[node]
        n.raw = None
        n.disk.crash()
        if disk_fault and not (
            self._membership_settled() and self._recovering_minority(self._conf, extra=node)
        ):
            disk_fault = False
            self._note(
                f"nemesis disk fault on {node} skipped: a membership change is in progress "
                "or a majority would be recovering"
            )
        if disk_fault:
            self._note(
                f"nemesis disk fault on {node}: {n.disk.damage(self.rng) or 'nothing to lose'}"
            )
        n.paused = False
        n.backlog = []
        n.role = Role.FOLLOWER
        for other in self._ids:
            peer = self._nodes[other]
            when = self.network.close_arrival(node, other, self.now)
            if other != node and peer.raw is not None and when is not None:
                self._at(when, _EV_CONN_LOST, (node, other))
        self.clients.on_node_down(node, self.now)
        self._note(f"nemesis crash {node} (durable last index {n.disk.last_index()})")

    def restart(self, node: NodeId) -> None:
        n = self._nodes[node]
        if n.raw is not None or n.decommissioned:
            return
        self._start_node(n)
        self._note(f"nemesis restart {node} (term {n.term}, commit {n.commit})")

    # -- membership (used by the nemesis) ------------------------------------------------
    def is_member(self, node: NodeId) -> bool:
        """Whether ``node`` is in the latest configuration applied anywhere."""
        return self._is_member(node)

    def _is_member(self, node: NodeId) -> bool:
        cs = self._conf
        return (
            node in cs.voters
            or node in cs.voters_outgoing
            or node in cs.learners
            or node in cs.learners_next
        )

    def _conf_applied(self, node: _Node, index: int) -> None:
        """``node`` applied the configuration change at ``index`` (now ``node.conf``)."""
        if index <= self._conf_index:
            return
        cs = node.conf
        self._conf_index = index
        self._conf_changes += 1
        self._conf = cs
        joint = f" | outgoing {sorted(cs.voters_outgoing)}" if cs.voters_outgoing else ""
        self._note(
            f"config @{index}: voters {sorted(cs.voters)}{joint} learners "
            f"{sorted(cs.learners | cs.learners_next)}"
        )
        chaos = self.now < self._heal_at
        e = self.config.election_timeout_ticks * SUBTICKS
        for nid in self._ids:
            n = self._nodes[nid]
            if not self._is_member(nid) and not n.decommissioned:
                # The operator powers a removed node off some time after the removal
                # commits; meanwhile it may still campaign (thesis §4.2.3).
                when = self.now + (self.rng.randint(0, 3 * e) if chaos else 0)
                self._at(when, _EV_DECOMMISSION, nid)
        if not chaos or not cs.voters_outgoing:
            return
        # The joint phase is the weak moment of a membership change: aim faults at it.
        rng = self.rng
        if self._targeted_crashes and rng.random() < CRASH_IN_JOINT_P:
            self._maybe_crash_soon(node, 1.0, "in the joint phase")
        if FaultKind.PARTITION in self.config.faults and rng.random() < PARTITION_IN_JOINT_P:
            leader = self.leader_hint()
            if leader is not None:
                others = [x for x in self._ids if x != leader]
                rng.shuffle(others)
                minority = sorted([leader, *others[: rng.randint(0, (len(self._ids) - 1) // 2)]])
                majority = sorted(x for x in self._ids if x not in minority)
                self.nemesis.start_partition(minority, majority, self.now)

    def _decommission(self, node: NodeId, *, force: bool = False) -> None:
        """Power ``node`` off if it is not a member; ``force`` (at heal) even while it is
        being re-added (a learner left off never blocks liveness; a non-member left
        running without pre-vote would disrupt the healed cluster)."""
        n = self._nodes[node]
        if n.decommissioned or self._is_member(node):
            return
        if self.now < n.keep_until and not force:
            return
        if not force and not self._removal_applied_by_all(node):
            # The members may still be in a configuration (joint) whose quorum needs this
            # node: they apply a change only once they learn it committed, which the removed
            # leader may not have told them before it stepped down. Like an operator who
            # waits for every remaining member to show the new configuration, try again later.
            self._at(
                self.now + self.config.election_timeout_ticks * SUBTICKS, _EV_DECOMMISSION, node
            )
            return
        if n.raw is not None:
            n.raw = None
            n.disk.crash()
            n.role = Role.FOLLOWER
            self.clients.on_node_down(node, self.now)
        n.paused = False
        n.backlog = []
        n.decommissioned = True
        self._note(f"decommission {node} (not a member)")

    def _removal_applied_by_all(self, node: NodeId) -> bool:
        """Whether every member of the newest configuration has applied one without
        ``node`` (a powered-off node then never holds a quorum hostage)."""
        cs = self._conf
        for m in cs.voters | cs.voters_outgoing | cs.learners | cs.learners_next:
            c = self._nodes[m].conf
            if node in c.voters or node in c.voters_outgoing:
                return False
        return True

    def _recommission(self, node: NodeId) -> None:
        n = self._nodes[node]
        e = self.config.election_timeout_ticks * SUBTICKS
        # Powered off again unless the change that adds it commits; an earlier power-off
        # still pending (it was removed moments ago) must not catch it while that change
        # is in flight.
        n.keep_until = self.now + 10 * e
        self._at(n.keep_until, _EV_DECOMMISSION, node)
        if not n.decommissioned:
            return
        n.decommissioned = False
        self._start_node(n)
        self._note(f"recommission {node} with its old disk (term {n.term})")

    def change_membership(self) -> str | None:
        """Propose a random membership change at the leader, one the core should accept:
        add a learner (a removed node comes back with its old disk), promote a learner,
        remove or demote a voter (the leader too), replace a voter through a joint
        configuration, or leave a joint configuration that does not leave by itself.
        Returns what was proposed, or None when nothing was."""
        leader = self.leader_hint()
        if leader is None:
            return None
        n = self._nodes[leader]
        raw = n.raw
        if raw is None or n.paused or raw.raft.is_conf_change_pending():
            return None
        cs = raw.raft.trk.conf_state()
        rng = self.rng
        voters = sorted(cs.voters)
        learners = sorted(cs.learners)
        members = cs.voters | cs.learners | cs.voters_outgoing | cs.learners_next
        others = [x for x in self._ids if x not in members]
        auto = rng.random() < self._auto_leave_p
        joint = rng.random() < 0.5

        def one(kind: ConfChangeType, x: NodeId) -> ConfChange:
            return ConfChange(
                changes=(ConfChangeSingle(type=kind, node=x),), joint=joint, auto_leave=auto
            )

        options: list[tuple[str, ConfChange, NodeId]] = []
        if cs.voters_outgoing:
            if cs.auto_leave:
                return None
            options.append(("leave joint", ConfChange(), ""))
        else:
            options += [(f"add learner {x}", one(ConfChangeType.ADD_LEARNER, x), x) for x in others]
            options += [(f"promote {x}", one(ConfChangeType.ADD_NODE, x), "") for x in learners]
            if len(voters) > self._min_voters:
                for x in voters:
                    weight = 3 if x == leader else 1  # the leader removing itself, often
                    options += [(f"remove {x}", one(ConfChangeType.REMOVE_NODE, x), "")] * weight
                    options.append((f"demote {x}", one(ConfChangeType.ADD_LEARNER, x), ""))
            if learners:
                x, y = rng.choice(voters), rng.choice(learners)
                cc = ConfChange(
                    changes=(
                        ConfChangeSingle(type=ConfChangeType.REMOVE_NODE, node=x),
                        ConfChangeSingle(type=ConfChangeType.ADD_NODE, node=y),
                    ),
                    joint=True,
                    auto_leave=auto,
                )
                options.append((f"replace {x} by {y}", cc, ""))
        if not options:
            return None
        what, cc, bring_back = rng.choice(options)
        try:
            after = apply_conf_change(cs, cc)
        except ConfChangeError:
            return None
        if len(after.voters) < self._min_voters:
            return None
        if any(self._nodes[x].disk.recovering for x in self._ids):
            return None  # the strict reconfiguration check an operator applies (docs/storage.md)
        if bring_back:
            self._recommission(bring_back)
        try:
            index, _ = raw.propose_conf_change(cc)
        except (NotLeaderError, ProposalDroppedError):
            return None
        except Exception as exc:
            self._core_error(n, exc)
            return None
        self._dirty.append(n)
        mode = (
            " (joint" + (", auto leave)" if auto else ")") if joint or len(cc.changes) > 1 else ""
        )
        return f"{what}{mode} proposed at {leader} index {index}"

    def replay_stale(self, count: int) -> int:
        """Deliver copies of ``count`` old messages again, each held for many election
        timeouts (a network may duplicate and delay without bound)."""
        stale = self._stale
        if not stale:
            return 0
        lo, hi = self.network.late_hold if self.network.late_hold[1] else (SUBTICKS, SUBTICKS)
        done = 0
        for _ in range(count):
            m = stale[self.rng.randrange(len(stale))]
            when = self.now + self.rng.randint(lo, hi)
            if when >= self._heal_at:
                continue
            self._at(when, _EV_MSG, m)
            done += 1
        self._replayed += done
        return done

    def pause(self, node: NodeId) -> None:
        self._nodes[node].paused = True
        self._note(f"nemesis pause {node}")

    def resume(self, node: NodeId) -> None:
        n = self._nodes[node]
        n.paused = False
        backlog, n.backlog = n.backlog, []
        self._note(f"nemesis resume {node} ({len(backlog)} queued messages)")
        for m in backlog:
            if self.violation is not None or n.raw is None:
                break
            self._deliver(m)

    def set_tick_period(self, node: NodeId, period: int | None) -> None:
        n = self._nodes[node]
        n.period = n.base_period if period is None else period

    def campaign(self, node: NodeId) -> None:
        """Make ``node`` start an election now (scripts)."""
        n = self._nodes[node]
        raw = n.raw
        if raw is not None:
            self._input(n, raw.campaign)

    def role_of(self, node: NodeId) -> Role:
        return self._nodes[node].role

    def last_index(self, node: NodeId) -> int:
        """Last index in ``node``'s (volatile) log."""
        return self._nodes[node].disk.last_index()

    # -- client API (used by ClientPool) -------------------------------------------------
    def can_serve(self, node: NodeId) -> bool:
        n = self._nodes[node]
        return n.raw is not None and not n.paused

    def propose(self, node: NodeId, data: bytes) -> tuple[int, int]:
        n = self._nodes[node]
        assert n.raw is not None
        try:
            index, term = n.raw.propose(data)
        except (NotLeaderError, ProposalDroppedError):
            raise
        except Exception as exc:
            self._core_error(n, exc)
            raise ProposalDroppedError(f"core error: {exc}") from exc
        self._dirty.append(n)
        return index, term

    def read_index(self, node: NodeId, context: bytes) -> None:
        n = self._nodes[node]
        assert n.raw is not None
        try:
            n.raw.read_index(context)
        except (NotLeaderError, ProposalDroppedError):
            raise
        except Exception as exc:
            self._core_error(n, exc)
            raise ProposalDroppedError(f"core error: {exc}") from exc
        self._dirty.append(n)

    def applied_index(self, node: NodeId) -> int:
        return self._nodes[node].applied

    def query(self, node: NodeId, request: bytes) -> bytes:
        return self._nodes[node].machine.query(request)

    # -- liveness ------------------------------------------------------------------------
    def _liveness_probe(self) -> None:
        probe = self._probe
        if probe is not None:
            n = self._nodes[probe.node]
            if n.raw is not None and n.role is Role.LEADER and n.term == probe.term:
                return  # still pending at a live leader
        leader = self.leader_hint()
        if leader is None:
            return
        n = self._nodes[leader]
        if n.paused or n.raw is None:
            return
        data = codec.encode_command("read", "liveness-probe")
        try:
            index, term = n.raw.propose(data)
        except Exception:
            return  # not leader after all, or dropped: retry next tick
        self._probe = _Probe(leader, index, term)
        self._note(f"liveness probe proposed at {leader} ({index}, t{term})")
        self._drain(n)


def run_seed(
    config: SimConfig, *, disk_factory: DiskFactory = SimDisk, script: Script = ()
) -> SimResult:
    """Run one seed; never raises for what the core does (that becomes a violation)."""
    return World(config, disk_factory=disk_factory, script=script).run()
