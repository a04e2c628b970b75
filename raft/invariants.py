"""Raft's safety properties, one set of definitions for the simulator and the lab.

:class:`Invariant` names every property with one spelling (snake_case, as it appears in
``results.json``, reports and the simulator's output). :func:`check_invariants` checks them
over the nodes' event stream (``events.jsonl``, docs/formats.md), for lab runs and simulated
runs alike (the simulator writes the same events); the simulator additionally checks its
in-memory state after every step (raft/sim/invariants.py) against the same properties.

Pure: it reads event records (anything with ``node``, ``seq``, ``term``, ``ev``, ``source``
and ``get``; deploy.analysis.events.NodeEvent is one), never files.

What is checked, and from which events (docs/analysis.md):

- **Election Safety** (§5.2): at most one node logs ``role=leader`` per term.
- **Log Matching** (§5.3): no two nodes commit different entries (term, digest) at the same
  index; a node's commit record agrees with its own log (``eterm``); no committed entry is
  later truncated or overwritten.
- **State Machine Safety** (§5.4.3): no two nodes apply different entries at one index, and
  the same entry yields the same result digest everywhere (deterministic state machine),
  also when a restarted node replays its log.
- **Leader Completeness** (§5.4): when a node becomes leader of term T, its log holds every
  entry committed in an earlier term. "Committed in term t" is bounded above by the smallest
  term of any node's commit/apply record covering the index, so the check never blames a
  leader for an entry committed after it was elected. Entries before the leader's snapshot
  count as present; entries the leader's log predates our records for are skipped.
- **Commit monotonic**: within one process run (between ``start`` events) a node's commit
  index never decreases.
- **Applied prefix**: within one run, applied indexes are consecutive from the ``start``
  event's ``applied`` (or a snapshot's index): no gap, no repeat, no reordering.
- **Applied within commit**: at every moment a node's applied index is at most its commit
  index: an ``apply`` of index i comes after the node logged a commit index >= i (its
  ``commit`` event, its ``start`` event's ``commit``, or an installed/loaded snapshot). The
  runtime logs ``commit`` before the ``apply`` it allows (raft/runtime/node.py).
- **Applied by quorum**: every applied entry (index, term, digest) was persisted by a
  majority of the cluster (the nodes in the logs, or more if a ``start`` event lists more
  voters). A node whose log predates our records at that index (its first ``start`` has
  ``last_index`` >= i, or a snapshot covers i) counts as possibly holding it, so the check
  only fires when even those cannot make a majority.

Every violation names the invariant, nodes, term, index and the log lines involved.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CommittedEntry",
    "EventRecord",
    "Invariant",
    "InvariantReport",
    "Violation",
    "check_invariants",
    "check_invariants_by_node",
]

Source = object
"""Where a record came from; printed with ``str`` (deploy's ``Source`` prints file:line)."""


class EventRecord(Protocol):
    """One node event as the checker needs it."""

    @property
    def node(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def term(self) -> int: ...
    @property
    def ev(self) -> str: ...
    @property
    def source(self) -> Source: ...
    def get(self, key: str, default: Any = None) -> Any: ...


NodeEvent = EventRecord

MAX_REPORTED_PER_INVARIANT = 50
"""Past this many violations of one invariant, only the count grows (a divergence at index i
usually repeats at every later index)."""


class Invariant(enum.Enum):
    """Every property either checker reports. The event-stream checker uses the first eight;
    the simulator's in-memory checker also reports the others (it sees what logs do not: a
    leader rewriting its own log, liveness after heal, its own linearizability check of the
    client history, exceptions from the core, quorums of the configuration in effect, term
    inflation, livelock, protocol conformance)."""

    ELECTION_SAFETY = "election_safety"
    LOG_MATCHING = "log_matching"
    STATE_MACHINE_SAFETY = "state_machine_safety"
    LEADER_COMPLETENESS = "leader_completeness"
    COMMIT_MONOTONIC = "commit_monotonic"
    APPLIED_PREFIX = "applied_prefix"
    APPLIED_WITHIN_COMMIT = "applied_within_commit"
    APPLIED_BY_QUORUM = "applied_by_quorum"
    LEADER_APPEND_ONLY = "leader_append_only"
    LIVENESS = "liveness"
    LINEARIZABILITY = "linearizability"
    CORE_ERROR = "core_error"
    # Reported by the simulator's checkers on branch h/simteeth (issue 11), spelled here so
    # that merging it needs no second enum:
    QUORUM = "quorum"
    TERM_INFLATION = "term_inflation"
    LIVELOCK = "livelock"
    CONFORMANCE = "conformance"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: Invariant
    message: str
    nodes: tuple[str, ...]
    term: int | None
    index: int | None
    sources: tuple[Source, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant.value,
            "message": self.message,
            "nodes": list(self.nodes),
            "term": self.term,
            "index": self.index,
            "sources": [str(s) for s in self.sources],
        }

    def __str__(self) -> str:
        where = ", ".join(str(s) for s in self.sources)
        return f"[{self.invariant.value}] {self.message} ({where})"


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    """A node's record that ``index`` holds (term, digest); digest "" when not known."""

    node: str
    index: int
    term: int
    digest: str
    source: Source


@dataclass(slots=True)
class InvariantReport:
    violations: list[Violation] = field(default_factory=list)
    violation_counts: dict[str, int] = field(default_factory=dict)
    leaders_per_term: dict[int, list[str]] = field(default_factory=dict)
    elections: int = 0
    commit_events: int = 0
    max_commit: int = 0
    applied_entries: int = 0
    leader_checks_skipped: int = 0
    """Committed entries a new leader's log could not be checked for (log predates the
    records we have)."""
    committed: dict[int, dict[str, CommittedEntry]] = field(default_factory=dict)
    """index -> node -> what the node committed there (first record per node)."""
    applied: dict[int, dict[str, tuple[int, str, str, Source]]] = field(default_factory=dict)
    """index -> node -> (term, digest, result_digest, source) of what the node applied."""
    snapshot_index: dict[str, int] = field(default_factory=dict)
    """node -> highest snapshot index it logged (entries at or below it are compacted)."""
    last_index: dict[str, int] = field(default_factory=dict)
    """node -> last index of its log at the end of its events (when known)."""
    persisted: dict[int, dict[tuple[int, str], set[str]]] = field(default_factory=dict)
    """index -> (term, digest) -> nodes that persisted that entry at some point."""
    predates: dict[str, int] = field(default_factory=dict)
    """node -> highest index its log held before our first record of it (first ``start``'s
    ``last_index``, or a snapshot's index): entries up to it may be there unseen."""
    tail_unknown: dict[str, int] = field(default_factory=dict)
    """Node -> first index whose persistence its records cannot tell: they end without a
    ``stop`` (killed, or cut by the analysis window) and the event log is flushed
    periodically, so its last persist events may never have been written."""
    voters: int = 0
    """The largest voter set any ``start`` event listed."""

    @property
    def valid(self) -> bool:
        return not self.violation_counts

    def add(self, v: Violation) -> None:
        n = self.violation_counts.get(v.invariant.value, 0)
        self.violation_counts[v.invariant.value] = n + 1
        if n < MAX_REPORTED_PER_INVARIANT:
            self.violations.append(v)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "violation_counts": dict(sorted(self.violation_counts.items())),
            "violations": [v.to_json() for v in self.violations],
            "leader_checks_skipped": self.leader_checks_skipped,
        }


@dataclass(slots=True)
class _NodeLog:
    """One node's view of its log while replaying its events in program order."""

    entries: dict[int, tuple[int, str, Source]] = field(default_factory=dict)
    last_index: int | None = None  # None: unknown (no start event seen yet)
    snapshot_index: int = 0
    commit: int = 0
    commit_src: Source | None = None
    applied: int | None = None
    applied_src: Source | None = None

    top: int = 0  # highest index present in ``entries`` (0 when empty)

    def apply_persist(self, e: NodeEvent) -> list[tuple[int, int, str]]:
        """Record a persist (which first discards stored entries from its first index on);
        return the entries it wrote."""
        wrote: list[tuple[int, int, str]] = []
        ents = e.get("entries") or []
        if ents:
            self.truncate(int(ents[0][0]))
        for ent in ents:
            idx, term, digest = int(ent[0]), int(ent[1]), str(ent[2])
            self.entries[idx] = (term, digest, e.source)
            self.top = max(self.top, idx)
            wrote.append((idx, term, digest))
        if ents:
            self.last_index = int(ents[-1][0])
        return wrote

    def truncate(self, first: int) -> None:
        """Forget entries at index >= ``first``."""
        for i in range(max(first, 1), self.top + 1):
            self.entries.pop(i, None)
        if first <= self.top:
            self.top = max(first - 1, 0)
        if self.last_index is not None:
            self.last_index = min(self.last_index, first - 1)

    def restart(self, last_index: int | None) -> None:
        """A process start: entries past the recovered last index were not durable."""
        self.last_index = last_index if last_index is not None else self.last_index
        if self.last_index is not None and self.last_index < self.top:
            keep = self.last_index
            self.truncate(keep + 1)
            self.last_index = keep

    def compact(self, index: int) -> None:
        """A snapshot covers entries up to ``index``."""
        self.snapshot_index = max(self.snapshot_index, index)
        for i in [i for i in self.entries if i <= index]:
            del self.entries[i]

    def term_at(self, index: int) -> int | None:
        got = self.entries.get(index)
        return got[0] if got else None


def _node_events_by_node(events: Iterable[NodeEvent]) -> dict[str, list[NodeEvent]]:
    out: dict[str, list[NodeEvent]] = {}
    for e in events:
        out.setdefault(e.node, []).append(e)
    for evs in out.values():
        evs.sort(key=lambda e: e.seq)
    return out


RELEVANT_KINDS = frozenset(
    {"start", "stop", "role", "persist", "truncate", "snapshot", "commit", "apply"}
)
"""The event kinds the checks read. Messages, client requests and votes (most of a run's
events) say nothing about logs, commits or leaders here, and are skipped before replay."""


def _relevant(evs: Sequence[NodeEvent]) -> list[NodeEvent]:
    """The events of one node the replay reads, in program order: the relevant kinds plus
    the node's first and last events (whether its records begin with a ``start`` and end
    with a ``stop`` matters, whatever those events are)."""
    if not evs:
        return []
    kinds = RELEVANT_KINDS
    out = [e for e in evs if e.ev in kinds]
    first, last = evs[0], evs[-1]
    if not out or out[0] is not first:
        out.insert(0, first)
    if out[-1] is not last:
        out.append(last)
    return out


def check_invariants(events: Sequence[NodeEvent]) -> InvariantReport:
    """Check every invariant in the module docstring over all nodes' events."""
    return check_invariants_by_node(_node_events_by_node(events))


def check_invariants_by_node(
    events_by_node: Mapping[str, Sequence[NodeEvent]],
    commit_before: Mapping[str, int] | None = None,
) -> InvariantReport:
    """:func:`check_invariants` over events already grouped by node, each node's list in
    program order (how the analysis holds them: no regrouping, no sort). When the records
    are cut to a window, ``commit_before`` gives each node's commit index as it opened."""
    rep = InvariantReport()
    by_node = {n: _relevant(evs) for n, evs in events_by_node.items()}
    committed = rep.committed
    applied = rep.applied
    commit_term: dict[int, int] = {}
    leaders: dict[int, dict[str, Source]] = {}

    for node, evs in sorted(by_node.items()):
        before = (commit_before or {}).get(node, 0)
        _replay_node(node, evs, rep, committed, applied, commit_term, leaders, before)

    for term in sorted(leaders):
        who = leaders[term]
        rep.leaders_per_term[term] = sorted(who)
        if len(who) > 1:
            names = sorted(who)
            rep.add(
                Violation(
                    Invariant.ELECTION_SAFETY,
                    f"term {term} has {len(who)} leaders: {', '.join(names)}",
                    tuple(names),
                    term,
                    None,
                    tuple(who[n] for n in names),
                )
            )
    rep.elections = sum(len(v) for v in leaders.values())

    for index in sorted(committed):
        _compare(rep, Invariant.LOG_MATCHING, index, committed[index], "committed")
    for index in sorted(applied):
        recs = applied[index]
        as_entries = {n: CommittedEntry(n, index, t, d, s) for n, (t, d, _, s) in recs.items()}
        if not _compare(rep, Invariant.STATE_MACHINE_SAFETY, index, as_entries, "applied"):
            results = {r for _, _, r, _ in recs.values() if r}
            if len(results) > 1:
                names = sorted(recs)
                rep.add(
                    Violation(
                        Invariant.STATE_MACHINE_SAFETY,
                        f"index {index}: same entry gave different results "
                        + ", ".join(f"{n}={recs[n][2]}" for n in names),
                        tuple(names),
                        recs[names[0]][0],
                        index,
                        tuple(recs[n][3] for n in names),
                    )
                )
    rep.applied_entries = sum(len(v) for v in applied.values())
    _check_applied_by_quorum(rep, len(by_node))

    # Leader Completeness needs the final picture of what was committed, so it is a second
    # replay of each node that became leader.
    known: dict[int, CommittedEntry] = {}
    for index, crecs in committed.items():
        withd = [r for r in crecs.values() if r.digest]
        known[index] = (withd or list(crecs.values()))[0]
    for index, recs2 in applied.items():
        if index not in known:
            n, (t, d, _, s) = next(iter(recs2.items()))
            known[index] = CommittedEntry(n, index, t, d, s)
    for node, evs in sorted(by_node.items()):
        if any(e.ev == "role" and e.get("role") == "leader" for e in evs):
            _check_leader_completeness(node, evs, known, commit_term, rep)
    return rep


def _compare(
    rep: InvariantReport, inv: Invariant, index: int, recs: dict[str, CommittedEntry], what: str
) -> bool:
    """Report when the nodes' records for ``index`` disagree; True if one was reported."""
    terms = {r.term for r in recs.values()}
    digests = {r.digest for r in recs.values() if r.digest}
    if len(terms) <= 1 and len(digests) <= 1:
        return False
    names = sorted(recs)
    desc = ", ".join(f"{n}=(term {recs[n].term}, {recs[n].digest or '?'})" for n in names)
    rep.add(
        Violation(
            inv,
            f"index {index} {what} differently: {desc}",
            tuple(names),
            min(terms),
            index,
            tuple(recs[n].source for n in names),
        )
    )
    return True


def _replay_node(
    node: str,
    evs: list[NodeEvent],
    rep: InvariantReport,
    committed: dict[int, dict[str, CommittedEntry]],
    applied: dict[int, dict[str, tuple[int, str, str, Source]]],
    commit_term: dict[int, int],
    leaders: dict[int, dict[str, Source]],
    commit_before: int = 0,
) -> None:
    log = _NodeLog()
    # Records that do not begin with the node's start (an analysis window, a rotated log)
    # do not say what it held before: up to the first index it persists in them, its log
    # predates our records. What it had committed is known if the window's loader saw it.
    unknown_prefix = bool(evs) and evs[0].ev != "start"
    if unknown_prefix:
        log.commit = commit_before
    for e in evs:
        if unknown_prefix and e.ev == "persist":
            unknown_prefix = False
            first = _int(e.get("first"), 1) or 1
            rep.predates[node] = max(rep.predates.get(node, 0), first - 1)
        if e.ev == "start":
            # Entries up to its last index were on its disk when it (re)started, persisted
            # before our records if they are not in them.
            li = _int(e.get("last_index"), 0) or 0
            rep.predates[node] = max(rep.predates.get(node, 0), li)
            voters = e.get("voters")
            if isinstance(voters, list):
                rep.voters = max(rep.voters, len(voters))
            log.restart(_int(e.get("last_index"), None))
            log.commit = _int(e.get("commit"), 0) or 0
            log.commit_src = e.source
            log.applied = _int(e.get("applied"), None)
            log.applied_src = e.source
        elif e.ev == "role" and e.get("role") == "leader":
            leaders.setdefault(e.term, {}).setdefault(node, e.source)
        elif e.ev == "persist":
            for idx, term, digest in log.apply_persist(e):
                rep.persisted.setdefault(idx, {}).setdefault((term, digest), set()).add(node)
                c = committed.get(idx, {}).get(node)
                # A leader may commit on its followers' durable acks before its own write is
                # persisted (asynchronous durable writes): the commit then knew no digest yet.
                differs = c is not None and (
                    c.term != term or (bool(c.digest) and bool(digest) and c.digest != digest)
                )
                if idx <= log.commit and c is not None and differs:
                    rep.add(
                        Violation(
                            Invariant.LOG_MATCHING,
                            f"{node} overwrote committed index {idx} (term {c.term}) with "
                            f"term {term}",
                            (node,),
                            term,
                            idx,
                            (c.source, e.source),
                        )
                    )
        elif e.ev == "truncate":
            frm = _int(e.get("from"), 0) or 0
            if 0 < frm <= log.commit:
                rep.add(
                    Violation(
                        Invariant.LOG_MATCHING,
                        f"{node} truncated from index {frm}, at or below its commit index "
                        f"{log.commit}",
                        (node,),
                        e.term,
                        frm,
                        tuple(s for s in (log.commit_src, e.source) if s is not None),
                    )
                )
            log.truncate(frm)
        elif e.ev == "snapshot":
            idx = _int(e.get("index"), 0) or 0
            log.compact(idx)
            rep.predates[node] = max(rep.predates.get(node, 0), idx)
            if e.get("action") in ("install", "load"):
                log.applied = idx if log.applied is None else max(log.applied, idx)
                log.applied_src = e.source
                log.commit = max(log.commit, idx)
                if log.last_index is None or log.last_index < idx:
                    log.last_index = idx
        elif e.ev == "commit":
            _on_commit(node, e, log, rep, committed, commit_term)
        elif e.ev == "apply":
            _on_apply(node, e, log, rep, applied, commit_term)
    if evs and evs[-1].ev != "stop":
        rep.tail_unknown[node] = log.top + 1
    if unknown_prefix:  # it persisted nothing in our records: all it applied predates them
        top_applied = max((i for i, by in applied.items() if node in by), default=0)
        rep.predates[node] = max(rep.predates.get(node, 0), log.top, top_applied)
    rep.snapshot_index[node] = log.snapshot_index
    if log.last_index is not None:
        rep.last_index[node] = log.last_index
    elif log.top:
        rep.last_index[node] = log.top


def _int(x: Any, default: int | None) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def _on_commit(
    node: str,
    e: NodeEvent,
    log: _NodeLog,
    rep: InvariantReport,
    committed: dict[int, dict[str, CommittedEntry]],
    commit_term: dict[int, int],
) -> None:
    idx = int(e.get("index"))
    rep.commit_events += 1
    rep.max_commit = max(rep.max_commit, idx)
    if idx < log.commit:
        rep.add(
            Violation(
                Invariant.COMMIT_MONOTONIC,
                f"{node} commit index went back from {log.commit} to {idx} in one run",
                (node,),
                e.term,
                idx,
                tuple(s for s in (log.commit_src, e.source) if s is not None),
            )
        )
        log.commit, log.commit_src = idx, e.source
        return
    eterm = _int(e.get("eterm"), None)
    own = log.term_at(idx)
    if eterm is not None and own is not None and own != eterm:
        rep.add(
            Violation(
                Invariant.LOG_MATCHING,
                f"{node} committed index {idx} as term {eterm} but its log has term {own}",
                (node,),
                eterm,
                idx,
                (log.entries[idx][2], e.source),
            )
        )
    lo = max(log.commit, log.snapshot_index) + 1
    for i in range(lo, idx + 1):
        got = log.entries.get(i)
        if got is not None:
            rec = CommittedEntry(node, i, got[0], got[1], e.source)
        elif i == idx and eterm is not None:
            rec = CommittedEntry(node, i, eterm, "", e.source)
        else:
            continue
        committed.setdefault(i, {}).setdefault(node, rec)
        commit_term[i] = min(commit_term.get(i, e.term), e.term)
    log.commit, log.commit_src = idx, e.source


def _on_apply(
    node: str,
    e: NodeEvent,
    log: _NodeLog,
    rep: InvariantReport,
    applied: dict[int, dict[str, tuple[int, str, str, Source]]],
    commit_term: dict[int, int],
) -> None:
    for ent in e.get("entries") or []:
        idx, term, digest = int(ent[0]), int(ent[1]), str(ent[2])
        result = str(ent[3]) if len(ent) > 3 else ""
        if idx > log.commit:
            rep.add(
                Violation(
                    Invariant.APPLIED_WITHIN_COMMIT,
                    f"{node} applied index {idx} while its commit index was {log.commit}",
                    (node,),
                    term,
                    idx,
                    tuple(s for s in (log.commit_src, e.source) if s is not None),
                )
            )
        if log.applied is not None and idx != log.applied + 1:
            kind = "gap" if idx > log.applied + 1 else "repeat or reorder"
            rep.add(
                Violation(
                    Invariant.APPLIED_PREFIX,
                    f"{node} applied index {idx} right after {log.applied} ({kind})",
                    (node,),
                    term,
                    idx,
                    tuple(s for s in (log.applied_src, e.source) if s is not None),
                )
            )
        if log.applied is None or idx > log.applied:
            log.applied = idx
            log.applied_src = e.source
        recs = applied.setdefault(idx, {})
        prev = recs.get(node)
        if prev is None:
            recs[node] = (term, digest, result, e.source)
        elif (prev[0], prev[1]) != (term, digest) or (prev[2] and result and prev[2] != result):
            # The same node applied index ``idx`` again (a restart replays the log) and got
            # another entry or another result: its log or its state machine changed under it.
            rep.add(
                Violation(
                    Invariant.STATE_MACHINE_SAFETY,
                    f"{node} applied index {idx} twice differently: (term {prev[0]}, "
                    f"{prev[1]}, result {prev[2] or '?'}) then (term {term}, {digest}, "
                    f"result {result or '?'})",
                    (node,),
                    term,
                    idx,
                    (prev[3], e.source),
                )
            )
        commit_term[idx] = min(commit_term.get(idx, e.term), e.term)


def _check_leader_completeness(
    node: str,
    evs: list[NodeEvent],
    known: dict[int, CommittedEntry],
    commit_term: dict[int, int],
    rep: InvariantReport,
) -> None:
    log = _NodeLog()
    indexes = sorted(known)
    for e in evs:
        if e.ev == "start":
            log.restart(_int(e.get("last_index"), None))
        elif e.ev == "persist":
            log.apply_persist(e)
        elif e.ev == "truncate":
            log.truncate(_int(e.get("from"), 0) or 0)
        elif e.ev == "snapshot":
            idx = _int(e.get("index"), 0) or 0
            log.compact(idx)
            if e.get("action") in ("install", "load") and (
                log.last_index is None or log.last_index < idx
            ):
                log.last_index = idx
        elif e.ev == "role" and e.get("role") == "leader":
            T = e.term
            missing: list[int] = []
            for i in indexes:
                if commit_term.get(i, T) >= T or i <= log.snapshot_index:
                    continue
                c = known[i]
                have = log.entries.get(i)
                if have is not None:
                    if have[0] != c.term or (c.digest and have[1] != c.digest):
                        rep.add(
                            Violation(
                                Invariant.LEADER_COMPLETENESS,
                                f"{node} became leader of term {T} with index {i} of term "
                                f"{have[0]}, but term {c.term} was committed there by {c.node}",
                                (node, c.node),
                                T,
                                i,
                                (e.source, have[2], c.source),
                            )
                        )
                elif log.last_index is not None and i > log.last_index:
                    missing.append(i)
                else:
                    rep.leader_checks_skipped += 1
            if missing:
                c = known[missing[0]]
                rep.add(
                    Violation(
                        Invariant.LEADER_COMPLETENESS,
                        f"{node} became leader of term {T} with last index {log.last_index}, "
                        f"missing committed entries {missing[0]}..{missing[-1]} "
                        f"(index {c.index} committed by {c.node})",
                        (node, c.node),
                        T,
                        missing[0],
                        (e.source, c.source),
                    )
                )


def _check_applied_by_quorum(rep: InvariantReport, nodes_seen: int) -> None:
    """Every applied (index, term, digest) was persisted by a majority (module docstring)."""
    size = max(nodes_seen, rep.voters)
    quorum = size // 2 + 1
    for index in sorted(rep.applied):
        by_entry: dict[tuple[int, str], list[str]] = {}
        for n, (term, digest, _, _) in rep.applied[index].items():
            by_entry.setdefault((term, digest), []).append(n)
        persisted = rep.persisted.get(index, {})
        persisted_nodes = set().union(*persisted.values()) if persisted else set()
        for (term, digest), appliers in sorted(by_entry.items()):
            holders: set[str] = set()
            for (pterm, pdigest), who in persisted.items():
                if pterm == term and (not digest or not pdigest or pdigest == digest):
                    holders |= who
            maybe = {
                n for n, upto in rep.predates.items() if upto >= index and n not in persisted_nodes
            } | {
                n
                for n, start in rep.tail_unknown.items()
                if start <= index and n not in persisted_nodes
            }
            if len(holders | maybe) >= quorum:
                continue
            names = sorted(appliers)
            held = ", ".join(sorted(holders)) or "no node"
            rep.add(
                Violation(
                    Invariant.APPLIED_BY_QUORUM,
                    f"{', '.join(names)} applied index {index} (term {term}, {digest or '?'}) "
                    f"but only {held} persisted it; a quorum is {quorum} of {size}",
                    tuple(names),
                    term,
                    index,
                    tuple(rep.applied[index][n][3] for n in names),
                )
            )
