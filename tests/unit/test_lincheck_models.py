"""Sequential models: step semantics, partitions, and the info-dropping rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lincheck_brute import Op, history

from raft.lincheck import Operation, OpStatus, check_history, models, pair_events
from raft.lincheck.models import CAS_REGISTER, KV, REGISTER, RegisterModel


def one(f: str, value: object, status: OpStatus = OpStatus.OK, key: object = None) -> Operation:
    return Operation(0, 0, f, key, value, 0, 1, status)


def test_register_steps() -> None:
    assert REGISTER.init() is None
    assert REGISTER.step(None, one("read", None)) == (True, None)
    assert REGISTER.step(None, one("read", 1)) == (False, None)
    assert REGISTER.step(3, one("write", 4)) == (True, 4)


def test_cas_register_steps() -> None:
    assert CAS_REGISTER.step(1, one("cas", (1, 2))) == (True, 2)
    assert CAS_REGISTER.step(3, one("cas", (1, 2))) == (False, 3)
    assert CAS_REGISTER.step(None, one("cas", (None, 2))) == (True, 2)


def test_kv_delete_and_partition_by_key() -> None:
    assert KV.step(5, one("delete", None)) == (True, None)
    ops = [one("write", 1, key="b"), one("write", 2, key="a"), one("read", 1, key="b")]
    parts = KV.partition(ops)
    assert [k for k, _ in parts] == ["a", "b"]
    assert [len(p) for _, p in parts] == [1, 2]


def test_states_are_hashable_for_structured_values() -> None:
    ops = pair_events(
        history(Op(0, "write", [1, {"x": 2}], 0, 1), Op(1, "read", [1, {"x": 2}], 2, 3))
    )
    ok, state = REGISTER.step(REGISTER.init(), ops[0])
    assert ok
    hash(state)
    assert REGISTER.step(state, ops[1]) == (True, state)
    assert REGISTER.describe(state) == [1, [["x", 2]]]


def test_get_model() -> None:
    assert models.get_model("kv") is KV
    assert models.get_model(REGISTER) is REGISTER
    with pytest.raises(ValueError, match="choose one of cas-register, counter, kv, multi-register"):
        models.get_model("stack")


def test_droppable_info_keeps_observed_values() -> None:
    ops = pair_events(
        history(
            Op(0, "write", 1, 0, 1, status="info"),  # 1 is read by op 5: kept
            Op(1, "write", 2, 0, 1, status="info"),  # 2 is expected by op 2's cas: kept
            Op(2, "cas", [2, 3], 0, 1, status="info"),  # nobody observes 3: dropped
            Op(3, "read", None, 0, 1, status="info"),  # an unknown read: dropped
            Op(4, "cas", [9, 2], 0, 1, status="info"),  # leaves 2, which is observed: kept
            Op(5, "read", 1, 2, 3),
        )
    )
    assert [op.id for op in ops] == [0, 1, 2, 3, 4, 5]
    assert CAS_REGISTER.droppable_info(ops) == frozenset({2, 3})


@dataclass(frozen=True)
class Unreduced:
    """The same model without the info shortcuts (dropping, and never before a blind op)."""

    inner: RegisterModel

    @property
    def name(self) -> str:
        return self.inner.name

    def init(self) -> object:
        return self.inner.init()

    def step(self, state: object, op: Operation) -> tuple[bool, object]:
        return self.inner.step(state, op)

    def validate(self, op: Operation) -> None:
        self.inner.validate(op)

    def partition(self, ops: Sequence[Operation]) -> list[tuple[object, list[Operation]]]:
        return self.inner.partition(ops)

    def droppable_info(self, ops: Sequence[Operation]) -> frozenset[int]:
        return frozenset()

    def describe(self, state: object) -> object:
        return self.inner.describe(state)

    def blind(self, op: Operation) -> bool:
        return False


@st.composite
def info_heavy(draw: st.DrawFn) -> list[Op]:
    ops = []
    t = 0
    for p in range(draw(st.integers(1, 9))):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        v: object = draw(st.integers(0, 3))
        if f == "cas":
            v = [draw(st.sampled_from([None, 0, 1, 2])), draw(st.integers(0, 3))]
        if f == "read":
            v = draw(st.sampled_from([None, 0, 1, 2, 3]))
        start = t + draw(st.integers(0, 3))
        end = start + draw(st.integers(0, 8))
        t = start
        ops.append(Op(p, f, v, start, end, draw(st.sampled_from(["ok", "info", "info"]))))
    return ops


@settings(max_examples=200, deadline=None)
@given(info_heavy())
def test_info_shortcuts_never_change_the_verdict(ops: list[Op]) -> None:
    events = history(*ops)
    fast = check_history(events, CAS_REGISTER)
    slow = check_history(events, Unreduced(CAS_REGISTER))
    assert fast.verdict is slow.verdict
