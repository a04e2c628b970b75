"""Compare what nodes committed and applied, index by index, and compare two runs.

:func:`diff_nodes` aligns the nodes' committed/applied logs (index, term, digest) and reports
ranges where they agree, where some node has no record (compacted below its snapshot, or not
replicated/committed there yet), the first index where two nodes hold different entries, and
indexes where the same entry produced different results. :func:`diff_runs` compares two runs
of one spec: event counts, elections, commit latency and verdicts, and, for two seeded runs,
where their behaviour first parts (:func:`first_differences`): the first election, the first
term whose leader differs, the first index of the committed logs holding a different
command.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deploy.analysis.events import NodeEvent
from deploy.analysis.invariants import InvariantReport

__all__ = [
    "IndexRange",
    "NodeDiff",
    "RunSummary",
    "commit_latencies",
    "diff_nodes",
    "diff_runs",
    "first_differences",
    "render_node_diff",
    "render_run_diff",
    "summarize_run",
]


@dataclass(frozen=True, slots=True)
class _Rec:
    term: int
    digest: str
    result: str
    applied: bool
    source: object  # printed with str(): file:line


@dataclass(frozen=True, slots=True)
class IndexRange:
    """``first..last`` share a status: ``agree`` (every node holds the same entry),
    ``partial`` (the nodes that hold one agree, ``missing`` says why the others do not) or
    ``diverge`` (two nodes hold different entries)."""

    first: int
    last: int
    status: str
    missing: tuple[tuple[str, str], ...]  # (node, reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.first,
            "to": self.last,
            "status": self.status,
            "missing": {n: r for n, r in self.missing},
        }


@dataclass(slots=True)
class NodeDiff:
    nodes: list[str]
    first: int
    last: int
    ranges: list[IndexRange] = field(default_factory=list)
    first_divergence: dict[str, Any] | None = None
    result_mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.first_divergence is not None or bool(self.result_mismatches)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "from": self.first,
            "to": self.last,
            "ranges": [r.to_json() for r in self.ranges],
            "first_divergence": self.first_divergence,
            "result_mismatches": self.result_mismatches,
        }


def _records(rep: InvariantReport, nodes: Sequence[str]) -> dict[str, dict[int, _Rec]]:
    out: dict[str, dict[int, _Rec]] = {n: {} for n in nodes}
    for index, recs in rep.committed.items():
        for n, c in recs.items():
            if n in out:
                out[n][index] = _Rec(c.term, c.digest, "", False, c.source)
    for index, arecs in rep.applied.items():
        for n, (t, d, r, src) in arecs.items():
            if n in out:
                out[n][index] = _Rec(t, d, r, True, src)
    return out


def _missing_reason(rep: InvariantReport, recs: dict[int, _Rec], node: str, i: int) -> str:
    if i <= rep.snapshot_index.get(node, 0):
        return "compacted"
    top = max(recs) if recs else 0
    if i > top:
        li = rep.last_index.get(node)
        if li is not None and li >= i:
            return "not committed there"
        return "not replicated"
    return "no record"


def diff_nodes(
    rep: InvariantReport, nodes: Sequence[str], from_index: int | None = None
) -> NodeDiff:
    """Align the committed/applied logs of ``nodes`` (as replayed into ``rep``)."""
    recs = _records(rep, nodes)
    tops = [max(r) for r in recs.values() if r]
    last = max(tops) if tops else 0
    first = max(from_index or 1, 1)
    nd = NodeDiff(list(nodes), first, last)
    cur: list[Any] | None = None  # [first, last, status, missing]
    for i in range(first, last + 1):
        present = {n: r[i] for n, r in recs.items() if i in r}
        missing = tuple((n, _missing_reason(rep, recs[n], n, i)) for n in nodes if n not in present)
        kinds = {(r.term, r.digest) for r in present.values()}
        # An unknown digest ("" from a bare commit record) agrees with any digest of that term.
        terms = {t for t, _ in kinds}
        digests = {d for _, d in kinds if d}
        status = (
            "diverge" if len(terms) > 1 or len(digests) > 1 else ("partial" if missing else "agree")
        )
        if status == "diverge" and nd.first_divergence is None:
            nd.first_divergence = {
                "index": i,
                "entries": {
                    n: {"term": r.term, "digest": r.digest, "source": str(r.source)}
                    for n, r in sorted(present.items())
                },
            }
        results = {r.result for r in present.values() if r.applied and r.result}
        if status != "diverge" and len(results) > 1:
            nd.result_mismatches.append(
                {
                    "index": i,
                    "results": {
                        n: {"result": r.result, "source": str(r.source)}
                        for n, r in sorted(present.items())
                        if r.applied
                    },
                }
            )
        if cur is not None and cur[2] == status and cur[3] == missing and status != "diverge":
            cur[1] = i
        else:
            if cur is not None:
                nd.ranges.append(IndexRange(cur[0], cur[1], cur[2], cur[3]))
            cur = [i, i, status, missing]
    if cur is not None:
        nd.ranges.append(IndexRange(cur[0], cur[1], cur[2], cur[3]))
    return nd


def _span(a: int, b: int) -> str:
    return f"{a}" if a == b else f"{a}..{b}"


def render_node_diff(nd: NodeDiff) -> str:
    """Readable text: one line per range, then the first divergence in detail."""
    lines = [f"nodes {', '.join(nd.nodes)}; indexes {_span(nd.first, nd.last)}"]
    if nd.last < nd.first:
        lines.append("no committed or applied entries in that range")
        return "\n".join(lines) + "\n"
    for r in nd.ranges:
        label = {"agree": "agree", "partial": "agree*", "diverge": "DIVERGE"}[r.status]
        extra = ""
        if r.missing:
            extra = "  missing on " + ", ".join(f"{n} ({why})" for n, why in r.missing)
        lines.append(f"  {label:<8} {_span(r.first, r.last):<14}{extra}".rstrip())
    fd = nd.first_divergence
    if fd is None:
        lines.append("no divergence: every index held by two or more nodes agrees")
    else:
        lines.append(f"FIRST DIVERGENCE at index {fd['index']}:")
        for n, e in fd["entries"].items():
            lines.append(f"  {n}: term {e['term']} digest {e['digest'] or '?'}  ({e['source']})")
    if nd.result_mismatches:
        lines.append(
            f"DIFFERENT RESULTS for the same entry at {len(nd.result_mismatches)} index(es):"
        )
        for m in nd.result_mismatches[:10]:
            parts = ", ".join(f"{n}={v['result']} ({v['source']})" for n, v in m["results"].items())
            lines.append(f"  index {m['index']}: {parts}")
    return "\n".join(lines) + "\n"


# -- run versus run ------------------------------------------------------------------------


def commit_latencies(events: Sequence[NodeEvent]) -> list[float]:
    """Per index, seconds from the leader's persist of the entry to the leader's commit event
    covering it (one clock, so no offset error). Entries persisted by a node that is not
    leader at the time, or never committed by it, do not count."""
    out: list[float] = []
    by_node: dict[str, list[NodeEvent]] = {}
    for e in events:
        by_node.setdefault(e.node, []).append(e)
    for evs in by_node.values():
        evs.sort(key=lambda e: e.seq)
        leader = False
        pending: deque[tuple[int, float]] = deque()
        for e in evs:
            if e.ev == "role":
                leader = e.get("role") == "leader"
                pending.clear()
            elif e.ev == "start":
                leader = False
                pending.clear()
            elif e.ev == "persist" and leader:
                for ent in e.get("entries") or []:
                    pending.append((int(ent[0]), e.ts))
            elif e.ev == "commit" and leader:
                idx = int(e.get("index"))
                while pending and pending[0][0] <= idx:
                    _, t0 = pending.popleft()
                    out.append(max(e.ts - t0, 0.0))
    return out


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass(slots=True)
class RunSummary:
    name: str
    events: dict[str, int]
    elections: int
    terms: int
    max_commit: int
    latency_ms: dict[str, float | None]
    verdicts: dict[str, Any]
    first_leader: tuple[int, str] | None = None
    """(term, node) of the first node to log ``role=leader`` on the merged timeline."""
    leaders: dict[int, list[str]] = field(default_factory=dict)
    committed: list[tuple[int, int, str]] = field(default_factory=list)
    """The committed log as (index, term, digest), one record per index (any node's)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "events": self.events,
            "elections": self.elections,
            "terms": self.terms,
            "max_commit": self.max_commit,
            "commit_latency_ms": self.latency_ms,
            "verdicts": self.verdicts,
        }


def summarize_run(
    name: str, events: Sequence[NodeEvent], rep: InvariantReport, verdicts: dict[str, Any]
) -> RunSummary:
    lat = [x * 1000 for x in commit_latencies(events)]
    return RunSummary(
        name=name,
        events=dict(sorted(Counter(e.ev for e in events).items())),
        elections=rep.elections,
        terms=len(rep.leaders_per_term),
        max_commit=rep.max_commit,
        first_leader=next(
            ((e.term, e.node) for e in events if e.ev == "role" and e.get("role") == "leader"),
            None,
        ),
        leaders=dict(rep.leaders_per_term),
        committed=_committed_log(rep),
        latency_ms={
            "count": float(len(lat)),
            "mean": statistics.fmean(lat) if lat else None,
            "p50": _pct(lat, 0.5),
            "p99": _pct(lat, 0.99),
            "max": max(lat) if lat else None,
        },
        verdicts=verdicts,
    )


def _committed_log(rep: InvariantReport) -> list[tuple[int, int, str]]:
    out: dict[int, tuple[int, str]] = {}
    for index, recs in rep.committed.items():
        withd = [r for r in recs.values() if r.digest] or list(recs.values())
        out[index] = (withd[0].term, withd[0].digest)
    for index, arecs in rep.applied.items():
        if index not in out or not out[index][1]:
            term, digest, _, _ = next(iter(arecs.values()))
            out[index] = (term, digest)
    return [(i, t, d) for i, (t, d) in sorted(out.items())]


def first_differences(a: RunSummary, b: RunSummary) -> dict[str, Any]:
    """Where two runs (of one spec and seed, say) first behave differently.

    ``first_election``: the first leader of each run and whether they agree.
    ``leader_terms``: the first term whose set of leaders differs (``None``: same leaders in
    every term either run saw). ``committed``: the committed logs aligned by index: how many
    indexes agree from 1, then the first index where the commands (digests, or terms when a
    digest is missing) differ or where one run has no record."""
    fl = {
        "a": None if a.first_leader is None else list(a.first_leader),
        "b": None if b.first_leader is None else list(b.first_leader),
        "same": a.first_leader == b.first_leader,
    }
    term_diff = None
    for term in sorted(set(a.leaders) | set(b.leaders)):
        la, lb = a.leaders.get(term, []), b.leaders.get(term, [])
        if la != lb:
            term_diff = {"term": term, "a": la, "b": lb}
            break
    ca = {i: (t, d) for i, t, d in a.committed}
    cb = {i: (t, d) for i, t, d in b.committed}
    common = 0
    first: dict[str, Any] | None = None
    for index in range(1, max([0, *ca, *cb]) + 1):
        x, y = ca.get(index), cb.get(index)
        same = x is not None and y is not None and (x[1] == y[1] if x[1] and y[1] else x[0] == y[0])
        if not same:
            first = {
                "index": index,
                "a": None if x is None else {"term": x[0], "digest": x[1]},
                "b": None if y is None else {"term": y[0], "digest": y[1]},
            }
            break
        common = index
    return {
        "first_election": fl,
        "leader_terms": term_diff,
        "committed": {
            "agree_up_to": common,
            "first_difference": first,
            "a_entries": len(ca),
            "b_entries": len(cb),
        },
    }


def diff_runs(a: RunSummary, b: RunSummary) -> dict[str, Any]:
    kinds = sorted(set(a.events) | set(b.events))
    return {
        "a": a.to_json(),
        "b": b.to_json(),
        "events": {k: [a.events.get(k, 0), b.events.get(k, 0)] for k in kinds},
        "first_differences": first_differences(a, b),
    }


def _render_parting(fd: dict[str, Any]) -> list[str]:
    out = ["", "Where the runs part:"]
    fl = fd["first_election"]

    def who(x: list[Any] | None) -> str:
        return "none" if x is None else f"{x[1]} in term {x[0]}"

    if fl["same"]:
        out.append(f"  first election: same, {who(fl['a'])}")
    else:
        out.append(f"  first election: A {who(fl['a'])}, B {who(fl['b'])}")
    lt = fd["leader_terms"]
    out.append(
        "  leader terms: the same in every term"
        if lt is None
        else f"  leader terms: first differ in term {lt['term']}: "
        f"A {'+'.join(lt['a']) or 'no leader'}, B {'+'.join(lt['b']) or 'no leader'}"
    )
    c = fd["committed"]
    first = c["first_difference"]
    if first is None:
        out.append(f"  committed logs: identical ({c['agree_up_to']} entries)")
    else:

        def ent(x: dict[str, Any] | None) -> str:
            return "nothing" if x is None else f"term {x['term']} {x['digest'] or '?'}"

        out.append(
            f"  committed logs: agree on indexes 1..{c['agree_up_to']}; index "
            f"{first['index']}: A {ent(first['a'])}, B {ent(first['b'])} "
            f"(A {c['a_entries']} entries, B {c['b_entries']})"
        )
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.2f}"
    if isinstance(x, dict):
        return json.dumps(x, sort_keys=True)
    return str(x)


def render_run_diff(d: dict[str, Any]) -> str:
    a, b = d["a"], d["b"]
    rows: list[tuple[str, Any, Any]] = [
        ("elections", a["elections"], b["elections"]),
        ("terms with a leader", a["terms"], b["terms"]),
        ("max commit index", a["max_commit"], b["max_commit"]),
    ]
    ca, cb = a["commit_latency_ms"]["count"], b["commit_latency_ms"]["count"]
    rows.append(("commit latency samples", int(ca or 0), int(cb or 0)))
    for k in ("mean", "p50", "p99", "max"):
        rows.append(
            (f"commit latency {k} (ms)", a["commit_latency_ms"][k], b["commit_latency_ms"][k])
        )
    for k in sorted(set(a["verdicts"]) | set(b["verdicts"])):
        rows.append((f"verdict {k}", a["verdicts"].get(k), b["verdicts"].get(k)))
    for k, (x, y) in d["events"].items():
        rows.append((f"events {k}", x, y))
    w = max(len(r[0]) for r in rows)
    out = [
        f"{'':<{w}}  {'A':>14}  {'B':>14}   A = {a['run']}",
        f"{'':<{w}}  {'':>14}  {'':>14}   B = {b['run']}",
    ]
    for label, x, y in rows:
        mark = "" if _fmt(x) == _fmt(y) else "  *"
        out.append(f"{label:<{w}}  {_fmt(x):>14}  {_fmt(y):>14}{mark}")
    if "first_differences" in d:
        out += _render_parting(d["first_differences"])
    return "\n".join(out) + "\n"
