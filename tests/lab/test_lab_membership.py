"""Growing and shrinking a deployed cluster, and membership changes as a fault (issue 11).

One 5-host testbed (prefix rlm, 10.84.0.0/24): site.yml deploys h1..h3 (h4, h5 wait outside
the raft_nodes group). While a kv workload runs, h4 and h5 are added to the group with
``raft_node_join: true`` and ``grow.yml`` joins them (5 voters), then ``shrink.yml`` removes
the leader and one more original host (back to 3: the leader hands over first). Second runs
change nothing; ``--check`` changes nothing. The history, closed by a final read of every key,
is linearizable: no acknowledged write was lost. Then an experiment with the membership fault
(a random node and the leader removed, wiped, re-added with ``--join``) on the 3 remaining
nodes ends VALID with the faults recorded as fired. Needs root; CI runs it as root."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from labkit import REPO, Lab, module_lab

from deploy.nemesis import InventoryControl, leftovers
from deploy.nemesis import membership as m
from deploy.testbed.bed import node_pids
from deploy.workload import HistoryWriter, WorkloadSpec, WorkloadSummary, client_token, run_workload
from raft.lincheck.history import HistoryEvent
from raft.runtime.client import RaftClient
from raft.runtime.config import parse_address_list
from raft.runtime.protocol import Status

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

PREFIX = "rlm"
SUBNET = "10.84.0.0/24"
INNER = "10.84.250.0/24"
RAFTLAB = [sys.executable, "-c", "import sys, deploy.cli; sys.exit(deploy.cli.main())"]

SPEC = """\
name: membership-lab
seed: 3
workload: {model: kv, clients: 3, keys: 3, duration_s: 16, op_timeout_s: 3}
nemesis:
  - {kind: membership, target: random, start_s: 1.5, duration_s: 2, params: {timeout_s: 60}}
  - kind: membership
    target: leader
    start_s: 8
    duration_s: 2
    params: {transfer: true, timeout_s: 60}
recovery_s: 3
"""


def _set_group(lab: Lab, members: list[str], join: list[str]) -> None:
    """raft_nodes = ``members`` (those in ``join`` marked raft_node_join); the other testbed
    hosts wait in a group of their own (reachable, not part of the cluster)."""
    path = lab.inventory / "hosts.yml"
    doc = yaml.safe_load(path.read_text())
    children = doc["all"]["children"]
    every: dict[str, Any] = {}
    for group in ("raft_nodes", "raft_spare"):
        every.update((children.get(group) or {}).get("hosts") or {})
    for hv in every.values():
        hv.pop("raft_node_join", None)
    for h in join:
        every[h]["raft_node_join"] = True
    children["raft_nodes"] = {"hosts": {h: every[h] for h in sorted(every) if h in members}}
    spare = {h: every[h] for h in sorted(every) if h not in members}
    children.pop("raft_spare", None)
    if spare:
        children["raft_spare"] = {"hosts": spare}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    gen = module_lab("membership", PREFIX, SUBNET, INNER, deploy=False, token_env=True, hosts=5)
    lab = next(gen)
    try:
        _set_group(lab, ["h1", "h2", "h3"], [])
        lab.playbook("site.yml").assert_ok()
        yield lab
    finally:
        gen.close()


def _changed(run: Any) -> dict[str, int]:
    return {h: r["changed"] for h, r in run.recap().items()}


def _conf(lab: Lab) -> m.Configuration:
    addrs = [f"{h.address}:7001" for h in lab.plan.hosts]
    admin = m.MemberAdmin(addrs, str(lab.inventory / "secret"))
    return m.wait_configuration(admin, lambda _c: True, "configuration", time.monotonic() + 30)


class Workload:
    """A kv workload in a thread, over all five hosts' client addresses, stopped on demand;
    then a final read of every key it wrote, recorded in the same history."""

    def __init__(self, lab: Lab, out: Path) -> None:
        self.addrs = parse_address_list(",".join(f"{h.address}:7001" for h in lab.plan.hosts))
        self.spec = WorkloadSpec(model="kv", clients=3, duration_s=600, keys=3, op_timeout_s=3)
        self.token = client_token(lab.inventory)
        self.out = out.open("w", encoding="utf-8")
        self.summary = WorkloadSummary()
        self.t0 = time.monotonic_ns()
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by stop()
            self.error = exc

    async def _main(self) -> None:
        sink = HistoryWriter(self.out)
        await run_workload(
            self.addrs, self.spec, sink, self.stop_event, self.t0, self.summary, self.token
        )
        async with RaftClient(self.addrs, op_timeout_s=30, token=self.token) as c:
            for i in range(self.spec.keys):
                key = self.spec.key(i)
                t = time.monotonic_ns() - self.t0
                sink(HistoryEvent(1000 + i, "invoke", "read", key, None, t))
                resp = await c.get(key)
                assert resp.status is Status.OK, resp
                t = time.monotonic_ns() - self.t0
                sink(HistoryEvent(1000 + i, "ok", "read", key, resp.value, t))

    def stop(self) -> WorkloadSummary:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=120)
        self.out.close()
        assert not self.thread.is_alive() and self.error is None, self.error
        return self.summary


def _check(history: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAFTLAB, "check", str(history), "--model", "kv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_grow_to_five_and_shrink_to_three_under_load(lab: Lab, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    work = Workload(lab, history)
    try:
        time.sleep(2)
        _set_group(lab, ["h1", "h2", "h3", "h4", "h5"], ["h4", "h5"])
        dry = lab.playbook("grow.yml", "--check")
        dry.assert_ok()
        # Would deploy h4 and h5 (and add them to the members' cluster.yml); starts nothing.
        assert _changed(dry)["h4"] > 0 and _changed(dry)["h5"] > 0, dry.recap()
        assert "would be started with --join" in dry.output
        assert _conf(lab).voters == ("n1", "n2", "n3")
        assert not node_pids(lab.plan.hosts[3].netns)  # nothing started by --check
        grow = lab.playbook("grow.yml")
        grow.assert_ok()
        conf = _conf(lab)
        assert conf.voters == ("n1", "n2", "n3", "n4", "n5") and not conf.joint
        again = lab.playbook("grow.yml")
        again.assert_ok()
        assert _changed(again) == {h: 0 for h in again.recap()}, again.output[-3000:]

        leader = conf.leader
        assert leader is not None
        by_id = {h.node_id: h.name for h in lab.plan.hosts}
        other = next(n for n in ("n1", "n2", "n3") if n != leader)
        leaving = sorted({by_id[leader], by_id[other]})
        dry = lab.playbook("shrink.yml", "--check", "-e", f"raft_shrink_hosts={','.join(leaving)}")
        dry.assert_ok()
        assert _conf(lab).voters == ("n1", "n2", "n3", "n4", "n5")
        shrink = lab.playbook("shrink.yml", "-e", f"raft_shrink_hosts={','.join(leaving)}")
        shrink.assert_ok()
        handover = shrink.output.split("Hand leadership over first")[1:]
        assert any(f"changed: [{by_id[leader]}" in t.split("TASK [")[0] for t in handover)
        conf = _conf(lab)
        stay = sorted(set(by_id) - {leader, other})
        assert list(conf.voters) == stay and not conf.joint and conf.leader in stay
        for h in lab.plan.hosts:
            if h.name in leaving:
                assert not node_pids(h.netns), f"{h.name} still runs"
                assert (lab.bed.host_dir(h.name) / "root_var_lib_raftlab" / h.node_id).is_dir()
        again = lab.playbook("shrink.yml", "-e", f"raft_shrink_hosts={','.join(leaving)}")
        again.assert_ok()
        assert _changed(again) == {h: 0 for h in again.recap()}, again.output[-3000:]
        time.sleep(2)
    finally:
        summary = work.stop()
    assert summary.ok > 0, summary.to_json()
    check = _check(history)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    _set_group(lab, [by_id[n] for n in stay], [by_id[n] for n in stay if n in ("n4", "n5")])


def test_membership_fault_in_an_experiment_ends_valid(lab: Lab, tmp_path: Path) -> None:
    spec = tmp_path / "membership-lab.yml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    run = subprocess.run(
        [*RAFTLAB, "run", str(spec), "-i", str(lab.inventory), "--runs", str(runs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
        env=dict(os.environ),
    )
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    assert "verdict: VALID" in run.stdout
    (run_dir,) = (runs / "membership-lab").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["faults_by_kind"] == {"membership": 2}, results["nemesis_errors"]
    assert results["nemesis_errors"] == []
    lines = [json.loads(x) for x in (run_dir / "nemesis.jsonl").read_text().splitlines()]
    stops = [x for x in lines if x["action"] == "stop"]
    assert len(stops) == 2 and all(x["observed"]["restored"] for x in stops), stops
    starts = [x for x in lines if x["action"] == "start"]
    assert all(x["observed"]["wiped"] for x in starts), starts
    control = InventoryControl(lab.inventory)
    try:
        assert leftovers(control) == {n: [] for n in control.nodes()}
    finally:
        control.close()
