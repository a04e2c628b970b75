"""An experiment on the GEE-style testbed (issue 13 §3): node hosts with only private
addresses behind a gateway of two addresses, logged into as a non-root slice user with sudo
(become). `raftlab run` must really run clients and faults there -- clients, health checks and
leader probes through SSH tunnels over the hosts' connections, leader hints mapped to those
tunnels, the nemesis' commands over SSH with become -- and end with a verdict. A workload that
cannot reach the nodes (forced `raft_lab_access: direct`) gets no successful operation and
must not exit 0. Needs root; CI runs it as root."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from labkit import Lab, add_slice_user, bring_up, lab_tmpdir, raftlab, remove_slice_user

from deploy.testbed import Testbed, TestbedState

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

PREFIX = "rlxe"
SUBNET = "10.85.0.0/24"
INNER_SUBNET = "10.85.1.0/24"
USER = "rlxslice"
SUDOERS = Path("/etc/sudoers.d/rlx-slice")

SPEC = """\
name: geetest
seed: 7
workload: {model: kv, clients: 3, keys: 3, duration_s: 10, op_timeout_s: 2}
nemesis:
  - {kind: kill, target: leader, start_s: 1.5, duration_s: 2}
  - {kind: partition, target: leader, params: {mode: isolate}, start_s: 5, duration_s: 2}
  - {kind: pause, target: random, start_s: 8, duration_s: 1}
recovery_s: 3
"""


def _set_group_vars(inventory: Path, **values: object) -> None:
    path = inventory / "group_vars" / "all.yml"
    doc = yaml.safe_load(path.read_text())
    doc.update(values)
    path.write_text("---\n" + yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tmp = lab_tmpdir("gee-exp")
    home = Path(f"/var/tmp/{USER}-home")
    state = TestbedState(
        prefix=PREFIX,
        style="gee",
        subnet=SUBNET,
        inner_subnet=INNER_SUBNET,
        hosts=3,
        inventory_dir=str(tmp / "inventory"),
    )
    try:
        add_slice_user(USER, home, SUDOERS)
        lab = bring_up(tmp, state)
        # As in a GEE slicelet: the slice user, root through sudo.
        _set_group_vars(lab.inventory, ansible_user=USER, ansible_become=True)
        lab.playbook("site.yml").assert_ok()
        yield lab
    finally:
        Testbed(tmp / "state").down()
        remove_slice_user(USER, home, SUDOERS)
        shutil.rmtree(tmp, ignore_errors=True)


def test_an_experiment_runs_clients_and_faults_through_the_gateway(
    lab: Lab, tmp_path: Path
) -> None:
    assert lab.plan.gateway is not None and len(lab.plan.gateway.outer_addresses) == 2
    with pytest.raises(OSError):  # the controller cannot reach the nodes' own addresses
        socket.create_connection((str(lab.plan.hosts[0].address), 7001), timeout=1.0).close()
    spec = tmp_path / "geetest.yml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    run = raftlab("run", str(spec), "-i", str(lab.inventory), "--runs", str(runs))
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    assert "verdict: VALID" in run.stdout
    assert "through SSH tunnels: 127.0.0.1:" in run.stderr
    (run_dir,) = (runs / "geetest").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["workload"]["ok"] > 0, results["workload"]
    assert results["faults_fired"] == results["faults_requested"] == 3, results["faults_by_kind"]
    assert set(results["faults_by_kind"]) == {"kill", "partition", "pause"}
    assert results["nemesis_errors"] == []
    assert results["recovery"]["ok"] is True
    assert results["verdicts"]["overall"] == "valid", results["verdicts"]
    assert sorted(p.name for p in (run_dir / "nodes").iterdir()) == ["h1", "h2", "h3"]
    # The clients were answered by more than one node: leader changes were followed.
    history = [json.loads(ln) for ln in (run_dir / "history.jsonl").read_text().splitlines()]
    nodes = {e.get("node") for e in history if e.get("type") == "ok" and e.get("node")}
    assert len(nodes) >= 2, nodes


def test_a_workload_that_reaches_no_node_does_not_exit_0(lab: Lab, tmp_path: Path) -> None:
    """The old GEE failure: clients dialling private addresses got nothing done and the run
    said nothing. Forced direct access (no tunnels) must end with exit 2 and say why."""
    inv = tmp_path / "direct"
    shutil.copytree(lab.inventory, inv)
    _set_group_vars(inv, raft_lab_access="direct")
    run = raftlab(
        "workload",
        "--inventory",
        str(inv),
        "--duration",
        "2",
        "--clients",
        "2",
        "--out",
        str(tmp_path / "direct-run" / "history.jsonl"),
        timeout_s=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no operation succeeded" in run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["ok"] == 0
