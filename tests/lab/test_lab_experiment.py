"""An experiment spec on the testbed and in the simulator (issue 9): `raftlab run SPEC -i
INVENTORY` on deployed hosts with partitions, kills, pauses and packet loss, and `raftlab sim
SPEC` for the same spec; both run directories pass `raftlab analyze`. Then a campaign's
reset (stop, wipe, start over SSH, seconds instead of a redeploy) leaves a serving cluster.
Needs root; CI runs it as root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import Lab, module_lab, raftlab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

PREFIX = "rle"
SUBNET = "10.83.0.0/24"

SPEC = """\
name: labtest
seed: 5
workload: {model: kv, clients: 4, keys: 3, duration_s: 12, op_timeout_s: 2}
nemesis:
  - {kind: partition, target: leader, params: {mode: isolate}, start_s: 1.5, duration_s: 2}
  - {kind: kill, target: leader, start_s: 4.5, duration_s: 1.5}
  - {kind: pause, target: random, start_s: 7, duration_s: 1.5}
  - {kind: loss, target: minority, params: {probability: 0.3}, start_s: 9.5, duration_s: 1.5}
recovery_s: 3
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from module_lab("experiment", PREFIX, SUBNET, "10.83.250.0/24")


def _violations(runs: Path) -> str:
    """What made a run fail, for the assertion message (the run dir is in a temp dir)."""
    out = []
    for res in runs.glob("*/*/results.json"):
        r = json.loads(res.read_text())
        out.append(f"\n{res}: {r.get('verdicts')} warnings {r.get('warnings')}")
        out += [f"\n  {v}" for v in (r.get("invariants") or {}).get("violations", [])[:10]]
    return "".join(out)


def test_spec_on_the_testbed_and_in_the_simulator_both_pass_analyze(
    lab: Lab, tmp_path: Path
) -> None:
    spec = tmp_path / "labtest.yml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    run = raftlab("run", str(spec), "-i", str(lab.inventory), "--runs", str(runs))
    assert run.returncode == 0, run.stdout + run.stderr[-6000:] + _violations(runs)
    assert "verdict: VALID" in run.stdout and "report: " in run.stdout
    assert "ok/s" in run.stderr  # live progress
    (lab_run,) = (runs / "labtest").iterdir()
    results = json.loads((lab_run / "results.json").read_text())
    assert results["faults_fired"] == results["faults_requested"] == 4, results["faults_by_kind"]
    assert set(results["faults_by_kind"]) == {"partition", "kill", "pause", "loss"}
    assert results["nemesis_errors"] == []
    assert results["recovery"]["ok"] is True
    assert results["parameters"]["delay_mechanism"]  # how loss was made here, recorded
    assert sorted(p.name for p in (lab_run / "nodes").iterdir()) == ["h1", "h2", "h3"]

    sim = raftlab("sim", str(spec), "--seed", "5", "--runs", str(runs), "--jobs", "1")
    assert sim.returncode == 0, sim.stdout + sim.stderr[-4000:]
    (sim_run,) = (p for p in (runs / "labtest").iterdir() if p.name.endswith("-sim-s5"))
    for run_dir in (lab_run, sim_run):
        analyze = raftlab("analyze", "--no-report", str(run_dir))
        assert analyze.returncode == 0, analyze.stdout + analyze.stderr
        assert "verdict: VALID" in analyze.stdout


def _client(addrs: str, token: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "raft.cli", "client", "--cluster", addrs, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, RAFT_CLIENT_TOKEN_FILE=str(token)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_campaign_reset_leaves_a_fresh_serving_cluster(lab: Lab) -> None:
    from deploy.experiment.campaign import reset_cluster
    from deploy.nemesis import InventoryControl

    addrs = lab.client_addresses()
    secret = lab.inventory / "secret"
    _client(addrs, secret, "put", "before-reset", "old")
    assert _client(addrs, secret, "get", "before-reset") == "old"
    reset_cluster(InventoryControl(lab.inventory))
    # Wiped and serving again: the old key is gone, new writes go through.
    _client(addrs, secret, "put", "after-reset", "new")
    assert _client(addrs, secret, "get", "after-reset") == "new"
    assert _client(addrs, secret, "get", "before-reset") != "old"
