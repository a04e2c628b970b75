"""Raft invariants from logs: injected bugs are flagged with the right nodes, term, index and
log lines; clean logs pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.analysis.events import find_event_files, load_event_logs
from deploy.analysis.invariants import Invariant, InvariantReport, check_invariants
from deploy.analysis.merge import merge
from deploy.analysis.synthetic import SyntheticCluster, standard_run


def _check(run_dir: Path) -> InvariantReport:
    logs = load_event_logs(find_event_files(run_dir), run_dir)
    assert not logs.problems
    return check_invariants([m.event for m in merge(logs).events])


def _only(rep: InvariantReport, inv: Invariant) -> list[Any]:
    assert set(rep.violation_counts) == {inv.value}, rep.violation_counts
    return [v for v in rep.violations if v.invariant is inv]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_faulty_runs_pass(tmp_path: Path, seed: int) -> None:
    rep = _check(standard_run(tmp_path, seed=seed, offsets={"n2": 0.8}).write_run(tmp_path))
    assert rep.valid, [str(v) for v in rep.violations]
    assert rep.leaders_per_term == {1: ["n1"], 2: ["n2"], 3: ["n3"], 4: ["n1"]}
    assert rep.elections == 4
    assert rep.max_commit > 100
    assert rep.leader_checks_skipped == 0


def test_double_leader_is_flagged_with_term_nodes_and_lines(tmp_path: Path) -> None:
    standard_run(tmp_path, bug="double_leader")
    (v,) = _only(_check(tmp_path), Invariant.ELECTION_SAFETY)
    assert v.term == 2
    assert v.nodes == ("n2", "n3")
    files = sorted(s.file for s in v.sources)
    assert files == ["nodes/n2/events.jsonl", "nodes/n3/events.jsonl"]
    for s in v.sources:
        line = (tmp_path / s.file).read_text().splitlines()[s.line - 1]
        assert json.loads(line)["role"] == "leader"


def test_divergent_apply_is_flagged_at_the_index(tmp_path: Path) -> None:
    c = standard_run(tmp_path, bug="diverge")
    (bad,) = [i for (n, i) in c.corrupt if n == "n3"]
    rep = _check(tmp_path)
    assert set(rep.violation_counts) == {"state_machine_safety", "applied_by_quorum"}
    (v,) = [v for v in rep.violations if v.invariant is Invariant.STATE_MACHINE_SAFETY]
    assert v.index == bad
    assert v.nodes == ("n1", "n2", "n3")
    assert "n3=(term 1, " in v.message
    # n3's entry at that index is one nobody persisted: it was never committed by a quorum
    (q,) = [v for v in rep.violations if v.invariant is Invariant.APPLIED_BY_QUORUM]
    assert q.index == bad and q.nodes == ("n3",)


def test_commit_regression_is_flagged(tmp_path: Path) -> None:
    standard_run(tmp_path, bug="commit_regression")
    (v,) = _only(_check(tmp_path), Invariant.COMMIT_MONOTONIC)
    assert v.nodes == ("n1",)
    assert len(v.sources) == 2 and v.sources[0].line < v.sources[1].line


def test_apply_gap_is_flagged(tmp_path: Path) -> None:
    standard_run(tmp_path, bug="apply_gap")
    rep = _check(tmp_path)
    (v,) = [v for v in rep.violations if v.invariant is Invariant.APPLIED_PREFIX]
    assert v.nodes == ("n2",)
    assert "gap" in v.message


def test_restart_resets_commit_and_applied_tracking(tmp_path: Path) -> None:
    # Killing and restarting re-applies from 1 with a lower commit than before the crash:
    # legal, because it is a new process run.
    c = SyntheticCluster(3, seed=4)
    c.boot()
    c.elect("n1")
    c.write(10)
    c.kill("n2")
    c.write(5)
    c.restart("n2")
    c.write(5)
    rep = _check(c.write_run(tmp_path))
    assert rep.valid, [str(v) for v in rep.violations]


class _Log:
    """Hand-written events for one node."""

    def __init__(self, root: Path, node: str) -> None:
        self.path = root / "nodes" / node / "events.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.t = 100.0
        self.lines: list[str] = []

    def ev(self, ev: str, term: int, **kw: Any) -> _Log:
        self.t += 0.01
        self.lines.append(
            json.dumps({"ts": self.t, "node": self.node, "term": term, "ev": ev, **kw})
        )
        self.path.write_text("\n".join(self.lines) + "\n")
        return self


def _start(log: _Log, term: int = 0, last: int = 0) -> _Log:
    return log.ev("start", term, v=1, commit=0, applied=0, last_index=last, last_term=0)


def test_leader_missing_committed_entries_breaks_leader_completeness(tmp_path: Path) -> None:
    ents = [[1, 1, "aa"], [2, 1, "bb"], [3, 1, "cc"]]
    n1 = _start(_Log(tmp_path, "n1")).ev("role", 1, role="leader", leader="n1")
    n1.ev("persist", 1, first=1, last=3, entries=ents).ev("commit", 1, index=3, eterm=1)
    n2 = _start(_Log(tmp_path, "n2")).ev("persist", 1, first=1, last=3, entries=ents)
    n2.ev("commit", 1, index=3, eterm=1)
    n3 = _start(_Log(tmp_path, "n3")).ev("persist", 1, first=1, last=1, entries=ents[:1])
    n3.ev("role", 2, role="leader", leader="n3")
    (v,) = _only(_check(tmp_path), Invariant.LEADER_COMPLETENESS)
    assert (v.term, v.index) == (2, 2)
    assert v.nodes[0] == "n3"
    assert "2..3" in v.message
    assert v.sources[0].file == "nodes/n3/events.jsonl"


def test_leader_with_a_conflicting_entry_breaks_leader_completeness(tmp_path: Path) -> None:
    ents = [[1, 1, "aa"], [2, 1, "bb"]]
    n1 = _start(_Log(tmp_path, "n1")).ev("role", 1, role="leader", leader="n1")
    n1.ev("persist", 1, first=1, last=2, entries=ents).ev("commit", 1, index=2, eterm=1)
    n2 = _start(_Log(tmp_path, "n2")).ev("persist", 1, first=1, last=2, entries=ents)
    n2.ev("commit", 1, index=2, eterm=1)
    n3 = _start(_Log(tmp_path, "n3"))
    n3.ev("persist", 1, first=1, last=2, entries=[[1, 1, "aa"], [2, 1, "zz"]])
    n3.ev("role", 3, role="leader", leader="n3")
    (v,) = _only(_check(tmp_path), Invariant.LEADER_COMPLETENESS)
    assert (v.term, v.index, v.nodes[0]) == (3, 2, "n3")


def test_leader_elected_before_a_later_commit_is_not_blamed(tmp_path: Path) -> None:
    # Entry 2 is first committed in term 3, by n3 itself: nothing to demand at election.
    n3 = _start(_Log(tmp_path, "n3")).ev("role", 3, role="leader", leader="n3")
    n3.ev("persist", 3, first=1, last=2, entries=[[1, 3, "aa"], [2, 3, "bb"]])
    n3.ev("commit", 3, index=2, eterm=3)
    assert _check(tmp_path).valid


def test_different_committed_entries_and_truncating_committed_break_log_matching(
    tmp_path: Path,
) -> None:
    n1 = _start(_Log(tmp_path, "n1")).ev(
        "persist", 1, first=1, last=2, entries=[[1, 1, "a"], [2, 1, "b"]]
    )
    n1.ev("commit", 1, index=2, eterm=1)
    n2 = _start(_Log(tmp_path, "n2")).ev(
        "persist", 1, first=1, last=2, entries=[[1, 1, "a"], [2, 2, "x"]]
    )
    n2.ev("commit", 2, index=2, eterm=2)
    n2.ev("truncate", 2, **{"from": 1})
    rep = _check(tmp_path)
    assert set(rep.violation_counts) == {"log_matching"}
    by_index = {(v.index, v.nodes) for v in rep.violations}
    assert (2, ("n1", "n2")) in by_index
    assert (1, ("n2",)) in by_index  # the truncation at or below commit


def test_snapshot_install_sets_applied_base(tmp_path: Path) -> None:
    n1 = _start(_Log(tmp_path, "n1"))
    n1.ev("snapshot", 1, action="install", index=10, sterm=1)
    n1.ev("persist", 1, first=11, last=11, entries=[[11, 1, "k"]]).ev(
        "commit", 1, index=11, eterm=1
    )
    n1.ev("apply", 1, entries=[[11, 1, "k", "r"]])
    assert _check(tmp_path).valid


def test_replay_after_restart_with_a_different_result_is_flagged(tmp_path: Path) -> None:
    n1 = _start(_Log(tmp_path, "n1")).ev(
        "persist", 1, first=1, last=2, entries=[[1, 1, "a"], [2, 1, "b"]]
    )
    n1.ev("commit", 1, index=2, eterm=1).ev(
        "apply", 1, entries=[[1, 1, "a", "r1"], [2, 1, "b", "r2"]]
    )
    _start(n1, 1, last=2).ev("commit", 1, index=2, eterm=1)
    n1.ev("apply", 1, entries=[[1, 1, "a", "r1"], [2, 1, "b", "XX"]])  # non-deterministic replay
    (v,) = _only(_check(tmp_path), Invariant.STATE_MACHINE_SAFETY)
    assert (v.nodes, v.index) == (("n1",), 2)
    assert "twice differently" in v.message and [s.line for s in v.sources] == [4, 7]


def test_apply_before_commit_on_doctored_run_breaks_applied_within_commit(
    tmp_path: Path,
) -> None:
    standard_run(tmp_path, seed=1)
    path = tmp_path / "nodes" / "n2" / "events.jsonl"
    lines = path.read_text().splitlines()
    i = next(
        i
        for i in range(len(lines) - 1)
        if json.loads(lines[i])["ev"] == "commit" and json.loads(lines[i + 1])["ev"] == "apply"
    )
    lines[i], lines[i + 1] = lines[i + 1], lines[i]  # apply logged before its commit
    path.write_text("\n".join(lines) + "\n")
    (v,) = _only(_check(tmp_path), Invariant.APPLIED_WITHIN_COMMIT)
    assert v.nodes == ("n2",)
    # the node's last commit record before it, then the apply (now on 1-based line i + 1)
    assert v.sources[0].line < i + 1 and v.sources[-1].line == i + 1


def test_applying_an_entry_no_quorum_persisted_breaks_applied_by_quorum(tmp_path: Path) -> None:
    # n1 and n3 stopped cleanly (their records are complete) holding index 1 only.
    for name in ("n1", "n3"):
        _start(_Log(tmp_path, name)).ev("persist", 1, first=1, last=1, entries=[[1, 1, "a"]]).ev(
            "stop", 1, reason="signal"
        )
    n2 = _start(_Log(tmp_path, "n2")).ev(
        "persist", 2, first=1, last=2, entries=[[1, 1, "a"], [2, 2, "z"]]
    )
    n2.ev("commit", 2, index=2, eterm=2).ev(
        "apply", 2, entries=[[1, 1, "a", "r"], [2, 2, "z", "r"]]
    )
    (v,) = _only(_check(tmp_path), Invariant.APPLIED_BY_QUORUM)
    assert (v.nodes, v.index, v.term) == (("n2",), 2, 2)
    assert "only n2 persisted it; a quorum is 2 of 3" in v.message


def test_entry_older_than_the_records_counts_as_possibly_held(tmp_path: Path) -> None:
    # n1 and n3 started with logs reaching index 5: they may hold index 3 unseen.
    for name in ("n1", "n3"):
        _start(_Log(tmp_path, name), 1, last=5)
    n2 = _start(_Log(tmp_path, "n2"), 1, last=2)
    n2.ev("persist", 1, first=3, last=3, entries=[[3, 1, "c"]]).ev("commit", 1, index=3, eterm=1)
    n2.ev("apply", 1, entries=[[3, 1, "c", "r"]])
    rep = _check(tmp_path)
    assert "applied_by_quorum" not in rep.violation_counts, rep.violation_counts


def test_a_log_cut_short_may_have_lost_its_last_persist_events(tmp_path: Path) -> None:
    """Event logs are flushed periodically: a node killed (or cut by the analysis window)
    may have persisted an entry without the record reaching its log, so an entry above its
    last recorded persist is not held against the cluster (a false INVALID on every
    leader-kill run otherwise)."""
    for name in ("n1", "n3"):  # no stop: their records end abruptly
        _start(_Log(tmp_path, name)).ev("persist", 1, first=1, last=1, entries=[[1, 1, "a"]])
    n2 = _start(_Log(tmp_path, "n2")).ev(
        "persist", 2, first=1, last=2, entries=[[1, 1, "a"], [2, 2, "z"]]
    )
    n2.ev("commit", 2, index=2, eterm=2).ev(
        "apply", 2, entries=[[1, 1, "a", "r"], [2, 2, "z", "r"]]
    )
    rep = _check(tmp_path)
    assert "applied_by_quorum" not in rep.violation_counts, rep.violation_counts
