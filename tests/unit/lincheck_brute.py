"""Test helpers for raft.lincheck: a compact history builder and a brute-force oracle.

The oracle shares no code with the checker: it enumerates every order of the operations that
respects real time (A before B when A completed strictly before B was invoked), lets each
``info`` operation take effect at any point or never, and replays a plain dict-of-registers.
It is exponential and meant for histories of at most ~8 operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raft.lincheck import HistoryEvent


@dataclass(frozen=True)
class Op:
    process: int
    f: str
    value: Any  # write: value; cas: [from, to]; read: the value read
    start: int
    end: int | None  # None: the invocation never completed
    status: str = "ok"  # ok | fail | info
    key: Any = None


def history(*ops: Op) -> list[HistoryEvent]:
    """Events for ``ops`` in time order (a process's invoke before its own completion)."""
    timed: list[tuple[int, int, int, HistoryEvent]] = []
    for seq, op in enumerate(ops):
        inv_value = None if op.f == "read" else op.value
        timed.append(
            (
                op.start,
                0,
                seq,
                HistoryEvent(op.process, "invoke", op.f, op.key, inv_value, op.start),
            )
        )
        if op.end is not None:
            done_value = op.value if op.status == "ok" else inv_value
            ev = HistoryEvent(op.process, op.status, op.f, op.key, done_value, op.end)
            timed.append((op.end, 1, seq, ev))
    timed.sort(key=lambda t: (t[0], t[1], t[2]))
    return [t[3] for t in timed]


def brute_force_linearizable(ops: Sequence[Op], *, allow_cas: bool = True) -> bool:
    """Whether some real-time-respecting order of ``ops`` replays on registers (one per key,
    initially None). ``fail`` ops are ignored; ``info``/open ops may be left out."""
    live = [op for op in ops if op.status != "fail"]
    must = [op.status == "ok" and op.end is not None for op in live]
    n = len(live)

    def precedes(a: Op, b: Op) -> bool:
        return a.status == "ok" and a.end is not None and a.end < b.start

    preds = [[j for j in range(n) if precedes(live[j], live[i])] for i in range(n)]

    def step(state: dict[Any, Any], op: Op) -> dict[Any, Any] | None:
        cur = state.get(op.key)
        if op.f == "read":
            if op.status != "ok" or op.end is None:
                return state  # an unknown read constrains nothing
            return state if cur == op.value else None
        if op.f == "write":
            return {**state, op.key: op.value}
        if op.f == "delete":
            return {k: v for k, v in state.items() if k != op.key}
        if op.f == "cas":
            assert allow_cas
            return {**state, op.key: op.value[1]} if cur == op.value[0] else None
        raise AssertionError(op.f)

    def search(placed: frozenset[int], skipped: frozenset[int], state: dict[Any, Any]) -> bool:
        if all(i in placed or (not must[i] and i in skipped) for i in range(n)):
            return True
        for i in range(n):
            if i in placed or i in skipped:
                continue
            if any(j not in placed for j in preds[i]):
                continue
            nxt = step(state, live[i])
            if nxt is not None and search(placed | {i}, skipped, nxt):
                return True
            if not must[i] and search(placed, skipped | {i}, state):
                return True
        return False

    return search(frozenset(), frozenset(), {})
