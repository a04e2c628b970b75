"""Runs that judge honestly (issue 9) and run isolation (issue 10 §5), without a cluster:
a duration means a duration, each run has its own client ids and keys, a run that proves
nothing is never VALID, and the analysis reads only the run's window."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from deploy import workload as wl
from deploy.analysis import analyze, exit_code
from deploy.cli import main as raftlab
from raft.runtime.protocol import Response, Status


class _InstantClient:
    """A client whose every operation succeeds at once (stands in for a cluster)."""

    ids: list[str] = []

    def __init__(self, addrs: Any, client_id: str = "", **kw: Any) -> None:
        _InstantClient.ids.append(client_id)
        self.values: dict[Any, Any] = {}

    async def get(self, key: Any) -> Response:
        await asyncio.sleep(0)
        return Response(0, Status.OK, value=self.values.get(key))

    async def put(self, key: Any, value: Any) -> Response:
        await asyncio.sleep(0)
        self.values[key] = value
        return Response(0, Status.OK)

    async def cas(self, key: Any, expect: Any, value: Any) -> Response:
        await asyncio.sleep(0)
        return Response(0, Status.OK)

    async def close(self) -> None:
        return None


def test_duration_means_duration_not_1000_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wl, "RaftClient", _InstantClient)
    spec = wl.WorkloadSpec(clients=3, duration_s=0.6)
    events: list[Any] = []
    t0 = time.monotonic()
    summary = asyncio.run(wl.run_workload([], spec, events.append))
    # The old default budget (--ops 1000) ended runs early: this one lasts its duration.
    assert time.monotonic() - t0 >= 0.6
    assert summary.invoked > 1000
    assert summary.ok == summary.invoked


def test_each_run_has_its_own_client_ids_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wl, "RaftClient", _InstantClient)
    keys: list[set[str]] = []
    ids: list[set[str]] = []
    for _ in range(2):
        _InstantClient.ids = []
        events: list[Any] = []
        spec = wl.WorkloadSpec(clients=2, duration_s=0.05, ops_max=50, seed=0)
        asyncio.run(wl.run_workload([], spec, events.append))
        keys.append({e.key for e in events})
        ids.append(set(_InstantClient.ids))
    assert not keys[0] & keys[1], "two runs with the same seed shared keys"
    assert not ids[0] & ids[1], "two runs with the same seed shared client ids"


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _run_dir(tmp_path: Path, *, ok: bool, results: dict[str, Any]) -> Path:
    """Two nodes; an EARLIER run left a second leader of term 1 at ts 100 (a broken
    cluster the previous experiment was about); this run is at ts 1000.."""
    run = tmp_path / "run"
    base = {"term": 1}
    for n in ("n1", "n2"):
        _write(
            run / "nodes" / n / "events.jsonl",
            [
                {
                    "ts": 100.0,
                    "node": n,
                    "ev": "start",
                    "v": 1,
                    "commit": 0,
                    "applied": 0,
                    "last_index": 0,
                    "last_term": 0,
                    "vote": "",
                    "voters": ["n1", "n2"],
                    **base,
                },
                {"ts": 100.5, "node": n, "ev": "role", "role": "leader", "leader": n, **base},
                {
                    "ts": 1000.0,
                    "node": n,
                    "ev": "role",
                    "role": "follower",
                    "leader": "n1",
                    "term": 2,
                },
                {
                    "ts": 1000.2,
                    "node": n,
                    "ev": "client",
                    "op": "write",
                    "req": 1,
                    "outcome": "ok",
                    "term": 2,
                },
            ],
        )
    outcome = "ok" if ok else "fail"
    _write(
        run / "history.jsonl",
        [
            {"process": 0, "type": "invoke", "f": "write", "key": "r.k0", "value": 1, "time": 0},
            {
                "process": 0,
                "type": outcome,
                "f": "write",
                "key": "r.k0",
                "value": 1,
                "time": 200_000_000,
            },
        ],
    )
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_analysis_reads_only_the_run_window(tmp_path: Path) -> None:
    unwindowed = analyze(_run_dir(tmp_path / "a", ok=True, results={"start_ts": 1000.0}))
    assert unwindowed.verdicts["invariants"] == "invalid"  # the earlier run's two leaders
    window = {"start_ts": 999.9, "end_ts": 1001.0}
    a = analyze(
        _run_dir(tmp_path / "b", ok=True, results={"start_ts": 1000.0, "run_window": window})
    )
    assert a.verdicts == {"invariants": "valid", "linearizability": "valid", "overall": "valid"}
    assert a.events_outside_window == 4
    assert a.results_json()["analysis_window"]["events_outside"] == 4


def test_no_successful_operation_is_unknown_not_valid(tmp_path: Path) -> None:
    window = {"start_ts": 999.9, "end_ts": 1001.0}
    run = _run_dir(tmp_path, ok=False, results={"run_window": window})
    a = analyze(run)
    assert a.verdicts["overall"] == "unknown"
    assert any("no operation succeeded" in w for w in a.warnings)
    assert exit_code(a.verdicts) == 2
    assert raftlab(["analyze", "--no-report", str(run)]) == 2


def test_faults_asked_none_fired_is_unknown(tmp_path: Path) -> None:
    window = {"start_ts": 999.9, "end_ts": 1001.0}
    run = _run_dir(tmp_path, ok=True, results={"run_window": window, "faults_requested": 3})
    (run / "nemesis.jsonl").write_text("")
    a = analyze(run)
    assert a.verdicts["run"] == "unknown" and a.verdicts["overall"] == "unknown"
    assert a.warnings == ["3 fault(s) were requested and none fired"]
    (run / "nemesis.jsonl").write_text(
        json.dumps({"time": 1, "ts": 1000.1, "fault": "kill", "action": "start", "targets": ["n1"]})
        + "\n"
    )
    assert analyze(run).verdicts["overall"] == "valid"


def _apply_at_window_start(tmp_path: Path, applied: int) -> Path:
    """n1 committed index 5 just before the run window opened and applies ``applied`` just
    after it (the second run on a cluster under load: a CI failure of round 6)."""
    run = _run_dir(tmp_path, ok=True, results={"run_window": {"start_ts": 999.9, "end_ts": 1001}})
    ev = run / "nodes" / "n1" / "events.jsonl"
    lines = [json.loads(x) for x in ev.read_text().splitlines()]
    lines[2:2] = [
        {"ts": 998.0, "node": "n1", "ev": "commit", "index": 5, "term": 1},
        {"ts": 999.0, "node": "n1", "ev": "apply", "entries": [[applied, 1, "d", "ok"]], "term": 1},
    ]
    _write(ev, lines)
    return run


def test_commit_before_the_window_counts_for_applies_inside_it(tmp_path: Path) -> None:
    a = analyze(_apply_at_window_start(tmp_path / "ok", applied=5))
    assert a.verdicts["invariants"] == "valid", [str(v) for v in a.invariants.violations]
    # The check still holds inside the window: index 6 was never committed.
    bad = analyze(_apply_at_window_start(tmp_path / "bad", applied=6))
    assert [v.invariant.value for v in bad.invariants.violations] == ["applied_within_commit"]
    assert "commit index was 5" in str(bad.invariants.violations[0])
