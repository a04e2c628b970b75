"""The checker agrees with a brute-force oracle on every small random history.

Histories are drawn with hypothesis: a few processes, each running operations one after the
other with random durations (ties between processes happen and count as concurrency), random
values from a tiny range (so both verdicts are common), and some operations that fail, end
with ``info`` or never complete.
"""

from __future__ import annotations

import os
import random
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lincheck_brute import Op, brute_force_linearizable, history

from raft.lincheck import OpStatus, Verdict, check_history, checker, pair_events
from raft.lincheck.models import get_model

VALUES = st.sampled_from([None, 0, 1, 2])
WRITE_VALUES = st.sampled_from([0, 1, 2])


@st.composite
def histories(draw: st.DrawFn, model: str, info_weight: int = 1) -> list[Op]:
    fs = ["read", "write"]
    if model != "register":
        fs.append("cas")
    if model == "kv":
        fs.append("delete")
    n_processes = draw(st.integers(1, 3))
    n_ops = draw(st.integers(1, 7))
    clock = [draw(st.integers(0, 3)) for _ in range(n_processes)]
    names = list(range(n_processes))
    crashed_name = 100
    ops: list[Op] = []
    for _ in range(n_ops):
        slot = draw(st.integers(0, n_processes - 1))
        f = draw(st.sampled_from(fs))
        key = draw(st.sampled_from(["a", "b"])) if model == "kv" else None
        value: Any
        if f == "read":
            value = draw(VALUES)
        elif f == "write":
            value = draw(WRITE_VALUES)
        elif f == "cas":
            value = [draw(VALUES), draw(WRITE_VALUES)]
        else:
            value = None
        start = clock[slot] + draw(st.integers(0, 4))
        end = start + draw(st.integers(0, 6))
        status = draw(st.sampled_from(["ok", "ok", "ok", "fail", *["info"] * info_weight]))
        open_end = status == "info" and draw(st.booleans())
        ops.append(Op(names[slot], f, value, start, None if open_end else end, status, key))
        clock[slot] = end + 1
        if status == "info":  # Jepsen gives the client a fresh process after an info
            names[slot] = crashed_name
            crashed_name += 1
    return ops


def _agree(ops: list[Op], model: str) -> None:
    expected = brute_force_linearizable(ops)
    res = check_history(history(*ops), model)
    assert res.verdict is not Verdict.UNKNOWN
    assert (res.verdict is Verdict.LINEARIZABLE) == expected, (ops, res.counterexample)
    if not expected:
        assert res.counterexample is not None


# LINCHECK_EXAMPLES=4000 for a deeper local run (CI keeps the default).
COMMON = settings(
    max_examples=int(os.environ.get("LINCHECK_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@COMMON
@given(histories("register"))
def test_register_agrees_with_brute_force(ops: list[Op]) -> None:
    _agree(ops, "register")


@COMMON
@given(histories("cas-register"))
def test_cas_register_agrees_with_brute_force(ops: list[Op]) -> None:
    _agree(ops, "cas-register")


@COMMON
@given(histories("kv"))
def test_kv_agrees_with_brute_force(ops: list[Op]) -> None:
    _agree(ops, "kv")


@COMMON
@given(histories("cas-register", info_weight=4))
def test_info_heavy_cas_register_agrees_with_brute_force(ops: list[Op]) -> None:
    # Many crashed clients: exercises the info-op reductions (symmetry, dominance, blind).
    _agree(ops, "cas-register")


@COMMON
@given(histories("cas-register", info_weight=4))
def test_budget_rounds_agree_with_brute_force(ops: list[Op]) -> None:
    # Skip the plain first pass so the rounds with a growing info budget (used on long
    # histories with many info ops) decide every history here.
    with (
        mock.patch.object(checker, "_FIRST_PASS_STEPS_PER_OP", 0),
        mock.patch.object(checker, "_FIRST_PASS_STEPS_MIN", 0),
    ):
        _agree(ops, "cas-register")


@COMMON
@given(histories("kv", info_weight=3))
def test_budget_rounds_agree_with_brute_force_on_kv(ops: list[Op]) -> None:
    with (
        mock.patch.object(checker, "_FIRST_PASS_STEPS_PER_OP", 0),
        mock.patch.object(checker, "_FIRST_PASS_STEPS_MIN", 0),
    ):
        _agree(ops, "kv")


def _random_ops(rng: random.Random, model: str) -> list[Op]:
    """A small history where stale reads are common: a few processes, overlapping writes of
    few values, reads that return any of them, some fail/info/never-completed operations."""
    fs = ["read", "read", "write"] + (["cas"] if model != "register" else [])
    if model == "kv":
        fs.append("delete")
    n_processes = rng.randint(1, 3)
    clock = [rng.randint(0, 2) for _ in range(n_processes)]
    names = list(range(n_processes))
    crashed = 100
    ops: list[Op] = []
    for _ in range(rng.randint(2, 8)):
        slot = rng.randrange(n_processes)
        f = rng.choice(fs)
        value: Any = {
            "read": rng.choice([None, 0, 1, 2]),
            "write": rng.choice([0, 1, 2]),
            "cas": [rng.choice([None, 0, 1, 2]), rng.choice([0, 1, 2])],
            "delete": None,
        }[f]
        start = clock[slot] + rng.randint(0, 3)
        end = start + rng.randint(0, 4)
        status = rng.choice(["ok", "ok", "ok", "ok", "fail", "info"])
        open_end = status == "info" and rng.random() < 0.5
        key = rng.choice(["a", "b"]) if model == "kv" else None
        ops.append(Op(names[slot], f, value, start, None if open_end else end, status, key))
        clock[slot] = end + 1
        if status == "info":
            names[slot] = crashed
            crashed += 1
    return ops


@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
def test_stale_read_refutations_are_sound(model: str) -> None:
    # Every witness the stale-read rule finds (on a key's ops as the checker passes them:
    # fail ops and droppable info ops removed) must be a history brute force refutes too.
    m = get_model(model)
    rng = random.Random(1400 + len(model))
    witnesses = 0
    for _ in range(3000):
        ops = _random_ops(rng, model)
        paired = [o for o in pair_events(history(*ops)) if o.status is not OpStatus.FAIL]
        for _key, part in m.partition(paired):
            drop = m.droppable_info(part)
            for candidate in (part, [o for o in part if o.id not in drop]):
                found = m.stale_read(candidate)  # type: ignore[attr-defined]
                if found is not None:
                    witnesses += 1
                    assert not brute_force_linearizable(ops), (ops, found)
    assert witnesses > 100  # the rule fired often enough for the check to mean something
