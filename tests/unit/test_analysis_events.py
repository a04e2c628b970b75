"""Reading node event logs: bad lines are reported with file:line and skipped, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.analysis.events import (
    EventLogNotFoundError,
    find_event_files,
    load_event_logs,
    load_history,
    load_nemesis,
)


def _ev(**kw: object) -> str:
    base: dict[str, object] = {"ts": 1.0, "node": "n1", "term": 1, "ev": "role", "role": "leader"}
    base.update(kw)
    return json.dumps(base)


def test_malformed_lines_are_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    f = tmp_path / "nodes" / "n1" / "events.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text(
        "\n".join(
            [
                _ev(ev="start", v=1, commit=0, applied=0, last_index=0),
                "{not json",
                "[1, 2]",
                _ev(ts="yesterday"),
                _ev(node=""),
                _ev(ev="commit", index="three"),
                _ev(ev="persist", entries=[[1, 1]]),
                _ev(ev="brand_new_kind", extra={"x": 1}),
                "",
                _ev(ev="commit", index=1, eterm=1),
            ]
        )
        + "\n"
    )
    logs = load_event_logs(find_event_files(tmp_path), tmp_path)
    lines = sorted(p.source.line for p in logs.problems)
    assert lines == [2, 3, 4, 5, 6, 7]
    assert all(p.source.file == "nodes/n1/events.jsonl" for p in logs.problems)
    reasons = {p.source.line: p.reason for p in logs.problems}
    assert "not JSON" in reasons[2]
    assert "'ts'" in reasons[4]
    assert "'index'" in reasons[6]
    evs = logs.events_by_node["n1"]
    # Unknown kinds are kept (forward compatible); the good lines keep program order.
    assert [e.ev for e in evs] == ["start", "brand_new_kind", "commit"]
    assert [e.seq for e in evs] == [0, 1, 2]
    assert str(evs[2].source) == "nodes/n1/events.jsonl:10"


def test_runs_are_numbered_by_start_events(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text(
        "\n".join(
            [
                _ev(ev="commit", index=1),
                _ev(ev="start", v=1),
                _ev(ev="commit", index=1),
                _ev(ev="start", v=1),
            ]
        )
    )
    logs = load_event_logs([f])
    assert [e.run for e in logs.events_by_node["n1"]] == [0, 1, 1, 2]


def test_find_event_files_searches_recursively_and_skips_other_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "events.jsonl").write_text(_ev() + "\n")
    (tmp_path / "a" / "rotated-1.jsonl").write_text(_ev(node="n2") + "\n")
    (tmp_path / "history.jsonl").write_text('{"process": 0, "type": "invoke"}\n')
    (tmp_path / "other.jsonl").write_text('{"hello": 1}\n')
    (tmp_path / "nemesis.jsonl").write_text('{"ts": 1, "node": "x", "ev": "looks-like"}\n')
    found = [p.relative_to(tmp_path).as_posix() for p in find_event_files(tmp_path)]
    assert found == ["a/b/events.jsonl", "a/rotated-1.jsonl"]


def test_missing_path_and_empty_folder_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EventLogNotFoundError, match="no such file"):
        find_event_files(tmp_path / "nope")
    assert find_event_files(tmp_path) == []


def test_history_pairs_invocations_and_keeps_unfinished_as_info(tmp_path: Path) -> None:
    h = tmp_path / "history.jsonl"
    rows = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 10},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 12},
        {"process": 0, "type": "ok", "f": "write", "value": 1, "time": 30},
        {"process": 1, "type": "ok", "f": "read", "value": 1, "time": 40},
        {"process": 2, "type": "invoke", "f": "write", "value": 2, "time": 50},
        {"process": 9, "type": "ok", "f": "write", "value": 2, "time": 60},
    ]
    h.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    problems: list = []
    ops = load_history(h, problems)
    assert [(o.process, o.outcome, o.end_ns) for o in ops] == [
        (0, "ok", 30),
        (1, "ok", 40),
        (2, "info", None),
    ]
    assert ops[1].value == 1  # a read's value comes from its completion
    assert sorted(p.source.line for p in problems) == [6, 7]


def test_nemesis_requires_fault_action_and_a_time(tmp_path: Path) -> None:
    n = tmp_path / "nemesis.jsonl"
    n.write_text(
        '{"time": 1000, "ts": 5.0, "fault": "kill", "action": "start", "targets": ["n1"]}\n'
        '{"fault": "kill", "action": "start"}\n'
        '{"time": 2000, "fault": "kill", "action": "begin"}\n'
    )
    problems: list = []
    got = load_nemesis(n, problems)
    assert [(x.fault, x.targets, x.time_ns) for x in got] == [("kill", ("n1",), 1000)]
    assert sorted(p.source.line for p in problems) == [2, 3]


def test_undecodable_bytes_are_a_reported_line_not_a_crash(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_bytes(_ev().encode() + b"\n\xff\xfe\x00 junk\n" + _ev(term=2).encode() + b"\n")
    logs = load_event_logs([f])
    assert [e.term for e in logs.events_by_node["n1"]] == [1, 2]
    assert [(p.source.line, p.reason[:8]) for p in logs.problems] == [(2, "not JSON")]


def test_a_newer_format_version_is_read_with_a_warning(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text(_ev(ev="start", v=2) + "\n" + _ev() + "\n")
    logs = load_event_logs([f])
    assert logs.count() == 2
    (p,) = logs.problems
    assert p.source.line == 1 and "v2 is newer" in p.reason
