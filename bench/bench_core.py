"""raft.core throughput: how many proposals per second the sans-IO core commits when it is
the only cost (in-memory storage, messages handed over in-process, no fsync, no network).

Modes, side by side in one run: one proposal per round trip (propose, then drive every Ready
and message until the cluster is quiet) and batches of 64 / 256 proposals per round trip, on
3 and 5 voters. The figure bounds what the core adds to a real node's latency and CPU; the
runtime and storage benchmarks measure the rest. Writes ``bench/results/core.md``.
``python -m bench core``.
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

from raft.core import Config, MemoryStorage, Message, RawNode, Role

TIME_PER_MODE_S = 2.0
MAX_ROUNDS = 100_000
PAYLOAD = b"x" * 100
RESULTS = Path(__file__).parent / "results" / "core.md"


class Cluster:
    """Minimal in-process driver: persist, send, apply, advance (Ready's order)."""

    def __init__(self, n: int) -> None:
        ids = tuple(f"n{i}" for i in range(1, n + 1))
        self.storages = {i: MemoryStorage() for i in ids}
        self.nodes = {
            i: RawNode(
                Config(id=i, voters=ids, max_inflight_msgs=1024), self.storages[i], random.Random(k)
            )
            for k, i in enumerate(ids)
        }
        self.queue: list[Message] = []
        self.messages = 0
        self.applied = 0

    def drive(self) -> None:
        for _ in range(10_000):
            busy = False
            for nid, node in self.nodes.items():
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                st = self.storages[nid]
                self.queue.extend(rd.messages)
                if rd.entries:
                    st.append(list(rd.entries))
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                self.queue.extend(rd.persisted_messages)
                if nid == "n1":
                    self.applied += len(rd.committed_entries)
                node.advance(rd)
            msgs, self.queue = self.queue, []
            self.messages += len(msgs)
            for m in msgs:
                self.nodes[m.to].step(m)
                busy = True
            if not busy:
                return
        raise RuntimeError("cluster did not go quiet")


@dataclass(frozen=True, slots=True)
class Row:
    voters: int
    batch: int
    proposals: int
    seconds: float
    messages: int

    @property
    def rate(self) -> float:
        return self.proposals / self.seconds


def run_mode(voters: int, batch: int) -> Row:
    c = Cluster(voters)
    c.nodes["n1"].campaign()
    c.drive()
    assert c.nodes["n1"].status().role == Role.LEADER
    c.applied = 0
    c.messages = 0
    leader = c.nodes["n1"]
    start = time.perf_counter()
    proposals = 0
    for _ in range(MAX_ROUNDS):
        for _ in range(batch):
            leader.propose(PAYLOAD)
        proposals += batch
        c.drive()
        if time.perf_counter() - start >= TIME_PER_MODE_S:
            break
    seconds = time.perf_counter() - start
    assert c.applied >= proposals, (c.applied, proposals)
    return Row(voters, batch, proposals, seconds, c.messages)


def main() -> None:
    rows = [run_mode(v, b) for v in (3, 5) for b in (1, 64, 256)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    lines = [
        "# raft.core: committed proposals per second, core only",
        "",
        f"Written by `python -m bench core` on {stamp} UTC.",
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end.",
        f"{len(PAYLOAD)}-byte proposals, about {TIME_PER_MODE_S:.0f} s per mode; all nodes in "
        "one process with MemoryStorage; a round trip drives every Ready and message until the "
        "cluster is quiet (the proposals are then committed and applied on the leader).",
        "",
        "| voters | proposals per round trip | proposals | committed/s | messages per proposal |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.voters} | {r.batch} | {r.proposals:,} | {r.rate:,.0f} | "
            f"{r.messages / r.proposals:.2f} |"
        )
    lines += [
        "",
        "No ticks run, so there are no heartbeats. Proposals made between two Readys leave "
        "as one append per follower (up to max_msg_bytes), and a commit advance is announced "
        "once per Ready, so a round trip costs about 4 messages per follower whatever the "
        "batch size: append, acknowledgement, commit announcement, acknowledgement.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
