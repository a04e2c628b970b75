"""The simulator's disk model: a crash keeps exactly what was synced (§5.1 persistent state)."""

from __future__ import annotations

from raft.core import ConfState, Entry, HardState
from raft.sim import ForgetfulVoteDisk, SimDisk


def _ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(index=i, term=term, data=f"e{i}".encode()) for i in range(lo, hi + 1)]


def test_crash_loses_unsynced_entries_and_hard_state() -> None:
    disk = SimDisk()
    disk.append(_ents(1, 3, 1))
    disk.set_hard_state(HardState(term=1, vote="n1", commit=2))
    disk.sync()
    disk.append(_ents(4, 6, 1))
    disk.set_hard_state(HardState(term=2, vote="n2", commit=5))
    assert disk.last_index() == 6
    disk.crash()
    assert disk.last_index() == 3
    assert disk.entries(1, 4) == _ents(1, 3, 1)
    assert disk.initial_state()[0] == HardState(term=1, vote="n1", commit=2)


def test_crash_keeps_synced_truncation_and_overwrite() -> None:
    disk = SimDisk()
    disk.append(_ents(1, 5, 1))
    disk.sync()
    disk.append(_ents(3, 4, 2))  # conflicting suffix replaced, synced
    disk.sync()
    disk.append(_ents(5, 8, 2))  # not synced
    disk.crash()
    assert [e.term for e in disk.entries(1, disk.last_index() + 1)] == [1, 1, 2, 2]


def test_crash_without_any_sync_is_an_empty_disk() -> None:
    disk = SimDisk()
    disk.append(_ents(1, 2, 1))
    disk.set_hard_state(HardState(term=1, vote="n3"))
    disk.crash()
    assert disk.last_index() == 0
    assert disk.initial_state()[0] == HardState()


def test_snapshot_is_durable_with_everything_before_it() -> None:
    disk = SimDisk()
    disk.append(_ents(1, 6, 1))
    disk.set_hard_state(HardState(term=1, vote="n1", commit=6))
    cs = ConfState(voters=frozenset({"n1", "n2", "n3"}))
    disk.create_snapshot(4, cs, b"state@4")
    disk.compact(4)
    disk.crash()
    assert disk.snapshot().meta.index == 4
    assert disk.snapshot().data == b"state@4"
    assert disk.first_index() == 5
    assert disk.last_index() == 6
    assert disk.initial_state()[0].commit == 6


def test_forgetful_vote_disk_drops_only_the_vote() -> None:
    disk = ForgetfulVoteDisk()
    disk.append(_ents(1, 2, 3))
    disk.set_hard_state(HardState(term=3, vote="n2", commit=1))
    disk.sync()
    disk.crash()
    assert disk.initial_state()[0] == HardState(term=3, vote="", commit=1)
    assert disk.last_index() == 2
    plain = SimDisk()
    plain.set_hard_state(HardState(term=3, vote="n2", commit=1))
    plain.sync()
    plain.crash()
    assert plain.initial_state()[0].vote == "n2"


def test_disk_fault_cuts_synced_entries_reports_them_and_keeps_the_vote() -> None:
    import random

    for seed in range(20):
        disk = SimDisk()
        disk.append(_ents(1, 12, 2))
        disk.set_hard_state(HardState(term=3, vote="n2", commit=12))
        disk.sync()
        what = disk.damage(random.Random(seed))
        assert what
        assert 3 <= disk.last_index() < 12  # at most 8 records back (a flip), 5 (a loss)
        hs = disk.initial_state()[0]
        assert (hs.term, hs.vote) == (3, "n2")
        assert hs.commit == disk.last_index()
        assert disk.recovering
        disk.crash()  # the report survives crashes until the node caught up
        assert disk.recovering
        disk.clear_recovering()
        assert not disk.recovering


def test_disk_fault_never_reaches_below_the_snapshot() -> None:
    import random

    for seed in range(20):
        disk = SimDisk()
        disk.append(_ents(1, 10, 1))
        disk.sync()
        disk.create_snapshot(9, ConfState(voters=frozenset({"n1"})), b"s")
        disk.compact(7)
        disk.damage(random.Random(seed))
        assert disk.last_index() == 9
    empty = SimDisk()
    assert empty.damage(random.Random(1)) == ""
    assert not empty.recovering
