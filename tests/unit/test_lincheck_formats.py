"""History formats: jsonl, Jepsen EDN and Jepsen log lines; round trips and errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raft.lincheck import HistoryEvent, Verdict, check_history, formats
from raft.lincheck.formats import Format, HistoryParseError, Keyword, events_equal
from raft.lincheck.generate import linearizable_history

DATA = Path(__file__).parent / "data" / "histories"


def _generated(model: str = "kv") -> list[HistoryEvent]:
    return linearizable_history(random.Random(3), 60, 4, model=model, info_fraction=0.1).events


@pytest.mark.parametrize("fmt", [Format.JSONL, Format.JEPSEN_EDN])
def test_round_trip_keeps_every_event(fmt: Format) -> None:
    events = _generated()
    text = formats.render(events, fmt)
    back = formats.parse(text, fmt)
    assert events_equal(events, back)
    assert [e.line for e in back] == list(range(1, len(events) + 1))
    assert formats.render(back, fmt) == text


def test_jepsen_log_round_trip_keeps_order_values_and_errors() -> None:
    events = _generated("cas-register")
    text = formats.render_jepsen_log(events)
    back = formats.parse_jepsen_log(text)
    assert [(e.process, e.type, e.f, e.error) for e in back] == [
        (e.process, e.type, e.f, e.error) for e in events
    ]
    # values survive for invocations and ok completions; log times are line numbers
    assert [e.value for e in back if e.type in ("invoke", "ok")] == [
        e.value for e in events if e.type in ("invoke", "ok")
    ]
    assert [e.time for e in back] == list(range(1, len(events) + 1))
    assert check_history(back, "cas-register").verdict is Verdict.LINEARIZABLE


def test_jsonl_fields_and_unknown_fields() -> None:
    text = (
        '{"process":2,"type":"invoke","f":"cas","key":"k","value":[1,2],"time":7,"node":"n1",'
        '"future_field":{"x":1}}\n\n'
        '{"process":2,"type":"info","f":"cas","key":"k","value":[1,2],"time":9,'
        '"error":"timeout"}\n'
    )
    a, b = formats.parse_jsonl(text)
    assert (a.process, a.type, a.f, a.key, a.value, a.time, a.node, a.line) == (
        2,
        "invoke",
        "cas",
        "k",
        [1, 2],
        7,
        "n1",
        1,
    )
    assert (b.error, b.line) == ("timeout", 3)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{"process":0,"type":"invoke","f":"read","time":0}\n{"process":0,', 2, "not valid JSON"),
        ("[1,2]\n", 1, "expected a JSON object"),
        ('{"process":0,"type":"invoke","f":"read"}\n', 1, "missing field 'time'"),
        ('\n\n{"process":0,"type":"begin","f":"read","time":0}\n', 3, "type 'begin'"),
        ('{"process":0,"type":"invoke","f":"incr","time":0}\n', 1, "f 'incr'"),
        ('{"process":0,"type":"invoke","f":"read","time":"now"}\n', 1, "time must be an integer"),
        ('{"process":0,"type":"invoke","f":"read","time":0,"node":3}\n', 1, "'node' must be"),
    ],
)
def test_jsonl_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryParseError, match=f"^line {line}: .*{message}") as info:
        formats.parse_jsonl(text)
    assert info.value.line == line


def test_edn_reader_values() -> None:
    forms = formats.read_edn(
        '; comment\n{:a 1, :b -2.5, :c "s\\"\\n\\u00e9", :d nil, :e true, :f false}\n'
        '[1 (2 3) #{4 5} :ns/kw sym \\x \\newline 12N 1.5M #_ignored #inst "2020"]\n'
    )
    assert forms[0] == (
        2,
        {"a": 1, "b": -2.5, "c": 's"\né', "d": None, "e": True, "f": False},
    )
    line, vec = forms[1]
    assert line == 3
    assert vec == [1, [2, 3], frozenset({4, 5}), "ns/kw", "sym", "x", "\n", 12, 1.5, "2020"]
    assert isinstance(vec[3], Keyword)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("{:a 1}\n{:a 1\n", 2, "unclosed '{'"),
        ("{:a 1}\n\n{:a}\n", 3, "odd number"),
        ("{:a 1}\n  ]\n", 2, "unexpected ']'"),
        ('{:a "open\n', 1, "unterminated string"),
        ("{:a 1/2}\n", 1, "unsupported number"),
        ("{:a #?(:clj 1)}\n", 1, "unsupported EDN dispatch"),
        ("{:a \\bogus}\n", 1, "bad character literal"),
    ],
)
def test_edn_syntax_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryParseError, match=f"^line {line}: .*{message}"):
        formats.read_edn(text)


def test_edn_is_never_evaluated() -> None:
    # Reader-eval and function forms are data (symbols and lists) or refused, never run.
    with pytest.raises(HistoryParseError, match="unsupported EDN dispatch"):
        formats.read_edn("#=(java.lang.System/exit 1)")
    ((_, form),) = formats.read_edn("(System/exit 1)")
    assert form == ["System/exit", 1]


def test_edn_history_maps_nemesis_and_missing_times() -> None:
    events = formats.parse_edn((DATA / "cas_race_ok.edn").read_text())
    assert [e.process for e in events] == [0, 0, 1, 2, 1, 2, 3, 3]
    assert [e.time for e in events] == list(range(8))  # no :time: positions
    assert events[5].error == "precondition"
    assert events[7].node == "n1"
    timed = formats.parse_edn((DATA / "cas_race_bad.edn").read_text())
    assert [e.time for e in timed] == [0, 5, 10, 11, 20, 21]  # the :nemesis op is skipped
    assert [e.line for e in timed] == [2, 3, 4, 5, 7, 8]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("{:type :invoke, :process 0, :f :read}\n[1 2]\n", 2, "expected an operation map"),
        ("{:type :invoke, :f :read, :value nil}\n", 1, "no :process"),
        ("{:process 0, :f :read, :value nil}\n", 1, "no :type"),
        ("{:type :invoke, :process 0, :f :txn, :value []}\n", 1, "f 'txn'"),
        ("{:type 3, :process 0, :f :read}\n", 1, ":type must be a keyword"),
    ],
)
def test_edn_history_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryParseError, match=f"^line {line}: .*{message}"):
        formats.parse_edn(text)


def test_jepsen_log_lines() -> None:
    events = formats.parse_jepsen_log((DATA / "cas_info_took_effect.log").read_text())
    assert events[0].line == 2  # "Worker 0 starting" is not an operation line
    assert [e.process for e in events] == [0, 1, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # no :nemesis
    cas_info = next(e for e in events if e.f == "cas" and e.type == "info")
    assert (cas_info.value, cas_info.error) == (None, "timed-out")
    assert [e.value for e in events if e.type == "invoke" and e.f == "cas"] == [[3, 4]]
    assert [e.value for e in events if e.type == "ok" and e.f == "read"] == [3, 4, 4]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("junk\nINFO  jepsen.util - 0\t:ok\t:write\t[3\n", 2, "bad value '\\[3'"),
        ("INFO  jepsen.util - 0\t:invoke\t:write\t3 4\n", 1, "more than one value"),
        ("INFO  jepsen.util - x1\t:invoke\t:write\t3\n", 1, "process 'x1' is not an integer"),
        ("INFO  jepsen.util - 1\t:begin\t:write\t3\n", 1, "type 'begin'"),
    ],
)
def test_jepsen_log_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryParseError, match=f"^line {line}: .*{message}"):
        formats.parse_jepsen_log(text)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("h.jsonl", "", Format.JSONL),
        ("history.edn", "", Format.JEPSEN_EDN),
        ("jepsen.log", "", Format.JEPSEN_LOG),
        ("h", '{"process":0}\n', Format.JSONL),
        ("h", "{:process 0}\n", Format.JEPSEN_EDN),
        ("h", "[{:process 0}]", Format.JEPSEN_EDN),
        ("h", "INFO x\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n", Format.JEPSEN_LOG),
    ],
)
def test_sniff(name: str, text: str, fmt: Format) -> None:
    assert formats.sniff(text, name) is fmt


@pytest.mark.parametrize(
    ("fixture", "model", "verdict"),
    [
        ("register_concurrent_ok.jsonl", "register", Verdict.LINEARIZABLE),
        ("register_stale_read.jsonl", "register", Verdict.NOT_LINEARIZABLE),
        ("kv_lost_write.jsonl", "kv", Verdict.NOT_LINEARIZABLE),
        ("cas_race_bad.edn", "cas-register", Verdict.NOT_LINEARIZABLE),
        ("cas_race_ok.edn", "cas-register", Verdict.LINEARIZABLE),
        ("cas_info_took_effect.log", "cas-register", Verdict.LINEARIZABLE),
        ("cas_info_flipflop_bad.log", "cas-register", Verdict.NOT_LINEARIZABLE),
    ],
)
def test_fixtures_have_their_known_verdicts(fixture: str, model: str, verdict: Verdict) -> None:
    text = (DATA / fixture).read_text()
    events = formats.parse(text, formats.sniff(text, fixture))
    assert check_history(events, model).verdict is verdict
