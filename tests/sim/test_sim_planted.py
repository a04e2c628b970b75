"""Each new capability of the simulator proves itself on a core broken on purpose.

Every test plants one classic Raft bug (a monkeypatched core), runs seeds until the
simulator reports a violation, and checks it is the expected kind. A control run of the
real core on the same seeds stays clean where that is cheap. The seeds needed are printed
(``pytest -s``) and summarised in docs/sim.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from raft.core import Message, MessageType, Role
from raft.core.log import RaftLog
from raft.core.quorum import JointConfig, VoteResult, majority_committed_index
from raft.core.quorum import majority_vote_result as _mvr
from raft.core.raft import Raft
from raft.sim import Drift, Invariant, ReadMode, SimConfig, SimResult, parse_faults, run_seed

MT = MessageType


def _hunt(configs: Iterable[SimConfig], limit: int) -> tuple[int, SimResult]:
    """Run configs until one fails; returns (seeds run, that result)."""
    n = 0
    for cfg in configs:
        n += 1
        r = run_seed(cfg)
        if r.violation is not None:
            print(f"caught after {n} seeds: {r.violation}")
            return n, r
        if n >= limit:
            break
    raise AssertionError(f"no violation in {n} seeds")


def _seeds(**kw: Any) -> Iterable[SimConfig]:
    defaults: dict[str, Any] = {"nodes": 5, "steps": 300}
    defaults.update(kw)
    for seed in range(10_000):
        yield SimConfig(seed=seed, **defaults)


def _expect(r: SimResult, *kinds: Invariant, text: str = "") -> None:
    assert r.violation is not None
    assert r.violation.invariant in kinds, r.violation
    assert text in r.violation.detail, r.violation


# -- stale messages and terms -------------------------------------------------------------
def test_leader_ignoring_a_higher_term_response_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Raft._step

    def broken(self: Raft, m: Message) -> None:
        if self.role is Role.LEADER and m.term > self.term and m.type is MT.APP_RESP:
            return  # a response from a newer term does not depose us
        original(self, m)

    monkeypatch.setattr(Raft, "_step", broken)
    _, r = _hunt(_seeds(pre_vote=False), 40)
    _expect(r, Invariant.CONFORMANCE, Invariant.ELECTION_SAFETY, text="")


def test_append_from_a_lower_term_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Raft._step

    def broken(self: Raft, m: Message) -> None:
        if m.type is MT.APP and 0 < m.term < self.term and self.role is Role.FOLLOWER:
            self._handle_append_entries(m)  # the §5.1 term check is missing
            self._post_step()
            return
        original(self, m)

    monkeypatch.setattr(Raft, "_step", broken)
    _, r = _hunt(_seeds(), 60)
    _expect(
        r,
        Invariant.CONFORMANCE,
        Invariant.LOG_MATCHING,
        Invariant.STATE_MACHINE_SAFETY,
        Invariant.QUORUM,
    )


def test_pre_vote_that_bumps_the_term_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Raft.become_pre_candidate

    def broken(self: Raft) -> None:
        original(self)
        self.term += 1  # the pre-election moves to the term it only asks about

    monkeypatch.setattr(Raft, "become_pre_candidate", broken)
    _, r = _hunt(_seeds(pre_vote=True), 20)
    _expect(r, Invariant.CONFORMANCE, text="pre-vote-term")


def test_truncating_matching_entries_on_a_stale_append_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(
        self: RaftLog, index: int, log_term: int, committed: int, entries: Any
    ) -> int | None:
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        if entries and last_new < self.last_index():
            # A reordered, older AppendEntries cuts the log back to what it carries.
            self.append(list(entries))
        elif entries and self.find_conflict(entries):
            ci = self.find_conflict(entries)
            self.append(list(entries)[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    monkeypatch.setattr(RaftLog, "maybe_append", broken)
    _, r = _hunt(_seeds(faults=parse_faults("reorder,dup,late,drop")), 60)
    _expect(r, Invariant.CONFORMANCE, Invariant.QUORUM, text="")


# -- elections ----------------------------------------------------------------------------
def test_vote_without_the_up_to_date_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    _, r = _hunt(_seeds(pre_vote=False), 80)
    _expect(
        r,
        Invariant.LEADER_COMPLETENESS,
        Invariant.STATE_MACHINE_SAFETY,
        Invariant.LOG_MATCHING,
        Invariant.CONFORMANCE,
        Invariant.LINEARIZABILITY,
    )


# -- joint consensus ----------------------------------------------------------------------
def _membership_seeds() -> Iterable[SimConfig]:
    return _seeds(faults=parse_faults("member,crash,partition,drop"), lincheck=False)


def test_joint_commit_by_one_majority_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: JointConfig, match: Any) -> int:
        return majority_committed_index(self.incoming, match)  # the outgoing half forgotten

    monkeypatch.setattr(JointConfig, "committed_index", broken)
    _, r = _hunt(_membership_seeds(), 80)
    _expect(r, Invariant.QUORUM, text="committed")


def test_joint_election_by_one_majority_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: JointConfig, votes: Any) -> VoteResult:
        return _mvr(self.incoming, votes)

    monkeypatch.setattr(JointConfig, "vote_result", broken)
    _, r = _hunt(_membership_seeds(), 150)
    _expect(r, Invariant.QUORUM, Invariant.ELECTION_SAFETY)


# -- snapshots ----------------------------------------------------------------------------
def test_snapshot_keeping_a_conflicting_entry_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Raft._restore

    def broken(self: Raft, s: Any) -> bool:
        if s.meta.index > self.raft_log.committed and self.raft_log.last_index() >= s.meta.index:
            # "We have an entry there already": the term is not compared, so a conflicting
            # entry at (and after) the snapshot index survives and gets committed.
            self.raft_log.commit_to(s.meta.index)
            return False
        return bool(original(self, s))

    monkeypatch.setattr(Raft, "_restore", broken)
    _, r = _hunt(_seeds(snapshot_every=1, pre_vote=False, check_quorum=False), 80)
    _expect(
        r,
        Invariant.STATE_MACHINE_SAFETY,
        Invariant.LOG_MATCHING,
        Invariant.QUORUM,
        Invariant.CONFORMANCE,
        Invariant.LEADER_COMPLETENESS,
    )


# -- reads --------------------------------------------------------------------------------
def test_lease_read_without_check_quorum_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def lease_always(self: Raft, m: Message) -> None:
        self._response_to_read_index(m, self.raft_log.committed)  # no round, no lease

    monkeypatch.setattr(Raft, "_send_read_index_response", lease_always)
    _, r = _hunt(_seeds(check_quorum=False, faults=parse_faults("partition,crash,pause,drop")), 60)
    _expect(r, Invariant.LINEARIZABILITY)


def test_lease_reads_beyond_the_drift_bound_are_caught() -> None:
    """No bug planted: the real core's lease reads with the lease's clock assumption broken
    (every clock 2-6x fast, a leader cut off by a partition slowed 3-10x at the same time).
    The checker must see the stale reads this causes (seeds 23 and 25 of the first 30)."""
    faults = parse_faults("partition,dup,drop")  # the mode slows a cut-off leader's clock
    _, r = _hunt(_seeds(nodes=3, clients=6, drift=Drift.BEYOND, faults=faults, buggify=False), 40)
    _expect(r, Invariant.LINEARIZABILITY)


# -- liveness -----------------------------------------------------------------------------
def test_a_disruptive_node_is_caught_as_term_inflation(monkeypatch: pytest.MonkeyPatch) -> None:
    original_follower = Raft._step_follower
    original_campaign = Raft._campaign

    def deaf(self: Raft, m: Message) -> None:
        elapsed = self.election_elapsed
        original_follower(self, m)
        if self.id == "n1" and m.type in (MT.HEARTBEAT, MT.APP):
            self.election_elapsed = elapsed  # n1 never counts leader contact

    def hopeless(self: Raft, t: Any) -> None:
        original_campaign(self, t)
        if self.id == "n1":
            # n1's vote requests claim an empty log: it can never win, only disrupt.
            self.msgs = [
                Message(type=m.type, to=m.to, sender=m.sender, term=m.term)
                if m.type is MT.VOTE
                else m
                for m in self.msgs
            ]

    monkeypatch.setattr(Raft, "_step_follower", deaf)
    monkeypatch.setattr(Raft, "_campaign", hopeless)
    _, r = _hunt(
        _seeds(pre_vote=False, check_quorum=False, faults=parse_faults("drop"), lincheck=False),
        20,
    )
    _expect(r, Invariant.TERM_INFLATION, Invariant.LIVENESS)


def test_a_seed_over_its_event_budget_is_a_livelock_with_its_seed() -> None:
    r = run_seed(SimConfig(seed=12, nodes=3, max_events=2000, lincheck=False))
    _expect(r, Invariant.LIVELOCK, text="seed 12 exceeded its event budget 2000")


def _clean(configs: Iterable[SimConfig], n: int) -> Callable[[], None]:
    def run() -> None:
        for k, cfg in enumerate(configs):
            if k >= n:
                return
            r = run_seed(cfg)
            assert r.violation is None, (cfg.seed, str(r.violation))

    return run


def test_controls_real_core_is_clean_on_the_hunting_configs() -> None:
    _clean(_membership_seeds(), 6)()
    _clean(_seeds(snapshot_every=1, pre_vote=False, check_quorum=False), 4)()
    _clean(_seeds(check_quorum=True, read_mode=ReadMode.LEASE, faults=parse_faults("all")), 4)()
