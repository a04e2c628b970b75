"""The simulator must catch deliberately broken Raft, each with the right invariant.

(a) a node that forgets its vote on restart -> Election Safety (§5.2: one vote per term,
    persisted); (b) a leader that commits an earlier-term entry by counting replicas ->
    Leader Completeness / State Machine Safety (§5.4.2, Figure 8); (c) a follower that does not
    truncate a conflicting suffix -> Log Matching (Figure 2 AppendEntries step 3); (d) disk
    faults whose loss storage never reports (protocol-aware recovery off: a node that lost
    acknowledged entries votes at once) -> Leader Completeness (issue 10 §1).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from raft.core import Entry, MessageType
from raft.core.log import RaftLog
from raft.machines import codec
from raft.sim import (
    ForgetfulVoteDisk,
    Invariant,
    SimConfig,
    SimDisk,
    UnreportedLossDisk,
    World,
    parse_faults,
    run_seed,
)
from raft.sim.world import DiskFactory, Script

SEEDS_MAX = 40


def _first_violation(
    configs: Sequence[SimConfig], disk_factory: DiskFactory
) -> tuple[int, Invariant] | None:
    for cfg in configs:
        r = run_seed(cfg, disk_factory=disk_factory)
        if r.violation is not None:
            return cfg.seed, r.violation.invariant
    return None


def _busy_configs(faults: str) -> list[SimConfig]:
    """Three nodes, faults every 1-12 ticks lasting 1-12 ticks, no linearizability check."""
    return [
        SimConfig(
            seed=s,
            nodes=3,
            faults=parse_faults(faults),
            steps=300,
            lincheck=False,
            fault_gap_ticks=(1, 12),
            fault_duration_ticks=(1, 12),
        )
        for s in range(SEEDS_MAX)
    ]


def test_a_forgotten_vote_is_caught_as_election_safety() -> None:
    configs = _busy_configs("crash")
    found = _first_violation(configs, disk_factory=ForgetfulVoteDisk)
    assert found is not None, f"no violation in {SEEDS_MAX} seeds"
    assert found[1] is Invariant.ELECTION_SAFETY
    # Control: the same seeds with a disk that keeps the vote are clean.
    assert _first_violation(configs[: found[0] + 1], disk_factory=SimDisk) is None


def _broken_maybe_commit(self: RaftLog, max_index: int, term: int) -> bool:
    # Commits whatever a quorum holds, whatever its term: the §5.4.2 check is gone.
    if max_index > self.committed:
        self.commit_to(max_index)
        return True
    return False


def _figure8_script() -> Script:
    """Figure 8 of the Raft paper on five nodes, made deterministic with aimed losses:
    (a) n1 leads term 1 and replicates entry 2 only to n2; (b) n5 leads term 2 with n3, n4
    and appends its own entry 2, which reaches nobody; (c) n1 leads term 3 and brings its
    entry 2 to n3 and n4 one entry per message, while its term-3 entries are lost; a
    correct leader must not commit entry 2 now; (d) n1 dies, n5 wins term 4 with votes from
    nodes whose last entry is n1's old entry 2, and overwrites it."""

    def isolate_old_leader(w: World) -> None:
        w.network.partition(["n1", "n2"], ["n3", "n4", "n5"])
        w.propose("n1", codec.encode_command("write", None, 1))

    def n5_wins_but_is_not_heard(w: World) -> None:
        w.crash("n1")
        w.message_filter = lambda m: m.sender == "n5" and m.type is MessageType.APP
        w.campaign("n5")

    def n5_dies(w: World) -> None:
        w.crash("n5")
        w.message_filter = None

    def n1_returns(w: World) -> None:
        w.network.heal_links()
        w.network.partition(["n5"], ["n1", "n2", "n3", "n4"])
        w.restart("n1")

    def n1_campaigns_losing_its_new_entries(w: World) -> None:
        w.message_filter = lambda m: (
            m.sender == "n1"
            and m.type is MessageType.APP
            and any(e.term >= 3 for e in m.entries)
            and w.last_index(m.to) >= 2
        )
        w.campaign("n1")

    def n1_dies(w: World) -> None:
        w.crash("n1")
        w.message_filter = None

    def n5_returns(w: World) -> None:
        w.network.heal_links()
        w.network.partition(["n1"], ["n2", "n3", "n4", "n5"])
        w.restart("n5")

    return [
        (1, lambda w: w.campaign("n1")),
        (5, isolate_old_leader),
        (8, n5_wins_but_is_not_heard),
        (12, n5_dies),
        (13, n1_returns),
        (14, n1_campaigns_losing_its_new_entries),  # loses: term 2 votes already cast
        (15.5, lambda w: w.campaign("n1")),  # wins term 3
        (18, n1_dies),
        (19, n5_returns),
        (20, lambda w: w.campaign("n5")),  # loses: term 3 votes already cast
        (21.5, lambda w: w.campaign("n5")),  # wins term 4
    ]


def _figure8_config() -> SimConfig:
    return SimConfig(
        seed=1,
        nodes=5,
        faults=frozenset(),
        steps=400,
        clients=0,
        election_timeout_ticks=50,
        liveness_bound_ticks=200,
        max_msg_bytes=1,
        pre_vote=False,
        check_quorum=False,
        lincheck=False,
    )


def test_b_figure8_real_core_is_safe() -> None:
    r = run_seed(_figure8_config(), script=_figure8_script())
    assert r.violation is None, r.violation
    assert r.commits >= 2


def test_b_commit_by_counting_replicas_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_commit", _broken_maybe_commit)
    r = run_seed(_figure8_config(), script=_figure8_script())
    assert r.violation is not None
    assert r.violation.invariant in (
        Invariant.LEADER_COMPLETENESS,
        Invariant.STATE_MACHINE_SAFETY,
    ), r.violation


def _broken_find_conflict(self: RaftLog, entries: Sequence[Entry]) -> int:
    # Only entries past our last index count as new; a conflicting suffix is kept.
    for e in entries:
        if e.index > self.last_index():
            return e.index
    return 0


def test_c_kept_conflicting_suffix_is_caught_as_log_matching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs = [SimConfig(seed=seed, nodes=5, lincheck=False) for seed in range(SEEDS_MAX)]
    assert _first_violation(configs[:3], disk_factory=SimDisk) is None  # control: real core
    monkeypatch.setattr(RaftLog, "find_conflict", _broken_find_conflict)
    seen: list[Invariant] = []
    for cfg in configs:
        r = run_seed(cfg)
        if r.violation is not None:
            seen.append(r.violation.invariant)
            if r.violation.invariant is Invariant.LOG_MATCHING:
                break
    assert Invariant.LOG_MATCHING in seen, seen
    # Other faces of the same bug: the stale suffix gets committed, or a leader counts an
    # acknowledgement from a follower that holds another entry there (quorum check).
    assert set(seen) <= {
        Invariant.LOG_MATCHING,
        Invariant.STATE_MACHINE_SAFETY,
        Invariant.QUORUM,
    }, seen


def test_core_exception_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def exploding_maybe_commit(self: RaftLog, max_index: int, term: int) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(RaftLog, "maybe_commit", exploding_maybe_commit)
    r = run_seed(SimConfig(seed=2, nodes=3, lincheck=False))
    assert r.violation is not None
    assert r.violation.invariant is Invariant.CORE_ERROR
    assert "RuntimeError: boom" in r.violation.detail
    assert r.violation.node in {"n1", "n2", "n3"}


def test_an_unreported_disk_loss_is_caught_as_leader_completeness() -> None:
    configs = _busy_configs("crash,disk,partition")
    found = _first_violation(configs, disk_factory=UnreportedLossDisk)
    assert found is not None, f"no violation in {SEEDS_MAX} seeds"
    assert found[1] in (Invariant.LEADER_COMPLETENESS, Invariant.STATE_MACHINE_SAFETY)
    # Control: the same seeds with the loss reported (the node recovers first) are clean.
    assert _first_violation(configs[: found[0] + 1], disk_factory=SimDisk) is None
