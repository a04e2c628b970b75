"""An experiment spec end to end in the simulator: ``raftlab sim SPEC`` writes the lab's run
directory (node events.jsonl in the node event format, history.jsonl, nemesis.jsonl,
results.json), which ``raftlab analyze``, ``report``, ``runs`` and ``diff`` accept; a
campaign over a few seeds prints and writes its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main as raftlab

SPEC = """\
name: simtest
seed: 0
workload: {model: kv, clients: 3, keys: 2, duration_s: 1.5}
nemesis:
  - {kind: kill, target: random, start_s: 0.2, interval_s: 0.5, duration_s: 0.2}
  - {kind: partition, params: {mode: halves}, start_s: 0.3, interval_s: 0.6, duration_s: 0.3}
  - {kind: loss, target: all, params: {probability: 0.2}, start_s: 0.1, duration_s: 0.4}
  - {kind: disk-fill, target: random, start_s: 0.5, duration_s: 0.2}
recovery_s: 1
"""


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "simtest").iterdir() if p.name.endswith(tuple("0123456789")))


def test_spec_in_the_simulator_is_a_lab_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "simtest.yml"
    spec.write_text(SPEC)
    root = tmp_path / "runs"
    assert raftlab(["sim", str(spec), "--seed", "3", "--runs", str(root), "--jobs", "1"]) == 0
    (run,) = _runs(root)
    nodes = sorted(p.name for p in (run / "nodes").iterdir())
    assert nodes == ["n1", "n2", "n3", "n4", "n5"]
    for n in nodes:
        lines = [
            json.loads(x) for x in (run / "nodes" / n / "events.jsonl").read_text().splitlines()
        ]
        assert lines[0]["ev"] == "start" and lines[0]["v"] == 1
        assert all({"ts", "node", "term", "ev"} <= set(e) for e in lines)
        kinds = {e["ev"] for e in lines}
        assert {"persist", "commit", "apply", "send", "recv", "role"} <= kinds
    faults = [json.loads(x) for x in (run / "nemesis.jsonl").read_text().splitlines()]
    started = {f["fault"] for f in faults if f["action"] == "start"}
    assert started and started <= {"kill", "partition", "loss"}, started
    results = json.loads((run / "results.json").read_text())
    assert results["mode"] == "sim" and results["seed"] == 3
    assert results["faults_fired"] > 0 and results["workload"]["ok"] > 0
    assert results["parameters"]["skipped_faults"] == ["disk-fill"]
    assert results["parameters"]["sim_faults"]["kill"] == "crash"
    assert results["verdicts"]["overall"] == "valid"
    assert results["verdicts"]["simulator"] == "valid"
    assert results["run_window"]["clock"] == "virtual"
    assert (run / "report.html").is_file()
    capsys.readouterr()

    # The lab's commands work on it.
    assert raftlab(["analyze", "--no-report", str(run)]) == 0
    assert "verdict: VALID" in capsys.readouterr().out
    assert raftlab(["runs", str(root)]) == 0
    assert "simtest" in capsys.readouterr().out
    assert raftlab(["report", "--no-plots", str(run)]) == 0
    assert raftlab(["sim", str(spec), "--seed", "4", "--runs", str(root), "--jobs", "1"]) == 0
    a, b = _runs(root)
    assert raftlab(["diff", str(a), str(b)]) in (0, 1)
    assert capsys.readouterr().out.strip()


def test_campaign_over_sim_seeds_writes_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "simtest.yml"
    spec.write_text(SPEC)
    root = tmp_path / "runs"
    code = raftlab(["campaign", str(spec), "--seeds", "1..3", "--sim", "--runs", str(root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 runs: 3 valid" in out
    (camp,) = (root / "simtest").glob("campaign-*")
    rows = json.loads((camp / "campaign.json").read_text())["runs"]
    assert [r["seed"] for r in rows] == [1, 2, 3]
    assert all(r["faults_fired"] > 0 and r["ok"] > 0 for r in rows)
    page = (camp / "campaign.html").read_text()
    assert page.count("report.html") == 3
    # The same seed replays the same run: the simulator is deterministic.
    assert raftlab(["campaign", str(spec), "--seeds", "2", "--sim", "--runs", str(root)]) == 0
    camps = sorted((root / "simtest").glob("campaign-*"))
    again = json.loads((camps[-1] / "campaign.json").read_text())["runs"][0]
    assert {k: again[k] for k in ("ok", "fail", "info", "faults_fired")} == {
        k: rows[1][k] for k in ("ok", "fail", "info", "faults_fired")
    }
