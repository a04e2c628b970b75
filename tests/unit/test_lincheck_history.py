"""Pairing invocations with completions, and refusing histories that break the contract."""

from __future__ import annotations

import math

import pytest

from raft.lincheck import HistoryError, HistoryEvent, OpStatus, pair_events


def ev(
    process: int, type_: str, f: str, value: object = None, time: int = 0, line: int | None = None
) -> HistoryEvent:
    return HistoryEvent(process, type_, f, None, value, time, line=line)


def test_pairs_in_invocation_order_with_completion_values() -> None:
    ops = pair_events(
        [
            ev(0, "invoke", "read", None, 1),
            ev(1, "invoke", "write", 5, 2),
            ev(1, "ok", "write", 5, 3),
            ev(0, "ok", "read", 5, 4),
            ev(2, "invoke", "cas", [5, 6], 5),
            ev(2, "fail", "cas", [5, 6], 6),
        ]
    )
    assert [(o.id, o.process, o.f, o.value, o.status) for o in ops] == [
        (0, 0, "read", 5, OpStatus.OK),
        (1, 1, "write", 5, OpStatus.OK),
        (2, 2, "cas", (5, 6), OpStatus.FAIL),  # frozen: hashable
    ]
    assert (ops[0].invoke_time, ops[0].complete_time) == (1, 4)


def test_info_and_open_invocations_have_no_return_time() -> None:
    ops = pair_events(
        [
            ev(0, "invoke", "write", 1, 1),
            ev(0, "info", "write", None, 2),
            ev(1, "invoke", "read", None, 3),
        ]
    )
    assert [o.status for o in ops] == [OpStatus.INFO, OpStatus.INFO]
    assert ops[0].value == 1  # the invoked value, not the info's
    assert ops[1].value is None  # a read that never returned read nothing we know of
    assert all(o.complete_time is None and o.return_time == math.inf for o in ops)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            [ev(3, "ok", "read", 1, 0, line=7)],
            r"line 7: process 3: ok read without a preceding invoke",
        ),
        (
            [ev(1, "invoke", "read", None, 0, line=1), ev(1, "invoke", "write", 2, 1, line=2)],
            r"line 2: process 1: invoked write while its read invoked at line 1 is still "
            "outstanding",
        ),
        (
            [ev(1, "invoke", "read", None, 0), ev(1, "ok", "write", 2, 1)],
            r"event 1: process 1: ok write completes an invoked read",
        ),
        (
            [ev(1, "invoke", "read", None, 5, line=1), ev(1, "ok", "read", 2, 4, line=2)],
            r"line 2: process 1: completion time 4 is before its invocation's 5",
        ),
        (
            [ev(4, "invoke", "cas", 3, 0, line=9)],
            r"line 9: process 4: cas value must be \[expected, new\]",
        ),
    ],
)
def test_contract_violations_name_line_and_process(
    events: list[HistoryEvent], message: str
) -> None:
    with pytest.raises(HistoryError, match=message):
        pair_events(events)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "done"}, "type 'done' is not one of invoke, ok, fail, info"),
        ({"f": "frob"}, "f 'frob' is not one of read, write, cas, delete, get, put, append"),
        ({"process": "p1"}, "process must be an integer"),
        ({"time": 1.5}, "time must be an integer"),
    ],
)
def test_event_fields_are_validated(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"process": 0, "type": "invoke", "f": "read", "line": 4}
    fields.update(kwargs)
    with pytest.raises(HistoryError, match=f"line 4: .*{message}"):
        HistoryEvent(**fields)  # type: ignore[arg-type]


def test_events_are_frozen() -> None:
    e = ev(0, "invoke", "read")
    with pytest.raises(AttributeError):
        e.time = 3  # type: ignore[misc]
