"""Merge per-node event logs into one timeline that respects happens-before.

Two steps (docs/analysis.md has the long form):

1. **Clock offsets.** Every ``send``/``recv`` pair with the same message id is a causal
   edge: the receive happened after the send in real time. With ``off_X`` the amount node X's
   clock is ahead of true time, a message A->B gives ``off_B - off_A < recv.ts - send.ts``;
   the minimum over all A->B messages is the tightest upper bound, and the B->A direction
   gives a lower bound. Like NTP (and Jepsen's clock plots), the estimate for the pair is the
   midpoint of ``[max lower bound, min upper bound]``; its half-width bounds the error when
   both directions are seen (assuming the clocks did not jump during the run). Pairwise
   estimates are combined by weighted least squares relative to a reference node (weight
   1/width²), so every node connected to the reference by messages gets an offset. Each
   process run of a node (between ``start`` events) is its own clock: a restarted process
   may come back with a different offset.
2. **Order.** Program order within each node plus send->recv edges form a DAG. A Kahn
   topological sort that always emits the ready event with the smallest *corrected*
   timestamp (``ts - offset``) yields an order that is consistent with happens-before by
   construction and follows real time as closely as the estimates allow. Vector and Lamport
   clocks are assigned on the way (used by the ShiViz export).

Guarantees: each node's events keep their file order; every matched ``recv`` comes after its
``send``; a skewed clock shifts only corrected timestamps, never causality.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.analysis.events import LineProblem, LoadedLogs, NodeEvent

__all__ = [
    "ClockEstimate",
    "MergedEvent",
    "MergedTimeline",
    "PairBounds",
    "estimate_offsets",
    "merge",
]


@dataclass(frozen=True, slots=True)
class PairBounds:
    """What the message pairs say about ``off_b - off_a`` (seconds)."""

    a: str
    b: str
    lower: float  # -inf when no b->a message was seen
    upper: float  # +inf when no a->b message was seen
    samples: int

    @property
    def consistent(self) -> bool:
        return self.lower <= self.upper

    @property
    def estimate(self) -> float:
        if math.isfinite(self.lower) and math.isfinite(self.upper):
            return (self.lower + self.upper) / 2
        return self.upper if math.isfinite(self.upper) else self.lower

    @property
    def half_width(self) -> float:
        if math.isfinite(self.lower) and math.isfinite(self.upper):
            return abs(self.upper - self.lower) / 2
        return math.inf


def clock_label(node: str, run: int, runs: int) -> str:
    """The name of one process run's clock: the node id when the node logged one run,
    ``n1#2`` for its second run otherwise."""
    return node if runs <= 1 else f"{node}#{run}"


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """Estimated clock offsets relative to the ``reference`` clock (positive: ahead).

    A clock is one process run of a node (:func:`clock_label`): a restart may come up with a
    different clock (a ``clock`` fault, a node started under faketime), so each run gets its
    own offset. ``uncertainty`` is the half-width of the tightest bound chain to the
    reference (inf when linked by messages in one direction only, or not at all); a run
    with no messages borrows the offset of its node's nearest linked run."""

    reference: str
    offsets: Mapping[str, float]
    uncertainty: Mapping[str, float]
    pairs: tuple[PairBounds, ...]
    unlinked: tuple[str, ...]
    labels: Mapping[tuple[str, int], str]
    """(node, run) -> clock label."""

    def offset(self, node: str, run: int) -> float:
        return self.offsets.get(self.labels.get((node, run), node), 0.0)

    @property
    def node_offsets(self) -> dict[str, float]:
        """Per node, the offset of its last process run (for summaries)."""
        last: dict[str, tuple[int, str]] = {}
        for (node, run), label in self.labels.items():
            if node not in last or run > last[node][0]:
                last[node] = (run, label)
        return {n: self.offsets.get(label, 0.0) for n, (_, label) in sorted(last.items())}


@dataclass(frozen=True, slots=True)
class MergedEvent:
    event: NodeEvent
    cts: float
    """Timestamp corrected to the reference node's clock."""
    lamport: int
    vclock: tuple[int, ...]
    """Vector clock, one component per node in :attr:`MergedTimeline.nodes` order."""
    send: NodeEvent | None
    """For a ``recv``: the matching ``send`` (None when the send was not logged)."""


@dataclass(slots=True)
class MergedTimeline:
    nodes: list[str]
    events: list[MergedEvent]
    clocks: ClockEstimate
    problems: list[LineProblem] = field(default_factory=list)
    pairs_matched: int = 0
    recv_unmatched: int = 0

    def write_jsonl(self, path: Path) -> None:
        """One line per event: the original fields plus ``cts``, ``lamport`` and ``src``."""
        dumps = json.dumps
        with path.open("w", encoding="utf-8") as fh:
            out: list[str] = []
            for m in self.events:
                e = m.event
                src = dumps(str(e.source))
                tail = f'"cts":{round(m.cts, 6)!r},"lamport":{m.lamport},"src":{src}}}'
                raw = e.raw
                if raw.endswith("}") and raw.startswith("{"):
                    # The line as read, extended: no re-serialisation of the event's fields.
                    out.append(raw[:-1] + ("," if len(raw) > 2 else "") + tail)
                else:
                    obj: dict[str, Any] = {"ts": e.ts, "node": e.node, "term": e.term, "ev": e.ev}
                    obj.update(e.fields)
                    out.append(dumps(obj, separators=(",", ":"))[:-1] + "," + tail)
                if len(out) >= 4096:
                    fh.write("\n".join(out) + "\n")
                    out.clear()
            if out:
                fh.write("\n".join(out) + "\n")


def _match_pairs(
    logs: LoadedLogs, problems: list[LineProblem]
) -> tuple[dict[str, NodeEvent], dict[str, list[NodeEvent]]]:
    """Sends by id (ids used by two sends are dropped as ambiguous) and recvs by id."""
    sends: dict[str, NodeEvent] = {}
    dup: set[str] = set()
    recvs: dict[str, list[NodeEvent]] = {}
    for e in logs.all_events():
        if e.ev == "send":
            mid = str(e.get("id"))
            if mid in sends:
                dup.add(mid)
                problems.append(LineProblem(e.source, f"message id {mid} sent twice; pair ignored"))
            sends[mid] = e
        elif e.ev == "recv":
            recvs.setdefault(str(e.get("id")), []).append(e)
    for mid in dup:
        del sends[mid]
    return sends, recvs


def estimate_offsets(
    logs: LoadedLogs,
    reference: str | None = None,
    pairs_by_id: tuple[dict[str, NodeEvent], dict[str, list[NodeEvent]]] | None = None,
) -> ClockEstimate:
    """Estimate every process run's clock offset from its message pairs (module docstring).
    ``reference`` names a node (its first run with messages is the reference clock) or a
    clock label."""
    sends, recvs = pairs_by_id if pairs_by_id is not None else _match_pairs(logs, [])
    runs_of: dict[str, list[int]] = {}
    for node, evs in logs.events_by_node.items():
        runs_of[node] = sorted({e.run for e in evs})
    labels = {
        (node, run): clock_label(node, run, len(runs))
        for node, runs in runs_of.items()
        for run in runs
    }
    upper: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    for mid, rs in recvs.items():
        s = sends.get(mid)
        if s is None:
            continue
        for r in rs:
            if r.node == s.node:
                continue
            k = (labels[(s.node, s.run)], labels[(r.node, r.run)])
            upper[k] = min(upper.get(k, math.inf), r.ts - s.ts)
            count[k] = count.get(k, 0) + 1
    clocks = sorted(set(labels.values()))
    pairs: list[PairBounds] = []
    for i, a in enumerate(clocks):
        for b in clocks[i + 1 :]:
            up = upper.get((a, b), math.inf)
            lo = -upper.get((b, a), math.inf)
            n = count.get((a, b), 0) + count.get((b, a), 0)
            if n:
                pairs.append(PairBounds(a, b, lo, up, n))
    linked = {p.a for p in pairs} | {p.b for p in pairs}
    ref = ""
    if reference in clocks:
        ref = reference
    else:
        want = reference if reference in runs_of else (logs.nodes[0] if logs.nodes else "")
        cands = [labels[(want, r)] for r in runs_of.get(want, [])]
        ref = next((c for c in cands if c in linked), cands[0] if cands else "")
    offsets, unc, unlinked = _solve(clocks, ref, pairs)
    # A run without messages borrows its node's nearest linked run's offset.
    for node, runs in runs_of.items():
        for run in runs:
            lab = labels[(node, run)]
            if lab in linked or lab == ref:
                continue
            near = sorted(
                (abs(r - run), labels[(node, r)]) for r in runs if labels[(node, r)] in linked
            )
            if near:
                offsets[lab] = offsets[near[0][1]]
    return ClockEstimate(ref, offsets, unc, tuple(pairs), tuple(unlinked), labels)


def _solve(
    nodes: list[str], reference: str, pairs: list[PairBounds]
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Weighted least squares over pair estimates, offsets relative to ``reference``.

    Solved by Gauss-Seidel iteration (bounded count) on the normal equations, which is
    exact enough for the handful of nodes a cluster has and needs no linear algebra package.
    Uncertainty is the smallest sum of half-widths along any path to the reference
    (Dijkstra), an honest bound for the tightest chain of two-way exchanges."""
    adj: dict[str, list[tuple[str, float, float]]] = {n: [] for n in nodes}
    for p in pairs:
        hw = p.half_width
        w = 1.0 / max(hw, 1e-4) ** 2 if math.isfinite(hw) else 1e-2
        adj[p.a].append((p.b, p.estimate, w))  # off_b - off_a = est
        adj[p.b].append((p.a, -p.estimate, w))
    # Connected component of the reference.
    comp = {reference} if reference else set()
    stack = [reference] if reference else []
    while stack:
        n = stack.pop()
        for m, _, _ in adj[n]:
            if m not in comp:
                comp.add(m)
                stack.append(m)
    # Initial guess by BFS along estimates, then Gauss-Seidel refinement.
    off: dict[str, float] = dict.fromkeys(nodes, 0.0)
    seen = {reference}
    queue = [reference]
    while queue:
        n = queue.pop(0)
        for m, est, _ in adj[n]:
            if m not in seen:
                off[m] = off[n] + est
                seen.add(m)
                queue.append(m)
    for _ in range(200):
        delta = 0.0
        for n in nodes:
            if n == reference or n not in comp or not adj[n]:
                continue
            num = sum(w * (off[m] - est) for m, est, w in adj[n])
            den = sum(w for _, _, w in adj[n])
            new = num / den
            delta = max(delta, abs(new - off[n]))
            off[n] = new
        if delta < 1e-9:
            break
    # Uncertainty: shortest path in half-widths.
    unc: dict[str, float] = dict.fromkeys(nodes, math.inf)
    if reference:
        unc[reference] = 0.0
        heap: list[tuple[float, str]] = [(0.0, reference)]
        hw_of = {}
        for p in pairs:
            hw_of[(p.a, p.b)] = hw_of[(p.b, p.a)] = p.half_width
        while heap:
            d, n = heapq.heappop(heap)
            if d > unc[n]:
                continue
            for m, _, _ in adj[n]:
                nd = d + hw_of[(n, m)]
                if nd < unc[m]:
                    unc[m] = nd
                    heapq.heappush(heap, (nd, m))
    unlinked = sorted(n for n in nodes if n not in comp)
    return off, unc, unlinked


def merge(logs: LoadedLogs, reference: str | None = None) -> MergedTimeline:
    """One happens-before-consistent timeline of all nodes' events (module docstring)."""
    problems: list[LineProblem] = []
    sends, recvs = _match_pairs(logs, problems)
    clocks = estimate_offsets(logs, reference, (sends, recvs))
    nodes = logs.nodes
    col = {n: i for i, n in enumerate(nodes)}
    per_node = logs.events_by_node

    # recv -> its send (only cross-node pairs; a self-send is just program order).
    send_of: dict[tuple[str, int], NodeEvent] = {}
    waiting: dict[tuple[str, int], list[NodeEvent]] = {}  # send key -> recvs blocked on it
    matched = unmatched = 0
    for mid, rs in recvs.items():
        s = sends.get(mid)
        for r in rs:
            if s is None:
                unmatched += 1
                continue
            if s.node == r.node:
                continue
            send_of[(r.node, r.seq)] = s
            waiting.setdefault((s.node, s.seq), []).append(r)
            matched += 1

    done: set[tuple[str, int]] = set()
    nxt = dict.fromkeys(nodes, 0)  # next unemitted seq per node
    vc_now = {n: [0] * len(nodes) for n in nodes}
    lamport_now = dict.fromkeys(nodes, 0)
    send_clock: dict[tuple[str, int], tuple[tuple[int, ...], int]] = {}
    heap: list[tuple[float, str, int]] = []

    offset_of = {key: clocks.offset(*key) for key in clocks.labels}

    def cts(e: NodeEvent) -> float:
        return e.ts - offset_of.get((e.node, e.run), 0.0)

    def ready(e: NodeEvent) -> bool:
        s = send_of.get((e.node, e.seq))
        return s is None or (s.node, s.seq) in done

    def offer(node: str) -> None:
        i = nxt[node]
        evs = per_node[node]
        if i < len(evs) and ready(evs[i]):
            heapq.heappush(heap, (cts(evs[i]), node, i))

    for n in nodes:
        offer(n)
    out: list[MergedEvent] = []
    total = logs.count()
    while len(out) < total:
        if not heap:
            # A cycle: some recv waits for a send that (by the logs) comes after it. Force the
            # earliest blocked head and say so; the logs are inconsistent, not the merger.
            heads = [per_node[n][nxt[n]] for n in nodes if nxt[n] < len(per_node[n])]
            e = min(heads, key=cts)
            s = send_of.pop((e.node, e.seq))
            problems.append(
                LineProblem(
                    e.source,
                    f"recv of {e.get('id')} cannot follow its send at {s.source} "
                    "(cycle in the logs); ordered by time instead",
                )
            )
            heapq.heappush(heap, (cts(e), e.node, e.seq))
        _, node, i = heapq.heappop(heap)
        e = per_node[node][i]
        vc = vc_now[node]
        lam = lamport_now[node] + 1
        s = send_of.get((node, i))
        if s is not None:
            svc, slam = send_clock[(s.node, s.seq)]
            for k, v in enumerate(svc):
                if v > vc[k]:
                    vc[k] = v
            lam = max(lam, slam + 1)
        vc[col[node]] += 1
        lamport_now[node] = lam
        vct = tuple(vc)
        if e.ev == "send":
            send_clock[(node, i)] = (vct, lam)
        out.append(MergedEvent(e, cts(e), lam, vct, s))
        done.add((node, i))
        nxt[node] = i + 1
        offer(node)
        for r in waiting.get((node, i), ()):
            if nxt[r.node] == r.seq:
                offer(r.node)
    return MergedTimeline(nodes, out, clocks, problems, matched, unmatched)
