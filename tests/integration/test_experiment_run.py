"""Experiments on a real local cluster (``raft cluster up`` processes on loopback):
``raftlab run SPEC`` end to end, and run isolation (issue 10 §5): a second run on the same
cluster is judged as correctly as the first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raft_cluster_fixture import running_cluster

from deploy.cli import main as raftlab

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


def test_spec_end_to_end_on_a_local_cluster(tmp_path: Path) -> None:
    """`raftlab run` on a local cluster, then a two-seed campaign on it (reset between)."""
    cdir = tmp_path / "cluster"
    runs = tmp_path / "runs"
    spec = str(PROJECT / "experiments" / "quick.yml")
    with running_cluster(str(cdir), nodes=3) as lc:
        assert raftlab(["run", spec, "--cluster", str(cdir), "--runs", str(runs)]) == 0
        # Healed: every node runs again.
        assert set(lc.running()) == {"n1", "n2", "n3"}
        (run,) = (runs / "quick").iterdir()
        code = raftlab(
            ["campaign", spec, "--seeds", "3..4", "--cluster", str(cdir), "--runs", str(runs)]
        )
        assert code == 0
        assert set(lc.running()) == {"n1", "n2", "n3"}
        # A fault this cluster cannot have is refused before anything runs.
        net = tmp_path / "net.yml"
        net.write_text("name: net\nworkload: {duration_s: 3}\nnemesis: [{kind: loss}]\n")
        assert raftlab(["run", str(net), "--cluster", str(cdir), "--runs", str(runs)]) == 2
        assert not (runs / "net").exists()
    results = json.loads((run / "results.json").read_text())
    assert results["verdicts"]["overall"] == "valid"
    assert results["faults_requested"] == 1 and results["faults_fired"] == 1
    assert results["workload"]["ok"] > 0
    params = results["parameters"]
    assert params["seed"] == 1 and params["clients"] == 3
    assert params["schedule"][0]["kind"] == "kill"
    assert params["spec"]["name"] == "quick" and params["git_revision"]
    assert params["versions"]["python"] and params["mechanisms"] == ["SIGKILL"]
    assert params["key_prefix"] == results["run_id"] + "."
    w = results["run_window"]
    assert w["start_ts"] < w["end_ts"]
    assert sorted(p.name for p in (run / "nodes").iterdir()) == ["n1", "n2", "n3"]
    assert (run / "spec.yml").is_file() and (run / "report.html").is_file()
    lines = [json.loads(x) for x in (run / "nemesis.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["start", "stop"]
    assert raftlab(["analyze", "--no-report", str(run)]) == 0
    # The campaign: two more runs (other seeds), a table, runs/latest at the newest.
    (camp,) = (runs / "quick").glob("campaign-*")
    rows = json.loads((camp / "campaign.json").read_text())["runs"]
    assert [(r["seed"], r["verdicts"]["overall"]) for r in rows] == [(3, "valid"), (4, "valid")]
    assert (runs / "latest").resolve() == Path(rows[-1]["run_dir"]).resolve()
    assert "report.html" in (camp / "campaign.html").read_text()


def test_second_run_on_the_same_cluster_is_judged_correctly(tmp_path: Path) -> None:
    """Two workloads with the same (default) seed on one cluster. Before run isolation the
    second reused the first's client ids (its session table answered for the first run's
    requests) and keys (not empty, as the checker assumes), and the analysis counted the
    first run's events: a correct cluster was judged not linearizable."""
    cdir = tmp_path / "cluster"
    with running_cluster(str(cdir), nodes=3):
        for run in range(2):
            args = ["workload", "--cluster-dir", str(cdir), "--clients", "4", "--keys", "2"]
            assert raftlab([*args, "--duration", "4"]) == 0, f"workload {run}"
            code = raftlab(["analyze", "--no-report", str(cdir)])
            results = json.loads((cdir / "results.json").read_text())
            assert results["verdicts"]["linearizability"] == "valid", (run, results["verdicts"])
            assert code == 0, (run, results["verdicts"])
    window = results["analysis_window"]
    assert window is not None and window["events_outside"] > 0  # the first run's events
