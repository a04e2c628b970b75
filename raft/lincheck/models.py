"""Sequential specifications the checker linearizes against.

A model is an initial state plus a step function ``step(state, op) -> (ok, new_state)``:
``ok`` is false when ``op`` (with the value it returned) is impossible in ``state``. States
are hashable so the checker can memoise ``(linearized set, state)`` pairs (Porcupine).

Models also say how a history splits into independent parts (P-compositionality, Herlihy &
Wing 1990 §3.3 "locality": a history of several objects is linearizable iff each object's
subhistory is), and which unknown-outcome (``info``) operations can be dropped without
changing the verdict (see :meth:`RegisterModel.droppable_info`).

Models here (docs/checker.md, "Models", has examples of each):

- ``register``: read / write, initial value ``None``.
- ``cas-register``: read / write / cas ``[expected, new]`` (a cas that found another value
  completes with ``fail`` and is dropped, as in Knossos).
- ``kv``: a map of independent registers: read (or ``get``), write (or ``put``), cas,
  delete and ``append`` (string concatenation, as Porcupine's and MIT 6.824's kv store); an
  absent key reads as ``None`` or ``""`` and appends to ``""``. Partitioned by key.
- ``multi-register``: one map read and written as a whole: ``write {k v ...}`` sets those
  keys, an ``ok`` ``read`` returns ``{k v ...}`` for the keys it read (absent: ``None``).
- ``set``: ``add x``; ``read`` returns the whole set.
- ``counter``: ``add n`` (n may be negative); ``read`` returns the total (starts at 0).
- ``queue``: ``enqueue x``; ``dequeue`` returns the oldest element (``None`` when empty).
- ``mutex``: ``acquire`` succeeds only when free, ``release`` only when held.

Every model checks each key of the history on its own (a history of ``[key value]`` Jepsen
tuples, or with a ``key`` field, is a set of independent objects), except
``multi-register``, whose reads span keys.

Adding a model: subclass :class:`BaseModel` with a ``name``, the ``functions`` it accepts,
``init()`` and ``step(state, op)`` (pure; states hashable and compared with ``==``), and
``describe(state)`` if the state is not JSON-ready; register it in :data:`MODELS`.
:meth:`BaseModel.droppable_info` and :meth:`BaseModel.blind` are optional optimisations.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raft.lincheck.history import Operation, OpFunction, OpStatus, thaw

__all__ = [
    "CAS_REGISTER",
    "COUNTER",
    "KV",
    "MODELS",
    "MULTI_REGISTER",
    "MUTEX",
    "QUEUE",
    "REGISTER",
    "SET",
    "BaseModel",
    "CounterModel",
    "Model",
    "MultiRegisterModel",
    "MutexModel",
    "QueueModel",
    "RegisterModel",
    "SetModel",
    "UnsupportedOperationError",
    "get_model",
]


class UnsupportedOperationError(ValueError):
    """The history holds an operation the chosen model does not know (say a ``cas`` checked
    against ``register``). The message names the operation's line and process."""


class Model(Protocol):
    """What the checker needs from a sequential specification.

    Two optional methods are used when present (see :class:`RegisterModel`):
    ``impossible(ops)``, an operation no order can accept (a cheap refutation before the
    search), and ``info_observers(ops)``, which lets the search retire info operations whose
    effect nobody left can observe."""

    @property
    def name(self) -> str: ...

    def init(self) -> Hashable:
        """The state before any operation."""
        ...

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        """Whether ``op`` (with its recorded result) can happen in ``state``, and the state
        after it. Must be pure."""
        ...

    def validate(self, op: Operation) -> None:
        """Raise :class:`UnsupportedOperationError` if the model cannot check ``op``."""
        ...

    def partition(self, ops: Sequence[Operation]) -> list[tuple[Any, list[Operation]]]:
        """Independent sub-histories, each tagged with what it is (a key, or ``None``)."""
        ...

    def droppable_info(self, ops: Sequence[Operation]) -> frozenset[int]:
        """Ids of ``info`` operations whose removal cannot change the verdict."""
        ...

    def describe(self, state: Hashable) -> Any:
        """A JSON-ready rendering of ``state`` for counterexamples."""
        ...

    def blind(self, op: Operation) -> bool:
        """Whether ``op`` succeeds in every state and leaves a state that does not depend on
        the one before (a plain write). The checker then never linearizes an ``info`` op
        right before it (that info op's effect would be lost). ``False`` is always safe."""
        ...


def _op_where(op: Operation) -> str:
    line = op.invoke_line
    where = f"line {line}" if line is not None else f"operation {op.id}"
    return f"{where}: process {op.process}"


class BaseModel:
    """The parts most models share: validation against ``functions``, one partition per
    key, ``info`` operations of pure queries dropped (they change nothing), no blind ops.
    Subclasses set ``name`` and ``functions`` and write ``init`` and ``step``."""

    name: str = ""
    functions: frozenset[str] = frozenset()
    queries: frozenset[str] = frozenset({"read"})
    """Functions that never change the state (their ``info`` ops can be dropped)."""
    per_key: bool = True

    def init(self) -> Hashable:
        raise NotImplementedError

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        raise NotImplementedError

    def validate(self, op: Operation) -> None:
        if op.f not in self.functions:
            known = ", ".join(sorted(self.functions))
            raise UnsupportedOperationError(
                f"{_op_where(op)}: model {self.name} does not support {op.f} (only {known})"
            )

    def partition(self, ops: Sequence[Operation]) -> list[tuple[Any, list[Operation]]]:
        if not self.per_key:
            return [(None, list(ops))]
        parts: dict[Any, list[Operation]] = {}
        for op in ops:
            parts.setdefault(op.key, []).append(op)
        return sorted(parts.items(), key=lambda kv: repr(kv[0]))

    def droppable_info(self, ops: Sequence[Operation]) -> frozenset[int]:
        return frozenset(op.id for op in ops if op.status == OpStatus.INFO and op.f in self.queries)

    def describe(self, state: Hashable) -> Any:
        return thaw(state)

    def impossible(self, ops: Sequence[Operation]) -> Operation | None:
        return None

    def blind(self, op: Operation) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class RegisterModel(BaseModel):
    """A register per key, value ``None`` at first; each key is checked on its own
    (:meth:`BaseModel.partition`), so the state is one value. ``keyed`` says the model is
    meant for keyed histories (``kv``); single-register models check a keyed history (Jepsen
    ``independent`` tuples) key by key too."""

    name: str
    functions: frozenset[str]
    keyed: bool = False

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        f = op.f
        if f == OpFunction.READ or f == OpFunction.GET:
            return state == op.value or (state is None and op.value == ""), state
        if f == OpFunction.WRITE or f == OpFunction.PUT:
            return True, op.value
        if f == OpFunction.CAS:
            expected, new = op.value
            if state == expected:
                return True, new
            return False, state
        if f == OpFunction.APPEND:
            if not isinstance(op.value, str) or not isinstance(state, str | None):
                return False, state
            return True, (state or "") + op.value
        # delete
        return True, None

    def droppable_info(self, ops: Sequence[Operation]) -> frozenset[int]:
        """Info reads, and info writes/cas/deletes whose resulting value nobody observes
        after the op was invoked.

        Why dropping those is safe: a read's outcome is unknown, so it constrains nothing. If
        an info op X leaves value ``v``, then in any linearization the op right after X either
        observes ``v`` (a read returning ``v`` or a cas expecting ``v``) or is a blind write
        or delete, which overwrites ``v``: then deleting X leaves a valid linearization. An op
        linearized after X cannot have completed before X was invoked, so if every observer of
        ``v`` completed before X's invocation, X can always be deleted. The converse is
        trivial: an info op may never happen.
        """
        last_seen: dict[Hashable, float] = {}  # value -> latest completion of an observer
        for op in ops:
            if op.status == OpStatus.FAIL:
                continue
            observed: Hashable
            if op.f in (OpFunction.READ, OpFunction.GET) and op.status == OpStatus.OK:
                observed = "" if op.value is None else op.value
            elif op.f == OpFunction.CAS:
                observed = "" if op.value[0] is None else op.value[0]
            else:
                continue
            last_seen[observed] = max(last_seen.get(observed, -math.inf), op.return_time)
        drop: set[int] = set()
        for op in ops:
            if op.status != OpStatus.INFO:
                continue
            if op.f in (OpFunction.READ, OpFunction.GET):
                drop.add(op.id)
            elif op.f == OpFunction.APPEND:
                continue  # its effect shows in every later value: never dropped
            elif last_seen.get(_value_left_by(op), -math.inf) < op.invoke_time:
                drop.add(op.id)
        return frozenset(drop)

    def info_observers(
        self, ops: Sequence[Operation]
    ) -> dict[int, tuple[int | None, list[int]]] | None:
        """For each info write, cas, put or delete X: among the completed operations that
        could observe the value X leaves (reads of it, cas expecting it) and complete after X
        was invoked, the id of the one invoked last (``None`` if there is none); and the ids
        of the info cas ops expecting that value. ``None`` when the key has appends (they
        observe every value)."""
        if any(op.f == OpFunction.APPEND for op in ops):
            return None
        done: dict[Hashable, list[Operation]] = {}
        pending: dict[Hashable, list[int]] = {}
        for op in ops:
            if op.f in (OpFunction.READ, OpFunction.GET):
                if op.status != OpStatus.OK:
                    continue
                seen = "" if op.value is None else op.value
            elif op.f == OpFunction.CAS:
                seen = "" if op.value[0] is None else op.value[0]
            else:
                continue
            if op.complete_time is None:
                pending.setdefault(seen, []).append(op.id)
            else:
                done.setdefault(seen, []).append(op)
        # Per value: observers by completion time, and for each suffix the latest-invoked.
        index: dict[Hashable, tuple[list[int], list[tuple[int, int] | None]]] = {}
        for v, obs in done.items():
            obs.sort(key=lambda o: o.complete_time or 0)
            latest: list[tuple[int, int] | None] = [None] * (len(obs) + 1)
            for k in range(len(obs) - 1, -1, -1):
                cand = (obs[k].invoke_time, obs[k].id)
                nxt = latest[k + 1]
                latest[k] = cand if nxt is None or cand > nxt else nxt
            index[v] = ([o.complete_time or 0 for o in obs], latest)
        out: dict[int, tuple[int | None, list[int]]] = {}
        for op in ops:
            if op.status != OpStatus.INFO or op.f in (OpFunction.READ, OpFunction.GET):
                continue
            v = _value_left_by(op)
            last: int | None = None
            if v in index:
                times, latest = index[v]
                got = latest[bisect.bisect_left(times, op.invoke_time)]
                last = None if got is None else got[1]
            out[op.id] = (last, [j for j in pending.get(v, []) if j != op.id])
        return out

    def impossible(self, ops: Sequence[Operation]) -> Operation | None:
        """The first completed read (or cas) that observes a value no write, cas or delete
        invoked by its completion could have left: in every order it sees a value that was
        never there. Skipped when the key has appends (values are built up)."""
        if any(op.f == OpFunction.APPEND for op in ops):
            return None
        first_invoked: dict[Hashable, int] = {"": -1}  # the initial value (None reads as "")
        for op in ops:
            if op.f in (OpFunction.WRITE, OpFunction.PUT, OpFunction.CAS, OpFunction.DELETE):
                v = _value_left_by(op)
                if op.invoke_time < first_invoked.get(v, op.invoke_time + 1):
                    first_invoked[v] = op.invoke_time
        bad: Operation | None = None
        for op in ops:
            if op.complete_time is None:
                continue
            if op.f in (OpFunction.READ, OpFunction.GET):
                seen = "" if op.value is None else op.value
            elif op.f == OpFunction.CAS:
                seen = "" if op.value[0] is None else op.value[0]
            else:
                continue
            t = first_invoked.get(seen)
            if (t is None or t > op.complete_time) and (
                bad is None or op.complete_time < (bad.complete_time or 0)
            ):
                bad = op
        return bad

    def stale_read(self, ops: Sequence[Operation]) -> tuple[Operation, Operation] | None:
        """A completed read (or cas) ``r`` of a value ``v`` that was certainly overwritten
        before ``r`` began, with the overwriting operation ``w``: ``(r, w)``, the earliest
        such ``r`` to complete; ``None`` if there is none (or the key has appends).

        Why this refutes the history: ``w`` completed (``ok``) before ``r`` was invoked, so
        it is linearized before ``r``, and it leaves a value other than ``v`` (``w`` is a
        write, cas or delete leaving another value, or a read that saw another value: a
        newer value seen, then an older one, is the classic stale read). For ``r`` to
        see ``v``, an operation leaving ``v`` must be linearized between ``w`` and ``r``.
        But every such operation that could precede ``r`` (invoked by ``r``'s completion)
        completed before ``w`` was invoked, so it is linearized before ``w``; and none of
        them is an ``info`` op (those may take effect at any time after their invocation,
        so they could sit between ``w`` and ``r``). The initial value counts as written at
        the beginning of time. An absent key reads as ``None`` or ``""``: both spellings
        are one value here, which only adds writers, so the rule stays sound. The rule is
        cross-checked against brute force on small random histories
        (tests/unit/test_lincheck_bruteforce.py).
        """
        if any(op.f == OpFunction.APPEND for op in ops):
            return None
        writers: dict[Hashable, list[Operation]] = {}
        info_first: dict[Hashable, int] = {}  # value -> first invocation of an info writer
        barriers: list[Operation] = []
        after: dict[int, Hashable] = {}  # barrier id -> the value it leaves or saw
        for op in ops:
            if op.f in (OpFunction.READ, OpFunction.GET) and op.status == OpStatus.OK:
                barriers.append(op)  # a read leaves the value it saw
                after[op.id] = "" if op.value is None else op.value
                continue
            if op.f not in (OpFunction.WRITE, OpFunction.PUT, OpFunction.CAS, OpFunction.DELETE):
                continue
            if op.status == OpStatus.FAIL:
                continue
            v = _value_left_by(op)
            if op.complete_time is None:
                info_first[v] = min(info_first.get(v, op.invoke_time), op.invoke_time)
            else:
                writers.setdefault(v, []).append(op)
                barriers.append(op)
                after[op.id] = v
        # Writers of each value by invocation, with the latest completion of each prefix.
        last_done: dict[Hashable, tuple[list[int], list[int]]] = {}
        for v, ws in writers.items():
            ws.sort(key=lambda o: o.invoke_time)
            latest: list[int] = []
            for w in ws:
                c = w.complete_time or 0
                latest.append(c if not latest else max(latest[-1], c))
            last_done[v] = ([w.invoke_time for w in ws], latest)
        # Barriers by completion; for each prefix the latest-invoked one and the
        # latest-invoked one leaving another value than it (so one of the two leaves a value
        # other than any given v).
        barriers.sort(key=lambda o: o.complete_time or 0)
        done_times = [b.complete_time or 0 for b in barriers]
        top: list[tuple[Operation | None, Operation | None]] = [(None, None)]
        for b in barriers:
            first, second = top[-1]
            if first is None or b.invoke_time > first.invoke_time:
                if first is not None and after[first.id] != after[b.id]:
                    second = first
                first = b
            elif after[b.id] != after[first.id] and (
                second is None or b.invoke_time > second.invoke_time
            ):
                second = b
            top.append((first, second))
        found: tuple[Operation, Operation] | None = None
        for r in ops:
            if r.complete_time is None or r.status != OpStatus.OK:
                continue
            if r.f in (OpFunction.READ, OpFunction.GET):
                seen = "" if r.value is None else r.value
            elif r.f == OpFunction.CAS:
                seen = "" if r.value[0] is None else r.value[0]
            else:
                continue
            if info_first.get(seen, r.complete_time + 1) <= r.complete_time:
                continue  # an info writer of it may take effect right before r
            written_by = -math.inf  # the initial value: "written" at the beginning
            if seen in last_done:
                invokes, latest = last_done[seen]
                k = bisect.bisect_right(invokes, r.complete_time)
                if k:
                    written_by = latest[k - 1]
            best, other = top[bisect.bisect_left(done_times, r.invoke_time)]
            barrier = best if best is None or after[best.id] != seen else other
            if barrier is None or barrier.invoke_time <= written_by:
                continue
            if found is None or r.complete_time < (found[0].complete_time or 0):
                found = (r, barrier)
        return found

    def blind(self, op: Operation) -> bool:
        return op.f in (OpFunction.WRITE, OpFunction.PUT, OpFunction.DELETE)


def _value_left_by(op: Operation) -> Hashable:
    """The register's value after a write, cas or delete takes effect, as a read shows it
    (an absent key reads as ``""`` too, so both spellings count as observing it)."""
    if op.f in (OpFunction.WRITE, OpFunction.PUT):
        return "" if op.value is None else op.value
    if op.f == OpFunction.CAS:
        return "" if op.value[1] is None else op.value[1]
    return ""


REGISTER = RegisterModel("register", frozenset({"read", "write"}))
CAS_REGISTER = RegisterModel("cas-register", frozenset({"read", "write", "cas"}))
KV = RegisterModel(
    "kv", frozenset({"read", "write", "cas", "delete", "get", "put", "append"}), keyed=True
)


def _as_map(value: Any, op: Operation) -> dict[Any, Any] | None:
    """A frozen JSON/EDN map (sorted item tuples) back to a dict; None if not a map."""
    if value is None:
        return {}
    if isinstance(value, tuple) and all(isinstance(i, tuple) and len(i) == 2 for i in value):
        return dict(value)
    return None


class MultiRegisterModel(BaseModel):
    """Several registers read and written together (Knossos's multi-register): ``write
    {k v}`` sets each given key at once, an ``ok`` ``read`` returns ``{k v}`` for the keys it
    read (a key never written reads ``None``). State: sorted ``(key, value)`` pairs."""

    name = "multi-register"
    functions = frozenset({"read", "write"})
    per_key = False

    def init(self) -> Hashable:
        return ()

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        current = dict(state)  # type: ignore[call-overload]
        given = _as_map(op.value, op)
        if given is None:
            return False, state
        if op.f == OpFunction.READ:
            return all(current.get(k) == v for k, v in given.items()), state
        current.update(given)
        return True, tuple(sorted(current.items(), key=repr))

    def describe(self, state: Hashable) -> Any:
        return {str(k): thaw(v) for k, v in state}  # type: ignore[attr-defined]


class SetModel(BaseModel):
    """A grow-only set: ``add x``; an ``ok`` ``read`` returns every element (any order)."""

    name = "set"
    functions = frozenset({"add", "read"})

    def init(self) -> Hashable:
        return frozenset()

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        assert isinstance(state, frozenset)
        if op.f == OpFunction.ADD:
            return True, state | {op.value}
        got = op.value
        if isinstance(got, tuple | frozenset):
            return frozenset(got) == state, state
        return got is None and not state, state


class CounterModel(BaseModel):
    """A counter from 0: ``add n`` adds n (an integer, possibly negative); an ``ok``
    ``read`` returns the total."""

    name = "counter"
    functions = frozenset({"add", "read"})

    def init(self) -> Hashable:
        return 0

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        assert isinstance(state, int)
        if op.f == OpFunction.ADD:
            if isinstance(op.value, bool) or not isinstance(op.value, int):
                return False, state
            return True, state + op.value
        return op.value == state, state


class QueueModel(BaseModel):
    """A FIFO queue: ``enqueue x``; ``dequeue`` returns the oldest element, or ``None``
    when the queue is empty. State: the elements, oldest first."""

    name = "queue"
    functions = frozenset({"enqueue", "dequeue"})
    queries = frozenset()

    def init(self) -> Hashable:
        return ()

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        assert isinstance(state, tuple)
        if op.f == OpFunction.ENQUEUE:
            return True, (*state, op.value)
        if op.status == OpStatus.INFO:  # an unknown dequeue may remove the head
            return bool(state), state[1:]
        if not state:
            return op.value is None, state
        return state[0] == op.value, state[1:]


class MutexModel(BaseModel):
    """A lock: ``acquire`` succeeds only when it is free, ``release`` only when it is held
    (owners are not tracked: a release by another process than the holder is accepted)."""

    name = "mutex"
    functions = frozenset({"acquire", "release"})
    queries = frozenset()

    def init(self) -> Hashable:
        return False

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.f == OpFunction.ACQUIRE:
            return not state, True
        return bool(state), False


MULTI_REGISTER = MultiRegisterModel()
SET = SetModel()
COUNTER = CounterModel()
QUEUE = QueueModel()
MUTEX = MutexModel()

MODELS: dict[str, Model] = {
    m.name: m for m in (REGISTER, CAS_REGISTER, KV, MULTI_REGISTER, SET, COUNTER, QUEUE, MUTEX)
}
"""The models by the names the CLI and ``check_history`` accept."""


def get_model(model: str | Model) -> Model:
    """The model named ``model`` (or ``model`` itself). Raises ValueError for unknown names."""
    if not isinstance(model, str):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ValueError(
            f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}"
        ) from None
