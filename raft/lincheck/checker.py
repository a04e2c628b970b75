"""Linearizability checking: the Wing-Gong / Lowe search with Porcupine's memoisation.

The algorithm (Wing & Gong 1993, with Lowe's 2017 memoisation, as implemented in Porcupine):
the invocations ("calls") and completions ("returns") of all operations are put in one doubly
linked list ordered by time. A depth-first search walks the list from its head; at a call it
tries to linearize that operation now (the model must accept it and the pair
``(linearized set, state)`` must be new), and if so removes the call and its return from the
list (dancing links) and restarts from the head. Reaching a return means the operation it
belongs to had to take effect already: the search backtracks by undoing the most recent
linearization and trying the next candidate. An empty list means every operation was
linearized.

Guarantees and conventions:

- Operations are ordered by real time only: A precedes B iff A's completion time is strictly
  before B's invocation time. Equal times count as concurrent (calls sort before returns).
- ``fail`` operations did not happen and are dropped. ``info`` operations may take effect at
  any time after their invocation, or never: their return is at +inf, and reaching the first
  such return means every completed operation was linearized, so the history is linearizable
  with the remaining ``info`` operations omitted.
- The linearized set is an ``int`` bitset stored relative to the oldest operation not yet
  linearized (all older ones are linearized), so memo keys stay as small as the concurrency
  window instead of growing with the history.
- Independent parts (keys of ``kv``) are checked one by one (P-compositionality).
- The search stops at ``timeout_s`` (checked every few thousand steps and at the start) with
  ``Verdict.UNKNOWN``.
- A counterexample is the deepest point the search reached: the longest linearizable prefix,
  the state after it, the operations that could have come next (none leads to a complete
  linearization), and the operation whose completion closes that window.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raft.lincheck.history import HistoryEvent, Operation, OpStatus, pair_events, thaw
from raft.lincheck.models import Model, get_model

__all__ = ["CheckResult", "Verdict", "check_history", "check_operations"]

_CLOCK_EVERY_STEPS = 4096
"""How many search steps between two looks at the clock (a power of two)."""


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not_linearizable"
    UNKNOWN = "unknown"
    """The time budget ran out before the search finished."""

    @property
    def exit_code(self) -> int:
        """The checking commands' exit status: 0 valid, 1 invalid, 2 unknown."""
        return {"linearizable": 0, "not_linearizable": 1, "unknown": 2}[self.value]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of a check.

    ``counterexample`` is ``None`` unless the verdict is NOT_LINEARIZABLE; then it is a
    JSON-ready dict with ``key`` (the partition, ``None`` for a single register),
    ``linearized`` (the longest linearizable prefix found, operations in linearization
    order), ``state`` (the model state after that prefix), ``unlinearizable`` (the operations
    that could be linearized next; none of them leads to a complete linearization; each with
    ``model_accepts``, whether the model alone would accept it in ``state``) and ``deadline``
    (the operation whose completion means one of them had to have happened).
    """

    verdict: Verdict
    model: str
    operations: int
    """Operations searched (after dropping ``fail`` ops and provably irrelevant ``info``)."""
    dropped: int
    partitions: int
    states_explored: int
    elapsed_s: float
    counterexample: dict[str, Any] | None = None
    reason: str = ""

    @property
    def linearizable(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "model": self.model,
            "operations": self.operations,
            "dropped": self.dropped,
            "partitions": self.partitions,
            "states_explored": self.states_explored,
            "elapsed_s": round(self.elapsed_s, 6),
            "reason": self.reason,
            "counterexample": self.counterexample,
        }


@dataclass(slots=True)
class _PartitionOutcome:
    verdict: Verdict
    states: int
    counterexample: dict[str, Any] | None = field(default=None)


class _Timeout(Exception):
    pass


def check_history(
    events: Iterable[HistoryEvent],
    model: str | Model = "register",
    timeout_s: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Pair ``events`` into operations and check them against ``model``.

    Raises :class:`~raft.lincheck.history.HistoryError` for a malformed history and
    :class:`~raft.lincheck.models.UnsupportedOperationError` for operations the model does
    not know; returns UNKNOWN when ``timeout_s`` (seconds, ``None`` = no limit) runs out.
    """
    return check_operations(pair_events(events), model, timeout_s, clock=clock)


def check_operations(
    ops: Sequence[Operation],
    model: str | Model = "register",
    timeout_s: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Check already-paired operations; see :func:`check_history`."""
    m = get_model(model)
    start = clock()
    deadline = math.inf if timeout_s is None else start + timeout_s
    for op in ops:
        if op.status != OpStatus.FAIL:
            m.validate(op)
    live = [op for op in ops if op.status != OpStatus.FAIL]
    parts = m.partition(live)
    searched = 0
    states = 0
    dropped = len(ops) - len(live)
    for key, part_ops in parts:
        drop = m.droppable_info(part_ops)
        kept = [op for op in part_ops if op.id not in drop]
        dropped += len(part_ops) - len(kept)
        searched += len(kept)
        try:
            outcome = _check_partition(m, key, kept, deadline, clock)
        except _Timeout:
            return CheckResult(
                Verdict.UNKNOWN,
                m.name,
                searched,
                dropped,
                len(parts),
                states,
                clock() - start,
                reason=f"time budget of {timeout_s}s ran out before the search finished",
            )
        states += outcome.states
        if outcome.verdict is Verdict.NOT_LINEARIZABLE:
            return CheckResult(
                Verdict.NOT_LINEARIZABLE,
                m.name,
                searched,
                dropped,
                len(parts),
                states,
                clock() - start,
                counterexample=outcome.counterexample,
                reason="no linearization exists"
                + ("" if key is None else f" for key {thaw(key)!r}"),
            )
    return CheckResult(
        Verdict.LINEARIZABLE,
        m.name,
        searched,
        dropped,
        len(parts),
        states,
        clock() - start,
        reason="a linearization exists",
    )


def _check_partition(
    model: Model,
    key: Hashable,
    part_ops: Sequence[Operation],
    deadline: float,
    clock: Callable[[], float],
) -> _PartitionOutcome:
    """WGL search over one independent sub-history; raises _Timeout past ``deadline``.

    Node numbering: op ``i`` (in invocation order) has call node ``i`` and return node
    ``n + i``; node ``2n`` is the list head; -1 ends the list.
    """
    ops = sorted(part_ops, key=lambda o: (o.invoke_time, o.id))
    n = len(ops)
    if n == 0:
        return _PartitionOutcome(Verdict.LINEARIZABLE, 0)
    order = sorted(
        [(op.invoke_time, 0, i) for i, op in enumerate(ops)]
        + [(op.return_time, 1, i) for i, op in enumerate(ops)]
    )
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    prev_node = head
    for _, kind, i in order:
        node = i if kind == 0 else n + i
        nxt[prev_node] = node
        prv[node] = prev_node
        prev_node = node
    is_info = [op.complete_time is None for op in ops]

    step = model.step
    state: Hashable = model.init()
    base = 0  # every op with index < base is linearized; base is the head's call
    rel = 0  # bit j set <=> op base + j is linearized
    cache: set[tuple[int, int, Hashable]] = set()
    # The linearization so far, as an immutable cons list so the deepest one can be kept
    # without copying: (call node, state before, base before, rel before, parent).
    stack: tuple[int, Hashable, int, int, Any] | None = None
    depth = 0
    best_depth = -1
    best: tuple[Any, Hashable, int, list[int]] | None = None
    steps = 0
    entry = nxt[head]
    while entry != -1:
        if not steps & (_CLOCK_EVERY_STEPS - 1) and clock() >= deadline:
            raise _Timeout
        steps += 1
        if entry < n:
            ok, new_state = step(state, ops[entry])
            if ok:
                if entry == base:
                    after = nxt[entry]
                    if after == entry + n:
                        after = nxt[after]
                    new_base = n if after == -1 else after
                    new_rel = (rel | 1) >> (new_base - base)
                else:
                    new_base = base
                    new_rel = rel | (1 << (entry - base))
                memo_key = (new_base, new_rel, new_state)
                if memo_key not in cache:
                    cache.add(memo_key)
                    stack = (entry, state, base, rel, stack)
                    depth += 1
                    state, base, rel = new_state, new_base, new_rel
                    # lift the call and its return out of the list
                    ret = entry + n
                    p, q = prv[entry], nxt[entry]
                    nxt[p] = q
                    prv[q] = p
                    p, q = prv[ret], nxt[ret]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
            continue
        # a return: its operation should have been linearized by now
        if is_info[entry - n]:
            return _PartitionOutcome(Verdict.LINEARIZABLE, len(cache))
        if depth > best_depth:
            best_depth = depth
            candidates = []
            node = nxt[head]
            while node != entry:
                if node < n:
                    candidates.append(node)
                node = nxt[node]
            best = (stack, state, entry - n, candidates)
        if stack is None:
            break
        call, state, base, rel, stack = stack
        depth -= 1
        # unlift, in the reverse order of lift
        ret = call + n
        nxt[prv[ret]] = ret
        if nxt[ret] != -1:
            prv[nxt[ret]] = ret
        nxt[prv[call]] = call
        prv[nxt[call]] = call
        entry = nxt[call]
    else:
        return _PartitionOutcome(Verdict.LINEARIZABLE, len(cache))
    assert best is not None
    return _PartitionOutcome(
        Verdict.NOT_LINEARIZABLE, len(cache), _counterexample(model, key, ops, best)
    )


def _counterexample(
    model: Model,
    key: Hashable,
    ops: Sequence[Operation],
    best: tuple[Any, Hashable, int, list[int]],
) -> dict[str, Any]:
    stack, state, deadline_index, candidates = best
    prefix: list[int] = []
    while stack is not None:
        prefix.append(stack[0])
        stack = stack[4]
    prefix.reverse()
    unlinearizable = []
    for i in candidates:
        desc = ops[i].to_json()
        desc["model_accepts"] = model.step(state, ops[i])[0]
        unlinearizable.append(desc)
    return {
        "key": thaw(key),
        "linearized": [ops[i].to_json() for i in prefix],
        "state": model.describe(state),
        "unlinearizable": unlinearizable,
        "deadline": ops[deadline_index].to_json(),
    }
