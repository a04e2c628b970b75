"""The event log writer: lines carry the mandatory fields, the buffer is bounded, ids are
unique per run."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from raft.runtime import eventlog
from raft.runtime.eventlog import EventLog, MessageIds, digest


def test_lines_and_bounded_buffer(tmp_path: Path) -> None:
    p = tmp_path / "log" / "events.jsonl"
    term = [3]
    log = EventLog(str(p), "n1", lambda: term[0], clock=lambda: 12.5, buffer_lines_max=4)
    log.emit("start", v=1, voters=frozenset({"n2", "n1"}))
    log.emit("commit", term=2, index=5, eterm=2)
    assert p.read_text() == ""  # buffered
    for i in range(3):
        log.emit("recv", **{"from": "n2", "msg": "app", "id": f"n2:1:{i}"})
    assert len(p.read_text().splitlines()) == 4  # bound reached -> flushed
    log.close()
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert len(lines) == 5
    assert lines[0] == {
        "ts": 12.5,
        "node": "n1",
        "term": 3,
        "ev": "start",
        "v": 1,
        "voters": ["n1", "n2"],
    }
    assert lines[1]["term"] == 2 and lines[2]["from"] == "n2"


def test_ids_and_digest() -> None:
    ids = MessageIds("n1", boot_ts=1700000000.123)
    assert ids.next() == "n1:1700000000.123:1"
    assert ids.next() == "n1:1700000000.123:2"
    # blake2b(data, digest_size=8), as docs/formats.md specifies (known-answer values).
    assert digest(b"") == "e4a6a0577479b2b4"
    assert digest(b"abc") == "d8bb14d833d59559"


def test_background_flush_keeps_emit_order_and_serialises_off_emit(tmp_path: Path) -> None:
    """emit() only records (no JSON on the request path); a background flush and a later
    in-place flush write the lines in emit order."""
    p = tmp_path / "events.jsonl"
    log = EventLog(str(p), "n1", lambda: 1, clock=lambda: 1.0)
    calls = []
    real = eventlog.encode_record

    def counting(rec: dict[str, object]) -> bytes:
        calls.append(1)
        return real(rec)

    eventlog.encode_record = counting  # type: ignore[assignment]
    try:
        for i in range(100):
            log.emit("apply", i=i)
        assert calls == []
    finally:
        eventlog.encode_record = real
    log.flush_background()
    for i in range(100, 200):
        log.emit("apply", i=i)
    log.flush()
    assert [json.loads(x)["i"] for x in p.read_text().splitlines()] == list(range(200))
    log.close()


class _Kind(enum.Enum):
    APP = "app"


@dataclass(frozen=True)
class _Conf:
    voters: tuple[str, ...]


def test_fast_and_standard_encoders_write_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson (the ``fast`` extra) and the standard library must log the same event: sets
    sorted, bytes as hex, enums as their value, objects as their str, non-string keys as
    strings, and an integer past 64 bits exactly."""
    rec = {
        "ts": 1796153954.997123,
        "node": "n1",
        "term": 3,
        "ev": "persist",
        "entries": [(7, 3, "ab12")],
        "voters": frozenset({"n3", "n1"}),
        "ctx": b"\x01\xff",
        "msg": _Kind.APP,
        "conf": _Conf(("n1",)),
        "match": {1: 5},
        "u": "h\u00e9",
    }
    assert eventlog._orjson is not None, "the fast extra is installed for the tests"
    fast = eventlog.encode_record(rec)
    big = eventlog.encode_record({"big": 1 << 70})  # orjson refuses: the standard path
    monkeypatch.setattr(eventlog, "_orjson", None)
    slow = eventlog.encode_record(rec)
    assert json.loads(fast) == json.loads(slow)
    assert json.loads(fast) == {
        "ts": 1796153954.997123,
        "node": "n1",
        "term": 3,
        "ev": "persist",
        "entries": [[7, 3, "ab12"]],
        "voters": ["n1", "n3"],
        "ctx": "01ff",
        "msg": "app",
        "conf": "_Conf(voters=('n1',))",
        "match": {"1": 5},
        "u": "h\u00e9",
    }
    assert json.loads(big) == {"big": 1 << 70}
