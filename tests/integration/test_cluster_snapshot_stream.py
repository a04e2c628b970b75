"""Issue 11 on real processes: a node whose data was wiped (``raft repair --wiped``) catches up
by a snapshot of many chunks, streamed on its own connection; the connection is cut
mid-transfer (the sender's test fault hook, RAFTLAB_TEST_SNAPSTREAM) and the transfer resumes
at the receiver's offset instead of starting over; heartbeats keep flowing meanwhile (no
election: every term is unchanged, and the receiver answers heartbeats during the transfer);
the node ends with every acknowledged key, including those written during the transfer.

Before the stream, the snapshot went as one frame: the cut lost it whole, and nothing
resumed (there are no ``snapshot_stream`` events to find)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from raft_cluster_fixture import (
    BOUND_S,
    events,
    metric_total,
    put_all,
    run,
    running_cluster,
    wait_for,
)

from raft.runtime.client import RaftClient
from raft.runtime.protocol import Status
from raft.runtime.snapstream import TEST_FAULT_ENV

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CHUNK = 64 << 10
VALUE_BYTES = 900_000
BIG_KEYS = 5  # ~4.5 MB of state: about 70 chunks
CUT_AFTER = 15


async def _read(addr: Any, keys: list[str]) -> dict[str, object]:
    got: dict[str, object] = {}
    async with RaftClient([addr], op_timeout_s=BOUND_S) as c:
        for k in keys:
            r = await c.get(k)
            got[k] = r.value if r.status is Status.OK else r.status
    return got


def _stream(lc: Any, node: str, role: str = "") -> list[dict[str, Any]]:
    return [
        e for e in events(lc, node) if e["ev"] == "snapshot_stream" and e.get("role", "") == role
    ]


def test_wiped_node_catches_up_by_a_resumed_multi_chunk_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_FAULT_ENV, f"cut_after={CUT_AFTER},chunk_delay_ms=40")
    with running_cluster(
        str(tmp_path / "c"), snapshot_entries=20, snapshot_chunk_bytes=CHUNK
    ) as lc:
        cfg = lc.config()
        leader = lc.wait_leader(BOUND_S)
        victim = sorted(n for n in cfg.nodes if n != leader)[0]
        addrs = [cfg.nodes[n].client for n in sorted(cfg.nodes) if n != victim]

        lc.stop_node(victim, signal.SIGKILL)
        vdir = cfg.node_data_dir(victim)
        shutil.rmtree(vdir)  # the disk was replaced
        subprocess.run(
            [sys.executable, "-m", "raft.cli", "repair", "--wiped", vdir],
            check=True,
            capture_output=True,
        )
        acked = {f"big{i}": chr(ord("a") + i % 26) * VALUE_BYTES for i in range(BIG_KEYS)}
        acked.update({f"k{i}": f"v{i}" for i in range(30)})
        run(put_all(addrs, acked))
        wait_for(
            lambda: any(
                e["ev"] == "snapshot" and e.get("action") == "create" for e in events(lc, leader)
            ),
            what="the leader's snapshot",
        )

        leader = lc.wait_leader(BOUND_S)  # a busy machine may have elected another meanwhile
        term0 = lc.statuses()[leader]["term"]  # type: ignore[index]
        lc.start_node(victim)
        wait_for(lambda: _stream(lc, leader), 60.0, "the snapshot stream starting")
        during = {f"during{i}": f"d{i}" for i in range(5)}  # writes go on meanwhile
        run(put_all(addrs, during))
        acked.update(during)
        wait_for(
            lambda: any(e["action"] in ("done", "failed") for e in _stream(lc, leader)),
            120.0,
            "the snapshot stream ending",
        )
        wait_for(
            lambda: any(e["ev"] == "recovered" for e in events(lc, victim)),
            60.0,
            f"{victim} recovered",
        )
        got = run(_read(cfg.nodes[victim].client, sorted(acked)))
        assert got == acked, sorted(k for k in acked if got[k] != acked[k])[:5]

        sent = _stream(lc, leader)
        index = sent[0]["index"]
        sent = [e for e in sent if e["index"] == index]  # the first snapshot's transfer
        actions = [e["action"] for e in sent]
        assert actions == ["start", "cut", "resume", "done"], actions  # never from 0 again
        cut, resume = sent[1], sent[2]
        total = resume["total"]
        assert total > 30 * CHUNK, total  # many chunks
        assert 0 < resume["offset"] <= CUT_AFTER * CHUNK, resume  # resumed, not restarted
        assert resume["offset"] >= cut["offset"] > 0
        assert metric_total(lc, leader, "raft_snapshot_streams_resumed_total") >= 1
        # Sent twice: at most what was in flight at the cut (plus any later, newer snapshot).
        later = sum(e["total"] for e in _stream(lc, leader) if e["action"] == "start")
        sent_bytes = metric_total(lc, leader, "raft_snapshot_stream_bytes_sent_total")
        assert sent_bytes <= later + (CUT_AFTER - cut["offset"] // CHUNK) * CHUNK, sent_bytes

        got_side = [e for e in _stream(lc, victim, "receiver") if e["index"] == index]
        assert [e["action"] for e in got_side][-1] == "received"
        assert any(e["action"] == "resume" and e["offset"] == resume["offset"] for e in got_side)
        assert any(
            e["ev"] == "snapshot" and e.get("action") == "install" for e in events(lc, victim)
        )

        # Heartbeats kept flowing: no election anywhere, and the receiver answered heartbeats
        # from the leader on the main connection while the chunks came on the other one.
        terms = {n: st["term"] for n, st in lc.statuses().items() if st}
        assert terms == dict.fromkeys(cfg.nodes, term0), (term0, terms)
        t0, t1 = got_side[0]["ts"], got_side[-1]["ts"]
        # (A heartbeat response answers a heartbeat; 1 in 10 is logged, whatever the peer.)
        beats = [
            e
            for e in events(lc, victim)
            if e["ev"] == "send" and e.get("msg") == "heartbeat_resp" and t0 < e["ts"] < t1
        ]
        assert t1 - t0 > 1.0 and len(beats) >= 2, (t1 - t0, len(beats))
        assert not os.listdir(os.path.join(vdir, "snap-incoming"))  # spool cleaned
