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
from collections.abc import Mapping, Sequence
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
    """The merged order, kept as parallel columns: ``order[i]`` is the i-th event, ``cts[i]``
    its corrected timestamp, ``lamport[i]`` its Lamport clock. :attr:`events` builds the
    per-event objects with vector clocks on demand (the ShiViz export, tests); the analysis
    itself never needs them, and building them costs as much as the merge."""

    nodes: list[str]
    order: list[NodeEvent]
    cts: list[float]
    lamport: list[int]
    clocks: ClockEstimate
    problems: list[LineProblem] = field(default_factory=list)
    pairs_matched: int = 0
    recv_unmatched: int = 0
    node_cts: dict[str, list[float]] = field(default_factory=dict)
    """Per node, the corrected timestamp of each of its events by ``seq``."""
    send_of: dict[str, dict[int, NodeEvent]] = field(default_factory=dict)
    """Per node, recv ``seq`` -> the matching send (cross-node pairs the order used)."""
    _events: list[MergedEvent] | None = None

    def __len__(self) -> int:
        return len(self.order)

    @property
    def events(self) -> list[MergedEvent]:
        """The merged events with vector clocks (computed once, on first use)."""
        if self._events is None:
            self._events = self._build_events()
        return self._events

    def _build_events(self) -> list[MergedEvent]:
        col = {n: i for i, n in enumerate(self.nodes)}
        vc_now = {n: [0] * len(self.nodes) for n in self.nodes}
        send_vc: dict[tuple[str, int], tuple[int, ...]] = {}
        out: list[MergedEvent] = []
        for e, c, lam in zip(self.order, self.cts, self.lamport, strict=True):
            node = e.node
            vc = vc_now[node]
            s = self.send_of.get(node, {}).get(e.seq)
            if s is not None:
                for k, v in enumerate(send_vc[(s.node, s.seq)]):
                    if v > vc[k]:
                        vc[k] = v
            vc[col[node]] += 1
            vct = tuple(vc)
            if e.ev == "send":
                send_vc[(node, e.seq)] = vct
            out.append(MergedEvent(e, c, lam, vct, s))
        return out

    def write_jsonl(self, path: Path) -> None:
        """One line per event: the original fields plus ``cts``, ``lamport`` and ``src``.

        Each line is the line as read, extended (no re-serialisation of the event's
        fields); only a line that does not look like ``{...}`` is serialised again. ``cts``
        is ``repr(round(cts, 6))``, which for 1e-4 <= cts < 2**32 (every wall-clock second
        until 2106) is the ``%.6f`` text without trailing zeros, at a third of the cost:
        there a double's spacing is below 1e-6, so that text is the shortest that reads
        back as the same double (what ``repr`` prints), and ``round`` and ``%.6f`` round
        alike."""
        dumps = json.dumps
        prefix: dict[str, str] = {}  # file -> '"file:' (the JSON string of the source, open)
        with path.open("wb") as fh:
            out: list[bytes] = []
            for e, c, lam in zip(self.order, self.cts, self.lamport, strict=True):
                src = e.source
                pre = prefix.get(src.file)
                if pre is None:
                    pre = prefix[src.file] = dumps(src.file)[:-1] + ":"
                if 1e-4 <= c < 4294967296.0:
                    t = f"{c:.6f}".rstrip("0")
                    if t[-1] == ".":
                        t += "0"
                else:
                    t = repr(round(c, 6))
                tail = f'"cts":{t},"lamport":{lam},"src":{pre}{src.line}"}}'.encode()
                raw = e.raw
                if raw[-1:] == b"}" and raw[:1] == b"{":
                    out.append(raw[:-1] + (b"," if len(raw) > 2 else b"") + tail)
                else:
                    obj: dict[str, Any] = {"ts": e.ts, "node": e.node, "term": e.term, "ev": e.ev}
                    obj.update(e.fields)
                    out.append((dumps(obj, separators=(",", ":"))[:-1] + ",").encode() + tail)
                if len(out) >= 8192:
                    out.append(b"")
                    fh.write(b"\n".join(out))
                    out.clear()
            if out:
                out.append(b"")
                fh.write(b"\n".join(out))


def _match_pairs(
    logs: LoadedLogs, problems: list[LineProblem]
) -> tuple[dict[str, NodeEvent], dict[str, list[NodeEvent]]]:
    """Sends by id (ids used by two sends are dropped as ambiguous) and recvs by id."""
    sends: dict[str, NodeEvent] = {}
    dup: set[str] = set()
    recvs: dict[str, list[NodeEvent]] = {}
    for node in logs.nodes:
        for e in logs.events_by_node[node]:
            ev = e.ev
            if ev == "send":
                mid = e.fields["id"]
                if mid in sends:
                    dup.add(mid)
                    problems.append(
                        LineProblem(e.source, f"message id {mid} sent twice; pair ignored")
                    )
                sends[mid] = e
            elif ev == "recv":
                mid = e.fields["id"]
                got = recvs.get(mid)
                if got is None:
                    recvs[mid] = [e]
                else:
                    got.append(e)
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
        runs_of[node] = _runs(evs)
    labels = {
        (node, run): clock_label(node, run, len(runs))
        for node, runs in runs_of.items()
        for run in runs
    }
    # node -> run -> label, indexed without building a key per message
    label_of: dict[str, dict[int, str]] = {}
    for (node, run), lab in labels.items():
        label_of.setdefault(node, {})[run] = lab
    upper: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    for mid, rs in recvs.items():
        s = sends.get(mid)
        if s is None:
            continue
        snode = s.node
        slab = label_of[snode][s.run]
        sts = s.ts
        for r in rs:
            rnode = r.node
            if rnode == snode:
                continue
            k = (slab, label_of[rnode][r.run])
            d = r.ts - sts
            u = upper.get(k)
            if u is None:
                upper[k] = d
                count[k] = 1
            else:
                if d < u:
                    upper[k] = d
                count[k] += 1
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


def run_starts(evs: Sequence[NodeEvent]) -> list[int]:
    """The index of the first event of each process run in one node's events. ``run`` never
    decreases in program order, so each is found by a binary search, not a pass."""
    out: list[int] = []
    i, n = 0, len(evs)
    while i < n:
        out.append(i)
        r = evs[i].run
        lo, hi = i + 1, n
        while lo < hi:
            mid = (lo + hi) // 2
            if evs[mid].run > r:
                hi = mid
            else:
                lo = mid + 1
        i = lo
    return out


def _runs(evs: Sequence[NodeEvent]) -> list[int]:
    """The distinct process runs in one node's events, in order."""
    return [evs[i].run for i in run_starts(evs)]


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
    queue = [reference] if reference else []  # no nodes: a history-only analysis
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


def _sorted_merge(
    streams: list[list[NodeEvent]],
    cts_of: list[list[float]],
    block: list[dict[int, tuple[int, int]]],
) -> tuple[list[NodeEvent], list[float], list[int]] | None:
    """The merged order by one stable sort, when that is provably Kahn's order; else None.

    Kahn's algorithm emits the smallest ready head by (cts, node, seq). When every node's
    corrected times never go back and every recv sorts after its send, the smallest head is
    always ready, so the order is simply all events sorted by that key: a stable sort of
    the per-node lists concatenated in node order (ties keep node, then seq, order), which
    is C code merging already sorted runs. Lamport clocks follow in one pass."""
    for c in cts_of:
        if c != sorted(c):
            return None
    base: list[int] = []
    n = 0
    for evs in streams:
        base.append(n)
        n += len(evs)
    for k, blk in enumerate(block):
        ck = cts_of[k]
        for seq, (sk, sseq) in blk.items():
            sc, rc = cts_of[sk][sseq], ck[seq]
            if sc > rc or (sc == rc and sk > k):
                return None  # this recv would sort before its send: Kahn's order differs
    all_cts: list[float] = []
    all_events: list[NodeEvent] = []
    node_of: list[int] = []
    for k, evs in enumerate(streams):
        all_cts += cts_of[k]
        all_events += evs
        node_of += [k] * len(evs)
    send_gid = [-1] * n
    for k, blk in enumerate(block):
        b = base[k]
        for seq, (sk, sseq) in blk.items():
            send_gid[b + seq] = base[sk] + sseq
    idx = sorted(range(n), key=all_cts.__getitem__)
    lam = [0] * n
    last = [0] * len(streams)
    for g in idx:
        k = node_of[g]
        lg = last[k] + 1
        sg = send_gid[g]
        if sg >= 0:
            ls = lam[sg] + 1
            if ls > lg:
                lg = ls
        last[k] = lg
        lam[g] = lg
    return (
        list(map(all_events.__getitem__, idx)),
        list(map(all_cts.__getitem__, idx)),
        list(map(lam.__getitem__, idx)),
    )


def merge(logs: LoadedLogs, reference: str | None = None) -> MergedTimeline:
    """One happens-before-consistent timeline of all nodes' events (module docstring).

    Kahn's algorithm over the per-node streams with a heap of the ready heads keyed by
    (corrected time, node, seq): each step emits the smallest ready head and replaces it by
    its node's next event (one ``heapreplace``), so the cost is one heap operation per event
    and no per-event objects beyond the output columns."""
    problems: list[LineProblem] = []
    sends, recvs = _match_pairs(logs, problems)
    clocks = estimate_offsets(logs, reference, (sends, recvs))
    nodes = logs.nodes
    col = {n: i for i, n in enumerate(nodes)}
    streams = [logs.events_by_node[n] for n in nodes]

    # recv -> its send (only cross-node pairs; a self-send is just program order).
    send_of: dict[str, dict[int, NodeEvent]] = {n: {} for n in nodes}
    # Per node column: what blocks each recv (the send's node column and seq), by recv seq.
    block: list[dict[int, tuple[int, int]]] = [{} for _ in nodes]
    matched = unmatched = 0
    for mid, rs in recvs.items():
        s = sends.get(mid)
        if s is None:
            unmatched += len(rs)
            continue
        snode = s.node
        key = (col[snode], s.seq)
        for r in rs:
            rnode = r.node
            if snode == rnode:
                continue
            send_of[rnode][r.seq] = s
            block[col[rnode]][r.seq] = key
            matched += 1

    node_cts: dict[str, list[float]] = {}
    for n, evs in zip(nodes, streams, strict=True):
        offs = {run: clocks.offset(n, run) for run in _runs(evs)}
        if len(offs) == 1:
            (off,) = offs.values()
            node_cts[n] = [e.ts - off for e in evs]
        else:
            node_cts[n] = [e.ts - offs[e.run] for e in evs]
    cts_of = [node_cts[n] for n in nodes]
    order, cts_out, lam_out = _sorted_merge(streams, cts_of, block) or _heap_merge(
        streams, cts_of, block, send_of, problems
    )
    return MergedTimeline(
        nodes,
        order,
        cts_out,
        lam_out,
        clocks,
        problems,
        matched,
        unmatched,
        node_cts=node_cts,
        send_of=send_of,
    )


def _heap_merge(
    streams: list[list[NodeEvent]],
    cts_of: list[list[float]],
    block: list[dict[int, tuple[int, int]]],
    send_of: dict[str, dict[int, NodeEvent]],
    problems: list[LineProblem],
) -> tuple[list[NodeEvent], list[float], list[int]]:
    """Kahn's order with a heap of the ready heads (:func:`merge`); a recv forced out of a
    cycle loses its send in ``block`` and ``send_of``, and the problem is recorded."""
    nodes = range(len(streams))
    # Recvs waiting on each send, by the send's node column and seq.
    wake: list[dict[int, list[tuple[int, int]]]] = [{} for _ in nodes]
    for k, blk in enumerate(block):
        for seq, (sk, sseq) in blk.items():
            wake[sk].setdefault(sseq, []).append((k, seq))
    sizes = [len(evs) for evs in streams]
    nxt = [0] * len(nodes)  # next unemitted seq per node
    lam_of = [[0] * k for k in sizes]  # Lamport clock of each emitted event
    lam_now = [0] * len(nodes)

    order: list[NodeEvent] = []
    cts_out: list[float] = []
    lam_out: list[int] = []
    heap: list[tuple[float, int, int]] = []
    for k in range(len(nodes)):
        b = block[k].get(0)
        if sizes[k] and (b is None or nxt[b[0]] > b[1]):
            heap.append((cts_of[k][0], k, 0))
    heapq.heapify(heap)
    heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace
    total = sum(sizes)
    emitted = 0
    while emitted < total:
        if not heap:
            # A cycle: some recv waits for a send that (by the logs) comes after it. Force the
            # earliest blocked head and say so; the logs are inconsistent, not the merger.
            heads = [(cts_of[k][nxt[k]], k) for k in range(len(nodes)) if nxt[k] < sizes[k]]
            _, k = min(heads, key=lambda h: h[0])
            e = streams[k][nxt[k]]
            s = send_of[e.node].pop(e.seq)
            del block[k][e.seq]
            problems.append(
                LineProblem(
                    e.source,
                    f"recv of {e.get('id')} cannot follow its send at {s.source} "
                    "(cycle in the logs); ordered by time instead",
                )
            )
            heap.append((cts_of[k][e.seq], k, e.seq))
        c, k, i = heap[0]
        e = streams[k][i]
        lam = lam_now[k] + 1
        b = block[k].get(i)
        if b is not None:
            slam = lam_of[b[0]][b[1]]
            if slam >= lam:
                lam = slam + 1
        lam_now[k] = lam
        lam_of[k][i] = lam
        order.append(e)
        cts_out.append(c)
        lam_out.append(lam)
        emitted += 1
        i += 1
        nxt[k] = i
        # This node's next event replaces it in the heap when it is ready.
        b = block[k].get(i) if i < sizes[k] else None
        if i < sizes[k] and (b is None or nxt[b[0]] > b[1]):
            heapreplace(heap, (cts_of[k][i], k, i))
        else:
            heappop(heap)
        # Recvs that waited for this send may now be ready.
        ws = wake[k].get(i - 1)
        if ws is not None:
            for rk, rseq in ws:
                if nxt[rk] == rseq:
                    rb = block[rk].get(rseq)
                    if rb is None or nxt[rb[0]] > rb[1]:
                        heappush(heap, (cts_of[rk][rseq], rk, rseq))
    return order, cts_out, lam_out
