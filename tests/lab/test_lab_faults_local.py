"""Faults on a `raft cluster up` cluster (LocalControl): the process, clock and disk faults
that make sense there take effect and heal; network faults are refused saying why; a pid that
is no longer the node is never signalled (issue 10, "Also")."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.nemesis import LocalControl, Nemesis, NotSupportedError, heal_cluster, parse_fault
from raft.runtime.localcluster import LocalCluster

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

BASE_PORT = 17810
HOSTS = "127.0.81."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    d = tmp_path_factory.mktemp("rlf-local") / "cluster"
    lc = LocalCluster(str(d))
    lc.up(nodes=3, base_port=BASE_PORT, host_prefix=HOSTS, tick_ms=20)
    try:
        lc.wait_leader(30, started=True)
        yield lc
    finally:
        lc.down()


def _nemesis(lc: LocalCluster) -> tuple[Nemesis, list[dict[str, object]]]:
    lines: list[dict[str, object]] = []
    return Nemesis(LocalControl(lc.dir), lines.append, random.Random(4)), lines


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1]


def _events(lc: LocalCluster, node: str) -> list[str]:
    return (Path(lc.config().node_log_dir(node)) / "events.jsonl").read_text().splitlines()


def _new_event_ts(lc: LocalCluster, node: str, after: int) -> float:
    """The wall clock at which the node (re)started after line ``after`` (its start event)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = _events(lc, node)
        for line in lines[after:]:
            ev = json.loads(line)
            if ev.get("ev") == "start":
                return float(ev["ts"])
        time.sleep(0.2)
    raise AssertionError(f"{node} logged no start after line {after}")


def test_pause_stops_the_process_and_heal_resumes_it(cluster: LocalCluster) -> None:
    nem, lines = _nemesis(cluster)
    a = nem.start_now(parse_fault({"kind": "pause", "target": "nodes:n2"}))
    assert a is not None
    pid = cluster.running()["n2"]
    assert _state(pid) == "T"
    assert [x["fault"] for x in nem.active()] == ["pause"]
    nem.heal()
    assert _state(pid) != "T" and nem.active() == []
    nem.heal()  # idempotent
    assert [x["action"] for x in lines] == ["start", "stop"]
    assert lines[0]["observed"] == {"pids": {"n2": pid}, "states": {"n2": "T"}}


def test_kill_then_restart_through_a_schedule(cluster: LocalCluster) -> None:
    nem, lines = _nemesis(cluster)
    before = dict(cluster.running())
    sched = [parse_fault({"kind": "kill", "target": "nodes:n3", "duration_s": 1.0})]

    async def go() -> None:
        stop = asyncio.Event()
        await nem.run(sched, stop)

    asyncio.run(go())
    assert [(x["fault"], x["action"]) for x in lines] == [("kill", "start"), ("kill", "stop")]
    assert lines[0]["observed"]["gone"] == {"n3": True}  # type: ignore[index]
    after = cluster.running()
    assert set(after) == {"n1", "n2", "n3"} and after["n3"] != before["n3"]
    assert float(lines[1]["elapsed_s"]) >= 1.0  # type: ignore[arg-type]


def test_network_faults_are_refused_on_loopback(cluster: LocalCluster) -> None:
    nem, lines = _nemesis(cluster)
    for kind in ("partition", "loss", "delay"):
        with pytest.raises(NotSupportedError, match="loopback"):
            nem.start_now(parse_fault({"kind": kind}))
    assert lines == [] and nem.active() == []
    sched = [parse_fault({"kind": "kill"}), parse_fault({"kind": "partition", "start_s": 5})]
    with pytest.raises(NotSupportedError, match=r"nemesis\[1\]: partition"):
        asyncio.run(nem.run(sched, asyncio.Event()))
    assert lines == []  # refused before anything was touched


def test_clock_step_makes_the_node_read_a_skewed_clock(cluster: LocalCluster) -> None:
    nem, _ = _nemesis(cluster)
    n = len(_events(cluster, "n1"))
    a = nem.start_now(
        parse_fault({"kind": "clock", "target": "nodes:n1", "params": {"offset_s": 3600}})
    )
    assert a is not None and a.mechanism == "libfaketime"
    assert abs(a.observed["skew_s"]["n1"] - 3600) < 5
    assert _new_event_ts(cluster, "n1", n) - time.time() > 3000  # the node logs in the future
    n = len(_events(cluster, "n1"))
    nem.heal()
    assert "LD_PRELOAD" not in LocalControl(cluster.dir).environ("n1")
    assert abs(_new_event_ts(cluster, "n1", n) - time.time()) < 60
    assert heal_cluster(LocalControl(cluster.dir)) == []


def _put(lc: LocalCluster, key: str) -> None:
    put = subprocess.run(
        [
            sys.executable,
            "-m",
            "raft.cli",
            "client",
            "--cluster",
            lc.client_addresses(),
            "put",
            key,
            "v",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert put.returncode == 0, put.stderr


def test_failing_fsync_fails_the_nodes_storage_until_healed(cluster: LocalCluster) -> None:
    nem, lines = _nemesis(cluster)
    n = len(_events(cluster, "n3"))
    a = nem.start_now(
        parse_fault({"kind": "disk-fsync", "target": "nodes:n3", "params": {"mode": "fail"}})
    )
    assert a is not None and a.observed["shimmed"] == {"n3": True}
    cluster.wait_leader(30)
    # The shim fails fsyncs from after_s (3 s) after n3's start, and n3 syncs only when it
    # has something to make durable: keep writing (the two other nodes still make a quorum).
    deadline = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline:
        if any('"storage_error"' in x for x in _events(cluster, "n3")[n:]):
            break
        _put(cluster, f"f{i}")
        i += 1
        time.sleep(0.2)
    else:
        raise AssertionError("n3 reported no storage error")
    nem.heal()
    assert lines[-1]["observed"]["calls_affected"]["n3"] >= 1  # type: ignore[index]
    assert "RAFTLAB_NEMESIS_FSYNC" not in LocalControl(cluster.dir).environ("n3")
    _put(cluster, "after-fsync")
    assert heal_cluster(LocalControl(cluster.dir)) == []


def test_corrupting_a_stopped_minority_is_detected_and_recorded(cluster: LocalCluster) -> None:
    addrs = cluster.client_addresses()
    for i in range(20):
        put = subprocess.run(
            [sys.executable, "-m", "raft.cli", "client", "--cluster", addrs, "put", f"c{i}", "v"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert put.returncode == 0, put.stderr
    nem, lines = _nemesis(cluster)
    spec = {
        "kind": "disk-corrupt",
        "target": "nodes:n2",
        "params": {"mode": "truncate", "bytes": 5},
    }
    a = nem.start_now(parse_fault(spec))
    assert a is not None
    damaged = a.detail["damaged"]["n2"]
    assert damaged["file"].endswith(".wal") and damaged["bytes"] == 5
    assert Path(damaged["file"]).stat().st_size == damaged["size"] - 5
    nem.heal()
    observed = lines[-1]["observed"]
    outcome = observed["outcome"]["n2"]  # type: ignore[index]
    # The node saw the cut: it refused its data, or its recovery report names the torn tail.
    assert outcome == "repaired" or outcome.startswith("refused"), observed
    if outcome == "repaired":
        assert observed["recovery"]["n2"]["torn_tail"], observed  # type: ignore[index]
    cluster.wait_leader(30)
    with pytest.raises(NotSupportedError, match="not a minority"):
        nem.start_now(parse_fault({"kind": "disk-corrupt", "target": "majority"}))


def test_a_recycled_pid_is_never_signalled(cluster: LocalCluster) -> None:
    """state.json names a pid that is no longer the node (here: a sleeping process of ours):
    kill and pause must leave it alone."""
    decoy = subprocess.Popen(["sleep", "60"])
    try:
        c = LocalControl(cluster.dir)
        state = cluster.read_state()
        real = state["pids"]["n3"]
        state["pids"]["n3"] = decoy.pid
        Path(cluster.state_path).write_text(json.dumps(state))
        assert c.pid("n3") is None
        assert c.signal("n3", "STOP") is None
        c.kill("n3")
        assert decoy.poll() is None and _state(decoy.pid) != "T"
        state = cluster.read_state()
        state["pids"]["n3"] = real
        Path(cluster.state_path).write_text(json.dumps(state))
    finally:
        decoy.kill()
        decoy.wait()
