"""Export a merged timeline in ShiViz's log format (https://bestchai.bitbucket.io/shiviz/).

A ShiViz log file is: the parser regular expression on the first line, the multiple-
executions delimiter on the second (empty here: one execution), then the log. Each event
takes two lines -- the event text, then ``host {"host": n, ...}``, its vector clock -- which
is the layout ShiViz's own default regex expects. The regex used here
(:data:`SHIVIZ_REGEX`) also captures the corrected timestamp, the term and the source line,
shown in ShiViz's side panel:

    (?<ts>\\S+) (?<term>t\\d+) (?<event>.*) @(?<src>\\S+)\\n(?<host>\\S+) (?<clock>\\{.*\\})

Guarantees (ShiViz rejects logs without them): a host's own clock component starts at 1 and
grows by exactly one per event of that host; a host's clock never decreases; a ``recv``
carries at least the clock of its ``send``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from deploy.analysis.merge import MergedEvent, MergedTimeline

__all__ = ["SHIVIZ_PY_REGEX", "SHIVIZ_REGEX", "describe", "render_shiviz", "write_shiviz"]

SHIVIZ_REGEX = r"(?<ts>\S+) (?<term>t\d+) (?<event>.*) @(?<src>\S+)\n(?<host>\S+) (?<clock>\{.*\})"
"""The parser for ShiViz (its named-group syntax is JavaScript's)."""

SHIVIZ_PY_REGEX = re.compile(SHIVIZ_REGEX.replace("(?<", "(?P<"))
"""The same regex for Python, used by the tests to parse what we write."""

_SKIP = frozenset({"entries", "voters", "learners", "voters_outgoing", "id", "true_ts"})


def describe(m: MergedEvent) -> str:
    """One-line description of an event: kind plus its short fields."""
    e = m.event
    parts = [e.ev]
    if e.ev in ("send", "recv"):
        peer = e.get("to") if e.ev == "send" else e.get("from")
        parts.append(f"{e.get('msg')} {'->' if e.ev == 'send' else '<-'} {peer}")
    elif e.ev in ("persist", "apply"):
        ents = e.get("entries") or []
        if ents:
            parts.append(f"[{ents[0][0]}..{ents[-1][0]}]")
    for k, v in e.fields.items():
        if k in _SKIP or (e.ev in ("send", "recv") and k in ("to", "from", "msg")):
            continue
        if k in ("first", "last") and e.ev == "persist":
            continue
        parts.append(f"{k}={json.dumps(v, separators=(',', ':'))}")
    return " ".join(parts).replace("\n", " ")


def render_shiviz(timeline: MergedTimeline) -> Iterable[str]:
    """Lines of the ShiViz file, newline-terminated."""
    yield SHIVIZ_REGEX + "\n"
    yield "\n"
    nodes = timeline.nodes
    for m in timeline.events:
        clock = {nodes[i]: v for i, v in enumerate(m.vclock) if v}
        src = str(m.event.source).replace(" ", "%20")
        yield f"{m.cts:.6f} t{m.event.term} {describe(m)} @{src}\n"
        yield f"{m.event.node} {json.dumps(clock, separators=(',', ':'))}\n"


def write_shiviz(timeline: MergedTimeline, path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(render_shiviz(timeline))
