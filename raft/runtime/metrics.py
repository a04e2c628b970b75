"""Counters, gauges and a latency histogram rendered as Prometheus text (exposition 0.0.4)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self, name: str, labels: str) -> list[str]:
        out = []
        acc = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            acc += count
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {acc}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


@dataclass(slots=True)
class Metrics:
    proposals_total: int = 0
    proposals_failed_total: int = 0
    elections_total: int = 0
    applied_entries_total: int = 0
    client_requests_total: int = 0
    peer_refused_total: int = 0
    fsyncs_total: int = 0
    messages_sent_total: int = 0
    messages_received_total: int = 0
    snapshot_stream_bytes_sent_total: int = 0
    snapshot_stream_bytes_received_total: int = 0
    snapshot_streams_resumed_total: int = 0
    snapshot_streams_rejected_total: int = 0
    loop_stall_seconds_max: float = 0.0
    """Longest time the node's event loop was held by something (late wake-up of the loop
    watchdog, raft/runtime/node.py): a stall near the election timeout costs an election."""
    commit_latency: Histogram = field(default_factory=Histogram)


ROLE_CODES = {"follower": 0, "pre_candidate": 1, "candidate": 2, "leader": 3}


def render(
    metrics: Metrics,
    node: str,
    cluster: str,
    term: int,
    role: str,
    commit: int,
    applied: int,
    last_index: int,
) -> str:
    labels = f'node="{node}",cluster="{cluster}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{{{labels}}} {value}")

    metric("raft_term", "gauge", "Current Raft term.", term)
    metric(
        "raft_role",
        "gauge",
        "Role: 0 follower, 1 pre_candidate, 2 candidate, 3 leader.",
        ROLE_CODES.get(role, -1),
    )
    metric("raft_commit_index", "gauge", "Highest committed log index.", commit)
    metric("raft_applied_index", "gauge", "Highest applied log index.", applied)
    metric("raft_last_index", "gauge", "Last index in the local log.", last_index)
    metric(
        "raft_proposals_total",
        "counter",
        "Proposals accepted by the core.",
        metrics.proposals_total,
    )
    metric(
        "raft_proposals_failed_total",
        "counter",
        "Proposals refused (not leader, dropped, storage failure).",
        metrics.proposals_failed_total,
    )
    metric(
        "raft_elections_total", "counter", "Elections this node started.", metrics.elections_total
    )
    metric(
        "raft_applied_entries_total",
        "counter",
        "Entries applied to the state machine.",
        metrics.applied_entries_total,
    )
    metric(
        "raft_client_requests_total",
        "counter",
        "Client requests answered.",
        metrics.client_requests_total,
    )
    metric(
        "raft_peer_refused_total",
        "counter",
        "Peer connections refused.",
        metrics.peer_refused_total,
    )
    metric("raft_fsyncs_total", "counter", "Storage syncs.", metrics.fsyncs_total)
    metric(
        "raft_messages_sent_total",
        "counter",
        "Messages handed to the transport.",
        metrics.messages_sent_total,
    )
    metric(
        "raft_messages_received_total",
        "counter",
        "Messages received from peers.",
        metrics.messages_received_total,
    )
    for field_name, help_text in (
        ("snapshot_stream_bytes_sent_total", "Snapshot bytes sent in chunks."),
        ("snapshot_stream_bytes_received_total", "Snapshot bytes received in chunks."),
        ("snapshot_streams_resumed_total", "Snapshot transfers resumed at an offset > 0."),
        ("snapshot_streams_rejected_total", "Received snapshots refused (checksum)."),
    ):
        metric(f"raft_{field_name}", "counter", help_text, getattr(metrics, field_name))
    metric(
        "raft_loop_stall_seconds_max",
        "gauge",
        "Longest event loop stall since start (seconds).",
        round(metrics.loop_stall_seconds_max, 6),
    )
    name = "raft_commit_latency_seconds"
    lines.append(f"# HELP {name} Leader: time from proposal to apply.")
    lines.append(f"# TYPE {name} histogram")
    lines.extend(metrics.commit_latency.render(name, labels))
    return "\n".join(lines) + "\n"
