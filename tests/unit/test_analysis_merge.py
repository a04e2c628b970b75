"""Merging skewed logs: the order respects happens-before and the offsets are estimated.

Tolerance: the generator's one-way delays are 0.5..4 ms each way, so the bound from
two-way exchanges is at most 4 ms wide; we assert every estimate within 5 ms of the truth
and within the uncertainty the estimator reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.analysis.events import find_event_files, load_event_logs
from deploy.analysis.merge import estimate_offsets, merge
from deploy.analysis.synthetic import SyntheticCluster, standard_run

OFFSETS = {"n1": 0.0, "n2": 5.0, "n3": -3.0}
TOLERANCE_S = 0.005


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("skewed")
    standard_run(d, seed=7, offsets=OFFSETS)
    return d


def test_offsets_are_estimated_within_tolerance(skewed: Path) -> None:
    logs = load_event_logs(find_event_files(skewed))
    est = estimate_offsets(logs, reference="n1")
    assert est.reference == "n1#1"  # n1 restarted: each process run has its own clock
    assert not est.unlinked
    assert sorted(est.offsets) == ["n1#1", "n1#2", "n2", "n3#1", "n3#2"]
    for label, off in est.offsets.items():
        err = abs(off - OFFSETS[label.split("#")[0]])
        assert err < TOLERANCE_S, (label, off)
        assert err <= est.uncertainty[label] + 1e-9
    for p in est.pairs:
        assert p.consistent


def test_offsets_relative_to_another_reference(skewed: Path) -> None:
    logs = load_event_logs(find_event_files(skewed))
    est = estimate_offsets(logs, reference="n3")
    assert abs(est.node_offsets["n1"] - 3.0) < TOLERANCE_S
    assert abs(est.node_offsets["n2"] - 8.0) < TOLERANCE_S


def test_merged_order_is_happens_before_consistent_and_follows_true_time(skewed: Path) -> None:
    logs = load_event_logs(find_event_files(skewed))
    tl = merge(logs)
    assert len(tl.events) == logs.count()
    assert tl.pairs_matched > 100
    pos: dict[tuple[str, int], int] = {}
    for i, m in enumerate(tl.events):
        pos[(m.event.node, m.event.seq)] = i
    # Program order kept.
    for node, evs in logs.events_by_node.items():
        assert [pos[(node, e.seq)] for e in evs] == sorted(pos[(node, e.seq)] for e in evs)
    # Every recv after its send.
    sends = {m.event.get("id"): i for i, m in enumerate(tl.events) if m.event.ev == "send"}
    for i, m in enumerate(tl.events):
        if m.event.ev == "recv":
            assert sends[m.event.get("id")] < i
            assert m.send is not None
    # Real time: the merged order never puts an event more than the tolerance before one
    # that truly happened earlier.
    true_ts = [m.event.get("true_ts") for m in tl.events]
    worst = max(max(true_ts[: i + 1]) - t for i, t in enumerate(true_ts))
    assert worst < TOLERANCE_S
    # Whereas sorting by the raw, skewed timestamps scrambles the run by seconds.
    naive = sorted(logs.all_events(), key=lambda e: e.ts)
    nt = [e.get("true_ts") for e in naive]
    assert max(max(nt[: i + 1]) - t for i, t in enumerate(nt)) > 2.0


def test_vector_and_lamport_clocks_respect_causality(skewed: Path) -> None:
    tl = merge(load_event_logs(find_event_files(skewed)))
    col = {n: i for i, n in enumerate(tl.nodes)}
    by_send = {}
    last: dict[str, tuple[int, ...]] = {}
    for m in tl.events:
        n = m.event.node
        prev = last.get(n, tuple(0 for _ in tl.nodes))
        assert m.vclock[col[n]] == prev[col[n]] + 1
        assert all(a >= b for a, b in zip(m.vclock, prev, strict=True))
        last[n] = m.vclock
        if m.event.ev == "send":
            by_send[m.event.get("id")] = m
        if m.event.ev == "recv" and m.send is not None:
            s = by_send[m.event.get("id")]
            assert all(a >= b for a, b in zip(m.vclock, s.vclock, strict=True))
            assert m.lamport > s.lamport


def _line(**kw: object) -> str:
    return json.dumps(kw) + "\n"


def test_contradictory_logs_are_reported_not_fatal(tmp_path: Path) -> None:
    # Each node receives the other's message before sending its own: a cycle.
    (tmp_path / "a.jsonl").write_text(
        _line(ts=1.0, node="a", term=1, ev="recv", **{"from": "b", "msg": "app", "id": "b:1"})
        + _line(ts=2.0, node="a", term=1, ev="send", to="b", msg="app", id="a:1")
    )
    (tmp_path / "b.jsonl").write_text(
        _line(ts=1.0, node="b", term=1, ev="recv", **{"from": "a", "msg": "app", "id": "a:1"})
        + _line(ts=2.0, node="b", term=1, ev="send", to="a", msg="app", id="b:1")
    )
    tl = merge(load_event_logs(find_event_files(tmp_path)))
    assert len(tl.events) == 4
    assert any("cycle" in p.reason for p in tl.problems)


def test_recv_without_logged_send_is_kept(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        _line(ts=1.0, node="a", term=1, ev="recv", **{"from": "b", "msg": "heartbeat", "id": "b:9"})
    )
    tl = merge(load_event_logs([tmp_path / "events.jsonl"]))
    assert tl.recv_unmatched == 1
    assert len(tl.events) == 1 and tl.events[0].send is None


def _max_true_time_inversion(tl_events: list) -> float:
    true_ts = [m.event.get("true_ts") for m in tl_events]
    return max(max(true_ts[: i + 1]) - t for i, t in enumerate(true_ts))


def test_a_restart_with_a_different_clock_gets_its_own_offset(tmp_path: Path) -> None:
    c = SyntheticCluster(3, seed=11, offsets={"n2": 0.0})
    c.boot()
    c.elect("n1")
    c.write(20)
    c.kill("n2")
    c.offsets["n2"] = 7.5  # comes back with a clock 7.5 s fast
    c.restart("n2")
    c.write(20)
    c.write_run(tmp_path)
    logs = load_event_logs(find_event_files(tmp_path))
    tl = merge(logs)
    off = tl.clocks.offsets
    assert abs(off["n2#1"]) < TOLERANCE_S and abs(off["n2#2"] - 7.5) < TOLERANCE_S
    assert tl.clocks.node_offsets["n2"] == off["n2#2"]
    assert _max_true_time_inversion(tl.events) < TOLERANCE_S


def test_merged_jsonl_extends_the_lines_read_without_changing_them(skewed: Path) -> None:
    """merged.jsonl is written from the lines as read (no re-serialisation): each line is
    the original event plus cts/lamport/src, and equals what re-serialising gives."""
    import dataclasses

    logs = load_event_logs(find_event_files(skewed), skewed)
    timeline = merge(logs)
    fast = skewed / "merged-fast.jsonl"
    timeline.write_jsonl(fast)
    slow_tl = dataclasses.replace(timeline, order=[e._replace(raw=b"") for e in timeline.order])
    slow = skewed / "merged-slow.jsonl"
    slow_tl.write_jsonl(slow)
    got = [json.loads(x) for x in fast.read_text().splitlines()]
    want = [json.loads(x) for x in slow.read_text().splitlines()]
    assert len(got) == len(timeline.events) > 0
    assert got == want
    assert all({"cts", "lamport", "src", "ts", "node", "ev"} <= set(g) for g in got)
    assert all(m.event.raw.startswith(b"{") for m in timeline.events)


@pytest.mark.parametrize("offsets", [{}, {"n2": 5.0, "n3": -3.0}])
def test_sort_fast_path_gives_kahns_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offsets: dict[str, float]
) -> None:
    """The one-sort merge is taken only when it provably equals the heap (Kahn) order; on
    real-clock runs it is taken, and both give the same order, times and Lamport clocks."""
    import importlib

    merge_mod = importlib.import_module("deploy.analysis.merge")
    standard_run(tmp_path, seed=3, offsets=offsets, writes=10)
    logs = load_event_logs(find_event_files(tmp_path), tmp_path)
    taken: list[bool] = []
    real = merge_mod._sorted_merge

    def spy(*args: object) -> object:
        got = real(*args)  # type: ignore[arg-type]
        taken.append(got is not None)
        return got

    monkeypatch.setattr(merge_mod, "_sorted_merge", spy)
    fast = merge(logs)
    monkeypatch.setattr(merge_mod, "_sorted_merge", lambda *a: None)
    slow = merge(logs)
    if not offsets:
        assert taken == [True]
    assert [(e.node, e.seq) for e in fast.order] == [(e.node, e.seq) for e in slow.order]
    assert fast.cts == slow.cts and fast.lamport == slow.lamport
    assert [m.vclock for m in fast.events] == [m.vclock for m in slow.events]


def test_merged_cts_text_is_repr_of_round() -> None:
    """merged.jsonl prints cts as %.6f without trailing zeros where that equals
    repr(round(cts, 6)); checked on random and edge values of the range it is used in."""
    import random

    from deploy.analysis.events import NodeEvent, Source
    from deploy.analysis.merge import ClockEstimate, MergedTimeline

    rng = random.Random(5)
    values = [rng.uniform(1e-4, 2**32) for _ in range(20000)]
    values += [rng.uniform(1.7e9, 1.8e9) for _ in range(20000)]
    values += [round(rng.uniform(1.7e9, 1.8e9), 6) for _ in range(20000)]
    values += [1e-4, 0.5, 1.0, 2**32 - 1e-6, 1796095213.68697, 1796095213.0, 0.0, -1.5, 2**33]
    values += [1e17, 1e-7, float(2**32)]
    ev = NodeEvent(0.0, "n1", 0, "x", {}, Source("f", 1), 0, 0, b'{"a":1}')
    clocks = ClockEstimate("n1", {}, {}, (), (), {})
    tl = MergedTimeline(["n1"], [ev] * len(values), values, [1] * len(values), clocks)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.jsonl"
        tl.write_jsonl(p)
        got = [json.loads(x)["cts"] for x in p.read_text().splitlines()]
        texts = [x.split('"cts":')[1].split(",")[0] for x in p.read_text().splitlines()]
    assert texts == [repr(round(v, 6)) for v in values]
    assert got == [round(v, 6) for v in values]
