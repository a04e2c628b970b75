"""Linearizability checking: the Wing-Gong / Lowe search with Porcupine's memoisation.

The algorithm (Wing & Gong 1993, with Lowe's 2017 memoisation, as implemented in Porcupine):
the invocations ("calls") and completions ("returns") of the completed operations are put in
one doubly linked list ordered by time. A depth-first search walks the list from its head; at
a call it tries to linearize that operation now (the model must accept it and the
configuration (linearized set, state) must be new), and if so removes the call and its return
from the list (dancing links) and restarts from the head. Reaching a return means the
operation it belongs to had to take effect already: the search then tries the ``info``
operations invoked by that time, and after them backtracks by undoing the most recent
linearization and trying the next candidate. An empty list means every completed operation
was linearized; the ``info`` operations left over never took effect.

Guarantees and conventions:

- Operations are ordered by real time only: A precedes B iff A's completion time is strictly
  before B's invocation time. Equal times count as concurrent (calls sort before returns).
- ``fail`` operations did not happen and are dropped. ``info`` operations (and invocations
  that never completed) may take effect once at any time after their invocation, or never.
- The linearized set is two ``int`` bitsets: completed operations, stored relative to the
  oldest one not yet linearized (all older ones are), so memo keys stay as small as the
  concurrency window instead of growing with the history; and ``info`` operations.
- Memoisation with dominance: a configuration is skipped when one with the same completed
  set and state, and a subset of its ``info`` operations linearized, was already explored
  (info operations are optional, so the explored one could do everything this one can).
- Info operations with the same ``f`` and value are tried in invocation order only
  (interchangeable), and never right before a blind operation (a write: the info op's effect
  would be lost, so leaving it out is equivalent).
- Independent parts (keys of ``kv``) are checked one by one (P-compositionality).
- The search stops at ``timeout_s`` (checked every few thousand steps and at the start) with
  ``Verdict.UNKNOWN``; it never answers wrongly for lack of time.
- A counterexample is the deepest point the search reached: the longest linearizable prefix,
  the state after it, the operations that could have come next (none leads to a complete
  linearization), and the operation whose completion closes that window.
"""

from __future__ import annotations

import enum
import math
import multiprocessing
import time
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Sequence
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
    partial: list[dict[str, Any]] | None = None
    """With UNKNOWN: per undecided key, the longest linearizable prefix found and the
    operations left beyond it."""

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
            "partial": self.partial,
        }


@dataclass(slots=True)
class _PartitionOutcome:
    verdict: Verdict
    states: int
    counterexample: dict[str, Any] | None = field(default=None)
    best_depth: int = 0
    """The longest linearizable prefix the search reached."""
    budget_cut: bool = False
    """Some info op was not tried because the round's budget of info ops was spent."""


class _StepLimit(Exception):
    """The first, unbounded pass took too many steps; ``states`` were explored by then."""

    def __init__(self, states: int, depth: int = 0) -> None:
        super().__init__(states)
        self.states = states
        self.depth = depth


class _Timeout(Exception):
    """The budget (CPU time or states) ran out; ``states`` were explored in the partition by
    then, and the deepest linearizable prefix found had ``depth`` of its ``total`` ops."""

    def __init__(self, states: int, depth: int = 0, total: int = 0) -> None:
        super().__init__(states)
        self.states = states
        self.depth = depth
        self.total = total


@dataclass(frozen=True, slots=True)
class _Budget:
    deadline: float
    """On ``clock``: CPU seconds of the process doing the search, by default."""
    max_states: int | None
    clock: Callable[[], float]


QUICK_STEPS = 20_000
"""Every key first gets this many search steps, in key order; keys not decided by then are
searched fully afterwards (in parallel with ``workers`` > 1). So an obviously bad key is
refuted at once even when another key is hard."""


def check_history(
    events: Iterable[HistoryEvent],
    model: str | Model = "register",
    timeout_s: float | None = None,
    *,
    clock: Callable[[], float] = time.process_time,
    max_states: int | None = None,
    workers: int = 1,
) -> CheckResult:
    """Pair ``events`` into operations and check them against ``model``.

    Raises :class:`~raft.lincheck.history.HistoryError` for a malformed history and
    :class:`~raft.lincheck.models.UnsupportedOperationError` for operations the model does
    not know; returns UNKNOWN when the budget runs out: ``timeout_s`` seconds on ``clock``
    (CPU time of the process doing the search by default, so a loaded machine does not eat
    the budget; ``None`` = no limit) or ``max_states`` configurations explored in one key.
    ``workers`` > 1 searches the hard keys in that many processes (see :data:`QUICK_STEPS`).
    """
    return check_operations(
        pair_events(events),
        model,
        timeout_s,
        clock=clock,
        max_states=max_states,
        workers=workers,
    )


def check_operations(
    ops: Sequence[Operation],
    model: str | Model = "register",
    timeout_s: float | None = None,
    *,
    clock: Callable[[], float] = time.process_time,
    max_states: int | None = None,
    workers: int = 1,
) -> CheckResult:
    """Check already-paired operations; see :func:`check_history`."""
    m = get_model(model)
    start = clock()
    deadline = math.inf if timeout_s is None else start + timeout_s
    if not ops:
        # Nothing was read: "linearizable" would be a claim about nothing.
        return CheckResult(
            Verdict.UNKNOWN, m.name, 0, 0, 0, 0, clock() - start, reason="no operations to check"
        )
    for op in ops:
        if op.status != OpStatus.FAIL:
            m.validate(op)
    live = [op for op in ops if op.status != OpStatus.FAIL]
    parts = m.partition(live)
    dropped = len(ops) - len(live)
    prepared: list[tuple[Any, list[Operation]]] = []
    for key, part_ops in parts:
        drop = m.droppable_info(part_ops)
        kept = [op for op in part_ops if op.id not in drop]
        dropped += len(part_ops) - len(kept)
        prepared.append((key, kept))
    searched = sum(len(k) for _, k in prepared)
    budget = _Budget(deadline, max_states, clock)
    states = 0
    partial: list[dict[str, Any]] = []

    def result(verdict: Verdict, reason: str, cx: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(
            verdict,
            m.name,
            searched,
            dropped,
            len(parts),
            states,
            clock() - start,
            counterexample=cx,
            reason=reason,
            partial=partial or None,
        )

    def refuted(key: Any, outcome: _PartitionOutcome) -> CheckResult:
        where = "" if key is None else f" for key {thaw(key)!r}"
        return result(
            Verdict.NOT_LINEARIZABLE, "no linearization exists" + where, outcome.counterexample
        )

    # Pass 1: every key gets a few steps, in order: easy keys (and obvious refutations) are
    # decided before any hard key can use up the budget.
    hard: list[int] = []
    for i, (key, kept) in enumerate(prepared):
        impossible = getattr(m, "impossible", None)  # optional for user models
        bad = impossible(kept) if impossible is not None else None
        stale_read = getattr(m, "stale_read", None)  # optional too
        stale = stale_read(kept) if bad is None and stale_read is not None else None
        if stale is not None:
            return _refuted_stale(m, key, kept, budget, stale, result)
        if bad is not None:
            try:  # the search's counterexample says more, when it comes quickly
                outcome = _check_partition(m, key, kept, budget, max_steps=QUICK_STEPS)
                if outcome.verdict is Verdict.NOT_LINEARIZABLE:
                    states += outcome.states
                    return refuted(key, outcome)
            except (_StepLimit, _Timeout) as stopped:
                states += stopped.states
            desc = bad.to_json()
            desc["model_accepts"] = False
            where = "" if key is None else f" for key {thaw(key)!r}"
            line = f"line {bad.invoke_line}" if bad.invoke_line is not None else f"op {bad.id}"
            return result(
                Verdict.NOT_LINEARIZABLE,
                f"no linearization exists{where}: {bad.f} at {line} observes "
                f"{json_value(bad)} which no operation invoked before it completed could "
                "have left",
                {
                    "key": thaw(key),
                    "linearized": [],
                    "state": None,
                    "unlinearizable": [desc],
                    "deadline": bad.to_json(),
                    "impossible_value": True,
                },
            )
        try:
            outcome = _check_partition(m, key, kept, budget, max_steps=QUICK_STEPS)
        except _StepLimit as limit:
            states += limit.states
            hard.append(i)
            continue
        except _Timeout as timeout:
            states += timeout.states
            hard.append(i)
            continue
        states += outcome.states
        if outcome.verdict is Verdict.NOT_LINEARIZABLE:
            return refuted(key, outcome)
    # Pass 2: the hard keys, fully, in parallel when asked.
    unknown: list[Any] = []
    if workers > 1 and len(hard) > 1:
        outcomes = _search_parallel(m, [prepared[i] for i in hard], budget, timeout_s, workers)
    else:
        outcomes = (_search_one(m, prepared[i][0], prepared[i][1], budget) for i in hard)
    for key, got, cut in outcomes:
        if cut is not None:
            states += cut.states
            unknown.append(key)
            partial.append(
                {
                    "key": thaw(key),
                    "longest_linearizable_prefix": cut.depth,
                    "operations": cut.total,
                    "operations_left": cut.total - cut.depth,
                }
            )
            continue
        assert got is not None
        states += got.states
        if got.verdict is Verdict.NOT_LINEARIZABLE:
            if isinstance(outcomes, Generator):
                outcomes.close()  # stops the other workers
            return refuted(key, got)
    if unknown:
        what = []
        if timeout_s is not None:
            what.append(f"time budget of {timeout_s}s (CPU time)")
        if max_states is not None:
            what.append(f"state budget of {max_states}")
        keys = ", ".join(repr(thaw(k)) for k in unknown[:5])
        return result(
            Verdict.UNKNOWN,
            f"{' or '.join(what)} ran out before the search finished"
            + ("" if unknown == [None] else f" (undecided keys: {keys})"),
        )
    return result(Verdict.LINEARIZABLE, "a linearization exists")


def _refuted_stale(
    model: Model,
    key: Any,
    ops: list[Operation],
    budget: _Budget,
    stale: tuple[Operation, Operation],
    result: Callable[[Verdict, str, dict[str, Any] | None], CheckResult],
) -> CheckResult:
    """The refutation of a key by a read of an overwritten value (``model.stale_read``).

    The search gets a few steps first: when it refutes the key that quickly, its
    counterexample (a linearizable prefix and the ops that cannot follow) says more."""
    try:
        outcome = _check_partition(model, key, ops, budget, max_steps=QUICK_STEPS)
        if outcome.verdict is Verdict.NOT_LINEARIZABLE:
            where = "" if key is None else f" for key {thaw(key)!r}"
            return result(
                Verdict.NOT_LINEARIZABLE,
                "no linearization exists" + where,
                outcome.counterexample,
            )
    except (_StepLimit, _Timeout):
        pass
    read, barrier = stale
    desc = read.to_json()
    desc["model_accepts"] = False
    where = "" if key is None else f" for key {thaw(key)!r}"
    return result(
        Verdict.NOT_LINEARIZABLE,
        f"no linearization exists{where}: {read.f} at {_where(read)} observes "
        f"{json_value(read)}, but {barrier.f} {json_value_left(barrier)} at {_where(barrier)} "
        "completed before it began, after every operation that could have left "
        f"{json_value(read)} had completed (a stale read)",
        {
            "key": thaw(key),
            "linearized": [],
            "state": None,
            "unlinearizable": [desc],
            "deadline": read.to_json(),
            "stale_read": {"overwritten_by": barrier.to_json()},
        },
    )


def _where(op: Operation) -> str:
    return f"line {op.invoke_line}" if op.invoke_line is not None else f"op {op.id}"


def json_value_left(op: Operation) -> str:
    """The value a write, cas or delete leaves, for messages."""
    if op.f == "cas":
        return repr(thaw(op.value[1]))
    return repr(None if op.f == "delete" else thaw(op.value))


def json_value(op: Operation) -> str:
    """The value an operation observed, for messages."""
    seen = op.value[0] if op.f == "cas" else op.value
    return repr(thaw(seen))


def _search_one(
    model: Model, key: Hashable, ops: Sequence[Operation], budget: _Budget
) -> tuple[Hashable, _PartitionOutcome | None, _Timeout | None]:
    try:
        return key, _search_partition(model, key, ops, budget), None
    except _Timeout as timeout:
        return key, None, timeout


def _worker(
    task: tuple[Model, Hashable, list[Operation], float | None, int | None],
) -> tuple[Hashable, _PartitionOutcome | None, _Timeout | None]:
    model, key, ops, timeout_s, max_states = task
    now = time.process_time()
    deadline = math.inf if timeout_s is None else now + timeout_s
    return _search_one(model, key, ops, _Budget(deadline, max_states, time.process_time))


def _search_parallel(
    model: Model,
    parts: list[tuple[Any, list[Operation]]],
    budget: _Budget,
    timeout_s: float | None,
    workers: int,
) -> Iterator[tuple[Hashable, _PartitionOutcome | None, _Timeout | None]]:
    """Search ``parts`` in ``workers`` processes, yielding outcomes as they finish; closing
    the generator (the first refutation) terminates the workers. Each worker has the CPU
    budget left to the caller (CPU time is per process)."""
    left = None if timeout_s is None else max(budget.deadline - budget.clock(), 0.0)
    tasks = [(model, key, ops, left, budget.max_states) for key, ops in parts]
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(processes=min(workers, len(parts)))
    try:
        yield from pool.imap_unordered(_worker, tasks)
    finally:
        pool.terminate()
        pool.join()


_FIRST_PASS_STEPS_PER_OP = 200
_FIRST_PASS_STEPS_MIN = 1_000_000


def _search_partition(
    model: Model,
    key: Hashable,
    ops: Sequence[Operation],
    budget: _Budget,
) -> _PartitionOutcome:
    """Decide one partition: a plain search first, then, if info ops make it long, rounds
    with a growing budget of info ops.

    Why rounds: the depth-first search may first reach a configuration having spent more
    info ops than another path needs; dominance cannot prune those, and with many pending
    info ops they multiply. Round ``b`` allows at most ``b`` info ops and keeps its memo for
    the next rounds, where a configuration is pruned if an explored one with a subset of its
    info ops failed with at least as many info ops left to spend. So each round mostly
    re-explores configurations that use the fewest info ops. A round that finds a
    linearization, or that never had to refuse an info op for budget, is the answer.
    """
    has_info = any(op.complete_time is None for op in ops)
    if not has_info:
        return _check_partition(model, key, ops, budget)
    limit = _FIRST_PASS_STEPS_PER_OP * len(ops) + _FIRST_PASS_STEPS_MIN
    deepest = 0
    try:
        return _check_partition(model, key, ops, budget, max_steps=limit)
    except _StepLimit as first:
        states = first.states
        deepest = first.depth
    except _Timeout as timeout:
        raise _Timeout(timeout.states, timeout.depth, len(ops)) from None
    cache: dict[tuple[int, Hashable], Any] = {}
    info_budget = 0
    while True:
        try:
            out = _check_partition(model, key, ops, budget, info_budget=info_budget, cache=cache)
        except _Timeout as timeout:
            deepest = max(deepest, timeout.depth)
            raise _Timeout(states + timeout.states, deepest, len(ops)) from None
        states += out.states
        deepest = max(deepest, out.best_depth)
        if out.verdict is Verdict.LINEARIZABLE or not out.budget_cut:
            return _PartitionOutcome(out.verdict, states, out.counterexample)
        info_budget += 1


def _check_partition(
    model: Model,
    key: Hashable,
    part_ops: Sequence[Operation],
    limits: _Budget,
    *,
    info_budget: int | None = None,
    cache: dict[tuple[int, Hashable], Any] | None = None,
    max_steps: int | None = None,
) -> _PartitionOutcome:
    """WGL search over one independent sub-history; raises _Timeout past the budget's
    deadline or state count and _StepLimit past ``max_steps``.

    With ``info_budget``, at most that many info ops are linearized, and ``cache`` (shared by the
    rounds of :func:`_search_partition`) holds ``(info bitset, allowance)`` pairs: the
    configuration was explored and failed using at most ``allowance`` more info ops.

    Ops are numbered ``i`` in invocation order. Completed ops live in the main list: call
    node ``i``, return node ``n + i``, head ``2n``. Info ops have no return and live in a
    second list of calls in invocation order (head ``n``). -1 ends both lists.

    At each point the search tries the completed ops whose calls precede the first return in
    the main list, in list order, and only then the info ops invoked by that return (lazily:
    configurations that use fewer info ops are explored first, so dominance pruning cuts the
    ones that use more).
    """
    ops = sorted(part_ops, key=lambda o: (o.invoke_time, o.id))
    n = len(ops)
    is_info = [op.complete_time is None for op in ops]
    invoked = [op.invoke_time for op in ops]
    completed = [op.complete_time if op.complete_time is not None else 0 for op in ops]
    order = sorted(
        [(op.invoke_time, 0, i) for i, op in enumerate(ops) if not is_info[i]]
        + [(completed[i], 1, i) for i in range(n) if not is_info[i]]
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
    ihead = n
    inxt = [-1] * (n + 1)
    iprv = [-1] * (n + 1)
    prev_node = ihead
    for i in range(n):
        if is_info[i]:
            inxt[prev_node] = i
            iprv[i] = prev_node
            prev_node = i

    # Completed ops and info ops get separate bit positions (slot). Info ops with the same f
    # and value are interchangeable once invoked, so they are only linearized in invocation
    # order (symmetry reduction): op i may go next only if it is number rank[i] of its class
    # and that many of its class are already linearized.
    slot = [0] * n
    counts = [0, 0]
    class_of: dict[tuple[str, Hashable], int] = {}
    klass = [-1] * n
    rank = [0] * n
    class_sizes: list[int] = []
    for i in range(n):
        kind = 1 if is_info[i] else 0
        slot[i] = counts[kind]
        counts[kind] += 1
        if kind:
            c = class_of.setdefault((ops[i].f, ops[i].value), len(class_of))
            if c == len(class_sizes):
                class_sizes.append(0)
            klass[i] = c
            rank[i] = class_sizes[c]
            class_sizes[c] += 1
    class_done = [0] * len(class_sizes)

    # Dead info ops: once every operation that could observe an info op's effect is
    # linearized (all completed observers have slots below ``base``), linearizing it can
    # only precede a blind write or end the history, so it is never tried, and whether it
    # was linearized earlier does not matter for the future: the memo ORs dead ops into the
    # info bitset (dead_prefix[base]), so configurations that differ only in them meet.
    n_done = counts[0]
    dead_base = [n_done + 1] * n
    observers_of = getattr(model, "info_observers", None)
    observed = observers_of(ops) if observers_of is not None else None
    if observed is not None:
        # An info op observed by info ops is dead once they are dead too (a chain of info
        # ops whose last value nobody completed observes is followed by a blind op or
        # nothing, so it can be left out whole): the least fixpoint of that rule.
        index_of = {op.id: i for i, op in enumerate(ops)}
        info_watchers: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            if is_info[i] and ops[i].id in observed:
                last, pending_ids = observed[ops[i].id]
                if last is None or last in index_of:
                    dead_base[i] = 0 if last is None else slot[index_of[last]] + 1
                    info_watchers[i] = [index_of[j] for j in pending_ids if j in index_of]
        changed = True
        while changed:
            changed = False
            for i in range(n):
                for j in info_watchers[i]:
                    if dead_base[j] > dead_base[i]:
                        dead_base[i] = dead_base[j]
                        changed = True
    dead_prefix = [0] * (n_done + 2)
    for i in range(n):
        if is_info[i] and dead_base[i] <= n_done:
            dead_prefix[dead_base[i]] |= 1 << slot[i]
    for b in range(1, n_done + 2):
        dead_prefix[b] |= dead_prefix[b - 1]

    # An info op linearized right before a blind op (a write) could as well be left out, so
    # the search never does that: after an info op, blind ops wait.
    blind = [model.blind(op) for op in ops]

    step = model.step
    state: Hashable = model.init()
    base = 0  # every completed op with slot < base is linearized
    rel = 0  # bit j set <=> the completed op with slot base + j is linearized
    info = 0  # bit j set <=> the info op with slot j is linearized
    # Memo: ((rel, base, last op was info) packed in an int, state) -> the info bitset(s)
    # already explored with it. A configuration is pruned when an explored one has the same
    # key and a subset of its info ops linearized: that one could do everything this one can
    # (info ops are optional). "Last op was info" is part of the key because it forbids a
    # blind op next. Slots fit in 32 bits (partitions of < 2**32 completed ops).
    if cache is None:
        cache = {}
    budget_cut = False
    explored = 0
    # The linearization so far, as an immutable cons list so the deepest one can be kept
    # without copying: (op, state before, base, rel, info before, first return when an info
    # op was chosen, parent).
    stack: tuple[int, Hashable, int, int, int, int, Any] | None = None
    depth = 0
    best_depth = -1
    best: tuple[Any, Hashable, int, list[int]] | None = None
    steps = 0
    clock, deadline, max_states = limits.clock, limits.deadline, limits.max_states
    budget = info_budget
    scanning_main = True
    entry = nxt[head]  # the cursor in the main list
    first_return = -1  # while trying info ops: the first return node in the main list
    while True:
        if not steps & (_CLOCK_EVERY_STEPS - 1) and (
            clock() >= deadline or (max_states is not None and explored > max_states)
        ):
            raise _Timeout(explored, max(best_depth, depth), n)
        if max_steps is not None and steps > max_steps:
            raise _StepLimit(explored, max(best_depth, depth))
        steps += 1
        if scanning_main:
            if entry == -1:  # every completed op is linearized; the rest are info: omit them
                return _PartitionOutcome(Verdict.LINEARIZABLE, explored)
            if entry >= n:  # a return: now try the info ops invoked by then
                scanning_main = False
                first_return = entry
                entry = inxt[ihead]
                continue
            candidate = entry
        else:
            if entry == -1 or invoked[entry] > completed[first_return - n]:
                # nothing more to try here: backtrack
                if depth > best_depth:
                    best_depth = depth
                    best = (
                        stack,
                        state,
                        first_return - n,
                        _candidates(nxt, inxt, first_return, invoked, completed, n),
                    )
                if stack is None:
                    break
                call, state, base, rel, info, saved_return, stack = stack
                depth -= 1
                if is_info[call]:
                    class_done[klass[call]] -= 1
                    inxt[iprv[call]] = call
                    if inxt[call] != -1:
                        iprv[inxt[call]] = call
                    first_return = saved_return
                    entry = inxt[call]
                else:
                    # unlift, in the reverse order of lift
                    ret = call + n
                    nxt[prv[ret]] = ret
                    if nxt[ret] != -1:
                        prv[nxt[ret]] = ret
                    nxt[prv[call]] = call
                    prv[nxt[call]] = call
                    scanning_main = True
                    entry = nxt[call]
                continue
            if rank[entry] != class_done[klass[entry]] or dead_base[entry] <= base:
                entry = inxt[entry]
                continue
            if budget is not None and info.bit_count() >= budget:
                budget_cut = True
                entry = inxt[entry]
                continue
            candidate = entry
        after_info = stack is not None and is_info[stack[0]]
        if after_info and blind[candidate]:
            ok = False
        else:
            ok, new_state = step(state, ops[candidate])
        if ok:
            new_base, new_rel, new_info = base, rel, info
            if is_info[candidate]:
                new_info = info | (1 << slot[candidate])
            elif slot[candidate] == base:
                x = rel | 1
                shift = (x ^ (x + 1)).bit_length() - 1  # trailing ones of x
                new_base = base + shift
                new_rel = x >> shift
            else:
                new_rel = rel | (1 << (slot[candidate] - base))
            # (rel, base, last op was info) packed in one int keeps the memo compact
            packed = (((new_rel << 32) | new_base) << 1) | is_info[candidate]
            memo_key = (packed, new_state)
            seen = cache.get(memo_key)
            fresh = True
            canon = new_info | dead_prefix[new_base]
            if budget is not None:
                allowance = budget - new_info.bit_count()
                if seen is None:
                    cache[memo_key] = [(canon, allowance)]
                else:
                    for m, r in seen:
                        if r >= allowance and m | canon == canon:
                            fresh = False
                            break
                    if fresh:
                        seen.append((canon, allowance))
            elif seen is None:
                cache[memo_key] = canon  # one info bitset, or a list of them
            elif isinstance(seen, int):
                if seen | canon == canon:
                    fresh = False
                else:
                    cache[memo_key] = [seen, canon]
            else:
                for m in seen:
                    if m | canon == canon:
                        fresh = False
                        break
                if fresh:
                    seen.append(canon)
            if fresh:
                explored += 1
                stack = (candidate, state, base, rel, info, first_return, stack)
                depth += 1
                state, base, rel, info = new_state, new_base, new_rel, new_info
                if is_info[candidate]:
                    class_done[klass[candidate]] += 1
                    p, q = iprv[candidate], inxt[candidate]
                    inxt[p] = q
                    if q != -1:
                        iprv[q] = p
                else:
                    # lift the call and its return out of the main list
                    ret = candidate + n
                    p, q = prv[candidate], nxt[candidate]
                    nxt[p] = q
                    prv[q] = p
                    p, q = prv[ret], nxt[ret]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                scanning_main = True
                entry = nxt[head]
                continue
        entry = nxt[entry] if scanning_main else inxt[entry]
    assert best is not None
    return _PartitionOutcome(
        Verdict.NOT_LINEARIZABLE,
        explored,
        _counterexample(model, key, ops, best),
        best_depth=best_depth,
        budget_cut=budget_cut,
    )


def _candidates(
    nxt: list[int],
    inxt: list[int],
    first_return: int,
    invoked: list[int],
    completed: list[int],
    n: int,
) -> list[int]:
    """The ops that could be linearized next: completed ops called before the first return,
    then info ops invoked by then."""
    out = []
    node = nxt[2 * n]
    while node != first_return:
        if node < n:
            out.append(node)
        node = nxt[node]
    node = inxt[n]
    bound = completed[first_return - n]
    while node != -1 and invoked[node] <= bound:
        out.append(node)
        node = inxt[node]
    return out


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
        stack = stack[6]
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
