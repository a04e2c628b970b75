"""The report's plots as PNG files in ``plots/`` (matplotlib, Agg backend: no display
needed). They draw the same :class:`ReportData` as the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.report._data import OUTCOME_COLORS, ROLE_COLORS, ReportData

__all__ = ["write_plots"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, d: ReportData) -> None:
    for w in d.faults:
        ax.axvspan(w.start, w.end, color=d.fault_colors[w.fault], alpha=0.16, lw=0)


def _fault_handles(d: ReportData) -> list[Any]:
    from matplotlib.patches import Patch

    return [Patch(color=c, alpha=0.5, label=k) for k, c in d.fault_colors.items()]


def write_plots(d: ReportData, out_dir: Path) -> list[Path]:
    """Write timeline.png, latency.png and throughput.png; returns their paths."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        _timeline(plt, d, out_dir / "timeline.png"),
        _latency(plt, d, out_dir / "latency.png"),
        _throughput(plt, d, out_dir / "throughput.png"),
    ]
    return paths


def _timeline(plt: Any, d: ReportData, path: Path) -> Path:
    from matplotlib.patches import Patch

    n = max(len(d.nodes), 1)
    fig, ax = plt.subplots(figsize=(13, 1.2 + 0.5 * n), dpi=100)
    _shade(ax, d)
    lane = {node: n - 1 - i for i, node in enumerate(d.nodes)}
    for node, s, e in d.down:
        ax.broken_barh(
            [(s, e - s)],
            (lane[node] - 0.3, 0.6),
            facecolors="#eceff1",
            hatch="///",
            edgecolor="#9e9e9e",
            lw=0,
        )
    for sg in d.segments:
        hh = 0.7 if sg.role == "leader" else 0.4
        ax.broken_barh(
            [(sg.start, max(sg.end - sg.start, 1e-9))],
            (lane[sg.node] - hh / 2, hh),
            facecolors=ROLE_COLORS.get(sg.role, "#7e57c2"),
            lw=0,
        )
        if sg.role == "leader" and (sg.end - sg.start) > (d.t_max - d.t_min) * 0.03:
            ax.text(
                sg.start,
                lane[sg.node],
                f" T{sg.term}",
                va="center",
                fontsize=8,
                color="white",
                fontweight="bold",
            )
    for m in d.markers:
        if m.kind == "linearizability":
            ax.axvspan(m.t, m.end, facecolor="none", edgecolor="#c62828", ls="--", lw=1)
        else:
            for node in m.nodes:
                if node in lane:
                    ax.plot([m.t], [lane[node] + 0.45], marker="v", color="#c62828", ms=9)
    ax.set_yticks(range(n))
    ax.set_yticklabels(list(reversed(d.nodes)))
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(d.t_min, d.t_max)
    ax.set_xlabel("seconds since run start")
    handles = [Patch(color=c, label=r) for r, c in ROLE_COLORS.items()] + _fault_handles(d)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("node roles and terms; fault windows shaded")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _latency(plt: Any, d: ReportData, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(13, 3.6), dpi=100)
    _shade(ax, d)
    import numpy as np

    for outcome, color in OUTCOME_COLORS.items():
        pts = [(o.start, o.latency_ms) for o in d.ops if o.outcome == outcome and o.latency_ms]
        if pts:
            xy = np.array(pts, dtype=np.float64)
            # Markers of one size and colour as a line without a line: the same dots as a
            # scatter of area 6, drawn in one call instead of one path per point (a make
            # lab run has ~65k operations; the scatter took most of the report's time).
            ax.plot(
                xy[:, 0],
                xy[:, 1],
                ls="none",
                marker="o",
                ms=2.45,
                mew=0,
                color=color,
                alpha=0.7,
                label=outcome,
            )
    hl = [(o.start, o.latency_ms) for o in d.ops if o.highlighted and o.latency_ms]
    if hl:
        xs, ys = zip(*hl, strict=True)
        ax.scatter(xs, ys, s=80, facecolors="none", edgecolors="#c62828", label="not linearizable")
    lats = [o.latency_ms for o in d.ops if o.latency_ms and o.latency_ms > 0]
    if lats and max(lats) / max(min(lats), 1e-6) > 50:
        ax.set_yscale("log")
    ax.set_xlim(d.t_min, d.t_max)
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("latency (ms)")
    ax.set_title("operation latency (by invocation time)")
    if d.ops:
        ax.legend(
            handles=ax.get_legend_handles_labels()[0] + _fault_handles(d),
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _throughput(plt: Any, d: ReportData, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(13, 3.0), dpi=100)
    _shade(ax, d)
    drawn = False
    ts = [b[0] for b in d.throughput]
    for k, outcome in ((1, "ok"), (2, "fail"), (3, "info")):
        ys = [b[k] / d.throughput_bin_s for b in d.throughput]
        if any(ys):
            ax.step(ts, ys, where="post", color=OUTCOME_COLORS[outcome], label=outcome)
            drawn = True
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(
            0.5,
            0.5,
            "no client history in this run",
            transform=ax.transAxes,
            ha="center",
            color="#57606a",
        )
    ax.set_xlim(d.t_min, d.t_max)
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("ops/s")
    ax.set_title(f"throughput ({d.throughput_bin_s:g} s bins)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
