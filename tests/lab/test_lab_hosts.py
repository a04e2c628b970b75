"""Changing a deployed cluster (issue 13 §1 §2 §6): a config change is rolled out one node
at a time, followers first and the leader last, while a workload keeps running and stays
linearizable; an invalid setting is refused before any node is touched; ``--check --diff``
on a deployed cluster reports no change (also with the secret given as an ansible-vault
encrypted variable) and shows the cluster.yml diff of a changed setting. Needs root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import REPO, Lab, module_lab

from deploy.testbed.bed import node_pids

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

RAFTLAB = [sys.executable, "-c", "import sys, deploy.cli; sys.exit(deploy.cli.main())"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from module_lab("hosts", "rlh", "10.82.0.0/24", "10.82.250.0/24", token_env=True)


def _pids(lab: Lab) -> dict[str, tuple[int, ...]]:
    return {h.name: node_pids(h.netns) for h in lab.plan.hosts}


def _status(address: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://{address}:7002/status", timeout=0.5) as r:
            doc: dict[str, object] = json.loads(r.read())
            return doc
    except (OSError, ValueError):
        return None


def _cluster_yml(lab: Lab, host: str) -> str:
    return (lab.bed.host_dir(host) / "root_etc_raftlab" / "cluster.yml").read_text()


def _changed(run: object) -> dict[str, int]:
    return {h: r["changed"] for h, r in run.recap().items()}  # type: ignore[attr-defined]


def test_check_mode_with_a_vaulted_secret_reports_no_change(lab: Lab, tmp_path: Path) -> None:
    """--check --diff on the deployed cluster: nothing would change. The secret comes from an
    ansible-vault encrypted raft_node_secret (same value as the deployed one), so the role
    decrypts and uses it; a different vaulted secret would show as a change."""
    pw = tmp_path / "vault-pass"
    pw.write_text("lab-vault-password\n")
    secret = (lab.inventory / "secret").read_text().strip()
    enc = subprocess.run(
        [
            shutil.which("ansible-vault") or "ansible-vault",
            "encrypt_string",
            "--vault-password-file",
            str(pw),
            "--name",
            "raft_node_secret",
            secret,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "$ANSIBLE_VAULT" in enc
    vars_file = tmp_path / "vault.yml"
    vars_file.write_text(enc)
    before = _pids(lab)
    check = lab.playbook(
        "site.yml", "--check", "--diff", "-e", f"@{vars_file}", "--vault-password-file", str(pw)
    )
    check.assert_ok()
    assert _changed(check) == {h: 0 for h in check.recap()}, check.output[-4000:]
    assert _pids(lab) == before


def test_check_diff_shows_a_changed_setting_and_changes_nothing(lab: Lab) -> None:
    before = _pids(lab)
    check = lab.playbook(
        "deploy.yml", "--check", "--diff", "-e", "raft_node_election_timeout_ticks=13"
    )
    check.assert_ok()
    assert "+election_timeout_ticks: 13" in check.output
    assert "-election_timeout_ticks: 10" in check.output
    assert all(c > 0 for h, c in _changed(check).items() if h.startswith("h")), check.recap()
    assert _pids(lab) == before
    assert "election_timeout_ticks: 10" in _cluster_yml(lab, "h1")


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        # Caught by the role's range asserts, before any host is touched.
        ("raft_node_heartbeat_ticks=20", "heartbeat_ticks=20"),
        # Passes the asserts; refused by `raft config check` (validate:) on every host.
        ("raft_node_cluster_name=''", "cluster"),
    ],
)
def test_an_invalid_setting_is_refused_and_every_node_keeps_running(
    lab: Lab, setting: str, why: str
) -> None:
    before = _pids(lab)
    configs = {h.name: _cluster_yml(lab, h.name) for h in lab.plan.hosts}
    run = lab.playbook("deploy.yml", "-e", setting)
    assert run.rc != 0, run.output[-3000:]
    assert why in run.output
    assert _pids(lab) == before, "a node was restarted or stopped"
    assert all(len(p) == 1 for p in before.values())
    assert {h.name: _cluster_yml(lab, h.name) for h in lab.plan.hosts} == configs
    assert all((_status(str(h.address)) or {}).get("leader") for h in lab.plan.hosts)


def test_a_config_change_rolls_one_node_at_a_time_under_load(lab: Lab, tmp_path: Path) -> None:
    """Followers first, the leader last; never more than one node down; every node comes
    back with the new setting; the workload's history stays linearizable."""
    hosts = {h.name: str(h.address) for h in lab.plan.hosts}
    leader_before = next(
        name for name, a in hosts.items() if (_status(a) or {}).get("role") == "leader"
    )
    pids_before = _pids(lab)
    samples: list[tuple[float, frozenset[str]]] = []
    restarted_at: dict[str, float] = {}
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            now = time.monotonic()
            down = frozenset(n for n, a in hosts.items() if _status(a) is None)
            samples.append((now, down))
            for h in lab.plan.hosts:
                p = node_pids(h.netns)
                if p and p != pids_before[h.name] and h.name not in restarted_at:
                    restarted_at[h.name] = now
            time.sleep(0.1)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    workload = subprocess.Popen(
        [
            *RAFTLAB,
            "workload",
            "--cluster",
            lab.client_addresses(),
            "--clients",
            "3",
            "--ops",
            "20000",
            "--duration",
            "30",
            "--out",
            str(run_dir / "history.jsonl"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        roll = lab.playbook("deploy.yml", "-e", "raft_node_election_timeout_ticks=12")
        out, err = workload.communicate(timeout=180)
    finally:
        stop.set()
        watcher.join(timeout=10)
        if workload.poll() is None:
            workload.kill()
    roll.assert_ok()
    assert workload.returncode == 0, out + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary.get("ok", 0) > 0, summary
    worst = max((len(down) for _, down in samples), default=0)
    assert worst <= 1, [sorted(d) for _, d in samples if len(d) > 1][:5]
    assert any(len(down) == 1 for _, down in samples), "no restart was observed"
    assert sorted(restarted_at) == sorted(hosts), restarted_at
    assert max(restarted_at, key=restarted_at.__getitem__) == leader_before, restarted_at
    assert all("election_timeout_ticks: 12" in _cluster_yml(lab, h) for h in hosts)
    check = subprocess.run(
        [*RAFTLAB, "check", str(run_dir / "history.jsonl"), "--model", "kv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    again = lab.playbook("deploy.yml", "-e", "raft_node_election_timeout_ticks=12")
    again.assert_ok()
    assert _changed(again) == {h: 0 for h in again.recap()}, again.output[-3000:]
