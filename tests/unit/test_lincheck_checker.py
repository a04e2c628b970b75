"""The linearizability checker on hand-made histories with known verdicts."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from lincheck_brute import Op, brute_force_linearizable, history

from raft.lincheck import (
    CheckResult,
    HistoryEvent,
    UnsupportedOperationError,
    Verdict,
    check_history,
    check_operations,
    checker,
    pair_events,
)
from raft.lincheck.generate import linearizable_history
from raft.lincheck.visual import render_html, render_window_text

LIN = Verdict.LINEARIZABLE
NOT = Verdict.NOT_LINEARIZABLE


def check(*ops: Op, model: str = "cas-register") -> CheckResult:
    return check_history(history(*ops), model)


CLASSIC: list[tuple[str, list[Op], str, Verdict]] = [
    (
        "sequential write then read",
        [Op(0, "write", 1, 0, 1), Op(1, "read", 1, 2, 3)],
        "register",
        LIN,
    ),
    (
        "stale read after a completed write",
        [Op(0, "write", 1, 0, 1), Op(0, "write", 2, 2, 3), Op(1, "read", 1, 4, 5)],
        "register",
        NOT,
    ),
    (
        "read of the initial value after a completed write (lost write)",
        [Op(0, "write", 1, 0, 1), Op(1, "read", None, 2, 3)],
        "register",
        NOT,
    ),
    (
        "read concurrent with a write may see either value",
        [Op(0, "write", 1, 0, 10), Op(1, "read", None, 2, 3), Op(2, "read", 1, 4, 5)],
        "register",
        LIN,
    ),
    (
        "new-old inversion: once a read saw the new value, a later read may not see the old",
        [Op(0, "write", 1, 0, 10), Op(1, "read", 1, 2, 3), Op(2, "read", None, 4, 5)],
        "register",
        NOT,
    ),
    (
        "two overlapping writes, reads agree on one order",
        [
            Op(0, "write", 1, 0, 10),
            Op(1, "write", 2, 1, 11),
            Op(2, "read", 1, 12, 13),
            Op(3, "read", 1, 14, 15),
        ],
        "register",
        LIN,
    ),
    (
        "two overlapping writes, later reads disagree on the order",
        [
            Op(0, "write", 1, 0, 10),
            Op(1, "write", 2, 1, 11),
            Op(2, "read", 1, 12, 13),
            Op(3, "read", 2, 14, 15),
        ],
        "register",
        NOT,
    ),
    (
        "both cas from the same value succeed (cas race)",
        [
            Op(0, "write", 0, 0, 1),
            Op(1, "cas", [0, 1], 2, 10),
            Op(2, "cas", [0, 2], 3, 11),
        ],
        "cas-register",
        NOT,
    ),
    (
        "cas race where the loser fails",
        [
            Op(0, "write", 0, 0, 1),
            Op(1, "cas", [0, 1], 2, 10),
            Op(2, "cas", [0, 2], 3, 11, status="fail"),
            Op(3, "read", 1, 12, 13),
        ],
        "cas-register",
        LIN,
    ),
    (
        "chained cas in either order is fine when concurrent",
        [
            Op(0, "write", 0, 0, 1),
            Op(1, "cas", [1, 2], 2, 10),
            Op(2, "cas", [0, 1], 3, 11),
            Op(3, "read", 2, 12, 13),
        ],
        "cas-register",
        LIN,
    ),
    (
        "info write that took effect",
        [Op(0, "write", 1, 0, 1, status="info"), Op(1, "read", 1, 5, 6)],
        "register",
        LIN,
    ),
    (
        "info write that never took effect",
        [Op(0, "write", 1, 0, 1, status="info"), Op(1, "read", None, 5, 6)],
        "register",
        LIN,
    ),
    (
        "info write may take effect long after its info completion",
        [
            Op(0, "write", 1, 0, 1, status="info"),
            Op(1, "read", None, 5, 6),
            Op(1, "read", 1, 7, 8),
        ],
        "register",
        LIN,
    ),
    (
        "info write takes effect at most once",
        [
            Op(0, "write", 1, 0, 1, status="info"),
            Op(1, "read", 1, 5, 6),
            Op(2, "write", 2, 7, 8),
            Op(1, "read", 1, 9, 10),
        ],
        "register",
        NOT,
    ),
    (
        "open invocation at the end is treated as info",
        [Op(0, "write", 1, 0, None), Op(1, "read", 1, 5, 6)],
        "register",
        LIN,
    ),
    (
        "failed write certainly did not happen",
        [Op(0, "write", 1, 0, 1, status="fail"), Op(1, "read", 1, 5, 6)],
        "register",
        NOT,
    ),
    (
        "info cas that took effect explains a read",
        [
            Op(0, "write", 3, 0, 1),
            Op(2, "cas", [3, 4], 2, 3, status="info"),
            Op(4, "read", 4, 5, 6),
        ],
        "cas-register",
        LIN,
    ),
    (
        "info cas cannot take effect without its expected value",
        [
            Op(0, "write", 3, 0, 1),
            Op(2, "cas", [2, 4], 2, 3, status="info"),
            Op(4, "read", 4, 5, 6),
        ],
        "cas-register",
        NOT,
    ),
    (
        "kv keys are independent",
        [
            Op(0, "write", 1, 0, 1, key="a"),
            Op(1, "write", 2, 2, 3, key="b"),
            Op(2, "read", 1, 4, 5, key="a"),
            Op(2, "read", 2, 6, 7, key="b"),
        ],
        "kv",
        LIN,
    ),
    (
        "kv lost write on one key",
        [
            Op(0, "write", 1, 0, 1, key="a"),
            Op(1, "write", 2, 2, 3, key="b"),
            Op(2, "read", 1, 4, 5, key="a"),
            Op(2, "read", None, 6, 7, key="b"),
        ],
        "kv",
        NOT,
    ),
    (
        "kv delete makes a key absent",
        [
            Op(0, "write", 1, 0, 1, key="a"),
            Op(0, "delete", None, 2, 3, key="a"),
            Op(2, "read", None, 4, 5, key="a"),
        ],
        "kv",
        LIN,
    ),
    (
        "kv read of a deleted key's old value",
        [
            Op(0, "write", 1, 0, 1, key="a"),
            Op(0, "delete", None, 2, 3, key="a"),
            Op(2, "read", 1, 4, 5, key="a"),
        ],
        "kv",
        NOT,
    ),
    (
        "equal completion and invocation times count as concurrent",
        [Op(0, "write", 1, 0, 5), Op(1, "read", None, 5, 6)],
        "register",
        LIN,
    ),
]


@pytest.mark.parametrize(
    ("ops", "model", "verdict"),
    [pytest.param(ops, model, verdict, id=name) for name, ops, model, verdict in CLASSIC],
)
def test_classic_histories(ops: list[Op], model: str, verdict: Verdict) -> None:
    assert brute_force_linearizable(ops) == (verdict is LIN)  # the table itself is right
    assert check(*ops, model=model).verdict is verdict


def test_counterexample_names_prefix_state_and_blocked_ops() -> None:
    res = check(
        Op(0, "write", 1, 0, 1),
        Op(0, "write", 2, 2, 3),
        Op(1, "read", 1, 4, 5),
        model="register",
    )
    assert res.verdict is NOT
    cx = res.counterexample
    assert cx is not None
    json.dumps(cx)  # JSON-ready
    assert [(o["f"], o["value"]) for o in cx["linearized"]] == [("write", 1), ("write", 2)]
    assert cx["state"] == 2
    assert [(o["process"], o["f"], o["value"]) for o in cx["unlinearizable"]] == [(1, "read", 1)]
    assert cx["unlinearizable"][0]["model_accepts"] is False
    assert cx["deadline"]["invoke_time"] == 4
    assert cx["deadline"]["complete_time"] == 5


def test_counterexample_lists_every_concurrent_candidate() -> None:
    # Both orders of the concurrent writes fail: whichever goes last, one read is wrong.
    res = check(
        Op(0, "write", 1, 0, 10),
        Op(1, "write", 2, 0, 10),
        Op(2, "read", 3, 1, 20),
        model="register",
    )
    assert res.verdict is NOT
    cx = res.counterexample
    assert cx is not None
    assert {o["value"] for o in cx["unlinearizable"]} >= {3}
    assert len(cx["linearized"]) == 2


def test_counterexample_for_kv_names_the_key() -> None:
    res = check(
        Op(0, "write", 1, 0, 1, key="x"),
        Op(1, "read", 1, 2, 3, key="y"),
        model="kv",
    )
    assert res.verdict is NOT
    assert res.counterexample is not None and res.counterexample["key"] == "y"
    assert res.partitions == 2


def test_unsupported_operation_for_model_is_an_error_naming_it() -> None:
    with pytest.raises(UnsupportedOperationError, match="register does not support cas"):
        check(Op(0, "cas", [None, 1], 0, 1), model="register")
    with pytest.raises(ValueError, match="unknown model"):
        check(Op(0, "write", 1, 0, 1), model="stack")


def test_empty_history_is_not_judged_linearizable() -> None:
    res = check_history([], "kv")
    assert res.verdict is Verdict.UNKNOWN
    assert res.reason == "no operations to check"


def test_keyed_register_history_is_checked_per_key() -> None:
    # Two registers: each is linearizable on its own, though a single register could not
    # return 1 on "b" after "a" was last written 2.
    ok = check(
        Op(0, "write", 1, 0, 1, key="a"),
        Op(0, "write", 1, 2, 3, key="b"),
        Op(0, "write", 2, 4, 5, key="a"),
        Op(1, "read", 1, 6, 7, key="b"),
        model="register",
    )
    assert ok.verdict is LIN and ok.partitions == 2


class StepClock:
    """A clock that advances ``tick`` seconds each time it is read."""

    def __init__(self, tick: float) -> None:
        self.now = 0.0
        self.tick = tick
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.tick
        return self.now


def test_timeout_gives_unknown() -> None:
    gen = linearizable_history(random.Random(1), 200, 5, model="cas-register")
    res = check_history(gen.events, "cas-register", timeout_s=0.5, clock=StepClock(1.0))
    assert res.verdict is Verdict.UNKNOWN
    assert res.counterexample is None
    assert "time budget" in res.reason
    # the same history with time to spare is decided
    assert check_history(gen.events, "cas-register", timeout_s=None).verdict is LIN


def test_timeout_is_checked_during_a_long_search() -> None:
    # Many concurrent writes of distinct values followed by a read nobody wrote: the search
    # must explore many orders (with memoisation, all subsets) before giving up.
    # (-1 is written too, so no read is impossible on its face, and the reads overlap, so
    # neither is stale on its face: only the search can tell.)
    ops = [Op(p, "write", p, 0, 100) for p in range(16)]
    ops += [Op(98, "write", -1, 0, 100), Op(99, "read", -1, 200, 201), Op(97, "read", 0, 200, 203)]
    clock = StepClock(0.25)
    res = check_history(history(*ops), "register", timeout_s=1.0, clock=clock)
    assert res.verdict is Verdict.UNKNOWN
    assert clock.reads > 2  # it ran for a while and then looked at the clock again


def test_wide_concurrency_not_linearizable_is_found() -> None:
    ops = [Op(p, "write", p, 0, 100) for p in range(10)]
    ops += [Op(98, "write", -1, 0, 100), Op(99, "read", -1, 200, 201), Op(97, "read", 0, 200, 203)]
    res = check_history(history(*ops), "register")
    assert res.verdict is NOT
    assert res.states_explored >= 2**10 - 1  # every subset of writes, each explored once


@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
@pytest.mark.parametrize(("processes", "info"), [(2, 0.0), (5, 0.05), (10, 0.1)])
def test_linearizable_by_construction_large(model: str, processes: int, info: float) -> None:
    gen = linearizable_history(
        random.Random(processes * 7 + len(model)), 3000, processes, model=model, info_fraction=info
    )
    res = check_history(gen.events, model)
    assert res.verdict is LIN, res.counterexample


def test_corrupting_one_read_of_a_generated_history_is_caught() -> None:
    rng = random.Random(5)
    caught = 0
    for _ in range(20):
        gen = linearizable_history(rng, 400, 3, model="register", values=1000)
        events = list(gen.events)
        reads = [
            i
            for i, e in enumerate(events)
            if e.type == "ok" and e.f == "read" and e.value is not None
        ]
        i = rng.choice(reads)
        e = events[i]
        events[i] = HistoryEvent(e.process, e.type, e.f, e.key, -7, e.time)  # never written
        res = check_history(events, "register")
        assert res.verdict is NOT
        assert res.counterexample is not None
        caught += any(o["value"] == -7 for o in res.counterexample["unlinearizable"])
    assert caught == 20


def test_check_operations_accepts_paired_operations() -> None:
    ops = pair_events(history(Op(0, "write", 1, 0, 1), Op(1, "read", 1, 2, 3)))
    assert check_operations(ops, "register").verdict is LIN
    res = check_operations(ops, "register")
    assert res.operations == 2 and res.dropped == 0


def test_dropped_counts_fail_and_irrelevant_info() -> None:
    res = check(
        Op(0, "write", 1, 0, 1, status="fail"),
        Op(1, "write", 2, 0, 1, status="info"),  # value 2 is never observed
        Op(2, "read", None, 0, 1, status="info"),
        Op(3, "write", 3, 0, 1, status="info"),  # observed below: kept
        Op(4, "read", 3, 5, 6),
        model="register",
    )
    assert res.verdict is LIN
    assert (res.operations, res.dropped) == (2, 3)


def test_verdicts_do_not_depend_on_event_order_among_equal_times() -> None:
    ops = [
        Op(0, "write", 1, 0, 4),
        Op(1, "write", 2, 0, 4),
        Op(2, "read", 2, 4, 8),
        Op(3, "read", 1, 4, 8),
    ]
    expected = brute_force_linearizable(ops)
    for perm in itertools.permutations(ops):
        assert (check(*perm, model="register").verdict is LIN) == expected


def test_read_of_a_value_nothing_wrote_is_refuted_without_search() -> None:
    # 16 concurrent writes: the search would explore 2**16 subsets; no write of -1 was ever
    # invoked before the read completed, so the read is refuted on its face.
    ops = [Op(p, "write", p, 0, 100) for p in range(16)]
    ops += [Op(99, "read", -1, 200, 201), Op(98, "write", -1, 300, 301)]
    res = check_history(history(*ops), "register", max_states=1000)
    assert res.verdict is NOT
    assert "observes -1 which no operation invoked before it completed" in res.reason
    assert res.counterexample is not None and res.counterexample["impossible_value"]


def test_stale_read_refutation_names_the_overwriting_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the quick search disabled, the stale-read rule alone refutes: the read of 1
    # began after the write of 2 completed, which began after the write of 1 completed.
    monkeypatch.setattr(checker, "QUICK_STEPS", 0)
    ops = [
        Op(0, "write", 1, 0, 1),
        Op(1, "write", 2, 2, 3),
        Op(0, "read", 1, 4, 5),
        Op(2, "write", 3, 0, None, "info"),  # an info write of another value changes nothing
    ]
    res = check_history(history(*ops), "register")
    assert res.verdict is NOT
    assert "observes 1, but write 2 at" in res.reason and "(a stale read)" in res.reason
    cx = res.counterexample
    assert cx is not None and cx["stale_read"]["overwritten_by"]["value"] == 2
    text = render_window_text(cx, pair_events(history(*ops)))
    assert "STALE: left or saw a newer value" in text and "DEADLINE" in text
    assert "<svg" in render_html(res, pair_events(history(*ops)))
    # an info write of 1 could take effect between the write of 2 and the read: no rule
    ops[3] = Op(2, "write", 1, 0, None, "info")
    assert check_history(history(*ops), "register").verdict is LIN


def test_newer_value_read_then_older_one_is_a_stale_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Writes of 1 and 2 overlap (either order is fine); a read sees 2, a later read sees 1
    # again: no write of 1 can come between them. Only reads witness the newer value.
    monkeypatch.setattr(checker, "QUICK_STEPS", 0)
    ops = [
        Op(0, "write", 1, 0, 10),
        Op(1, "write", 2, 0, 10),
        Op(2, "read", 2, 11, 12),
        Op(3, "read", 1, 13, 14),
    ]
    res = check_history(history(*ops), "register")
    assert res.verdict is NOT and "(a stale read)" in res.reason
    assert res.counterexample is not None
    assert res.counterexample["stale_read"]["overwritten_by"]["f"] == "read"
    ops[3] = Op(3, "read", 2, 13, 14)
    assert check_history(history(*ops), "register").verdict is LIN
