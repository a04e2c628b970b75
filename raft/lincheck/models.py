"""Sequential specifications the checker linearizes against.

A model is an initial state plus a step function ``step(state, op) -> (ok, new_state)``:
``ok`` is false when ``op`` (with the value it returned) is impossible in ``state``. States
are hashable so the checker can memoise ``(linearized set, state)`` pairs (Porcupine).

Models also say how a history splits into independent parts (P-compositionality, Herlihy &
Wing 1990 §3.3 "locality": a history of several objects is linearizable iff each object's
subhistory is), and which unknown-outcome (``info``) operations can be dropped without
changing the verdict (see :meth:`RegisterModel.droppable_info`).

Models here:

- ``register``: read / write, initial value ``None``.
- ``cas-register``: read / write / cas ``[expected, new]`` (a cas that found another value
  completes with ``fail`` and is dropped, as in Knossos).
- ``kv``: a map of independent cas-registers with delete; partitioned by key. A read of a key
  that is absent returns ``None``; delete makes it absent.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raft.lincheck.history import Operation, OpFunction, OpStatus, thaw

__all__ = [
    "CAS_REGISTER",
    "KV",
    "MODELS",
    "REGISTER",
    "Model",
    "RegisterModel",
    "UnsupportedOperationError",
    "get_model",
]


class UnsupportedOperationError(ValueError):
    """The history holds an operation the chosen model does not know (say a ``cas`` checked
    against ``register``). The message names the operation's line and process."""


class Model(Protocol):
    """What the checker needs from a sequential specification."""

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


@dataclass(frozen=True, slots=True)
class RegisterModel:
    """A single register (or, with ``keyed``, one register per key), value ``None`` at first.

    The state is the register's value. For ``keyed`` models each key is checked on its own
    (partition), so the state is still one value.
    """

    name: str
    functions: frozenset[str]
    keyed: bool = False

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        f = op.f
        if f == OpFunction.READ:
            return state == op.value, state
        if f == OpFunction.WRITE:
            return True, op.value
        if f == OpFunction.CAS:
            expected, new = op.value
            if state == expected:
                return True, new
            return False, state
        # delete
        return True, None

    def validate(self, op: Operation) -> None:
        if op.f not in self.functions:
            known = ", ".join(sorted(self.functions))
            raise UnsupportedOperationError(
                f"{_op_where(op)}: model {self.name} does not support {op.f} (only {known})"
            )

    def partition(self, ops: Sequence[Operation]) -> list[tuple[Any, list[Operation]]]:
        parts: dict[Any, list[Operation]] = {}
        for op in ops:
            parts.setdefault(op.key, []).append(op)
        return sorted(parts.items(), key=lambda kv: repr(kv[0]))

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
            if op.f == OpFunction.READ and op.status == OpStatus.OK:
                observed = op.value
            elif op.f == OpFunction.CAS:
                observed = op.value[0]
            else:
                continue
            last_seen[observed] = max(last_seen.get(observed, -math.inf), op.return_time)
        drop: set[int] = set()
        for op in ops:
            if op.status != OpStatus.INFO:
                continue
            if (
                op.f == OpFunction.READ
                or last_seen.get(_value_left_by(op), -math.inf) < op.invoke_time
            ):
                drop.add(op.id)
        return frozenset(drop)

    def describe(self, state: Hashable) -> Any:
        return thaw(state)

    def blind(self, op: Operation) -> bool:
        return op.f in (OpFunction.WRITE, OpFunction.DELETE)


def _value_left_by(op: Operation) -> Hashable:
    """The register's value after a write, cas or delete takes effect."""
    if op.f == OpFunction.WRITE:
        return op.value  # type: ignore[no-any-return]
    if op.f == OpFunction.CAS:
        return op.value[1]  # type: ignore[no-any-return]
    return None


REGISTER = RegisterModel("register", frozenset({"read", "write"}))
CAS_REGISTER = RegisterModel("cas-register", frozenset({"read", "write", "cas"}))
KV = RegisterModel("kv", frozenset({"read", "write", "cas", "delete"}), keyed=True)

MODELS: dict[str, Model] = {m.name: m for m in (REGISTER, CAS_REGISTER, KV)}
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
