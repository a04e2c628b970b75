"""Snapshots of a big state machine are taken off the event loop (issue 11, found by the
snapshot streams work): with several MB of kv state and a small snapshot interval, every node
snapshots again and again while clients write; the snapshots hold the event loop for a small
part of their time and never for half an election timeout, so the term never changes.

Before the fix the driver serialised the whole state and wrote the file on its event loop
(``_maybe_snapshot``): each snapshot held the loop for as long as it took (the ``snapshot``
event's ``loop_ms`` equalled its ``ms``), heartbeats stopped, followers campaigned or the leader
stepped down (check-quorum), and the term moved (by over a hundred on the loaded development
machine; loop watchdog stalls of up to 2.9 s). The assertions are on what each node recorded
itself (its snapshot events, its term), never on the test's clock."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from typing import Any

import pytest
from raft_cluster_fixture import BOUND_S, client_addrs, events, run, running_cluster

from raft.runtime.client import RaftClient
from raft.runtime.protocol import Status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CLIENTS = 16
SMALL_KEYS_PER_CLIENT = 250  # 4,000 keys of 800 bytes ...
SMALL_VALUE_BYTES = 800
BIG_VALUES = 4  # ... plus 4 x 1 MB: about 7 MB of state
BIG_VALUE_BYTES = 1_000_000
SNAPSHOT_ENTRIES = 1000
"""A snapshot every 1000 entries or 256 kB of applied entry data: a dozen full-state
snapshots on every node while the small writes go on."""
SNAPSHOTS_OF_BIG_STATE_MIN = 3
FILL_BOUND_S = 120.0
"""The writes stop here if not done (the old code, electing again and again, never got
there): the verdict is what the nodes recorded meanwhile."""


def _metric(lc: Any, node: str, name: str) -> float:
    http = lc.config().nodes[node].http
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=BOUND_S) as r:
        text = r.read().decode()
    return max(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + "{"))


async def _writer(addrs: list[Any], c: int) -> None:
    async with RaftClient(addrs, op_timeout_s=120.0) as cl:
        if c < BIG_VALUES:
            resp = await cl.put(f"big{c}", chr(ord("a") + c) * BIG_VALUE_BYTES)
            assert resp.status is Status.OK, resp
        for i in range(SMALL_KEYS_PER_CLIENT):
            resp = await cl.put(f"c{c:02d}-{i:04d}", f"{c}-{i}-" + "v" * SMALL_VALUE_BYTES)
            assert resp.status is Status.OK, resp


def _big_snapshots(lc: Any, node: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events(lc, node)
        if e["ev"] == "snapshot"
        and e.get("action") == "create"
        and e.get("bytes", 0) >= BIG_VALUES * BIG_VALUE_BYTES
    ]


def test_snapshots_of_a_big_state_do_not_stall_the_loop(tmp_path: Any) -> None:
    with running_cluster(str(tmp_path / "c"), snapshot_entries=SNAPSHOT_ENTRIES) as lc:
        cfg = lc.config()
        leader = lc.wait_leader(BOUND_S)
        term0 = lc.statuses()[leader]["term"]  # type: ignore[index]
        election_s = cfg.election_timeout_ticks * cfg.tick_ms / 1000.0

        async def fill() -> None:
            addrs = client_addrs(lc)
            writers = asyncio.gather(*(_writer(addrs, c) for c in range(CLIENTS)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writers, FILL_BOUND_S)

        run(fill())

        terms = {n: st["term"] for n, st in lc.statuses().items() if st}
        stalls = {n: _metric(lc, n, "raft_loop_stall_seconds_max") for n in cfg.nodes}
        print("loop stalls (s):", stalls)
        big = {n: _big_snapshots(lc, n) for n in cfg.nodes}
        # Every node snapshotted the big state several times while the writes went on ...
        assert all(len(b) >= SNAPSHOTS_OF_BIG_STATE_MIN for b in big.values()), {
            n: len(b) for n, b in big.items()
        }
        # ... with the work done off the loop: the loop's share is a small part of each, and
        # none held it for half an election timeout (before: all of it, 0.4 to 3 s each) ...
        held = {n: sum(e["loop_ms"] for e in b) for n, b in big.items()}
        took = {n: sum(e["ms"] for e in b) for n, b in big.items()}
        assert all(held[n] * 4 < took[n] for n in cfg.nodes), (held, took)
        longest = max(e["loop_ms"] for b in big.values() for e in b)
        assert longest < election_s * 1000.0 / 2, longest
        # ... so nobody campaigned. The loop watchdog's longest stall also counts what a
        # loaded machine's scheduler costs (on a 2-core machine at load 70 it reached 1.2 s
        # with no snapshot on the loop): the terms are compared only where the machine itself
        # left every loop responsive; the snapshot's own loop share is asserted above always.
        if max(stalls.values()) < election_s / 2:
            assert terms == dict.fromkeys(cfg.nodes, term0), (term0, terms, stalls)
        else:
            print(f"machine stalled the loops ({stalls}); term check not meaningful: {terms}")
