"""Issue 11 on real processes: a node REMOVED from the configuration (``raft member remove``),
its disk wiped, comes back with the same id and addresses (``raft serve --join``, then ``raft
member add``) and catches up by a snapshot of many chunks whose connection is cut
mid-transfer (the sender's test fault hook, RAFTLAB_TEST_SNAPSTREAM), while clients keep
writing.

What this adds to test_cluster_snapshot_stream.py (a wiped node that stayed a member) and
test_nemesis_membership_local.py (remove/wipe/re-add, no cut stream): the rejoining node is
in no configuration when the stream starts, and the snapshot it receives holds its old
identity or none of it: taken while it was out (it is in neither the voters nor the address
book), or before its removal (it is a voter there, and the log then replays its own removal
before its re-addition). Either way only the snapshot can catch it up (the log no longer
starts at index 1). Checked: the transfer resumed at an offset > 0 after the cut; the node
became a voter with its old addresses; it never campaigned before it was one (not even while
its snapshot said it was a voter) and its term never passed the cluster's; every
acknowledged write (before, while it was out, during the transfer) reads back from the node
itself, once another node is stopped and the rejoined one is needed for every quorum."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from raft_cluster_fixture import (
    BOUND_S,
    events,
    metric_total,
    put_all,
    raft_cli,
    run,
    running_cluster,
    wait_for,
)

from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status
from raft.runtime.snapstream import TEST_FAULT_ENV
from raft.runtime.transport import Address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHUNK = 64 << 10
VALUE_BYTES = 900_000
BIG_KEYS = 5  # ~4.5 MB of state: about 70 chunks
CUT_AFTER = 15
WRITERS = 2


class Writers:
    """Closed-loop writers of unique keys in a thread; each acknowledgement with its time."""

    def __init__(self, addrs: list[Address]) -> None:
        self.addrs = addrs
        self.acked: dict[str, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _writer(self, w: int) -> None:
        async with RaftClient(self.addrs, op_timeout_s=5.0, attempt_timeout_s=1.0) as c:
            i = 0
            while not self.stop.is_set():
                key, value = f"w{w}-{i}", f"v{w}-{i}"
                if (await c.put(key, value)).status is Status.OK:
                    self.acked[key] = (value, time.time())
                i += 1
                await asyncio.sleep(0.03)  # bounded rate: the snapshot must not be outrun

    async def _main(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in range(WRITERS)))

    def grow(self, n: int, what: str) -> None:
        before = len(self.acked)
        wait_for(lambda: len(self.acked) >= before + n, 60.0, f"writes succeeding {what}")

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "writers did not stop"


async def _read_from(node: Address, others: list[Address], keys: list[str]) -> dict[str, Any]:
    """Reads served by ``node`` alone: every leader hint is dialled at ``node`` again, so no
    answer can come from another member's state machine."""
    got: dict[str, Any] = {}
    remap = dict.fromkeys(others, node)
    async with RaftClient([node], op_timeout_s=BOUND_S, address_map=remap) as c:
        for k in keys:
            r = await c.get(k)
            got[k] = r.value if r.status is Status.OK else r.status
    return got


def _snapshot_now(lc: LocalCluster, nodes: list[str]) -> None:
    """``raft snapshot`` on each node: a snapshot of every big key, the log compacted."""
    for n in nodes:
        r = raft_cli("snapshot", "--cluster", str(lc.config().nodes[n].client), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["index"] > 0


def _since(lc: LocalCluster, node: str, t0: float) -> list[dict[str, Any]]:
    return [e for e in events(lc, node) if e["ts"] >= t0]


def _streams_to(lc: LocalCluster, peer: str, t0: float) -> dict[str, list[dict[str, Any]]]:
    """Per sending node: its ``snapshot_stream`` events towards ``peer`` since ``t0``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for n in lc.config().nodes:
        if n == peer:
            continue
        evs = [
            e
            for e in _since(lc, n, t0)
            if e["ev"] == "snapshot_stream" and e.get("peer") == peer and "role" not in e
        ]
        if evs:
            out[n] = evs
    return out


@pytest.mark.parametrize("early", [False, True], ids=["snapshot-while-out", "snapshot-before"])
def test_removed_wiped_node_rejoins_by_a_cut_multi_chunk_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    monkeypatch.setenv(TEST_FAULT_ENV, f"cut_after={CUT_AFTER},chunk_delay_ms=40")
    with running_cluster(
        str(tmp_path / "c"), snapshot_entries=1000, snapshot_chunk_bytes=CHUNK
    ) as lc:
        cfg = lc.config()
        leader = lc.wait_leader(BOUND_S)
        victim = sorted(n for n in cfg.nodes if n != leader)[0]
        mine = cfg.nodes[victim]
        others = [cfg.nodes[n].client for n in sorted(cfg.nodes) if n != victim]
        cluster = ",".join(str(a) for a in others)
        acked = {f"before{i}": f"b{i}" for i in range(10)}
        run(put_all(others, acked))
        big = {f"big{i}": chr(ord("a") + i) * VALUE_BYTES for i in range(BIG_KEYS)}
        if early:  # every member's snapshot names the victim as a voter
            run(put_all(others, big))
            acked.update(big)
            _snapshot_now(lc, sorted(cfg.nodes))

        # -- out: removed from the configuration, stopped, its disk wiped
        r = raft_cli("member", "remove", victim, "--cluster", cluster, "--json")
        assert r.returncode == 0, r.stderr
        assert victim not in json.loads(r.stdout)["voters"]
        lc.stop_node(victim, signal.SIGKILL)
        shutil.rmtree(cfg.node_data_dir(victim))

        # -- while it is out: writes (with early=False, enough state for many chunks, then
        # snapshots that compact the members' logs and name the victim nowhere)
        out = {f"out{i}": f"o{i}" for i in range(20)}
        if not early:
            out.update(big)
        run(put_all(others, out))
        acked.update(out)
        if not early:
            _snapshot_now(lc, sorted(set(cfg.nodes) - {victim}))

        writers = Writers(others)
        writers.thread.start()
        try:
            writers.grow(10, "while the node is out")

            # -- back: same id and addresses, an empty disk, --join, then added
            rejoin_ts = time.time()
            lc.start_node(victim, ("--join",))
            r = raft_cli(
                "member",
                "add",
                victim,
                "--peer",
                str(mine.peer),
                "--client",
                str(mine.client),
                "--http",
                str(mine.http),
                "--cluster",
                cluster,
                "--timeout",
                "55",
                "--json",
            )
            assert r.returncode == 0, (r.stdout, r.stderr)
            view = json.loads(r.stdout)
            assert victim in view["voters"] and not view["joint"], view
            writers.grow(10, "after the node is a voter again")
        finally:
            writers.halt()
        for k, (v, _) in writers.acked.items():
            acked[k] = v

        # -- the transfer: many chunks, cut, resumed at the receiver's offset (not from 0)
        streams = _streams_to(lc, victim, rejoin_ts)
        assert streams, "no snapshot stream to the rejoining node"
        resumed = None
        for sender, evs in streams.items():
            for e in evs:
                if e["action"] == "resume" and e["offset"] > 0:
                    resumed = (sender, e)
        assert resumed is not None, streams
        sender, resume = resumed
        sent = [e for e in streams[sender] if e["index"] == resume["index"]]
        actions = [e["action"] for e in sent]
        assert actions == ["start", "cut", "resume", "done"], actions  # never from 0 again
        cut = sent[1]
        assert resume["total"] > 30 * CHUNK, resume  # many chunks
        assert 0 < cut["offset"] <= resume["offset"] <= CUT_AFTER * CHUNK, (cut, resume)
        assert metric_total(lc, sender, "raft_snapshot_streams_resumed_total") >= 1
        got_side = [
            e
            for e in _since(lc, victim, rejoin_ts)
            if e["ev"] == "snapshot_stream" and e.get("role") == "receiver"
        ]
        assert any(e["action"] == "resume" and e["offset"] == resume["offset"] for e in got_side)
        assert any(e["action"] == "received" and e["index"] == resume["index"] for e in got_side)
        # Clients kept writing through the transfer, and were acknowledged meanwhile.
        t_start, t_done = sent[0]["ts"], sent[-1]["ts"]
        during = [k for k, (_, ts) in writers.acked.items() if t_start < ts < t_done]
        assert during, (t_start, t_done, len(writers.acked))
        print(
            f"stream {sender}->{victim}: {resume['total']:,} bytes, cut at {cut['offset']:,}, "
            f"resumed at {resume['offset']:,}, {t_done - t_start:.1f} s; "
            f"{len(during)} of {len(writers.acked)} writes acknowledged during it"
        )

        # -- only the snapshot could catch it up: the new incarnation installed it and never
        # held the log's first entries
        mine_now = _since(lc, victim, rejoin_ts)
        (installed,) = [
            e["index"] for e in mine_now if e["ev"] == "snapshot" and e.get("action") == "install"
        ]
        assert installed == resume["index"]
        persisted = [e["first"] for e in mine_now if e["ev"] == "persist" and e.get("entries")]
        assert persisted and min(persisted) > installed, persisted[:3]
        # Which history it got: a snapshot from before its removal (it then replays its own
        # removal from the log, and its re-addition right after), or one taken while it was
        # out (it starts in a configuration without itself).
        replayed = [
            e["index"]
            for e in mine_now
            if e["ev"] == "conf" and victim in e.get("voters_outgoing", [])
        ]
        readded = min(
            e["index"] for e in mine_now if e["ev"] == "conf" and victim in e.get("learners", [])
        )
        removed = [e["index"] for e in mine_now if e["ev"] == "removed"]
        if early:
            assert replayed and installed < min(replayed), (installed, replayed)
            assert all(i < readded for i in removed), (removed, readded)  # history only
        else:
            assert replayed == [] and removed == [], (replayed, removed)

        # -- the same identity, cleanly: a member again with its own addresses, and it never
        # campaigned before it was a voter (a wiped node knows no term, no vote)
        r = raft_cli("member", "list", "--cluster", cluster, "--json")
        assert r.returncode == 0, r.stderr
        listed = {m["id"]: m for m in json.loads(r.stdout)["members"]}
        assert listed[victim]["role"] == "voter"
        assert (listed[victim]["peer"], listed[victim]["client"], listed[victim]["http"]) == (
            str(mine.peer),
            str(mine.client),
            str(mine.http),
        )
        voter_at = min(
            e["ts"] for e in mine_now if e["ev"] == "conf" and victim in e.get("voters", [])
        )
        campaigns = [
            e
            for e in mine_now
            if e["ev"] == "role"
            and e.get("role") in ("pre_candidate", "candidate", "leader")
            and e["ts"] < voter_at
        ]
        assert campaigns == [], campaigns  # not even while its snapshot said it was a voter

        # -- the old leader goes: every quorum now needs the rejoined node, and it serves
        # every acknowledged write from its own state machine
        leader = lc.wait_leader(BOUND_S)
        gone = leader if leader != victim else min(set(cfg.nodes) - {victim})
        lc.stop_node(gone, signal.SIGKILL)
        rest = set(cfg.nodes) - {gone}
        new_leader = lc.wait_leader(60.0, among=rest)
        after = {"after": "a"}
        run(put_all([cfg.nodes[n].client for n in sorted(rest)], after))
        acked.update(after)
        elsewhere = [cfg.nodes[n].client for n in cfg.nodes if n != victim]
        got = run(_read_from(mine.client, elsewhere, sorted(acked)))
        wrong = sorted(k for k in acked if got[k] != acked[k])
        assert wrong == [], (len(wrong), wrong[:5], [got[k] for k in wrong[:2]])

        # -- terms stay sane: the two live nodes agree, the rejoined one never ran ahead
        def agreed() -> dict[str, Any] | None:
            sts = lc.statuses()
            live = [sts.get(n) for n in rest]
            return sts if all(live) and len({st["term"] for st in live if st}) == 1 else None

        sts = wait_for(agreed, what="the live nodes agreeing on the term")
        term = sts[new_leader]["term"]
        assert max(e["term"] for e in _since(lc, victim, rejoin_ts)) <= term
        assert sts[victim]["voters"] == sorted(cfg.nodes), sts[victim]
