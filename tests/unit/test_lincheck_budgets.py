"""Keys in parallel and budgets in states or CPU time (issue 14): a hard key does not hide an
obviously bad one, and an exhausted budget gives a partial answer."""

from __future__ import annotations

import random

import pytest

from raft.lincheck import HistoryEvent, Verdict, check_history, checker
from raft.lincheck.generate import linearizable_history


def _hard_k0_bad_k1() -> list[HistoryEvent]:
    gen = linearizable_history(
        random.Random(7), 3000, 8, model="kv", keys=1, values=3, info_fraction=0.1
    )
    assert {e.key for e in gen.events} == {"k0"}
    bad = [
        HistoryEvent(1000, "invoke", "write", "k1", 1, 0),
        HistoryEvent(1000, "ok", "write", "k1", 1, 1),
        HistoryEvent(1001, "invoke", "read", "k1", None, 2),
        HistoryEvent(1001, "ok", "read", "k1", 2, 3),  # never written
    ]
    return gen.events + bad


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_key_is_refuted_although_the_first_key_is_hard(workers: int) -> None:
    # k0 cannot be decided within 2000 states; k1 is refuted in a handful.
    res = check_history(_hard_k0_bad_k1(), "kv", max_states=2000, workers=workers)
    assert res.verdict is Verdict.NOT_LINEARIZABLE
    assert res.counterexample is not None and res.counterexample["key"] == "k1"


def test_exhausted_state_budget_gives_a_partial_answer() -> None:
    events = [e for e in _hard_k0_bad_k1() if e.key == "k0"]
    res = check_history(events, "kv", max_states=2000)
    assert res.verdict is Verdict.UNKNOWN
    assert "state budget of 2000" in res.reason
    assert res.partial is not None
    (part,) = res.partial
    assert part["key"] == "k0"
    assert 0 < part["longest_linearizable_prefix"] < part["operations"]
    assert part["operations_left"] == part["operations"] - part["longest_linearizable_prefix"]


def test_parallel_and_serial_agree_on_linearizable_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checker, "QUICK_STEPS", 10)  # every key goes to the workers
    gen = linearizable_history(random.Random(3), 600, 6, model="kv", keys=4, info_fraction=0.05)
    serial = check_history(gen.events, "kv")
    parallel = check_history(gen.events, "kv", workers=2)
    assert serial.verdict is parallel.verdict is Verdict.LINEARIZABLE


class _Ticks:
    """A clock that advances one second per reading (the search reads it every 4096 steps)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_exhausted_time_budget_reports_the_deepest_prefix_of_any_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Force the rounds with a growing info budget at once; whichever round the budget ends
    # in (even at its very start), the partial answer is the deepest prefix of all rounds.
    monkeypatch.setattr(checker, "_FIRST_PASS_STEPS_PER_OP", 0)
    monkeypatch.setattr(checker, "_FIRST_PASS_STEPS_MIN", 100)
    events = [e for e in _hard_k0_bad_k1() if e.key == "k0"]
    for budget in range(8, 14):
        res = check_history(events, "kv", timeout_s=budget, clock=_Ticks())
        assert res.verdict is Verdict.UNKNOWN and f"time budget of {budget}" in res.reason
        assert res.partial is not None
        assert res.partial[0]["longest_linearizable_prefix"] > 0, budget


def test_stale_read_key_is_refuted_although_the_first_key_is_hard() -> None:
    # k1's read returns 1 after 2 overwrote it (a stale read): refuted while k0 stays hard.
    k0 = [e for e in _hard_k0_bad_k1() if e.key == "k0"]
    t = 10**6
    k1 = [
        HistoryEvent(1000, "invoke", "write", "k1", 1, t),
        HistoryEvent(1000, "ok", "write", "k1", 1, t + 1),
        HistoryEvent(1000, "invoke", "write", "k1", 2, t + 2),
        HistoryEvent(1000, "ok", "write", "k1", 2, t + 3),
        HistoryEvent(1001, "invoke", "read", "k1", None, t + 4),
        HistoryEvent(1001, "ok", "read", "k1", 1, t + 5),
    ]
    res = check_history(k0 + k1, "kv", max_states=2000)
    assert res.verdict is Verdict.NOT_LINEARIZABLE
    assert res.counterexample is not None and res.counterexample["key"] == "k1"


@pytest.mark.parametrize("ops", [5000, 20000])
def test_info_heavy_stale_read_is_refuted_within_a_small_state_budget(ops: int) -> None:
    # 10% of operations end info; a late read returns a value overwritten before it began
    # (by a write that completed after every write of that value). The search alone needed
    # over 400,000 states and 10 s of CPU without an answer; the stale-read rule decides it.
    from bench.bench_lincheck import _stale_late_read

    rng = random.Random(ops * 31 + 10)
    gen = linearizable_history(rng, ops, 10, model="cas-register", info_fraction=0.1, values=1000)
    events = _stale_late_read(gen.events, rng)
    res = check_history(events, "cas-register", max_states=50_000)
    assert res.verdict is Verdict.NOT_LINEARIZABLE, res.reason
    assert "stale read" in res.reason
