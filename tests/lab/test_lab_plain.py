"""The local testbed end to end (plain style): up, site.yml twice (idempotent), testinfra,
writes and reads through the deployed cluster, stop/start and collect via the playbooks,
teardown, and a `down` that leaves nothing behind. Needs root; CI runs it as root."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import REPO, Lab, leftovers, module_lab, raft_cli, run_testinfra

from deploy.testbed.bed import node_pids

pytestmark = [pytest.mark.lab, pytest.mark.timeout(420)]

PREFIX = "rlt"
SUBNET = "10.79.0.0/24"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from module_lab("plain", PREFIX, SUBNET, "10.79.250.0/24", deploy=False, token_env=True)


def test_up_is_idempotent_and_hosts_are_separate_machines(lab: Lab) -> None:
    again = lab.bed.up(lab.bed.load())  # type: ignore[arg-type]
    assert again == lab.plan
    rows = lab.bed.status()
    assert [r.name for r in rows] == ["h1", "h2", "h3"]
    assert all(r.netns_exists and r.init_alive and r.sshd_up for r in rows), rows
    out = subprocess.run(
        [
            "ssh",
            "-F",
            str(lab.inventory / "ssh_config"),
            "h2",
            "hostname; cat /proc/1/comm; ip -4 -o addr show dev eth0; findmnt -n -o TARGET /opt",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    assert out[0] == "h2"
    assert out[1].startswith("python")  # hostinit is PID 1: its own process table
    assert "10.79.0.12/24" in out[2]
    assert out[3] == "/opt"  # a private /opt
    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, deploy.cli; sys.exit(deploy.cli.main())",
            "testbed",
            "--state-dir",
            str(lab.bed.state_dir),
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "rlt-h3" in cli.stdout and "DOWN" not in cli.stdout


def test_site_deploys_a_cluster_and_a_second_run_changes_nothing(lab: Lab) -> None:
    first = lab.playbook("site.yml")
    first.assert_ok()
    assert any(r["changed"] > 0 for r in first.recap().values())
    second = lab.playbook("site.yml")
    second.assert_ok()
    assert {h: r["changed"] for h, r in second.recap().items()} == {h: 0 for h in second.recap()}, (
        second.output[-4000:]
    )


def test_writes_and_reads_go_through_the_deployed_cluster(lab: Lab) -> None:
    addrs = lab.client_addresses()
    for i in range(3):
        put = raft_cli("client", "--cluster", addrs, "put", f"lab-k{i}", f"v{i}")
        assert put.returncode == 0, put.stderr
    for i in range(3):
        got = raft_cli("client", "--cluster", addrs, "get", f"lab-k{i}")
        assert got.returncode == 0 and got.stdout.strip() == f"v{i}", got.stderr
    st = raft_cli("status", "--cluster", addrs, "--json")
    assert st.returncode == 0, st.stderr
    roles = [row["role"] for row in json.loads(st.stdout).values()]
    assert sorted(roles) == ["follower", "follower", "leader"]


def test_testinfra_host_checks_pass(lab: Lab) -> None:
    proc = run_testinfra(lab)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_stop_and_start_playbooks_stop_and_start_the_nodes(lab: Lab) -> None:
    lab.playbook("stop.yml").assert_ok()
    assert all(node_pids(h.netns) == () for h in lab.plan.hosts)
    status = lab.playbook("status.yml")
    status.assert_ok()
    assert "NOT ANSWERING" in status.output
    lab.playbook("start.yml").assert_ok()
    assert all(len(node_pids(h.netns)) == 1 for h in lab.plan.hosts)
    # What was acknowledged before the restart is still there.
    got = raft_cli("client", "--cluster", lab.client_addresses(), "get", "lab-k1")
    assert got.returncode == 0 and got.stdout.strip() == "v1", got.stderr


def test_experiment_with_leader_kills_over_ssh_is_valid(lab: Lab, tmp_path: Path) -> None:
    """The main job's experiment on deployed hosts: clients run while the nemesis kills the
    leader over SSH and restarts it; the collected logs and the history then check valid."""
    run_dir = tmp_path / "run"
    raftlab = [sys.executable, "-c", "import sys, deploy.cli; sys.exit(deploy.cli.main())"]
    workload = subprocess.run(
        [
            *raftlab,
            "workload",
            "--inventory",
            str(lab.inventory),
            "--clients",
            "4",
            "--ops",
            "50000",
            "--duration",
            "10",
            "--kill-leader-every",
            "3",
            "--down-for",
            "1.5",
            "--out",
            str(run_dir / "history.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert workload.returncode == 0, workload.stdout + workload.stderr
    assert json.loads(workload.stdout)["leader_kills"] >= 1
    faults = [json.loads(x) for x in (run_dir / "nemesis.jsonl").read_text().splitlines()]
    assert {f["action"] for f in faults} == {"start", "stop"}
    # Every killed node was restarted: one node process per host again.
    assert all(len(node_pids(h.netns)) == 1 for h in lab.plan.hosts)
    lab.playbook("collect.yml", "-e", f"raft_node_collect_dir={run_dir}").assert_ok()
    analyze = subprocess.run(
        [*raftlab, "analyze", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert analyze.returncode == 0, analyze.stdout + analyze.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdicts"]["overall"] == "valid"
    assert results["linearizability"]["operations"] > 0
    assert (run_dir / "report.html").is_file()


def test_collect_fetches_logs_into_the_run_directory(lab: Lab, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    lab.playbook("collect.yml", "-e", f"raft_node_collect_dir={run_dir}").assert_ok()
    for h in lab.plan.hosts:
        node = run_dir / "nodes" / h.name
        events = (node / "events.jsonl").read_text().splitlines()
        assert json.loads(events[0])["node"] == h.node_id
        assert (node / "cluster.yml").is_file()
        assert f"{h.node_id}/" in (node / "data-dir.txt").read_text()


def test_teardown_then_down_leave_the_machine_as_it_was(lab: Lab) -> None:
    lab.playbook("teardown.yml").assert_ok()
    assert all(node_pids(h.netns) == () for h in lab.plan.hosts)
    assert lab.bed.down() is True
    assert leftovers(lab) == []
    assert lab.bed.down() is False  # a second down has nothing to do
