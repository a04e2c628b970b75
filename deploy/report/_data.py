"""What the report draws, computed once from an :class:`Analysis` for both the HTML (SVG)
and the PNG plots, so the two always show the same thing.

All times are seconds since the run started (history/nemesis ``time`` 0); node events are
placed by their corrected timestamps (see :mod:`deploy.analysis.merge`).
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.analysis.merge import run_starts
from deploy.analysis.rundir import Analysis

__all__ = [
    "FaultWindow",
    "Marker",
    "OpPoint",
    "ReportData",
    "Segment",
    "build_report_data",
    "color_for",
    "generated_colors",
]

ROLE_COLORS = {
    "leader": "#2e7d32",
    "candidate": "#f9a825",
    "pre_candidate": "#ffe082",
    "follower": "#90a4ae",
}
OUTCOME_COLORS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}
KNOWN_FAULT_ORDER = ("kill", "pause", "partition", "loss", "delay", "clock", "disk")


def generated_colors(n: int) -> list[str]:
    """``n`` distinct colours: hues spaced by the golden angle, so any number of fault kinds
    gets its own colour and neighbours differ strongly."""
    out = []
    for i in range(n):
        h = (i * 0.381966 + 0.02) % 1.0
        r, g, b = colorsys.hls_to_rgb(h, 0.55, 0.65)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def color_for(kinds: list[str]) -> dict[str, str]:
    order = [k for k in KNOWN_FAULT_ORDER if k in kinds] + sorted(
        k for k in kinds if k not in KNOWN_FAULT_ORDER
    )
    return dict(zip(order, generated_colors(len(order)), strict=True))


@dataclass(frozen=True, slots=True)
class Segment:
    node: str
    start: float
    end: float
    role: str
    term: int


@dataclass(frozen=True, slots=True)
class FaultWindow:
    fault: str
    start: float
    end: float
    targets: tuple[str, ...]
    open_ended: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A point (or window, when ``end > t``) to flag on the timeline."""

    t: float
    end: float
    nodes: tuple[str, ...]
    kind: str  # "violation" | "linearizability"
    label: str


@dataclass(frozen=True, slots=True)
class OpPoint:
    start: float
    end: float | None
    latency_ms: float | None
    outcome: str
    f: str
    process: int
    highlighted: bool


@dataclass(slots=True)
class ReportData:
    title: str
    root: Path
    nodes: list[str]
    t_min: float
    t_max: float
    t_full: tuple[float, float] = (0.0, 1.0)
    """First and last node event (run seconds); the plots show [t_min, t_max]."""
    markers_outside: int = 0
    """Violations whose log lines fall outside the plotted window (listed in the table)."""
    segments: list[Segment] = field(default_factory=list)
    down: list[tuple[str, float, float]] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    fault_colors: dict[str, str] = field(default_factory=dict)
    markers: list[Marker] = field(default_factory=list)
    ops: list[OpPoint] = field(default_factory=list)
    throughput: list[tuple[float, int, int, int]] = field(default_factory=list)
    throughput_bin_s: float = 1.0
    verdicts: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (label, relative href)


_SEGMENT_KINDS = frozenset({"role", "stop", "start"})


def _segments(a: Analysis, t0: float) -> tuple[list[Segment], list[tuple[str, float, float]]]:
    """Role segments per node and the gaps between process runs (down). Only role, stop and
    start events (a new run begins at a start) and each run's last event move a segment,
    so only those are visited; nodes come in the order of their first merged event."""
    segs: list[Segment] = []
    down: list[tuple[str, float, float]] = []
    tl = a.timeline
    first_seen: list[str] = []
    pending = set(tl.node_cts)
    for e in tl.order:
        if e.node in pending:
            pending.discard(e.node)
            first_seen.append(e.node)
            if not pending:
                break
    kinds = _SEGMENT_KINDS
    for node in first_seen:
        evs = a.logs.events_by_node[node]
        cts = tl.node_cts[node]
        # ``term`` is the term the current segment began in (a leader's term never changes
        # without a role event, so leader segments carry exactly their term).
        role, term, since, run = "follower", evs[0].term, cts[0] - t0, evs[0].run
        visit = {i for i, e in enumerate(evs) if e.ev in kinds}
        visit.update(run_starts(evs))
        for i in sorted(visit):
            e = evs[i]
            t = cts[i] - t0
            if e.run != run:  # a restart: close the run, mark the gap as down
                last_t = cts[i - 1] - t0
                segs.append(Segment(node, since, last_t, role, term))
                down.append((node, last_t, t))
                role, term, since, run = "follower", e.term, t, e.run
            if e.ev == "role":
                new_role = str(e.get("role", role))
                if new_role != role or e.term != term:
                    segs.append(Segment(node, since, t, role, term))
                    role, term, since = new_role, e.term, t
            elif e.ev == "stop":
                segs.append(Segment(node, since, t, role, term))
                role, since = "down", t
        segs.append(Segment(node, since, cts[-1] - t0, role, term))
    return [s for s in segs if s.role != "down"], down


def _faults(a: Analysis, t0: float, t_end: float) -> list[FaultWindow]:
    out: list[FaultWindow] = []
    open_: list[tuple[str, float, tuple[str, ...], str]] = []

    def t_of(time_ns: int | None, ts: float | None) -> float:
        return time_ns / 1e9 if time_ns is not None else (ts or t0) - t0

    for n in a.nemesis:
        t = t_of(n.time_ns, n.ts)
        if n.action == "start":
            extra = ", ".join(f"{k}={v}" for k, v in n.fields.items())
            open_.append((n.fault, t, n.targets, extra))
            continue
        # A stop closes the oldest open window of its kind whose targets it covers.
        pick = None
        for i, (f, _, targets, _) in enumerate(open_):
            if f == n.fault and (not n.targets or set(targets) <= set(n.targets)):
                pick = i
                break
        if pick is None:
            pick = next((i for i, w in enumerate(open_) if w[0] == n.fault), None)
        if pick is None:
            continue
        f, s, targets, extra = open_.pop(pick)
        out.append(FaultWindow(f, s, t, targets, False, extra))
    for f, s, targets, extra in open_:
        out.append(FaultWindow(f, s, max(t_end, s), targets, True, extra))
    out.sort(key=lambda w: (w.start, w.fault))
    return out


def _run_name(root: Path) -> str:
    """``experiment/timestamp`` for a run under ``runs/``, else the folder's name."""
    r = root.resolve()
    if r.parent.parent.name == "runs":
        return f"{r.parent.name}/{r.name}"
    return r.name or str(r)


def _clip_window(w: FaultWindow, lo: float, hi: float) -> FaultWindow:
    return FaultWindow(w.fault, max(w.start, lo), min(w.end, hi), w.targets, w.open_ended, w.detail)


def _event_time_index(a: Analysis, t0: float, wanted: set[Any]) -> dict[str, float]:
    """Run seconds of the events logged at the sources in ``wanted`` (the lines violations
    cite), by ``str(source)``. One pass comparing sources, only when there are some."""
    if not wanted:
        return {}
    tl = a.timeline
    return {
        str(e.source): c - t0 for e, c in zip(tl.order, tl.cts, strict=True) if e.source in wanted
    }


def build_report_data(a: Analysis, title: str | None = None) -> ReportData:
    cts = a.timeline.cts
    t0 = a.run_start_ts
    full = (min(cts) - t0, max(cts) - t0) if cts else (0.0, 1.0)
    # Focus on the activity (client operations and faults) when there is any: a cluster left
    # idle for minutes before or after the workload would otherwise squeeze it into a sliver.
    active = [o.start_ns / 1e9 for o in a.history]
    active += [o.end_ns / 1e9 for o in a.history if o.end_ns is not None]
    faults = _faults(a, t0, full[1])
    active += [w.start for w in faults] + [w.end for w in faults if not w.open_ended]
    if active:
        lo, hi = min(active), max(active)
        pad = max((hi - lo) * 0.04, 0.5)
        t_min, t_max = max(lo - pad, min(full[0], lo)), min(hi + pad, max(full[1], hi))
    else:
        t_min, t_max = full
    if t_max - t_min < 1e-3:
        t_max = t_min + 1.0
    faults = [_clip_window(w, t_min, t_max) for w in faults if w.end >= t_min and w.start <= t_max]
    segs, down = _segments(a, t0)
    segs = [
        Segment(s.node, max(s.start, t_min), min(s.end, t_max), s.role, s.term)
        for s in segs
        if s.end >= t_min and s.start <= t_max
    ]
    down = [(n, max(s, t_min), min(e, t_max)) for n, s, e in down if e >= t_min and s <= t_max]
    data = ReportData(
        title=title or f"raftlab report: {_run_name(a.inputs.root)}",
        root=a.inputs.root,
        nodes=a.logs.nodes,
        t_min=t_min,
        t_max=t_max,
        t_full=full,
        segments=segs,
        down=down,
        faults=faults,
        fault_colors=color_for(sorted({w.fault for w in faults})),
        verdicts=a.verdicts,
        results=a.results_json(),
    )
    # Invariant violations, placed at the log lines they cite.
    where = _event_time_index(a, t0, {s for v in a.invariants.violations for s in v.sources})
    for v in a.invariants.violations:
        ts = [where[str(s)] for s in v.sources if str(s) in where]
        if not ts:
            continue
        if max(ts) < t_min or min(ts) > t_max:
            data.markers_outside += 1
            continue
        label = f"{v.invariant.value}: {v.message}"
        data.markers.append(Marker(min(ts), max(ts), v.nodes, "violation", label))
    # Linearizability counterexample: the operations that could not be linearized.
    hl: set[tuple[int, int]] = set()
    ce = (a.linearizability or {}).get("counterexample")
    if isinstance(ce, dict):
        ops = [o for o in ce.get("unlinearizable", []) if isinstance(o, dict)]
        if isinstance(ce.get("deadline"), dict):
            ops.append(ce["deadline"])
        for o in ops:
            inv = o.get("invoke_time")
            if not isinstance(inv, int):
                continue
            done = o.get("complete_time")
            end = done / 1e9 if isinstance(done, int) else t_max
            hl.add((int(o.get("process", -1)), inv))
            node = o.get("node")
            data.markers.append(
                Marker(
                    inv / 1e9,
                    end,
                    (str(node),) if node else (),
                    "linearizability",
                    f"not linearizable: process {o.get('process')} {o.get('f')} "
                    f"{o.get('value')!r} ({o.get('status')})",
                )
            )
    for h in a.history:
        lat = (h.end_ns - h.start_ns) / 1e6 if h.end_ns is not None else None
        data.ops.append(
            OpPoint(
                h.start_ns / 1e9,
                h.end_ns / 1e9 if h.end_ns is not None else None,
                lat,
                h.outcome,
                h.f,
                h.process,
                (h.process, h.start_ns) in hl,
            )
        )
    data.throughput, data.throughput_bin_s = _throughput(data.ops, t_min, t_max)
    data.files = _files(a)
    return data


def _throughput(
    ops: list[OpPoint], t_min: float, t_max: float
) -> tuple[list[tuple[float, int, int, int]], float]:
    """Completions per bin (ok, fail, info), with about 100 bins over the run."""
    span = max(t_max - t_min, 1e-3)
    raw = span / 100
    mag = 10 ** math.floor(math.log10(raw))
    bin_s = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = int(span / bin_s) + 1
    ok, fail, info = [0] * n, [0] * n, [0] * n
    for o in ops:
        t = o.end if o.end is not None else None
        if t is None:
            continue
        i = min(max(int((t - t_min) / bin_s), 0), n - 1)
        {"ok": ok, "fail": fail}.get(o.outcome, info)[i] += 1
    return [(t_min + i * bin_s, ok[i], fail[i], info[i]) for i in range(n)], bin_s


def _files(a: Analysis) -> list[tuple[str, str]]:
    from deploy.analysis.events import display_name

    root = a.inputs.root
    out = []
    for name in ("results.json", "merged.jsonl", "history.jsonl", "nemesis.jsonl"):
        out.append((name, name))
    if a.shiviz is not None:  # written only on request (raftlab analyze --shiviz)
        out.insert(2, ("ShiViz log", os.path.relpath(a.shiviz, root)))
    if a.inputs.history is not None and a.inputs.history.parent != root:
        out.append(("history", display_name(a.inputs.history, root)))
    for p in a.inputs.event_files:
        rel = display_name(p, root)
        out.append((rel, rel))
    for png in ("timeline.png", "latency.png", "throughput.png"):
        out.append((f"plots/{png}", f"plots/{png}"))
    return out
