"""A real full disk: a 2 MiB tmpfs fills up under the WAL. The append that does not fit raises
DiskFullError, nothing acknowledged is lost, the files reopen cleanly (no torn record left
behind), and once space is freed the same storage object appends again. Needs root (mount);
CI runs as root."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from small_disk import fill, small_tmpfs

from raft.core.types import ConfState, Entry, HardState
from raft.storage import DiskFullError, DiskStorage, FsyncPolicy

pytestmark = pytest.mark.integration

ENTRY_BYTES = 4096
MAX_BATCHES = 1000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path) as mnt:
        yield mnt


def batch(lo: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, bytes([i % 256]) * ENTRY_BYTES) for i in range(lo, lo + n)]


def test_append_until_full_then_recover_and_continue(small_fs: Path) -> None:
    node = small_fs / "node"
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\1" * (256 << 10))
    # Every sync writes the hard state too (a WAL record with the entries).
    s = DiskStorage(node, FsyncPolicy.ALWAYS, segment_bytes=256 << 10, commit_persist_interval_ms=0)
    acked = 0
    error: DiskFullError | None = None
    for _ in range(MAX_BATCHES):
        try:
            s.append(batch(acked + 1, 7))
            s.set_hard_state(HardState(term=1, vote="n1", commit=acked + 7))
            s.sync()
        except DiskFullError as exc:
            error = exc
            break
        acked += 7
    assert error is not None, "the disk never filled"
    assert error.errno == errno.ENOSPC and str(node) in error.path
    assert acked > 100  # most of the 2 MiB was usable
    if error.op == "append":
        assert s.last_index() == acked  # the failed batch is not in the log
    else:  # the batch fit but its sync did not
        assert error.path.endswith(".wal")
        acked = s.last_index()
    assert s.durable_index == acked

    s.abandon()  # as if the node stopped here
    with DiskStorage(node, FsyncPolicy.ALWAYS, segment_bytes=256 << 10) as again:
        assert again.recovery.torn_tail is None, again.recovery.summary()
        assert again.last_index() == acked
        assert again.entries(1, acked + 1) == batch(1, acked)
        assert again.hard_state.commit in (acked - 7, acked)

        ballast.unlink()  # space comes back: the same object appends again
        again.append(batch(acked + 1, 7, term=2))
        again.sync()
    with DiskStorage(node, FsyncPolicy.ALWAYS, segment_bytes=256 << 10) as last:
        assert last.recovery.is_clean()
        assert last.entries(acked + 1, acked + 8) == batch(acked + 1, 7, term=2)


def test_retry_on_the_same_object_after_full(small_fs: Path) -> None:
    node = small_fs / "node"
    s = DiskStorage(node, FsyncPolicy.ALWAYS)
    s.append(batch(1, 3))
    s.set_hard_state(HardState(term=1, vote="n1", commit=3))
    s.sync()
    filler = small_fs / "filler"
    fill(filler)
    with pytest.raises(DiskFullError):
        s.append(batch(4, 40))
    # A vote is a small WAL record: it may fit in the segment's last block. Votes in new
    # terms until one does not fit; each that fitted was synced, the failed one is dropped.
    stored = HardState(term=1, vote="n1", commit=3)
    for term in range(2, 400):
        s.set_hard_state(HardState(term=term, vote="n2", commit=3))
        try:
            s.sync()
        except DiskFullError as exc:
            assert exc.path.endswith((".wal", "termlease"))
            break
        stored = HardState(term=term, vote="n2", commit=3)
    else:
        raise AssertionError("the hard state records never filled the disk")
    with pytest.raises(DiskFullError):
        s.create_snapshot(3, ConfState(voters=frozenset({"n1"})), b"x" * 65536)
    assert list((node / "snap").iterdir()) == []
    assert s.snapshot().is_empty()

    filler.unlink()
    s.append(batch(4, 40))  # the same object goes on, with the vote that did not fit
    s.sync()
    newest = s.hard_state
    assert newest.term == stored.term + 1
    s.close()
    with DiskStorage(node) as again:
        assert again.recovery.is_clean()
        assert again.hard_state == newest
        assert again.entries(1, 44) == batch(1, 43)
