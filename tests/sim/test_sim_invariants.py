"""Each safety checker flags a hand-made violation and passes the matching clean case
(Raft paper Figure 3 properties)."""

from __future__ import annotations

from raft.core import Entry, MemoryStorage, Role, Snapshot, SnapshotMeta
from raft.sim import Invariant, LivenessMonitor, SafetyChecker


def _log(*terms: int) -> MemoryStorage:
    """A log whose entry i+1 has term terms[i]."""
    s = MemoryStorage()
    s.append(
        [Entry(index=i + 1, term=t, data=f"{i + 1}/{t}".encode()) for i, t in enumerate(terms)]
    )
    return s


def _e(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(index=index, term=term, data=f"{index}/{term}".encode() if data is None else data)


# -- Election Safety (§5.2) ---------------------------------------------------------------
def test_election_safety_flags_two_leaders_in_one_term() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 3, Role.LEADER, 0, _log()) is None
    v = c.on_state("n2", 1, 3, Role.LEADER, 0, _log())
    assert v is not None and v.invariant is Invariant.ELECTION_SAFETY
    assert "n1" in v.detail and "n2" in v.detail


def test_election_safety_allows_one_leader_per_term_and_reelection() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 3, Role.LEADER, 0, _log()) is None
    assert c.on_state("n1", 2, 3, Role.LEADER, 0, _log()) is None  # same node, restarted
    assert c.on_state("n2", 1, 4, Role.LEADER, 0, _log()) is None
    assert c.on_state("n3", 1, 4, Role.FOLLOWER, 0, _log()) is None
    assert c.elections == 2


# -- Leader Append-Only (§5.3) ------------------------------------------------------------
def test_leader_append_only_flags_overwrite_by_leader() -> None:
    c = SafetyChecker()
    v = c.on_append("n1", 2, [_e(3, 2)], prev_term=1, overwritten_from=3)
    assert v is not None and v.invariant is Invariant.LEADER_APPEND_ONLY


def test_leader_append_only_allows_follower_truncation_and_leader_appends() -> None:
    c = SafetyChecker()
    assert c.on_append("n1", 2, [_e(1, 1), _e(2, 2)], prev_term=0, overwritten_from=None) is None
    assert c.on_append("n2", None, [_e(1, 1), _e(2, 2)], prev_term=0, overwritten_from=2) is None


def test_leader_installing_a_snapshot_breaks_append_only() -> None:
    c = SafetyChecker()
    snap = Snapshot(meta=SnapshotMeta(index=5, term=2))
    v = c.on_snapshot_installed("n1", 3, snap)
    assert v is not None and v.invariant is Invariant.LEADER_APPEND_ONLY
    assert c.on_snapshot_installed("n2", None, snap) is None


# -- Log Matching (§5.3) ------------------------------------------------------------------
def test_log_matching_flags_same_index_term_different_prefix() -> None:
    c = SafetyChecker()
    assert c.on_append("n1", None, [_e(1, 1), _e(2, 3)], prev_term=0, overwritten_from=None) is None
    v = c.on_append("n2", None, [_e(2, 3)], prev_term=2, overwritten_from=None)
    assert v is not None and v.invariant is Invariant.LOG_MATCHING


def test_log_matching_flags_same_index_term_different_command() -> None:
    c = SafetyChecker()
    assert c.on_append("n1", None, [_e(1, 1, b"x")], prev_term=0, overwritten_from=None) is None
    v = c.on_append("n2", None, [_e(1, 1, b"y")], prev_term=0, overwritten_from=None)
    assert v is not None and v.invariant is Invariant.LOG_MATCHING


def test_log_matching_passes_identical_logs_and_divergent_terms() -> None:
    c = SafetyChecker()
    ents = [_e(1, 1), _e(2, 1), _e(3, 2)]
    assert c.on_append("n1", None, ents, prev_term=0, overwritten_from=None) is None
    assert c.on_append("n2", None, ents[1:], prev_term=1, overwritten_from=None) is None
    # A different term at index 3 is a different entry: allowed (it will be truncated).
    assert c.on_append("n3", None, [_e(3, 3)], prev_term=1, overwritten_from=None) is None
    # Compacted prefix (prev term unknown) is not held against the entry.
    assert c.on_append("n4", None, [_e(3, 2)], prev_term=None, overwritten_from=None) is None


# -- Leader Completeness (§5.4) -----------------------------------------------------------
def test_leader_completeness_flags_leader_missing_committed_entry() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 2, Role.LEADER, 2, _log(1, 2)) is None  # commits (2, t2) in t2
    v = c.on_state("n2", 1, 3, Role.LEADER, 0, _log(1, 1))
    assert v is not None and v.invariant is Invariant.LEADER_COMPLETENESS


def test_leader_completeness_passes_leader_with_all_committed_entries() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 2, Role.LEADER, 2, _log(1, 2)) is None
    assert c.on_state("n2", 1, 3, Role.LEADER, 0, _log(1, 2, 3)) is None


# -- State Machine Safety (§5.4.3) and commit monotonicity --------------------------------
def test_state_machine_safety_flags_different_commits_at_one_index() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 2, Role.FOLLOWER, 2, _log(1, 2)) is None
    v = c.on_state("n2", 1, 3, Role.FOLLOWER, 2, _log(1, 3))
    assert v is not None and v.invariant is Invariant.STATE_MACHINE_SAFETY


def test_state_machine_safety_flags_different_applies_and_gaps() -> None:
    c = SafetyChecker()
    assert c.on_apply("n1", 1, _e(1, 1, b"a")) is None
    v = c.on_apply("n2", 1, _e(1, 1, b"b"))
    assert v is not None and v.invariant is Invariant.STATE_MACHINE_SAFETY
    c2 = SafetyChecker()
    assert c2.on_apply("n1", 1, _e(1, 1)) is None
    gap = c2.on_apply("n1", 1, _e(3, 1))
    assert gap is not None and gap.invariant is Invariant.STATE_MACHINE_SAFETY


def test_state_machine_safety_passes_same_applies_and_restart() -> None:
    c = SafetyChecker()
    for node in ("n1", "n2"):
        assert c.on_apply(node, 1, _e(1, 1)) is None
        assert c.on_apply(node, 1, _e(2, 1)) is None
    c.on_restart("n1", 2, applied=0)  # restart re-applies from the start
    assert c.on_apply("n1", 2, _e(1, 1)) is None
    assert c.on_state("n1", 2, 1, Role.FOLLOWER, 2, _log(1, 1)) is None


def test_commit_index_never_moves_backwards_within_an_incarnation() -> None:
    c = SafetyChecker()
    assert c.on_state("n1", 1, 1, Role.FOLLOWER, 3, _log(1, 1, 1)) is None
    v = c.on_state("n1", 1, 1, Role.FOLLOWER, 2, _log(1, 1, 1))
    assert v is not None and v.invariant is Invariant.COMMIT_MONOTONIC
    # A new incarnation may start lower (commit-only hard state is not fsynced).
    assert c.on_state("n1", 2, 1, Role.FOLLOWER, 1, _log(1, 1, 1)) is None


# -- Liveness -----------------------------------------------------------------------------
def test_liveness_monitor() -> None:
    m = LivenessMonitor(healed_at=100, bound=50)
    assert m.check(120) is None  # before the deadline nothing is due
    v = m.check(150)
    assert v is not None and v.invariant is Invariant.LIVENESS and "leader" in v.detail
    m.leader_seen(90)  # before the heal: does not count
    assert m.leader_at is None
    m.leader_seen(110)
    v = m.check(150)
    assert v is not None and "committed" in v.detail
    m.probe_committed(140)
    assert m.check(150) is None
