"""Counterexamples people can read: a self-contained HTML page (like Porcupine's visualiser)
and a minimal failing window in text.

Pure: strings out, the caller writes files. The page draws the operations of the refuted key
on a time axis, one lane per client process, numbers the operations of the longest
linearizable prefix the search found in their linearization order, and marks where it fails:
the operations that could come next (none of them leads to a complete linearization; red
when the model itself rejects them in the state reached) and the operation whose completion
closes the window (thick outline). No script, no external resource: it opens from a run
directory or an e-mail attachment alike.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from raft.lincheck.checker import CheckResult
from raft.lincheck.history import Operation, thaw

__all__ = ["failing_window", "render_html", "render_window_text"]

WINDOW_PREFIX_OPS = 12
"""How many of the last linearized operations the window keeps before the failure."""
MAX_DRAWN = 400
"""At most this many operations are drawn (the ones nearest the failure)."""


def _span(op: dict[str, Any], end_of_time: int) -> tuple[int, int]:
    done = op.get("complete_time")
    return int(op["invoke_time"]), int(done) if done is not None else end_of_time


def failing_window(
    cx: dict[str, Any], ops: Sequence[Operation]
) -> tuple[int, int, list[Operation]]:
    """The smallest stretch of time that shows the failure: from the invocation of the
    earliest of the last few linearized operations and of the candidates, to the completion
    of the deadline operation; with the key's operations overlapping it (invocation order)."""
    key = cx.get("key")
    mine = [op for op in ops if thaw(op.key) == key and op.status.value != "fail"]
    end_of_time = max((op.complete_time or op.invoke_time for op in mine), default=0) + 1
    # Info ops may have been invoked long before they were linearized: they do not stretch
    # the window (they are drawn when they overlap it).
    done = [o for o in cx["linearized"] if o.get("complete_time") is not None]
    involved = [*done[-WINDOW_PREFIX_OPS:], *cx["unlinearizable"], cx["deadline"]]
    if "stale_read" in cx:  # the write that overwrote the value read belongs in the window
        involved.append(cx["stale_read"]["overwritten_by"])
    lo = min(_span(o, end_of_time)[0] for o in involved if o.get("complete_time") is not None)
    hi = _span(cx["deadline"], end_of_time)[1]
    inside = [
        op
        for op in mine
        if op.invoke_time <= hi
        and (op.complete_time is None or op.complete_time >= lo)
        and not (op.complete_time is None and op.f in ("read", "get"))  # no effect: dropped
    ]
    return lo, hi, inside


def _describe(op: Operation | dict[str, Any]) -> str:
    d = op.to_json() if isinstance(op, Operation) else op
    done = "never (info)" if d["complete_time"] is None else str(d["complete_time"])
    line = f" line {d['invoke_line']}" if d.get("invoke_line") is not None else ""
    return (
        f"process {d['process']} {d['f']} {json.dumps(d['value'])} [{d['status']}] "
        f"{d['invoke_time']}..{done}{line}"
    )


def render_window_text(cx: dict[str, Any], ops: Sequence[Operation]) -> str:
    """The minimal failing window as text: every operation of the key overlapping it, with
    its role (linearized #n, candidate, deadline)."""
    lo, hi, inside = failing_window(cx, ops)
    order = {o["id"]: n for n, o in enumerate(cx["linearized"], start=1)}
    cands = {o["id"]: o for o in cx["unlinearizable"]}
    overwriter = cx["stale_read"]["overwritten_by"]["id"] if "stale_read" in cx else None
    lines = [f"Failing window: time {lo}..{hi}, {len(inside)} operations"]
    for op in inside:
        roles = []
        if op.id in cands:
            roles.append(
                "cannot come next"
                + ("" if cands[op.id].get("model_accepts") else " (model rejects it)")
            )
        elif op.id in order:
            roles.append(f"linearized #{order[op.id]}")
        elif op.id == overwriter:
            roles.append("STALE: left or saw a newer value before the read began")
        else:
            roles.append("not yet linearized")
        if op.id == cx["deadline"]["id"]:
            roles.append("DEADLINE: must have taken effect by its completion")
        role = "; ".join(roles)
        lines.append(f"  {_describe(op)}  <- {role}")
    lines.append(f"State after the prefix: {json.dumps(cx['state'])}")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} code{background:#f3f3f3;padding:0 .2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .5em}
.legend span{display:inline-block;padding:0 .5em;margin-right:.5em;border-radius:3px}
svg text{font:11px monospace}
"""


def render_html(
    result: CheckResult, ops: Sequence[Operation], title: str = "linearizability"
) -> str:
    """A self-contained page for ``result`` (any verdict; the drawing needs a
    counterexample) over the history's operations ``ops``."""
    e = html.escape
    head = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{e(title)}: {e(result.verdict.value)}</h1>"
        f"<p>model <code>{e(result.model)}</code>, {result.operations} operations searched, "
        f"{result.dropped} dropped, {result.partitions} key(s), {result.states_explored} "
        f"states. {e(result.reason)}</p>"
    )
    cx = result.counterexample
    if cx is None:
        return head + "<p>No counterexample: nothing to draw.</p></body></html>\n"
    lo, hi, _ = failing_window(cx, ops)
    key = cx.get("key")
    mine = [op for op in ops if thaw(op.key) == key and op.status.value != "fail"]
    # The axis spans the window plus a quarter of it before, for context; bars that start
    # earlier (info ops invoked long before) are clipped at the left edge.
    t0 = max(lo - max((hi - lo) // 4, 1), min(op.invoke_time for op in mine))
    t1 = hi + max((hi - lo) // 20, 1)
    drawn = [
        op
        for op in mine
        if op.invoke_time <= t1
        and (op.complete_time is None or op.complete_time >= t0)
        and not (op.complete_time is None and op.f in ("read", "get"))  # dropped: no effect
    ][-MAX_DRAWN:]
    procs = sorted({op.process for op in drawn})
    lane = {p: i for i, p in enumerate(procs)}
    width, left, lane_h = 1100, 90, 26
    scale = (width - left - 10) / max(t1 - t0, 1)
    order = {o["id"]: n for n, o in enumerate(cx["linearized"], start=1)}
    cands = {o["id"]: o for o in cx["unlinearizable"]}
    deadline_id = cx["deadline"]["id"]
    height = lane_h * len(procs) + 40
    svg = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    wx0, wx1 = left + (lo - t0) * scale, left + (hi - t0) * scale
    svg.append(
        f"<rect x='{wx0:.1f}' y='0' width='{max(wx1 - wx0, 1):.1f}' height='{height - 20}' "
        "fill='#fff3e0'><title>failing window</title></rect>"
    )
    for p in procs:
        y = lane[p] * lane_h + 4
        svg.append(f"<text x='4' y='{y + 15}'>process {p}</text>")
    for op in drawn:
        end = min(op.complete_time if op.complete_time is not None else t1, t1)
        start = max(op.invoke_time, t0)
        x = left + (start - t0) * scale
        w = max((end - start) * scale, 3)
        y = lane[op.process] * lane_h + 4
        if op.id in cands:
            fill = "#ef9a9a" if not cands[op.id].get("model_accepts") else "#ffcc80"
        elif op.id in order:
            fill = "#a5d6a7"
        else:
            fill = "#e0e0e0"
        stroke = "#b71c1c' stroke-width='3" if op.id == deadline_id else "#555' stroke-width='1"
        dash = " stroke-dasharray='4 2'" if op.complete_time is None else ""
        label = f"#{order[op.id]} " if op.id in order else ""
        value = json.dumps(thaw(op.value))
        svg.append(
            f"<g><title>{e(_describe(op))}</title><rect x='{x:.1f}' y='{y}' width='{w:.1f}' "
            f"height='{lane_h - 8}' rx='3' fill='{fill}' stroke='{stroke}'{dash}/>"
            + (
                f"<text x='{x + 3:.1f}' y='{y + 13}'>"
                f"{e((label + op.f + ' ' + value)[: max(int(w / 7), 1)])}</text>"
                if w > 20
                else ""
            )
            + "</g>"
        )
    svg.append(
        f"<text x='{left}' y='{height - 6}'>time {t0} .. {t1} (history units); shaded: the "
        "failing window</text></svg>"
    )
    legend = (
        "<p class='legend'><span style='background:#a5d6a7'>#n linearized (order)</span>"
        "<span style='background:#ffcc80'>could come next, leads nowhere</span>"
        "<span style='background:#ef9a9a'>model rejects it in that state</span>"
        "<span style='border:3px solid #b71c1c'>deadline</span>"
        "<span style='border:1px dashed #555'>info: may take effect any time or never</span>"
        "</p>"
    )
    rows = "".join(
        f"<tr><td>{n}</td><td>{e(_describe(o))}</td></tr>"
        for n, o in enumerate(cx["linearized"], start=1)
    )
    keytxt = "" if key is None else f" for key <code>{e(json.dumps(key))}</code>"
    return (
        head
        + f"<h2>Where it fails{keytxt}</h2>"
        + f"<p>The longest linearizable prefix found has {len(cx['linearized'])} operations; "
        f"the state after it is <code>{e(json.dumps(cx['state']))}</code>. None of the "
        "highlighted operations can come next, and the outlined one had to take effect "
        "before it completed.</p>"
        + legend
        + "".join(svg)
        + "<h2>Failing window</h2><pre>"
        + e(render_window_text(cx, ops))
        + "</pre><h2>Longest linearizable prefix</h2><table><tr><th>#</th><th>operation</th>"
        + f"</tr>{rows}</table></body></html>\n"
    )
