"""DiskStorage behaviour the model test does not reach: group commit (one write and one
fdatasync per Ready), the fsync policies, I/O failures rolled back, bad input refused, the
directory lock, segment rolling and cross-segment truncation on disk."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from raft.core.types import ConfState, Entry, HardState
from raft.storage import (
    CompactionNotCoveredError,
    CorruptLogError,
    DiskFullError,
    DiskStorage,
    FsyncPolicy,
    StorageClosedError,
    StorageIOError,
    StorageLockedError,
)
from raft.storage.wal import list_segments


def ents(lo: int, hi: int, term: int = 1, size: int = 100) -> list[Entry]:
    return [Entry(index=i, term=term, data=bytes([i % 251]) * size) for i in range(lo, hi + 1)]


class Calls:
    """Counts (and optionally fails) the os calls the storage makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fdatasync = 0
        self.pwrite = 0
        self.fail_fdatasync: int | None = None
        self.fail_pwrite: int | None = None
        real_fdatasync, real_pwrite = os.fdatasync, os.pwrite

        def fdatasync(fd: int) -> None:
            self.fdatasync += 1
            if self.fail_fdatasync is not None:
                raise OSError(self.fail_fdatasync, os.strerror(self.fail_fdatasync))
            real_fdatasync(fd)

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            self.pwrite += 1
            if self.fail_pwrite is not None:
                # Like a disk filling up mid-write: half lands, then the error.
                real_pwrite(fd, bytes(data)[: len(data) // 2], offset)
                raise OSError(self.fail_pwrite, os.strerror(self.fail_pwrite))
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "pwrite", pwrite)

    def reset(self) -> None:
        self.fdatasync = self.pwrite = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskStorage]:
    s = DiskStorage(tmp_path / "n1")
    yield s
    s.abandon()


def test_one_ready_is_one_write_and_one_fdatasync(disk: DiskStorage, calls: Calls) -> None:
    disk.append(ents(1, 5))
    disk.set_hard_state(HardState(term=1))  # the term lease is written once per 16 terms
    disk.sync()
    calls.reset()
    disk.append(ents(6, 261))
    disk.set_hard_state(HardState(term=1, vote="n1", commit=5))
    disk.sync()
    assert calls.pwrite == 2  # the 256 entries, and the hard state's temp file
    assert calls.fdatasync == 1  # the WAL; the hard state file is fsynced with os.fsync
    assert disk.durable_index == 261


def test_batch_policy_syncs_at_most_once_per_interval(tmp_path: Path, calls: Calls) -> None:
    now = [100.0]
    s = DiskStorage(tmp_path / "n1", FsyncPolicy.BATCH, batch_interval_ms=5, clock=lambda: now[0])
    calls.reset()
    s.append(ents(1, 1))
    s.sync()
    assert calls.fdatasync == 0 and s.pending_sync() and s.durable_index == 0
    assert not s.flush_if_due()
    now[0] += 0.004
    s.append(ents(2, 2))
    s.sync()
    assert calls.fdatasync == 0
    now[0] += 0.002
    assert s.flush_if_due()
    assert calls.fdatasync == 1 and s.durable_index == 2 and not s.pending_sync()
    now[0] += 0.010
    s.append(ents(3, 3))
    s.sync()  # the interval has passed: this one syncs at once
    assert calls.fdatasync == 2 and s.durable_index == 3
    s.close()


def test_never_policy_syncs_only_on_close(tmp_path: Path, calls: Calls) -> None:
    s = DiskStorage(tmp_path / "n1", "never", segment_bytes=2000)
    calls.reset()
    s.append(ents(1, 100))
    s.set_hard_state(HardState(term=2))
    s.sync()
    assert calls.fdatasync == 0 and s.durable_index == 0
    s.close()
    assert calls.fdatasync >= 1
    with DiskStorage(tmp_path / "n1", "never") as again:
        assert again.last_index() == 100 and again.hard_state.term == 2


def test_fsync_policy_parse_names_the_choices() -> None:
    assert FsyncPolicy.parse("Always") is FsyncPolicy.ALWAYS
    with pytest.raises(ValueError, match="always, batch, never"):
        FsyncPolicy.parse("sometimes")


def test_failed_write_is_rolled_back_and_retry_works(
    tmp_path: Path, disk: DiskStorage, calls: Calls
) -> None:
    disk.append(ents(1, 10))
    disk.sync()
    seg = list_segments(str(tmp_path / "n1" / "wal"))[-1][1]
    size = os.path.getsize(seg)
    calls.fail_pwrite = errno.ENOSPC
    with pytest.raises(DiskFullError) as info:
        disk.append(ents(11, 20))
    assert info.value.path == seg and info.value.op == "append"
    assert os.path.getsize(seg) == size  # the half-written batch is gone
    assert disk.last_index() == 10
    calls.fail_pwrite = None
    disk.append(ents(11, 20))
    disk.sync()
    disk.close()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.recovery.is_clean()
        assert again.entries(1, 21) == ents(1, 20)


def test_failed_fdatasync_drops_what_was_not_durable(
    tmp_path: Path, disk: DiskStorage, calls: Calls
) -> None:
    disk.append(ents(1, 10))
    disk.sync()
    disk.append(ents(11, 15))
    calls.fail_fdatasync = errno.EIO
    with pytest.raises(StorageIOError, match="EIO") as info:
        disk.sync()
    assert info.value.op == "sync"
    assert disk.last_index() == disk.durable_index == 10
    calls.fail_fdatasync = None
    disk.append(ents(11, 12, term=2))
    disk.sync()
    disk.close()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.entries(1, 13) == ents(1, 10) + ents(11, 12, term=2)


def test_failed_hard_state_sync_keeps_the_old_one(
    tmp_path: Path, disk: DiskStorage, calls: Calls
) -> None:
    disk.set_hard_state(HardState(term=3, vote="n1", commit=0))
    disk.sync()
    calls.fail_fdatasync = errno.EIO
    disk.set_hard_state(HardState(term=4, vote="n2", commit=0))
    with pytest.raises(StorageIOError, match="EIO"):
        disk.sync()
    calls.fail_fdatasync = None
    disk.abandon()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.hard_state == HardState(term=3, vote="n1", commit=0)


def test_hard_state_rides_in_the_wal_with_the_entries(
    tmp_path: Path, disk: DiskStorage, calls: Calls
) -> None:
    """A vote and the entries of a Ready are made durable by ONE write and ONE fdatasync of
    the WAL (the old hard state file cost a write, two fsyncs and a rename more), and the
    ``hardstate`` file is not touched."""
    disk.set_hard_state(HardState(term=1, vote="n1", commit=0))  # takes a term lease
    disk.append(ents(1, 3))
    disk.sync()
    calls.reset()
    disk.set_hard_state(HardState(term=2, vote="n3", commit=3))
    disk.append(ents(4, 6, term=2))
    disk.sync()
    assert (calls.pwrite, calls.fdatasync) == (1, 1)
    assert not (tmp_path / "n1" / "hardstate").exists()
    calls.reset()
    disk.set_hard_state(HardState(term=3, vote="n1", commit=3))  # a vote alone
    disk.sync()
    assert (calls.pwrite, calls.fdatasync) == (1, 1)
    disk.abandon()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.hard_state == HardState(term=3, vote="n1", commit=3)
        assert again.entries(1, 7) == ents(1, 3) + ents(4, 6, term=2)


def test_hard_state_survives_truncation_and_compaction(tmp_path: Path) -> None:
    """The newest hard state may sit in records a conflicting suffix or a compaction
    removes: it is kept (in the ``hardstate`` file before a cut, at the head of every new
    segment before old ones go)."""
    with DiskStorage(tmp_path / "n1", segment_bytes=2048) as s:
        s.append(ents(1, 10))
        s.set_hard_state(HardState(term=5, vote="n2", commit=4))
        s.append(ents(11, 12, term=5))  # the hard state record sits before entry 11
        s.sync()
        s.append(ents(11, 14, term=6))  # conflict: 11.. is cut, the record with it
        s.sync()
        s.abandon()
    with DiskStorage(tmp_path / "n1", segment_bytes=2048) as s:
        assert s.hard_state == HardState(term=5, vote="n2", commit=4)
        assert s.last_index() == 14
        s.set_hard_state(HardState(term=6, vote="n3", commit=14))
        s.sync()
        for lo in range(15, 61, 5):  # several segments roll
            s.append(ents(lo, lo + 4, term=6))
            s.sync()
        assert len(list_segments(str(tmp_path / "n1" / "wal"))) > 2
        s.create_snapshot(55, ConfState(voters=frozenset({"n1"})), b"state")
        s.compact(55)  # the segment with the record is gone
        s.abandon()
    with DiskStorage(tmp_path / "n1", segment_bytes=2048) as s:
        assert s.hard_state == HardState(term=6, vote="n3", commit=14)
        assert s.first_index() == 56 and s.last_index() == 64


def test_bad_input_is_refused_before_anything_changes(disk: DiskStorage) -> None:
    disk.append(ents(1, 10, term=3))
    with pytest.raises(ValueError, match="non-decreasing"):
        disk.append([Entry(5, 3), Entry(6, 2)])  # would truncate 5.. first: must not
    with pytest.raises(ValueError, match="consecutive"):
        disk.append([Entry(11, 3), Entry(13, 3)])
    with pytest.raises(ValueError, match="non-decreasing"):
        disk.append([Entry(11, 2)])
    assert disk.last_index() == 10 and disk.entries(1, 11) == ents(1, 10, term=3)
    with pytest.raises(CompactionNotCoveredError):
        disk.compact(5)


def test_second_open_of_a_directory_is_refused(tmp_path: Path, disk: DiskStorage) -> None:
    with pytest.raises(StorageLockedError):
        DiskStorage(tmp_path / "n1")
    disk.close()
    DiskStorage(tmp_path / "n1").close()


def test_use_after_close_is_refused(disk: DiskStorage) -> None:
    disk.close()
    with pytest.raises(StorageClosedError):
        disk.append(ents(1, 1))


def test_segments_roll_and_are_named_by_first_index(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path / "n1", segment_bytes=4096)
    for lo in range(1, 201, 20):
        s.append(ents(lo, lo + 19))
    firsts = [first for first, _ in list_segments(str(tmp_path / "n1" / "wal"))]
    assert firsts[0] == 1 and len(firsts) > 5 and firsts == sorted(firsts)
    assert all((f - 1) % 20 == 0 for f in firsts)  # a batch never straddles two segments
    for _, path in list_segments(str(tmp_path / "n1" / "wal"))[:-1]:
        assert os.path.getsize(path) <= 4096 + 20 * 200
    s.close()


def test_conflicting_suffix_is_cut_across_segments(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path / "n1", segment_bytes=2048)
    for lo in range(1, 101, 10):
        s.append(ents(lo, lo + 9))
    before = list_segments(str(tmp_path / "n1" / "wal"))
    s.append(ents(25, 27, term=2))
    s.sync()
    after = list_segments(str(tmp_path / "n1" / "wal"))
    assert after == [seg for seg in before if seg[0] <= 25]
    s.abandon()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.recovery.is_clean()
        assert again.entries(1, 28) == ents(1, 24) + ents(25, 27, term=2)


def test_compaction_deletes_whole_segments_below_the_snapshot(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path / "n1", segment_bytes=2048)
    for lo in range(1, 101, 10):
        s.append(ents(lo, lo + 9))
    s.create_snapshot(55, ConfState(voters=frozenset({"n1"})), b"sm")
    s.compact(55)
    firsts = [f for f, _ in list_segments(str(tmp_path / "n1" / "wal"))]
    assert firsts[0] <= 56 < firsts[1]  # the segment holding 56 is kept, older ones are gone
    assert s.entries(56, 101) == ents(56, 100)
    s.close()
    with DiskStorage(tmp_path / "n1") as again:
        assert (again.first_index(), again.last_index(), again.term(55)) == (56, 100, 1)


def test_old_entries_are_read_back_and_verified(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path / "n1", segment_bytes=4096, cache_entries=8)
    for lo in range(1, 201, 20):
        s.append(ents(lo, lo + 19))
    assert s.entries(1, 201) == ents(1, 200)
    assert s.entries(30, 201, max_bytes=1000) == ents(30, 37)  # 116 bytes each: 8 fit
    _, path = list_segments(str(tmp_path / "n1" / "wal"))[0]
    with open(path, "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(CorruptLogError) as info:
        s.entries(1, 10)
    assert info.value.path == path
    s.abandon()


def test_is_a_log_storage_and_limits_by_bytes_like_memory_storage(tmp_path: Path) -> None:
    from raft.core.storage import LogStorage, MemoryStorage

    disk: LogStorage = DiskStorage(tmp_path / "n1", cache_entries=4)  # mypy checks the protocol
    mem: LogStorage = MemoryStorage()
    batch = [Entry(i, 1, bytes(i % 50)) for i in range(1, 41)]
    for s in (disk, mem):
        s.append(batch)
    for max_bytes in (0, 1, 16, 17, 100, 500, 10_000):
        for lo in (1, 20, 37, 40):
            assert disk.entries(lo, 41, max_bytes) == mem.entries(lo, 41, max_bytes)
    assert isinstance(disk, DiskStorage)
    disk.close()


def test_commit_only_changes_are_written_lazily(tmp_path: Path, calls: Calls) -> None:
    now = [0.0]
    s = DiskStorage(tmp_path / "n1", commit_persist_interval_ms=1000, clock=lambda: now[0])
    s.append(ents(1, 10))
    s.set_hard_state(HardState(term=1, vote="n1", commit=0))
    s.sync()  # a new term and vote: written at once
    calls.reset()
    for commit in range(1, 6):
        now[0] += 0.1
        s.append(ents(10 + commit, 10 + commit))
        s.set_hard_state(HardState(term=1, vote="n1", commit=commit))
        s.sync()
    # One write and one sync per Ready: a commit-only change alone is not written until
    # the interval passes, but it rides in the next append's write for free.
    assert calls.pwrite == 5 and calls.fdatasync == 5
    assert not s.pending_sync()
    s.abandon()
    with DiskStorage(tmp_path / "n1") as again:  # a crash loses only the volatile commit
        assert again.hard_state == HardState(term=1, vote="n1", commit=4)
        assert again.last_index() == 15
        again.set_hard_state(HardState(term=1, vote="n1", commit=7))
    with DiskStorage(tmp_path / "n1", commit_persist_interval_ms=1000, clock=lambda: now[0]) as s2:
        assert s2.hard_state.commit == 7  # close() wrote it
        s2.set_hard_state(HardState(term=1, vote="n1", commit=9))
        now[0] += 1.5
        s2.sync()  # the interval passed: written now
        s2.abandon()
    with DiskStorage(tmp_path / "n1") as again:
        assert again.hard_state.commit == 9


def test_split_sync_books_only_what_was_written_before_it_began(
    disk: DiskStorage, calls: Calls
) -> None:
    """sync_begin/run/sync_end (the runtime's writer thread): entries appended while the
    sync runs are not taken as durable; a term/vote change is a WAL record the same sync
    covers."""
    disk.append(ents(1, 5))
    disk.set_hard_state(HardState(term=1, vote="n1", commit=0))
    ticket = disk.sync_begin()
    assert ticket is not None
    ticket.run()
    disk.sync_end(ticket)
    assert not disk.pending_sync()
    disk.append(ents(6, 10))
    ticket = disk.sync_begin()
    assert ticket is not None
    disk.append(ents(11, 12))  # written while the other thread syncs
    calls.reset()
    ticket.run()
    disk.sync_end(ticket)
    assert calls.fdatasync == 1
    assert disk.durable_index == 10
    assert disk.pending_sync()  # 11..12 still need a sync
    ticket = disk.sync_begin()
    assert ticket is not None
    ticket.run()
    disk.sync_end(ticket)
    assert disk.durable_index == 12 and not disk.pending_sync()


def test_failed_split_sync_drops_the_unsynced_suffix(disk: DiskStorage, calls: Calls) -> None:
    disk.append(ents(1, 5))
    disk.sync()
    disk.append(ents(6, 8))
    ticket = disk.sync_begin()
    assert ticket is not None
    calls.fail_fdatasync = errno.EIO
    ticket.run()
    with pytest.raises(StorageIOError):
        disk.sync_end(ticket)
    assert disk.last_index() == 5


def test_read_cache_is_bounded_by_bytes_not_only_entries(tmp_path: Path) -> None:
    """An entry may pack hundreds of commands: 64 entries of 1 MiB must not all stay in the
    read cache (bounded by entries only, it would hold 2 x cache_entries of them), and
    reads of evicted entries come from the file, intact."""
    from raft.storage import wal as wal_mod

    s = DiskStorage(tmp_path / "n1", fsync="never", segment_bytes=1 << 30)
    try:
        big = [Entry(index=i, term=1, data=bytes([i]) * (1 << 20)) for i in range(1, 65)]
        for e in big:
            s.append([e])
        w = s._wal
        assert w._cache_bytes <= wal_mod.CACHE_BYTES_MAX
        assert len(w._cache) < 64
        assert s.entries(1, 65) == big
    finally:
        s.abandon()
