"""The membership fault on a real local cluster (``raft cluster up``): the leader removes
itself, is wiped and rejoins with ``raft serve --join`` while writes go on; a fault cut short
by a crashed controller (the node removed and wiped, never re-added) is repaired by
``heal_cluster`` (``raftlab heal``). The writes acknowledged before, during and after are all
read back, from every node once it caught up."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, running_cluster, wait_for

from deploy.nemesis import LocalControl, Nemesis, heal_cluster, leftovers, parse_fault
from deploy.nemesis import membership as m
from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(str(tmp_path_factory.mktemp("memfault") / "c"), 3) as c:
        yield c


def put(lc: LocalCluster, key: str, value: str) -> None:
    async def go() -> Any:
        async with RaftClient(client_addrs(lc), client_id=f"t-{key}", op_timeout_s=BOUND_S) as c:
            return await c.put(key, value)

    resp = asyncio.run(go())
    assert resp.status is Status.OK, resp


def get(lc: LocalCluster, key: str) -> Any:
    async def go() -> Any:
        async with RaftClient(client_addrs(lc), op_timeout_s=BOUND_S) as c:
            return await c.get(key)

    resp = asyncio.run(go())
    assert resp.status is Status.OK, resp
    return resp.value


def caught_up(lc: LocalCluster) -> bool:
    sts = lc.statuses()
    commits = [st["commit"] for st in sts.values() if st]
    return len(commits) == 3 and all(st and st["applied"] >= max(commits) for st in sts.values())


def test_the_leader_is_removed_wiped_and_rejoins(lc: LocalCluster, tmp_path: Path) -> None:
    control = LocalControl(lc.dir)
    lines: list[dict[str, Any]] = []
    nem = Nemesis(control, lines.append, random.Random(4))
    put(lc, "before", "1")
    leader = lc.wait_leader(BOUND_S)
    active = nem.start_now(parse_fault({"kind": "membership", "target": "leader"}))
    assert active is not None and active.targets == [leader]
    obs = active.observed
    assert obs["voters_after_remove"] == sorted(set(control.nodes()) - {leader})
    assert obs["wiped"] == {leader: control.data_dir(leader)}
    assert control.pid(leader) is None and not Path(control.data_dir(leader)).exists()
    put(lc, "during", "2")  # two voters of two
    nem.stop_now(active)
    start, stop = lines
    assert (start["fault"], start["action"], stop["action"]) == ("membership", "start", "stop")
    assert stop["observed"]["restored"] is True
    assert sorted(stop["observed"]["voters"]) == sorted(control.nodes())
    put(lc, "after", "3")
    assert [get(lc, k) for k in ("before", "during", "after")] == ["1", "2", "3"]
    wait_for(lambda: caught_up(lc), what="every node applied the leader's commit")
    assert leftovers(control) == {n: [] for n in control.nodes()}


def test_heal_cluster_readds_a_node_a_crashed_controller_left_out(lc: LocalCluster) -> None:
    """The break ran (removed, stopped, wiped), the controller died before the heal: a plain
    start of the wiped node would bootstrap a cluster of its own; heal_cluster starts it with
    --join and adds it back."""
    control = LocalControl(lc.dir)
    nem = Nemesis(control, lambda _l: None, random.Random(5))
    victim = next(n for n in control.nodes() if n != lc.wait_leader(BOUND_S))
    active = nem.start_now(parse_fault({"kind": "membership", "target": f"nodes:{victim}"}))
    assert active is not None  # ... and never healed by this nemesis
    assert leftovers(control)[victim] == [
        "node not running",
        "not a voter of the configuration in effect",
    ]
    done = heal_cluster(control)
    assert f"{victim}: started the wiped node with --join" in done
    assert f"membership: add {victim}" in done
    assert m.missing_voters(control) == []
    put(lc, "healed", "4")
    assert get(lc, "healed") == "4"
    wait_for(lambda: caught_up(lc), what="every node applied the leader's commit")
    assert heal_cluster(control) == []  # idempotent
