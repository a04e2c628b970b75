"""The models beyond registers (issue 14): kv with Porcupine's get/put/append, multi-register,
set, counter, queue and mutex each accept a linearizable history and refute a
non-linearizable one; Porcupine-style kv EDN (string keys and values, no times) is read."""

from __future__ import annotations

from typing import Any

import pytest
from lincheck_brute import Op, history

from raft.lincheck import Verdict, check_history, formats

LIN, NOT = Verdict.LINEARIZABLE, Verdict.NOT_LINEARIZABLE


def verdict(model: str, *ops: Op) -> Verdict:
    return check_history(history(*ops), model).verdict


CASES: list[tuple[str, list[Op], Verdict]] = [
    # multi-register: a torn read (half of an earlier write) is refuted
    (
        "multi-register",
        [Op(0, "write", {"a": 1, "b": 2}, 0, 1), Op(1, "read", {"a": 1, "b": 2}, 2, 3)],
        LIN,
    ),
    (
        "multi-register",
        [
            Op(0, "write", {"a": 1, "b": 2}, 0, 1),
            Op(0, "write", {"a": 3, "b": 4}, 2, 3),
            Op(1, "read", {"a": 3, "b": 2}, 4, 5),
        ],
        NOT,
    ),
    (
        "multi-register",
        [Op(0, "write", {"a": 1}, 0, 10), Op(1, "read", {"a": None, "b": None}, 2, 3)],
        LIN,
    ),
    # set
    (
        "set",
        [
            Op(0, "add", 1, 0, 1),
            Op(1, "add", 2, 2, 6),
            Op(2, "read", [1], 3, 4),
            Op(2, "read", [2, 1], 7, 8),
        ],
        LIN,
    ),
    ("set", [Op(0, "add", 1, 0, 1), Op(1, "read", [], 2, 3)], NOT),
    ("set", [Op(0, "add", 1, 0, 1), Op(0, "add", 2, 2, 3), Op(1, "read", [2], 4, 5)], NOT),
    # counter
    (
        "counter",
        [
            Op(0, "add", 1, 0, 5),
            Op(1, "add", 2, 0, 5),
            Op(2, "read", 2, 1, 2),
            Op(2, "read", 3, 6, 7),
        ],
        LIN,
    ),
    ("counter", [Op(0, "add", 1, 0, 1), Op(1, "add", 2, 2, 3), Op(2, "read", 1, 4, 5)], NOT),
    ("counter", [Op(0, "add", -1, 0, 1), Op(1, "read", -1, 2, 3)], LIN),
    # queue
    (
        "queue",
        [
            Op(0, "enqueue", 1, 0, 1),
            Op(0, "enqueue", 2, 2, 3),
            Op(1, "dequeue", 1, 4, 5),
            Op(1, "dequeue", 2, 6, 7),
            Op(1, "dequeue", None, 8, 9),
        ],
        LIN,
    ),
    (
        "queue",
        [Op(0, "enqueue", 1, 0, 1), Op(0, "enqueue", 2, 2, 3), Op(1, "dequeue", 2, 4, 5)],
        NOT,
    ),
    # an unknown dequeue may have taken the 1
    (
        "queue",
        [
            Op(0, "enqueue", 1, 0, 1),
            Op(0, "enqueue", 2, 2, 3),
            Op(2, "dequeue", None, 4, None, status="info"),
            Op(1, "dequeue", 2, 6, 7),
        ],
        LIN,
    ),
    ("queue", [Op(1, "dequeue", 5, 0, 1)], NOT),
    # mutex
    (
        "mutex",
        [
            Op(0, "acquire", None, 0, 1),
            Op(0, "release", None, 2, 3),
            Op(1, "acquire", None, 4, 5),
        ],
        LIN,
    ),
    ("mutex", [Op(0, "acquire", None, 0, 1), Op(1, "acquire", None, 2, 3)], NOT),
    ("mutex", [Op(0, "release", None, 0, 1)], NOT),
    (
        "mutex",  # two acquires concurrent with one release: release in between
        [
            Op(0, "acquire", None, 0, 1),
            Op(1, "acquire", None, 2, 6),
            Op(0, "release", None, 3, 4),
        ],
        LIN,
    ),
    # kv with Porcupine's names: get/put/append, absent keys read ""
    (
        "kv",
        [
            Op(0, "put", "a", 0, 1, key="x"),
            Op(0, "append", "b", 2, 3, key="x"),
            Op(1, "get", "ab", 4, 5, key="x"),
            Op(1, "get", "", 6, 7, key="y"),
            Op(1, "append", "z", 8, 9, key="y"),
            Op(1, "get", "z", 10, 11, key="y"),
        ],
        LIN,
    ),
    (
        "kv",
        [
            Op(0, "put", "a", 0, 1, key="x"),
            Op(0, "append", "b", 2, 3, key="x"),
            Op(1, "get", "ba", 4, 5, key="x"),
        ],
        NOT,
    ),
    (
        "kv",  # an append that timed out and shows up later
        [
            Op(0, "append", "a", 0, None, status="info", key="x"),
            Op(1, "append", "b", 2, 3, key="x"),
            Op(1, "get", "ba", 4, 5, key="x"),
        ],
        LIN,
    ),
]


@pytest.mark.parametrize(("model", "ops", "want"), CASES)
def test_model_verdicts(model: str, ops: list[Op], want: Verdict) -> None:
    assert verdict(model, *ops) is want


def _porcupine_kv(last_get: str) -> str:
    lines: list[dict[str, Any]] = [
        {"process": 0, "type": "invoke", "f": "put", "key": "0", "value": "x 0 0 y"},
        {"process": 1, "type": "invoke", "f": "get", "key": "0", "value": None},
        {"process": 0, "type": "ok", "f": "put", "key": "0", "value": "x 0 0 y"},
        {"process": 1, "type": "ok", "f": "get", "key": "0", "value": ""},
        {"process": 0, "type": "invoke", "f": "append", "key": "0", "value": "x 0 1 y"},
        {"process": 0, "type": "ok", "f": "append", "key": "0", "value": "x 0 1 y"},
        {"process": 1, "type": "invoke", "f": "get", "key": "0", "value": None},
        {"process": 1, "type": "ok", "f": "get", "key": "0", "value": last_get},
    ]
    out = []
    for d in lines:
        value = "nil" if d["value"] is None else f'"{d["value"]}"'
        out.append(
            f"{{:process {d['process']}, :type :{d['type']}, :f :{d['f']}, "
            f':key "{d["key"]}", :value {value}}}'
        )
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(("last", "want"), [("x 0 0 yx 0 1 y", LIN), ("x 0 1 y", NOT)])
def test_porcupine_kv_log_checks_as_in_porcupine(last: str, want: Verdict) -> None:
    parsed = formats.read_history(_porcupine_kv(last), None, "c01-ok.txt")
    assert parsed.format is formats.Format.JEPSEN_EDN
    assert check_history(parsed.events, "kv").verdict is want


@pytest.mark.parametrize(
    ("model", "text", "want"),
    [
        (
            "set",
            "{:type :invoke, :f :add, :value 1, :process 0, :time 1}\n"
            "{:type :ok, :f :add, :value 1, :process 0, :time 2}\n"
            "{:type :invoke, :f :read, :value nil, :process 1, :time 3}\n"
            "{:type :ok, :f :read, :value #{1}, :process 1, :time 4}\n",
            LIN,
        ),
        (
            "set",
            "{:type :invoke, :f :add, :value 1, :process 0, :time 1}\n"
            "{:type :ok, :f :add, :value 1, :process 0, :time 2}\n"
            "{:type :invoke, :f :read, :value nil, :process 1, :time 3}\n"
            "{:type :ok, :f :read, :value #{}, :process 1, :time 4}\n",
            NOT,
        ),
        (
            "queue",
            "[{:type :invoke, :f :enqueue, :value 7, :process 0}\n"
            " {:type :ok, :f :enqueue, :value 7, :process 0}\n"
            " {:type :invoke, :f :dequeue, :value nil, :process 1}\n"
            " {:type :ok, :f :dequeue, :value 8, :process 1}]\n",
            NOT,
        ),
        (
            "mutex",
            "{:type :invoke, :f :acquire, :process 0, :value nil}\n"
            "{:type :ok, :f :acquire, :process 0, :value nil}\n"
            "{:type :invoke, :f :release, :process 0, :value nil}\n"
            "{:type :ok, :f :release, :process 0, :value nil}\n",
            LIN,
        ),
    ],
)
def test_jepsen_edn_histories_of_the_models(model: str, text: str, want: Verdict) -> None:
    parsed = formats.read_history(text)
    assert parsed.format is formats.Format.JEPSEN_EDN
    assert check_history(parsed.events, model).verdict is want
    # and they survive an export to EDN and back
    again = formats.read_history(formats.render_edn(parsed.events))
    assert check_history(again.events, model).verdict is want
