"""A local cluster session with leader kills, end to end: `raftlab workload` drives real node
processes while killing the leader, then `raftlab analyze` merges the logs, checks the Raft
invariants and the history, and writes the report (issue: analysis on a `raft cluster up`
folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from raft_cluster_fixture import running_cluster

from deploy.cli import main as raftlab


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_session_with_leader_kills_is_safe_and_reported(tmp_path: Path) -> None:
    cdir = tmp_path / "cluster"
    with running_cluster(str(cdir), nodes=3) as lc:
        code = raftlab(
            [
                "workload",
                "--cluster-dir",
                str(cdir),
                "--clients",
                "4",
                "--ops",
                "50000",
                "--duration",
                "8",
                "--kill-leader-every",
                "2",
                "--down-for",
                "1",
            ]
        )
        assert code == 0
        # Every killed node was restarted before the command returned.
        assert set(lc.running()) == {"n1", "n2", "n3"}

    history = _lines(cdir / "history.jsonl")
    invokes = [e for e in history if e["type"] == "invoke"]
    completions = [e for e in history if e["type"] != "invoke"]
    assert invokes, "the workload recorded no operation"
    assert len(completions) == len(invokes)
    assert any(e["type"] == "ok" and e["f"] == "write" for e in history)

    faults = _lines(cdir / "nemesis.jsonl")
    starts = [f for f in faults if f["action"] == "start"]
    stops = [f for f in faults if f["action"] == "stop"]
    assert starts, "no leader was killed"
    assert len(starts) == len(stops)
    assert all(f["fault"] == "kill" for f in faults)

    assert raftlab(["analyze", str(cdir)]) == 0
    results = json.loads((cdir / "results.json").read_text())
    assert results["verdicts"] == {
        "invariants": "valid",
        "linearizability": "valid",
        "overall": "valid",
    }
    assert results["invariants"]["violations"] == []
    assert results["linearizability"]["operations"] > 0
    report = (cdir / "report.html").read_text()
    assert "<svg" in report or "data:image/png" in report
    assert os.path.getsize(cdir / "report.html") > 1000
