"""``report.html``: one self-contained file (inline CSS and SVG, no script or font from the
network) that opens from disk.

Order of the page: verdicts (big, coloured), counts, the timeline (one lane per node showing
role and term, fault windows shaded by kind, invariant violations and the linearizability
counterexample marked), latency and throughput over time with the same shading, then the
violations, the counterexample, clock offsets, unreadable lines, and links to the raw files.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from deploy.report._data import (
    OUTCOME_COLORS,
    ROLE_COLORS,
    FaultWindow,
    Marker,
    ReportData,
)

__all__ = ["render_html", "write_html"]

WIDTH = 1200
LEFT = 80
RIGHT = 20
PLOT_W = WIDTH - LEFT - RIGHT
LANE_H = 30
FAULT_ROW_H = 16

VERDICT_COLORS = {"valid": "#2e7d32", "invalid": "#c62828", "unknown": "#ef8f00"}

CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:24px;
color:#1d2329;background:#fafbfc;max-width:1260px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;font-size:13px}
.verdicts{display:flex;gap:14px;margin:16px 0}
.verdict{border-radius:10px;color:#fff;padding:14px 22px;min-width:180px}
.verdict .k{font-size:13px;text-transform:uppercase;letter-spacing:.06em;opacity:.9}
.verdict .v{font-size:30px;font-weight:700}
.verdict.overall .v{font-size:40px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} code{font-size:12px}
.counts td:first-child{color:#57606a}
svg{background:#fff;border:1px solid #d0d7de;border-radius:6px;display:block}
svg text{font-family:inherit}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle;
border:1px solid #0002}
.bad{color:#c62828;font-weight:600}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _nice_ticks(lo: float, hi: float, n: int = 10) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out: list[float] = []
    t = first
    while t <= hi + 1e-9 and len(out) < 50:
        out.append(round(t, 9))
        t += step
    return out


def _fmt_t(t: float) -> str:
    return f"{t:.0f}s" if abs(t) >= 10 or t == int(t) else f"{t:.1f}s"


class _X:
    """Maps run seconds to SVG x."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def __call__(self, t: float) -> float:
        return LEFT + (t - self.lo) / (self.hi - self.lo) * PLOT_W


def _fault_title(w: FaultWindow) -> str:
    end = "run end (never healed)" if w.open_ended else _fmt_t(w.end)
    tgt = ", ".join(w.targets) or "all"
    extra = f" ({w.detail})" if w.detail else ""
    return f"{w.fault} on {tgt}: {_fmt_t(w.start)} to {end}{extra}"


def _shading(d: ReportData, x: _X, top: float, height: float) -> list[str]:
    """Fault windows as translucent bands, coloured by kind."""
    out = []
    for w in d.faults:
        x0, x1 = x(w.start), x(w.end)
        out.append(
            f'<rect class="fault" data-fault="{_e(w.fault)}" x="{x0:.1f}" y="{top:.1f}" '
            f'width="{max(x1 - x0, 1.5):.1f}" height="{height:.1f}" '
            f'fill="{d.fault_colors[w.fault]}" fill-opacity="0.16">'
            f"<title>{_e(_fault_title(w))}</title></rect>"
        )
    return out


def _axis(x: _X, y: float, top: float, label: str = "seconds since run start") -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + PLOT_W}" y2="{y}" stroke="#57606a"/>']
    for t in _nice_ticks(x.lo, x.hi):
        xx = x(t)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{y}" stroke="#0000000f"/>')
        out.append(
            f'<text x="{xx:.1f}" y="{y + 14}" font-size="11" text-anchor="middle" '
            f'fill="#57606a">{_e(_fmt_t(t))}</text>'
        )
    out.append(
        f'<text x="{LEFT + PLOT_W}" y="{y + 28}" font-size="11" text-anchor="end" '
        f'fill="#57606a">{_e(label)}</text>'
    )
    return out


def timeline_svg(d: ReportData) -> str:
    x = _X(d.t_min, d.t_max)
    kinds = list(d.fault_colors)
    top_faults = 8
    lanes_top = top_faults + FAULT_ROW_H * len(kinds) + (8 if kinds else 0)
    lanes_h = LANE_H * len(d.nodes)
    h = lanes_top + lanes_h + 40
    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" '
        f'viewBox="0 0 {WIDTH} {h}" role="img" aria-label="timeline of node roles and faults">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eceff1"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#9e9e9e" stroke-width="2"/></pattern></defs>',
    ]
    out += _shading(d, x, lanes_top, lanes_h)
    # One row per fault kind above the lanes: solid bars, labelled with their targets.
    for r, kind in enumerate(kinds):
        y = top_faults + r * FAULT_ROW_H
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 11}" font-size="11" text-anchor="end" '
            f'fill="#333">{_e(kind)}</text>'
        )
        for w in (w for w in d.faults if w.fault == kind):
            x0, x1 = x(w.start), x(w.end)
            out.append(
                f'<rect class="fault-bar" data-fault="{_e(kind)}" x="{x0:.1f}" y="{y + 1}" '
                f'width="{max(x1 - x0, 2):.1f}" height="{FAULT_ROW_H - 3}" rx="2" '
                f'fill="{d.fault_colors[kind]}"><title>{_e(_fault_title(w))}</title></rect>'
            )
            label = ",".join(w.targets)
            if label and x1 - x0 > 7 * len(label):
                out.append(
                    f'<text x="{x0 + 3:.1f}" y="{y + 11}" font-size="10" fill="#fff">'
                    f"{_e(label)}</text>"
                )
    lane_y = {n: lanes_top + i * LANE_H for i, n in enumerate(d.nodes)}
    for n in d.nodes:
        y = lane_y[n]
        out.append(f'<g class="lane" data-node="{_e(n)}">')
        out.append(
            f'<text x="{LEFT - 8}" y="{y + LANE_H / 2 + 4}" font-size="13" font-weight="600" '
            f'text-anchor="end">{_e(n)}</text>'
        )
        out.append(
            f'<line x1="{LEFT}" y1="{y + LANE_H - 0.5}" x2="{LEFT + PLOT_W}" '
            f'y2="{y + LANE_H - 0.5}" stroke="#eaeef2"/>'
        )
        for node, s, e in d.down:
            if node == n:
                out.append(
                    f'<rect class="down" x="{x(s):.1f}" y="{y + 6}" '
                    f'width="{max(x(e) - x(s), 1):.1f}" height="{LANE_H - 12}" '
                    f'fill="url(#hatch)"><title>{_e(n)} down {_fmt_t(s)} to {_fmt_t(e)}'
                    "</title></rect>"
                )
        for sg in (s for s in d.segments if s.node == n):
            x0, x1 = x(sg.start), x(sg.end)
            hh = LANE_H - 10 if sg.role == "leader" else LANE_H - 16
            yy = y + (LANE_H - hh) / 2
            color = ROLE_COLORS.get(sg.role, "#7e57c2")
            out.append(
                f'<rect class="seg role-{_e(sg.role)}" x="{x0:.1f}" y="{yy:.1f}" '
                f'width="{max(x1 - x0, 1):.1f}" height="{hh}" fill="{color}">'
                f"<title>{_e(n)} {_e(sg.role)} term {sg.term}: {_fmt_t(sg.start)} to "
                f"{_fmt_t(sg.end)}</title></rect>"
            )
            if sg.role == "leader" and x1 - x0 > 26:
                out.append(
                    f'<text x="{x0 + 4:.1f}" y="{yy + hh / 2 + 4:.1f}" font-size="11" '
                    f'fill="#fff" font-weight="600">T{sg.term}</text>'
                )
        out.append("</g>")
    out += _markers(d.markers, x, lane_y, lanes_top, lanes_h)
    out += _axis(x, lanes_top + lanes_h + 2, lanes_top)
    out.append("</svg>")
    return "\n".join(out)


def _markers(
    markers: Iterable[Marker], x: _X, lane_y: Mapping[str, float], top: float, height: float
) -> list[str]:
    out = []
    for m in markers:
        if m.kind == "linearizability":
            x0, x1 = x(m.t), x(m.end)
            out.append(
                f'<rect class="marker lin" x="{x0:.1f}" y="{top:.1f}" '
                f'width="{max(x1 - x0, 6):.1f}" height="{height:.1f}" fill="#c62828" '
                f'fill-opacity="0.10" stroke="#c62828" stroke-dasharray="4 3">'
                f"<title>{_e(m.label)}</title></rect>"
            )
            continue
        ys = [lane_y[n] for n in m.nodes if n in lane_y] or [top]
        y0, y1 = min(ys), max(ys) + LANE_H
        xx = x(m.t)
        out.append(
            f'<g class="marker violation"><title>{_e(m.label)}</title>'
            f'<line x1="{xx:.1f}" y1="{y0:.1f}" x2="{xx:.1f}" y2="{y1:.1f}" stroke="#c62828" '
            f'stroke-width="2"/>'
            f'<path d="M{xx - 6:.1f},{y0 - 1:.1f} L{xx + 6:.1f},{y0 - 1:.1f} L{xx:.1f},'
            f'{y0 + 9:.1f} Z" fill="#c62828"/></g>'
        )
    return out


def latency_svg(d: ReportData) -> str:
    x = _X(d.t_min, d.t_max)
    h, top, bottom = 300, 14, 260
    lats = [o.latency_ms for o in d.ops if o.latency_ms is not None and o.latency_ms > 0]
    lo = min(lats) if lats else 1.0
    hi = max(lats) if lats else 10.0
    log = hi / max(lo, 1e-6) > 50
    if log:
        lo, hi = 10 ** math.floor(math.log10(max(lo, 1e-3))), 10 ** math.ceil(math.log10(hi))

        def y(v: float) -> float:
            v = max(v, lo)
            return bottom - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (
                bottom - top
            )

        yticks = [10.0**k for k in range(int(math.log10(lo)), int(math.log10(hi)) + 1)]
    else:
        lo = 0.0
        hi = hi * 1.1 if hi > 0 else 1.0

        def y(v: float) -> float:
            return bottom - (v - lo) / (hi - lo) * (bottom - top)

        yticks = _nice_ticks(lo, hi, 5)
    out = [
        f'<svg id="latency" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" '
        f'viewBox="0 0 {WIDTH} {h}" role="img" aria-label="operation latency over time">'
    ]
    out += _shading(d, x, top, bottom - top)
    for v in yticks:
        yy = y(v)
        out.append(
            f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + PLOT_W}" y2="{yy:.1f}" '
            'stroke="#0000000f"/>'
            f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#57606a">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{(top + bottom) / 2}" font-size="11" fill="#57606a" '
        f'transform="rotate(-90 14 {(top + bottom) / 2})" text-anchor="middle">'
        f"latency ms{' (log)' if log else ''}</text>"
    )
    # Every operation is drawn; operations landing on the same pixel share one circle.
    seen: set[tuple[int, int, str]] = set()
    pts: dict[str, list[str]] = {}
    for o in d.ops:
        if o.latency_ms is None:
            continue
        px, py = x(o.start), y(max(o.latency_ms, 1e-6))
        key = (int(px), int(py), o.outcome)
        if key in seen:
            continue
        seen.add(key)
        pts.setdefault(o.outcome, []).append(f"M{px:.1f},{py:.1f}h0")
    for outcome, path in pts.items():
        color = OUTCOME_COLORS.get(outcome, "#555")
        out.append(
            f'<path class="ops ops-{_e(outcome)}" d="{" ".join(path)}" stroke="{color}" '
            'stroke-width="5" stroke-linecap="round" stroke-opacity="0.75"/>'
        )
    never = [o for o in d.ops if o.end is None]
    for o in never:
        px = x(o.start)
        out.append(
            f'<line class="op-pending" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + 8}" '
            f'stroke="{OUTCOME_COLORS["info"]}"><title>process {o.process} {_e(o.f)} never '
            "completed</title></line>"
        )
    for o in d.ops:
        if o.highlighted and o.latency_ms is not None:
            out.append(
                f'<circle class="marker lin" cx="{x(o.start):.1f}" cy="{y(o.latency_ms):.1f}" '
                f'r="7" fill="none" stroke="#c62828" stroke-width="2"><title>not linearizable: '
                f"process {o.process} {_e(o.f)}</title></circle>"
            )
    if not d.ops:
        out.append(
            f'<text x="{LEFT + PLOT_W / 2}" y="{(top + bottom) / 2}" text-anchor="middle" '
            'fill="#57606a">no client history in this run</text>'
        )
    out += _axis(x, bottom, top)
    out.append("</svg>")
    return "\n".join(out)


def throughput_svg(d: ReportData) -> str:
    x = _X(d.t_min, d.t_max)
    h, top, bottom = 220, 14, 180
    rates = [
        (t, ok / d.throughput_bin_s, f / d.throughput_bin_s, i / d.throughput_bin_s)
        for t, ok, f, i in d.throughput
    ]
    hi = max((max(r[1], r[2], r[3]) for r in rates), default=1.0) or 1.0
    hi *= 1.1

    def y(v: float) -> float:
        return bottom - v / hi * (bottom - top)

    out = [
        f'<svg id="throughput" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" '
        f'viewBox="0 0 {WIDTH} {h}" role="img" aria-label="throughput over time">'
    ]
    out += _shading(d, x, top, bottom - top)
    for v in _nice_ticks(0, hi, 4):
        out.append(
            f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + PLOT_W}" y2="{y(v):.1f}" '
            'stroke="#0000000f"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#57606a">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{(top + bottom) / 2}" font-size="11" fill="#57606a" '
        f'transform="rotate(-90 14 {(top + bottom) / 2})" text-anchor="middle">ops/s</text>'
    )
    for k, outcome in ((1, "ok"), (2, "fail"), (3, "info")):
        if not any(r[k] for r in rates):
            continue
        pts = []
        for t, *vals in rates:
            v = vals[k - 1]
            pts.append(f"{x(t):.1f},{y(v):.1f} {x(t + d.throughput_bin_s):.1f},{y(v):.1f}")
        out.append(
            f'<polyline class="rate rate-{outcome}" points="{" ".join(pts)}" fill="none" '
            f'stroke="{OUTCOME_COLORS[outcome]}" stroke-width="1.6"/>'
        )
    out += _axis(x, bottom, top)
    out.append("</svg>")
    return "\n".join(out)


def _legend(d: ReportData) -> str:
    roles = "".join(
        f'<span><i style="background:{c}"></i>{_e(r)}</span>' for r, c in ROLE_COLORS.items()
    )
    roles += (
        '<span><i style="background:repeating-linear-gradient(45deg,#9e9e9e 0 2px,'
        '#eceff1 2px 6px)"></i>down (between runs)</span>'
    )
    faults = "".join(
        f'<span><i style="background:{c};opacity:.8"></i>{_e(k)}</span>'
        for k, c in d.fault_colors.items()
    )
    marks = (
        '<span><i style="background:#c62828"></i>invariant violation</span>'
        '<span><i style="background:#c6282833;border:1px dashed #c62828"></i>'
        "non-linearizable operation</span>"
    )
    ops = "".join(
        f'<span><i style="background:{c}"></i>{k}</span>' for k, c in OUTCOME_COLORS.items()
    )
    return (
        f'<div class="legend"><b>roles</b> {roles}</div>'
        f'<div class="legend"><b>faults</b> {faults or "<span>none</span>"} {marks}</div>'
        f'<div class="legend"><b>operations</b> {ops}</div>'
    )


def _verdict_banner(d: ReportData) -> str:
    order = ["overall"] + [k for k in d.verdicts if k != "overall"]
    boxes = []
    for k in order:
        v = d.verdicts.get(k, "unknown")
        boxes.append(
            f'<div class="verdict {_e(k)} v-{_e(v)}" style="background:'
            f'{VERDICT_COLORS.get(v, "#6e7781")}"><div class="k">{_e(k)}</div>'
            f'<div class="v">{_e(v.upper())}</div></div>'
        )
    return f'<div id="verdicts" class="verdicts">{"".join(boxes)}</div>'


def _table(rows: Iterable[Iterable[str]], head: list[str], cls: str = "") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{h}</tr>{body}</table>'


def _src_link(src: str, exists: Callable[[str], bool]) -> str:
    path = src.rsplit(":", 1)[0]
    if exists(path):
        return f'<a href="{_e(path)}"><code>{_e(src)}</code></a>'
    return f"<code>{_e(src)}</code>"


def render_html(d: ReportData) -> str:
    res = d.results
    counts = res.get("counts", {})
    exists: Callable[[str], bool] = lambda rel: (d.root / rel).is_file()  # noqa: E731
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(d.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(d.title)}</h1>",
        f'<div class="sub">{_e(d.root)} &middot; analysed {_e(res.get("analyzed_at", ""))}</div>',
        _verdict_banner(d),
    ]

    def kv(m: Any, sep: str = " ") -> str:
        if not isinstance(m, dict) or not m:
            return "none"
        return _e(", ".join(f"{k}{sep}{v}" for k, v in m.items()))

    terms = counts.get("leaders_per_term", {})
    leaders = {f"T{t}": "+".join(ns) if isinstance(ns, list) else ns for t, ns in terms.items()}
    crow = [
        ("nodes", counts.get("nodes")),
        ("events", counts.get("events")),
        ("elections", counts.get("elections")),
        ("leader of each term", kv(leaders, ": ")),
        ("highest commit index", counts.get("max_commit_index")),
        ("faults injected", kv(counts.get("faults"))),
        ("client operations", kv(counts.get("operations"))),
        ("messages matched (send/recv)", counts.get("messages_matched")),
        ("unreadable lines", counts.get("malformed_lines")),
    ]
    parts.append(_table(([_e(k), str(v)] for k, v in crow), ["what", "count"], "counts"))
    parts.append("<h2>Timeline</h2>")
    parts.append(
        '<div class="sub">Role and term of every node over time (corrected clocks); fault '
        "windows shaded by kind; red marks: invariant violations and operations that could "
        "not be linearized. Hover for details.</div>"
    )
    lo, hi = d.t_full
    if lo < d.t_min - 1e-6 or hi > d.t_max + 1e-6:
        parts.append(
            f'<div class="sub">Showing {_fmt_t(d.t_min)} to {_fmt_t(d.t_max)}, where the client '
            f"operations and faults are; the node logs span {_fmt_t(lo)} to {_fmt_t(hi)}"
            + (
                f"; {d.markers_outside} violation(s) lie outside, see the table below"
                if d.markers_outside
                else ""
            )
            + ".</div>"
        )
    parts.append(timeline_svg(d))
    parts.append(_legend(d))
    parts.append("<h2>Latency</h2>")
    parts.append(latency_svg(d))
    parts.append("<h2>Throughput</h2>")
    parts.append(
        f'<div class="sub">Completed operations per second, {d.throughput_bin_s:g} s bins.</div>'
    )
    parts.append(throughput_svg(d))
    inv = res.get("invariants", {})
    parts.append("<h2>Invariant violations</h2>")
    viol = inv.get("violations", [])
    if not viol:
        parts.append("<p>None: every invariant held on what the logs recorded.</p>")
    else:
        vc = ", ".join(f"{k}: {n}" for k, n in inv.get("violation_counts", {}).items())
        parts.append(f'<p class="bad">{_e(vc)}</p>')
        rows = [
            [
                _e(v["invariant"]),
                _e(", ".join(v["nodes"])),
                _e(v["term"]),
                _e(v["index"]),
                _e(v["message"]),
                "<br>".join(_src_link(s, exists) for s in v["sources"]),
            ]
            for v in viol
        ]
        parts.append(_table(rows, ["invariant", "nodes", "term", "index", "what", "log lines"]))
    parts.append("<h2>Linearizability</h2>")
    lin = res.get("linearizability")
    if lin is None:
        parts.append("<p>No client history in this run.</p>")
    else:
        parts.append(
            f"<p>verdict <b>{_e(lin.get('verdict'))}</b>, model <code>{_e(lin.get('model'))}"
            f"</code>, {_e(lin.get('operations', '?'))} operations"
            + (f"; {_e(lin.get('reason'))}" if lin.get("reason") else "")
            + "</p>"
        )
        if lin.get("counterexample_html"):  # checkers: the counterexample page (issue 14)
            href = _e(lin["counterexample_html"])
            parts.append(
                f'<p><a href="{href}">Counterexample: operations on a time axis, the longest '
                "linearizable prefix and where it fails</a></p>"
            )
        ce = lin.get("counterexample")
        if isinstance(ce, dict):
            parts.append(
                f"<p>State after the longest linearizable prefix: <code>"
                f"{_e(json.dumps(ce.get('state')))}</code>. None of these operations can "
                "come next:</p>"
            )
            rows = [
                [
                    _e(o.get("process")),
                    _e(o.get("f")),
                    f"<code>{_e(json.dumps(o.get('value')))}</code>",
                    _e(o.get("status")),
                    _e(o.get("invoke_time")),
                    _e(o.get("complete_time")),
                    _e(o.get("invoke_line", "")),
                ]
                for o in [*ce.get("unlinearizable", []), ce.get("deadline") or {}]
                if o
            ]
            parts.append(
                _table(
                    rows,
                    [
                        "process",
                        "f",
                        "value",
                        "status",
                        "invoked ns",
                        "completed ns",
                        "history line",
                    ],
                )
            )
    clocks = res.get("clock_offsets", {})
    parts.append("<h2>Clock offsets</h2>")
    parts.append(
        f'<div class="sub">Estimated from send/recv pairs, relative to '
        f"<b>{_e(clocks.get('reference'))}</b> (see docs/analysis.md).</div>"
    )
    rows = [
        [
            _e(n),
            f"{off * 1000:+.2f}",
            _e(
                "-" if (u := clocks.get("uncertainty_s", {}).get(n)) is None else f"±{u * 1000:.2f}"
            ),
        ]
        for n, off in clocks.get("offset_s", {}).items()
    ]
    parts.append(_table(rows, ["node", "offset ms", "bound ms"]))
    probs = res.get("problems", [])
    if probs:
        parts.append(f"<h2>Unreadable or inconsistent lines ({len(probs)})</h2>")
        parts.append(
            "<ul>" + "".join(f"<li><code>{_e(p)}</code></li>" for p in probs[:50]) + "</ul>"
        )
    parts.append("<h2>Raw files</h2><ul>")
    for label, href in d.files:
        if exists(href):
            parts.append(f'<li><a href="{_e(href)}">{_e(label)}</a></li>')
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_html(d: ReportData, path: Path) -> Path:
    path.write_text(render_html(d), encoding="utf-8")
    return path
