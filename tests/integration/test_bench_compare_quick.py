"""Smoke test of the side-by-side benchmark (bench/bench_compare.py) in quick mode: it runs
end to end, writes its JSON and Markdown, and every measure is present. No figure is
asserted beyond "something was served": speed claims come from the full run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import bench_compare


@pytest.mark.timeout(300)
def test_quick_compare_writes_every_measure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_OUT", str(tmp_path))
    bench_compare.main(["--quick"])
    out = json.loads((tmp_path / "compare-quick.json").read_text())
    assert out["quick"] is True
    rows = out["tables"]["closed_loop"]
    assert [r["case"] for r in rows][:2] == ["writes 200 B, 1 clients", "writes 200 B, 8 clients"]
    assert all(r["ours_rate"] > 0 and r["ours_failed"] == 0 for r in rows)
    ours = "raftlab 3n fsync on"
    assert out["failover_s"][ours]["trials"] == 2
    catchup = out["catchup_s"][ours]["median"]
    assert 0 < catchup["up_s"] <= catchup["total_s"] < 120
    assert all(v > 0 for v in out["rss_mib"][ours].values())
    assert out["disk_bytes_per_write"][ours] > 0
    assert out["analysis_events_per_s"] > 0
    if shutil.which("etcd") is not None:
        assert all(r["theirs_rate"] > 0 for r in rows)
    else:
        assert any("etcd not measured" in n for n in out["notes"])
    md = (tmp_path / "compare-quick.md").read_text()
    assert "| writes 200 B, 1 clients |" in md


@pytest.mark.timeout(300)
def test_quick_recovery_writes_failover_phases_and_catchup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--recovery``: failover trials with the phases read back from the event logs, and
    catch-ups split into process start and Raft's part."""
    monkeypatch.setenv("BENCH_OUT", str(tmp_path))
    bench_compare.main(["--quick", "--recovery"])
    out = json.loads((tmp_path / "recovery-quick.json").read_text())
    ours = "raftlab 3n fsync on"
    assert out["failover_s"][ours]["trials"] == 2, out
    phases = out["failover_phases_s"][ours]
    assert set(phases) == {"detect", "elect", "client"}, out
    assert all(0 <= p["p50"] <= p["max"] for p in phases.values()), out
    (run,) = out["catchup_s"][ours]["runs"]
    assert 0 < run["up_s"] <= run["total_s"] < 120 and run["cpu_s"] > 0, out
    # Where the catch-up went, from the restarted node's event log, in order.
    p = [run[k] for k in bench_compare.CATCHUP_PHASES if k != "wal_open_s"]
    assert p == sorted(p) and p[-1] <= run["total_s"] + 1.0, run
    assert 0 <= run["wal_open_s"] <= run["logged_start_s"], run
    md = (tmp_path / "recovery-quick.md").read_text()
    assert "| detect | elect | client |" in md


@pytest.mark.timeout(300)
def test_latency_series_reports_every_bucket(tmp_path: Path) -> None:
    """``bench_latency``: a fixed-rate run split into half-second buckets; every bucket of
    the schedule served, the nodes' snapshots listed beside them."""
    from bench import bench_latency

    out = tmp_path / "latency.md"
    bench_latency.main(["--rates", "300", "--seconds", "2", "--out", str(out)])
    (r,) = json.loads(out.with_suffix(".json").read_text())
    assert [b["t"] for b in r["buckets"]] == [0.0, 0.5, 1.0, 1.5]
    assert all(b["n"] > 0 and 0 < b["p50_ms"] <= b["p99_ms"] <= b["max_ms"] for b in r["buckets"])
    assert r["ok"] == sum(b["n"] for b in r["buckets"]) > 500
    assert "## 300 writes/s" in out.read_text()


@pytest.mark.timeout(300)
def test_ab_trees_measures_each_tree_on_its_own_cluster(tmp_path: Path) -> None:
    from bench import ab_trees

    root = Path(ab_trees.__file__).resolve().parent.parent
    other = tmp_path / "other"  # a second checkout: the node side (raft/) is what runs
    shutil.copytree(root / "raft", other / "raft", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "ab.md"
    args = ["--rounds", "1", "--seconds", "0.5", "--clients", "1", "--rates", "100"]
    ab_trees.main([str(root), str(other), *args, "--out", str(out)])
    got = json.loads(out.with_suffix(".json").read_text())
    assert set(got) == {"1 clients", "100/s fixed"}
    assert all(len(rows) == 1 and rows[0][0] > 0 for by in got.values() for rows in by.values())
    assert "| 1 clients |" in out.read_text()
    for bad in ([str(tmp_path), str(root)], [str(root), str(root)]):
        with pytest.raises(SystemExit):  # not a checkout, or one twice: refused
            ab_trees.main(bad)
