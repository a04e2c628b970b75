"""RaftLog and Unstable: index arithmetic over stable storage plus an unstable tail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft.core import (
    CompactedError,
    ConfState,
    Entry,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)
from raft.core.log import RaftLog


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    return [Entry(index=i, term=t) for i, t in pairs]


def make_log(stable_terms: list[int], unstable_terms: list[int] = ()) -> RaftLog:  # type: ignore[assignment]
    st_ = MemoryStorage()
    st_.append([Entry(index=i + 1, term=t) for i, t in enumerate(stable_terms)])
    log = RaftLog(st_)
    n = len(stable_terms)
    if unstable_terms:
        log.append([Entry(index=n + 1 + k, term=t) for k, t in enumerate(unstable_terms)])
    return log


def test_terms_and_bounds_across_stable_and_unstable() -> None:
    log = make_log([1, 1, 2], [2, 3])
    assert (log.first_index(), log.last_index()) == (1, 5)
    assert [log.term(i) for i in range(0, 6)] == [0, 1, 1, 2, 2, 3]
    with pytest.raises(UnavailableError):
        log.term(6)
    assert log.zero_term(6) == 0
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]


def test_term_below_snapshot_is_compacted() -> None:
    st_ = MemoryStorage()
    st_.append(ents((1, 1), (2, 1), (3, 2), (4, 2)))
    st_.create_snapshot(2, ConfState(voters=frozenset({"n1"})), b"")
    st_.compact(2)
    log = RaftLog(st_)
    assert log.first_index() == 3 and log.term(2) == 1
    with pytest.raises(CompactedError):
        log.term(1)
    with pytest.raises(CompactedError):
        log.slice(2, 4)
    assert log.committed == 2 and log.applied == 2


def test_find_conflict() -> None:
    """Figure 2 step 3: the first entry whose term differs (or which is new), else 0."""
    log = make_log([1, 2, 3])
    assert log.find_conflict(ents((1, 1), (2, 2), (3, 3))) == 0
    assert log.find_conflict(ents((2, 2), (3, 3), (4, 4))) == 4
    assert log.find_conflict(ents((2, 2), (3, 4), (4, 4))) == 3
    assert log.find_conflict(ents((1, 5))) == 1


def test_find_conflict_by_term() -> None:
    log = make_log([1, 1, 2, 2, 4, 4])
    assert log.find_conflict_by_term(6, 3) == (4, 2)
    assert log.find_conflict_by_term(6, 4) == (6, 4)
    assert log.find_conflict_by_term(6, 1) == (2, 1)
    assert log.find_conflict_by_term(6, 0) == (0, 0)


def test_maybe_append_truncates_only_conflicts_and_records_it() -> None:
    log = make_log([1, 1, 1], [1])
    assert log.maybe_append(1, 1, 0, ents((2, 1))) == 2
    assert log.last_index() == 4 and log.truncations == []
    assert log.maybe_append(2, 1, 0, ents((3, 2))) == 3
    assert log.last_index() == 3 and log.term(3) == 2 and log.truncations == [3]
    assert log.maybe_append(3, 1, 0, ents((4, 2))) is None  # prev term mismatch


def test_maybe_append_never_truncates_committed() -> None:
    log = make_log([1, 1, 1])
    log.commit_to(3)
    with pytest.raises(AssertionError, match="conflicts with committed"):
        log.maybe_append(1, 1, 3, ents((2, 2)))


def test_commit_never_moves_backwards() -> None:
    log = make_log([1, 1, 1])
    log.commit_to(3)
    log.commit_to(1)
    assert log.committed == 3


def test_commit_past_last_index_is_an_assertion() -> None:
    log = make_log([1])
    with pytest.raises(AssertionError):
        log.commit_to(5)


def test_unstable_stable_to_ignores_replaced_entries() -> None:
    log = make_log([1], [1, 1])
    log.append(ents((3, 2)))  # replaces unstable 3/1
    log.stable_to(3, 1)  # the write of 3/1 finished, but 3 is now term 2: ignore
    assert log.unstable.entries == ents((2, 1), (3, 2))
    log.stable_to(3, 2)
    assert log.unstable.entries == [] and log.unstable.offset == 4


def test_restore_snapshot() -> None:
    log = make_log([1, 1])
    snap = Snapshot(SnapshotMeta(index=10, term=3, conf_state=ConfState()), b"")
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.term(10), log.committed) == (11, 10, 3, 10)
    assert not log.has_next_committed_ents()  # snapshot first


# -- hypothesis: random appends keep the log's invariants ------------------------------

_ops = st.lists(
    st.tuples(st.integers(min_value=0, max_value=6), st.integers(min_value=1, max_value=4)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_ops, st.integers(min_value=0, max_value=20))
def test_random_appends_match_a_model(ops: list[tuple[int, int]], persist_every: int) -> None:
    """Appending at random points (truncating conflicts) and persisting at random times
    keeps RaftLog equal to a plain list model, with terms readable everywhere and
    MemoryStorage consistent with what was persisted."""
    storage = MemoryStorage()
    log = RaftLog(storage)
    model: list[int] = []  # model[i] is the term of index i + 1
    term = 1
    for step, (back, count) in enumerate(ops):
        term += 1 if step % 3 == 0 else 0
        start = max(len(model) - back, log.committed) + 1
        new = [Entry(index=start + k, term=term) for k in range(count)]
        log.append(new)
        del model[start - 1 :]
        model.extend([term] * count)
        assert log.last_index() == len(model)
        assert [log.term(i) for i in range(1, len(model) + 1)] == model
        assert [e.term for e in log.slice(1, len(model) + 1)] == model
        if persist_every and step % persist_every == 0:
            unstable = log.next_unstable_ents()
            log.unstable.accept_in_progress()
            if unstable:
                storage.append(unstable)
                log.stable_to(unstable[-1].index, unstable[-1].term)
            assert storage.last_index() <= log.last_index()
            log.commit_to(len(model) // 2)
        log.unstable.check()
    for lo in range(1, len(model) + 1):
        got = log.slice(lo, len(model) + 1, max_bytes=40)
        assert got and got[0].index == lo
        assert len(got) == 1 or sum(e.size_bytes() for e in got) <= 40
