"""Client history events and their pairing into operations.

A history is a sequence of :class:`HistoryEvent` with Jepsen's meaning (docs/formats.md,
"Client history"): every ``invoke`` of a process is followed by exactly one completion of the
same process, ``ok`` (it took effect, and the completion carries the value read), ``fail`` (it
certainly did not take effect) or ``info`` (unknown: it may take effect at any time after its
invocation, or never). A history may end with invocations that never completed; they are
treated as ``info``.

:func:`pair_events` turns the events into :class:`Operation` values, one per invocation, and
refuses histories that break the contract with a :class:`HistoryError` naming the line (or the
event's position) and the process.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class EventType(enum.StrEnum):
    """What a history event says about an operation."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class OpFunction(enum.StrEnum):
    """The operations the models know (``f`` in the history); each model accepts a subset
    (raft/lincheck/models.py)."""

    READ = "read"
    WRITE = "write"
    CAS = "cas"
    DELETE = "delete"
    GET = "get"
    PUT = "put"
    APPEND = "append"
    ADD = "add"
    ENQUEUE = "enqueue"
    DEQUEUE = "dequeue"
    ACQUIRE = "acquire"
    RELEASE = "release"


RESULT_FUNCTIONS = frozenset({OpFunction.READ, OpFunction.GET, OpFunction.DEQUEUE})
"""Operations whose meaning is the value their ``ok`` completion returns (not the value they
were invoked with)."""


class OpStatus(enum.StrEnum):
    """How an operation ended: ``ok`` took effect; ``info`` may or may not have; ``fail`` did
    not (the checker drops it)."""

    OK = "ok"
    INFO = "info"
    FAIL = "fail"


_EVENT_TYPES = frozenset(t.value for t in EventType)
_FUNCTIONS = frozenset(f.value for f in OpFunction)


class HistoryError(ValueError):
    """The history breaks the format's contract (unknown type or f, a completion without an
    invocation, two outstanding invocations on one process, ...). The message names the line
    (or the event's position when it has no line) and the process."""


def freeze(value: Any) -> Any:
    """A hashable equivalent of a JSON/EDN value: lists become tuples, dicts sorted tuples of
    items, sets frozensets. Values compare equal after freezing iff they were equal."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-ready form of a frozen value (tuples become lists, frozensets sorted lists)."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((thaw(v) for v in value), key=repr)
    return value


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One line of a client history.

    ``time`` is in nanoseconds since the run started and orders events in real time; ``line``
    is where the event came from (1-based), set by the parsers so errors can point at it.
    """

    process: int
    type: str
    f: str
    key: Any = None
    value: Any = None
    time: int = 0
    node: str | None = None
    error: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        where = f"{_where(self.line, None)}process {self.process!r}"
        if isinstance(self.process, bool) or not isinstance(self.process, int):
            raise HistoryError(f"{where}: process must be an integer")
        if self.type not in _EVENT_TYPES:
            raise HistoryError(f"{where}: type {self.type!r} is not one of invoke, ok, fail, info")
        if self.f not in _FUNCTIONS:
            known = ", ".join(f.value for f in OpFunction)
            raise HistoryError(f"{where}: f {self.f!r} is not one of {known}")
        if isinstance(self.time, bool) or not isinstance(self.time, int):
            raise HistoryError(f"{where}: time must be an integer (nanoseconds)")


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion.

    ``value`` is what the operation means: the value written, ``(expected, new)`` for ``cas``,
    the value read for an ``ok`` read, get or dequeue (``None`` when it did not complete).
    Values are frozen (hashable). ``complete_time`` is ``None`` for ``info`` operations: they
    may take effect at any time after ``invoke_time``, or never.
    """

    id: int
    process: int
    f: str
    key: Any
    value: Any
    invoke_time: int
    complete_time: int | None
    status: OpStatus
    invoke_line: int | None = None
    complete_line: int | None = None

    @property
    def return_time(self) -> float:
        """When the operation must have taken effect by; +inf for ``info``."""
        return math.inf if self.complete_time is None else float(self.complete_time)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description, as shown in counterexamples."""
        out: dict[str, Any] = {
            "id": self.id,
            "process": self.process,
            "f": self.f,
            "key": thaw(self.key),
            "value": thaw(self.value),
            "invoke_time": self.invoke_time,
            "complete_time": self.complete_time,
            "status": self.status.value,
        }
        if self.invoke_line is not None:
            out["invoke_line"] = self.invoke_line
        if self.complete_line is not None:
            out["complete_line"] = self.complete_line
        return out


def _where(line: int | None, position: int | None) -> str:
    if line is not None:
        return f"line {line}: "
    if position is not None:
        return f"event {position}: "
    return ""


def _check_value(ev: HistoryEvent, position: int) -> None:
    if ev.f == OpFunction.CAS and ev.type == EventType.INVOKE:
        v = ev.value
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise HistoryError(
                f"{_where(ev.line, position)}process {ev.process}: cas value must be "
                f"[expected, new], got {v!r}"
            )


def pair_events(events: Iterable[HistoryEvent]) -> list[Operation]:
    """Pair each invocation with its process's next completion, in history order.

    Operations are returned in invocation order. Invocations left open at the end become
    ``info`` operations. Raises :class:`HistoryError` for a completion with no outstanding
    invocation, a second invocation while one is outstanding, a completion whose ``f`` differs
    from its invocation's, a completion earlier than its invocation, or a malformed cas value.
    """
    open_by_process: dict[int, tuple[int, HistoryEvent, int]] = {}
    slots: list[Operation | None] = []
    for position, ev in enumerate(events):
        where = f"{_where(ev.line, position)}process {ev.process}"
        _check_value(ev, position)
        if ev.type == EventType.INVOKE:
            if ev.process in open_by_process:
                _, prev, prev_pos = open_by_process[ev.process]
                raise HistoryError(
                    f"{where}: invoked {ev.f} while its {prev.f} invoked at "
                    f"{_where(prev.line, prev_pos).rstrip(': ')} is still outstanding"
                )
            open_by_process[ev.process] = (len(slots), ev, position)
            slots.append(None)
            continue
        if ev.process not in open_by_process:
            raise HistoryError(f"{where}: {ev.type} {ev.f} without a preceding invoke")
        slot, inv, _ = open_by_process.pop(ev.process)
        if inv.f != ev.f:
            raise HistoryError(f"{where}: {ev.type} {ev.f} completes an invoked {inv.f}")
        if ev.time < inv.time:
            raise HistoryError(
                f"{where}: completion time {ev.time} is before its invocation's {inv.time}"
            )
        slots[slot] = _make_op(slot, inv, ev)
    for slot, inv, _ in open_by_process.values():
        slots[slot] = _make_op(slot, inv, None)
    return [op for op in slots if op is not None]


def _make_op(op_id: int, inv: HistoryEvent, done: HistoryEvent | None) -> Operation:
    status = OpStatus.INFO if done is None else OpStatus(done.type)
    if inv.f in RESULT_FUNCTIONS:
        value = freeze(done.value) if done is not None and status == OpStatus.OK else None
    else:
        value = freeze(inv.value)
    key = freeze(inv.key)
    return Operation(
        id=op_id,
        process=inv.process,
        f=inv.f,
        key=key,
        value=value,
        invoke_time=inv.time,
        complete_time=done.time if done is not None and status != OpStatus.INFO else None,
        status=status,
        invoke_line=inv.line,
        complete_line=done.line if done is not None else None,
    )
