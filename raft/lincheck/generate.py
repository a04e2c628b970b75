"""Histories that are linearizable by construction, for tests and benchmarks.

Each process runs one operation at a time. Every operation gets an invocation time, a
linearization point strictly inside its interval, and a completion time; a real register (or
map of registers) is applied in linearization-point order, so reads return what a correct
system would. Some operations crash (``info``): they take effect at their linearization point
or never, and their process is replaced by a fresh one, as Jepsen does. A ``cas`` that finds
another value completes with ``fail`` and has no effect.

Everything is derived from the ``random.Random`` passed in, so a seed reproduces a history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from raft.lincheck.history import HistoryEvent

__all__ = ["GeneratedHistory", "linearizable_history"]


@dataclass(frozen=True, slots=True)
class GeneratedHistory:
    events: list[HistoryEvent]
    operations: int
    info_operations: int


@dataclass(slots=True)
class _Planned:
    process: int
    f: str
    key: Any
    arg: Any
    invoke: int
    point: int
    complete: int
    crashes: bool
    takes_effect: bool


def linearizable_history(
    rng: random.Random,
    operations: int,
    processes: int,
    *,
    model: str = "cas-register",
    values: int = 5,
    keys: int = 4,
    info_fraction: float = 0.0,
    max_duration: int = 100,
) -> GeneratedHistory:
    """A history of ``operations`` operations over ``processes`` concurrent clients.

    ``model`` picks the operations: ``register`` (read/write), ``cas-register`` (+cas) or
    ``kv`` (+delete, over ``keys`` keys). Values are drawn from ``range(values)``; few values
    make the search harder (many states look alike). ``info_fraction`` of the operations
    crash with an unknown outcome.
    """
    fs = ["read", "write"]
    if model in ("cas-register", "kv"):
        fs.append("cas")
    if model == "kv":
        fs.append("delete")
    clock = [rng.randrange(max_duration) for _ in range(processes)]
    names = list(range(processes))
    next_name = processes
    planned: list[_Planned] = []
    for _ in range(operations):
        slot = rng.randrange(processes)
        f = rng.choice(fs)
        key = f"k{rng.randrange(keys)}" if model == "kv" else None
        if f == "write":
            arg: Any = rng.randrange(values)
        elif f == "cas":
            arg = [rng.randrange(values), rng.randrange(values)]
        else:
            arg = None
        invoke = clock[slot] + 1 + rng.randrange(max_duration)
        point = invoke + 1 + rng.randrange(max_duration)
        complete = point + 1 + rng.randrange(max_duration)
        crashes = rng.random() < info_fraction
        takes_effect = not crashes or rng.random() < 0.5
        planned.append(
            _Planned(names[slot], f, key, arg, invoke, point, complete, crashes, takes_effect)
        )
        clock[slot] = complete
        if crashes:
            names[slot] = next_name
            next_name += 1
    state: dict[Any, Any] = {}
    results: dict[int, tuple[str, Any]] = {}
    order = sorted(range(len(planned)), key=lambda i: (planned[i].point, i))
    for i in order:
        p = planned[i]
        if not p.takes_effect:
            continue
        current = state.get(p.key)
        if p.f == "read":
            results[i] = ("ok", current)
        elif p.f == "write":
            state[p.key] = p.arg
            results[i] = ("ok", p.arg)
        elif p.f == "delete":
            state.pop(p.key, None)
            results[i] = ("ok", None)
        elif current == p.arg[0]:
            state[p.key] = p.arg[1]
            results[i] = ("ok", p.arg)
        else:
            results[i] = ("fail", p.arg)
    timed: list[tuple[int, int, HistoryEvent]] = []
    for i, p in enumerate(planned):
        invoke_value = None if p.f == "read" else p.arg
        timed.append((p.invoke, 0, HistoryEvent(p.process, "invoke", p.f, p.key, invoke_value, 0)))
        if p.crashes:
            done = HistoryEvent(p.process, "info", p.f, p.key, invoke_value, 0, error="crashed")
        else:
            kind, value = results[i]
            done = HistoryEvent(p.process, kind, p.f, p.key, value, 0)
        timed.append((p.complete, 1, done))
    timed.sort(key=lambda t: (t[0], t[1]))
    events = [
        HistoryEvent(e.process, e.type, e.f, e.key, e.value, t, error=e.error) for t, _, e in timed
    ]
    info = sum(1 for p in planned if p.crashes)
    return GeneratedHistory(events, len(planned), info)
