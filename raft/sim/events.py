"""Node event logs from the simulator, in the lab's format (docs/formats.md, "Node event
log"), so a simulated run is a run directory like any other and the lab's analysis judges it.

:class:`EventRecorder` is the world's optional observer (``World.observer``): the world calls
it where the runtime would write an event (start, each Ready, each applied entry, each
delivered message) and for each note of its trace (the nemesis' notes become
``nemesis.jsonl`` lines). Virtual time becomes wall-clock seconds as
``base_ts + units * ns_per_unit / 1e9``; history ``time`` uses the same origin, so time 0 of
the history is ``base_ts`` exactly.

The order of events within a Ready follows the runtime (raft/runtime/node.py): messages
sent, entries persisted, messages sent after persistence, snapshot installed, the core's
own events (role, vote, commit, truncate), then the entries applied (an apply is logged
after the commit that allowed it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from raft.core import Entry, HardState, Message, Ready
from raft.core.storage import MemoryStorage

__all__ = ["EventRecorder", "WorldObserver"]

FORMAT_VERSION = 1


class WorldObserver(Protocol):
    """What the world tells an observer; ``now`` is virtual time in world units."""

    def on_start(
        self,
        now: int,
        node: str,
        hs: HardState,
        applied: int,
        disk: MemoryStorage,
        voters: Sequence[str],
    ) -> None: ...

    def on_ready(self, now: int, node: str, rd: Ready) -> None: ...

    def on_ready_done(self, now: int, node: str, rd: Ready) -> None: ...

    def on_apply(self, now: int, node: str, entry: Entry, result: bytes) -> None: ...

    def on_recv(self, now: int, m: Message) -> None: ...

    def on_note(self, now: int, text: str) -> None: ...


def digest(data: bytes) -> str:
    """The format's entry/result digest (as ``raft.runtime.eventlog.digest``)."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# Sim fault kinds -> the lab's fault names in nemesis.jsonl (docs/nemesis.md).
_SIM_FAULT = {
    "drop": "loss",
    "dup": "duplicate",
    "reorder": "reorder",
    "delay": "delay",
    "partition": "partition",
    "oneway": "partition",
    "skew": "clock",
    "crash": "kill",
    "pause": "pause",
}
_NODE = re.compile(r"\bn\d+\b")


class EventRecorder:
    """Collects node events, nemesis lines and the time base of one simulated run."""

    def __init__(self, ns_per_unit: int, base_ts: float = 1_700_000_000.0) -> None:
        self.ns_per_unit = ns_per_unit
        self.base_ts = base_ts
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.nemesis: list[dict[str, Any]] = []
        self._term: dict[str, int] = {}
        self._ids: dict[int, tuple[Message, str]] = {}
        self._counter: dict[str, int] = {}
        self._applied_rows: dict[str, list[list[Any]]] = {}
        self._down: set[str] = set()

    # -- time --------------------------------------------------------------------------
    def ts(self, now: int) -> float:
        return round(self.base_ts + now * self.ns_per_unit / 1e9, 6)

    def _emit(self, now: int, node: str, ev: str, term: int | None = None, **f: Any) -> None:
        rec: dict[str, Any] = {
            "ts": self.ts(now),
            "node": node,
            "term": self._term.get(node, 0) if term is None else term,
            "ev": ev,
        }
        rec.update(f)
        self.events.setdefault(node, []).append(rec)

    # -- observer ------------------------------------------------------------------------
    def on_start(
        self,
        now: int,
        node: str,
        hs: HardState,
        applied: int,
        disk: MemoryStorage,
        voters: Sequence[str],
    ) -> None:
        self._term[node] = hs.term
        last = disk.last_index()
        snap = disk.snapshot()
        self._emit(
            now,
            node,
            "start",
            v=FORMAT_VERSION,
            commit=hs.commit,
            applied=applied,
            last_index=last,
            last_term=disk.term(last) if last >= disk.first_index() - 1 else 0,
            vote=hs.vote,
            voters=sorted(voters),
        )
        if not snap.is_empty():
            self._emit(
                now, node, "snapshot", action="load", index=snap.meta.index, sterm=snap.meta.term
            )

    def _send(self, now: int, node: str, msgs: Sequence[Message]) -> None:
        for m in msgs:
            n = self._counter.get(node, 0) + 1
            self._counter[node] = n
            msg_id = f"{node}:sim:{n}"
            self._ids[id(m)] = (m, msg_id)
            self._emit(now, node, "send", to=m.to, msg=m.type.value, id=msg_id)

    def on_ready(self, now: int, node: str, rd: Ready) -> None:
        if rd.hard_state is not None:
            self._term[node] = rd.hard_state.term
        if rd.messages:
            self._send(now, node, rd.messages)
        if rd.entries:
            self._emit(
                now,
                node,
                "persist",
                first=rd.entries[0].index,
                last=rd.entries[-1].index,
                entries=[[e.index, e.term, digest(e.data)] for e in rd.entries],
            )
        if rd.persisted_messages:
            self._send(now, node, rd.persisted_messages)
        snap = rd.snapshot
        if snap is not None and not snap.is_empty():
            self._emit(
                now, node, "snapshot", action="install", index=snap.meta.index, sterm=snap.meta.term
            )

    def on_apply(self, now: int, node: str, entry: Entry, result: bytes) -> None:
        self._applied_rows.setdefault(node, []).append(
            [entry.index, entry.term, digest(entry.data), digest(result)]
        )

    def on_ready_done(self, now: int, node: str, rd: Ready) -> None:
        for ev in rd.events:
            fields: dict[str, Any] = dict(ev.fields)
            self._emit(now, node, ev.ev, ev.term, **fields)
        rows = self._applied_rows.pop(node, None)
        if rows:
            self._emit(now, node, "apply", entries=rows)

    def on_recv(self, now: int, m: Message) -> None:
        known = self._ids.pop(id(m), None)
        if known is None or known[0] is not m:
            return  # a duplicate delivery: its send was matched already
        fields: dict[str, Any] = {"from": m.sender, "msg": m.type.value, "id": known[1]}
        self._emit(now, m.to, "recv", None, **fields)

    def on_note(self, now: int, text: str) -> None:
        """Turn the nemesis' trace notes into nemesis.jsonl lines."""
        if not text.startswith("nemesis "):
            return
        words = text.split()
        verb = words[1] if len(words) > 1 else ""
        nodes = _NODE.findall(text)
        if verb in ("start", "stop") and len(words) > 2:
            kind = words[2]
            fault = _SIM_FAULT.get(kind)
            if fault is None:
                return
            targets = nodes if kind in ("skew", "oneway") else []
            if kind == "partition":
                side = text.split("|")[0]
                targets = _NODE.findall(side)
            self._nemesis(now, fault, verb, targets, sim=text[len("nemesis ") :])
        elif verb in ("crash", "pause") and nodes:
            self._down.add(nodes[0])
            self._nemesis(now, "kill" if verb == "crash" else "pause", "start", nodes[:1], sim=text)
        elif verb in ("restart", "resume") and nodes and nodes[0] in self._down:
            self._down.discard(nodes[0])
            fault = "kill" if verb == "restart" else "pause"
            self._nemesis(now, fault, "stop", nodes[:1], sim=text)

    def _nemesis(self, now: int, fault: str, action: str, targets: list[str], **f: Any) -> None:
        self.nemesis.append(
            {
                "time": now * self.ns_per_unit,
                "ts": self.ts(now),
                "fault": fault,
                "action": action,
                "targets": targets,
                **f,
            }
        )

    # -- output --------------------------------------------------------------------------
    def add_client_events(self, history: Sequence[Any]) -> None:
        """A ``client`` event at the answering node for each ok completion of the history
        (what a real node logs when it answers; the analysis aligns the history by them)."""
        extra: dict[str, list[dict[str, Any]]] = {}
        for n, h in enumerate(history):
            if h.type != "ok" or not h.node:
                continue
            now = h.time // self.ns_per_unit
            extra.setdefault(h.node, []).append(
                {
                    "ts": self.ts(now),
                    "node": h.node,
                    "term": 0,
                    "ev": "client",
                    "op": h.f,
                    "req": n,
                    "outcome": "ok",
                }
            )
        for node, evs in extra.items():
            merged = self.events.setdefault(node, []) + evs
            merged.sort(key=lambda e: e["ts"])  # stable: program order kept at equal times
            self.events[node] = merged

    def write(self, run_dir: Path) -> list[Path]:
        """``nodes/<node>/events.jsonl`` for each node and ``nemesis.jsonl``."""
        paths = []
        for node, evs in sorted(self.events.items()):
            d = run_dir / "nodes" / node
            d.mkdir(parents=True, exist_ok=True)
            p = d / "events.jsonl"
            with p.open("w", encoding="utf-8") as fh:
                for rec in evs:
                    fh.write(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
            paths.append(p)
        with (run_dir / "nemesis.jsonl").open("w", encoding="utf-8") as fh:
            for line in self.nemesis:
                fh.write(json.dumps(line) + "\n")
        return paths
