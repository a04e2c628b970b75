"""``DiskStorage``: the :class:`~raft.core.storage.LogStorage` a real node runs on.

Same semantics as :class:`~raft.core.storage.MemoryStorage` (the reference), plus durability:

- entries go to the segmented WAL (``wal/``) with one write per ``append`` call (so one per
  Ready: group commit) and one fdatasync per :meth:`DiskStorage.sync`;
- the hard state goes into the WAL too, as a record written before the entries of the same
  ``append`` (or alone by :meth:`DiskStorage.sync` when only the term or vote changed): one
  fdatasync makes entries and hard state durable together. The ``hardstate`` file is written
  (atomically) only before the WAL cuts records that may hold the newest hard state (a
  conflicting suffix, a snapshot replacing the log) and by data directories of older versions;
  at open the newer of the two wins (:func:`newer_hard_state`);
- snapshots go to ``snap/`` atomically, newest two kept.

Memory holds the index (term, file offset and record length per entry, in ``array``\\ s) and a
bounded cache of the most recent entries; older entries are read back with ``pread`` and
verified against their CRC.

Index arithmetic: ``(self._off_index, self._off_term)`` plays MemoryStorage's dummy entry
(the snapshot or compaction point); the WAL holds entries ``_off_index + 1 .. last_index``.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raft.core.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.core.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raft.storage._files import fsync_dir, remove_stale_temps
from raft.storage.errors import (
    CompactionNotCoveredError,
    CorruptLogError,
    StorageClosedError,
    StorageIOError,
    StorageLockedError,
    io_error,
)
from raft.storage.hardstate import HardStateFile
from raft.storage.recovering import (
    WITHHELD_VOTE,
    clear_recovering,
    mark_recovering,
    may_hold_acknowledged,
    recovering_reason,
)
from raft.storage.snapshots import SnapshotStore
from raft.storage.wal import (
    DEFAULT_SEGMENT_BYTES,
    WAL_DIR,
    SyncPoint,
    Wal,
    WalScan,
    cut_at_damage,
    scan_wal,
)

LOCK_FILE = "LOCK"


class FsyncPolicy(enum.Enum):
    """When :meth:`DiskStorage.sync` really calls fdatasync (``fsync:`` in cluster.yml).

    Every policy writes to the files at once, so a *process* crash (kill -9) loses nothing
    that was appended; the policies differ on a *machine* crash (power loss, kernel panic).
    """

    ALWAYS = "always"
    """Every ``sync()`` is an fdatasync of the WAL (plus an atomic hard state replace when it
    changed). Nothing acknowledged is lost. The default."""
    BATCH = "batch"
    """``sync()`` fdatasyncs only if ``batch_interval_ms`` passed since the last fdatasync;
    otherwise it returns at once and the next ``sync()``/``flush_if_due()`` after the interval
    does it. A machine crash loses up to ``batch_interval_ms`` of acknowledged writes."""
    NEVER = "never"
    """No fdatasync while running (``close()`` still syncs). A machine crash can lose any
    amount of acknowledged entries, votes and terms: Raft's safety is void. Benchmarks only."""

    @classmethod
    def parse(cls, value: str | FsyncPolicy) -> FsyncPolicy:
        if isinstance(value, FsyncPolicy):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"fsync policy {value!r} is not one of: {allowed}") from None


@dataclass(frozen=True, slots=True)
class TornTail:
    """An interrupted write cut off the end of the last segment at open."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str
    first_lost_index: int
    """The index the dropped bytes would have started with (never acknowledged under
    ``fsync: always``: only an unsynced write can be torn)."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :class:`DiskStorage` found and fixed when it opened ``data_dir``. The runtime logs
    :meth:`summary` and may put :meth:`as_fields` into its ``start`` event."""

    data_dir: str
    first_index: int
    last_index: int
    snapshot_index: int
    snapshot_term: int
    segments: int
    bytes_scanned: int
    torn_tail: TornTail | None
    removed_files: tuple[str, ...]
    """Stale temp files of interrupted atomic writes, and a segment whose header was torn."""
    discarded_after_snapshot: tuple[int, int] | None
    """``(lo, hi)`` WAL entries dropped because the newest snapshot supersedes them (a crash
    while installing a snapshot)."""
    commit_clamped: tuple[int, int] | None
    """``(stored, now)`` when the stored commit index pointed past the recovered log."""
    duration_s: float
    recovering: str | None = None
    """Why the node may have lost entries (or a vote) it acknowledged, if it may: it then
    starts in protocol-aware recovery (``Config.recovering``, docs/storage.md)."""

    def is_clean(self) -> bool:
        return (
            self.torn_tail is None
            and not self.removed_files
            and self.discarded_after_snapshot is None
            and self.commit_clamped is None
            and self.recovering is None
        )

    def summary(self) -> str:
        parts = [
            f"recovered {self.data_dir}: log {self.first_index}..{self.last_index} "
            f"(snapshot {self.snapshot_index}/{self.snapshot_term}, {self.segments} segments, "
            f"{self.bytes_scanned} bytes scanned in {self.duration_s:.3f}s)"
        ]
        if self.torn_tail is not None:
            t = self.torn_tail
            parts.append(
                f"torn tail cut: {t.path} at byte {t.offset} ({t.dropped_bytes} bytes, "
                f"{t.reason}; first lost index {t.first_lost_index})"
            )
        if self.removed_files:
            parts.append("removed " + ", ".join(self.removed_files))
        if self.discarded_after_snapshot is not None:
            lo, hi = self.discarded_after_snapshot
            parts.append(f"discarded entries {lo}..{hi} superseded by the snapshot")
        if self.commit_clamped is not None:
            parts.append(f"commit {self.commit_clamped[0]} clamped to {self.commit_clamped[1]}")
        if self.recovering is not None:
            parts.append(f"RECOVERING (no vote until caught up): {self.recovering}")
        return "; ".join(parts)

    def as_fields(self) -> dict[str, object]:
        t = self.torn_tail
        return {
            "first_index": self.first_index,
            "last_index": self.last_index,
            "snapshot_index": self.snapshot_index,
            "segments": self.segments,
            "torn_tail": None
            if t is None
            else {"path": t.path, "offset": t.offset, "bytes": t.dropped_bytes},
            "removed_files": list(self.removed_files),
            "recovering": self.recovering,
            "duration_s": round(self.duration_s, 6),
        }


def lock_data_dir(data_dir: str) -> int:
    """Take the directory's exclusive lock (released when the fd closes or the process
    dies). Raises StorageLockedError if another process has it."""
    path = os.path.join(data_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise io_error("open lock file", path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLockedError(data_dir) from None
    return fd


def newer_hard_state(from_file: HardState | None, from_wal: HardState | None) -> HardState:
    """The hard state in effect when both the ``hardstate`` file and the WAL hold one: the
    higher term; in the same term the one with a vote (a vote withheld by a repair first);
    otherwise the WAL's (written after every file write, and with every commit change).
    Terms and votes only ever move forward, so the newer record is the one to keep; the
    commit index comes with it (volatile state: a lower one only means re-applying)."""
    if from_file is None:
        return from_wal or HardState()
    if from_wal is None:
        return from_file
    return from_file if _recency(from_file, 0) > _recency(from_wal, 1) else from_wal


def _recency(hs: HardState, source: int) -> tuple[int, int, int]:
    # In one term: no vote < a vote < the vote withheld by a repair (which must stand).
    vote = 0 if not hs.vote else 2 if hs.vote == WITHHELD_VOTE else 1
    return (hs.term, vote, source)


@dataclass(slots=True)
class SyncTicket:
    """One off-thread sync (see :meth:`DiskStorage.sync_begin`): fdatasync the WAL up to
    ``point``, which covers the entries and hard state records written before it."""

    point: SyncPoint
    error: OSError | None = None

    def run(self) -> None:
        """Safe in any thread (touches no DiskStorage state); failures go to ``error``."""
        try:
            self.point.run()
        except OSError as exc:
            self.error = exc


class DiskStorage:
    """Durable :class:`~raft.core.storage.LogStorage` in ``data_dir`` (see docs/storage.md).

    Opening recovers: stale temp files are removed, every WAL record is verified, a torn tail
    of the last segment is cut off and reported in :attr:`recovery`; any other damage raises
    :class:`~raft.storage.errors.CorruptLogError` (run ``raft repair DATA_DIR``).

    Failures of the disk raise :class:`~raft.storage.errors.StorageIOError` /
    :class:`~raft.storage.errors.DiskFullError` with the files rolled back to their last good
    state; the same call may be retried. A failed ``sync`` drops the unsynced suffix from the
    log (``last_index`` goes back to :attr:`durable_index`), since it may not be on disk.
    Not thread-safe: one driver owns it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        fsync: FsyncPolicy | str = FsyncPolicy.ALWAYS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        *,
        batch_interval_ms: float = 10.0,
        commit_persist_interval_ms: float = 1000.0,
        cache_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        started = time.perf_counter()
        self.data_dir = os.fspath(data_dir)
        self.policy = FsyncPolicy.parse(fsync)
        self.batch_interval_ms = batch_interval_ms
        self.commit_persist_interval_ms = commit_persist_interval_ms
        self._clock = clock
        self._closed = False
        wal_dir = os.path.join(self.data_dir, WAL_DIR)
        try:
            os.makedirs(wal_dir, exist_ok=True)
        except OSError as exc:
            raise io_error("create directory", wal_dir, exc) from exc
        self._lock_fd = lock_data_dir(self.data_dir)
        try:
            self._hs_file = HardStateFile(self.data_dir)
            self._snaps = SnapshotStore(self.data_dir)
            self._snaps.ensure_dir()
            if self.policy is not FsyncPolicy.NEVER:
                # Directory entries of wal/, snap/ (and of data_dir itself) must be durable
                # before anything written inside them is acknowledged.
                fsync_dir(self.data_dir)
                fsync_dir(os.path.dirname(os.path.abspath(self.data_dir)))
            removed: list[str] = []
            stale = self._hs_file.remove_stale_temp()
            if stale:
                removed.append(stale)
            removed += self._snaps.remove_stale_temps()
            removed += remove_stale_temps(wal_dir)
            file_hs = self._hs_file.load()
            self._snap = self._snaps.load_newest() or Snapshot()
            scan = scan_wal(wal_dir)
            self._hs = newer_hard_state(file_hs, scan.hard_state)
            # A directory written before term leases existed gets one now.
            self._hs_file.lease.cover(self._hs.term, durable=self.policy is not FsyncPolicy.NEVER)
            torn = self._cut_torn_tail(scan, removed)
            self._wal = Wal(
                wal_dir,
                scan,
                durable=self.policy is not FsyncPolicy.NEVER,
                segment_bytes=segment_bytes,
                cache_entries=cache_entries,
            )
            self._hs_written = self._hs
            discarded = self._align_with_snapshot(scan)
            clamped = None
            if self._hs.commit > self.last_index():
                clamped = (self._hs.commit, self.last_index())
                self._hs = HardState(self._hs.term, self._hs.vote, self.last_index())
                self._log_hard_state()
                self._wal.sync()
            self._durable_index = self.last_index()
            self._last_fsync = self._last_hs_write = self._clock()
            if self.policy is not FsyncPolicy.NEVER and removed:
                fsync_dir(self.data_dir)
            self._recovering = recovering_reason(self.data_dir)
        except BaseException:
            wal = getattr(self, "_wal", None)
            if wal is not None:
                wal.close()
            os.close(self._lock_fd)
            raise
        self.recovery = RecoveryReport(
            data_dir=self.data_dir,
            first_index=self.first_index(),
            last_index=self.last_index(),
            snapshot_index=self._snap.meta.index,
            snapshot_term=self._snap.meta.term,
            segments=len(self._wal.segment_paths),
            bytes_scanned=scan.bytes_scanned,
            torn_tail=torn,
            removed_files=tuple(removed),
            discarded_after_snapshot=discarded,
            commit_clamped=clamped,
            duration_s=time.perf_counter() - started,
            recovering=self._recovering,
        )

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        fsync: FsyncPolicy | str = FsyncPolicy.ALWAYS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        **options: object,
    ) -> DiskStorage:
        """Open (creating if needed) and recover ``data_dir``; see :attr:`recovery`."""
        return cls(data_dir, fsync, segment_bytes, **options)  # type: ignore[arg-type]

    # -- recovery ----------------------------------------------------------------------
    def _cut_torn_tail(self, scan: WalScan, removed: list[str]) -> TornTail | None:
        d = scan.damage
        if d is None:
            return None
        if not d.torn:
            raise CorruptLogError(
                d.path, d.offset, f"{d.reason} (run `raft repair {self.data_dir}`)"
            )
        size = os.path.getsize(d.path)
        offset = 0 if scan.damaged_segment_dropped else d.offset
        if may_hold_acknowledged(d.path, offset, d.reason):
            # Not a torn write but a damaged record that was whole, hence possibly synced
            # and acknowledged: say so durably *before* cutting it (docs/storage.md).
            mark_recovering(
                self.data_dir,
                f"cut a damaged tail from index {d.index} ({d.reason}) in {d.path}",
                durable=self.policy is not FsyncPolicy.NEVER,
            )
            self._withhold_vote_up_to_lease()
        removed += cut_at_damage(scan, durable=True)
        offset = 0 if scan.damaged_segment_dropped else d.offset
        return TornTail(d.path, offset, size - offset, d.reason, d.index)

    def _withhold_vote_up_to_lease(self) -> None:
        """The cut tail may have held the newest hard state record: every term up to the
        lease may have had a vote, so move to the lease's term with the vote withheld (as
        ``raft repair`` does for a damaged hard state file) and keep that in the file."""
        lease = self._hs_file.lease.value
        if lease > self._hs.term:
            self._hs = HardState(term=lease, vote=WITHHELD_VOTE, commit=self._hs.commit)
            self._hs_file.write(self._hs, durable=self.policy is not FsyncPolicy.NEVER)

    def _align_with_snapshot(self, scan: WalScan) -> tuple[int, int] | None:
        snap_index, snap_term = self._snap.meta.index, self._snap.meta.term
        self._off_index, self._off_term = snap_index, snap_term
        wal = self._wal
        if not wal.segment_paths:
            wal.ensure_segment(snap_index + 1)
            if self._hs != HardState():
                self._log_hard_state()
            return None
        first, last = wal.first_index, wal.last_index
        if first > snap_index + 1:
            raise CorruptLogError(
                wal.segment_paths[0],
                0,
                f"the log starts at index {first} but the newest snapshot covers only up to "
                f"{snap_index}: entries {snap_index + 1}..{first - 1} are missing "
                f"(run `raft repair {self.data_dir}`)",
            )
        if last < snap_index:
            self._preserve_hard_state()
            wal.reset(snap_index + 1)
            return (first, last) if last >= first else None
        if snap_index >= first and snap_index > 0 and wal.term(snap_index) != snap_term:
            # A crash while installing a snapshot from a leader whose log differs: nothing in
            # the WAL is known to agree with the snapshot, so none of it is kept.
            self._preserve_hard_state()
            wal.reset(snap_index + 1)
            return (snap_index + 1, last) if last > snap_index else None
        wal.forget_before(snap_index + 1)
        return None

    @property
    def recovering(self) -> bool:
        """Whether the node may have lost entries or a vote it acknowledged (the
        ``RECOVERING`` marker): pass it to the core as ``Config.recovering``."""
        return self._recovering is not None

    def clear_recovering(self) -> None:
        """The core reported ``recovered`` and that Ready is persisted: drop the marker."""
        self._check_open()
        if self._recovering is None:
            return
        clear_recovering(self.data_dir, durable=self.policy is not FsyncPolicy.NEVER)
        self._recovering = None

    # -- read side (LogReader) ---------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hs, self._snap.meta.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._hs

    @property
    def durable_index(self) -> int:
        """Last index known to be on stable storage (covered by an fdatasync, or found on
        disk at open). Under ``fsync: never`` it only advances on :meth:`flush`."""
        return min(self._durable_index, self.last_index())

    def first_index(self) -> int:
        return self._off_index + 1

    def last_index(self) -> int:
        return self._wal.last_index

    def term(self, index: int) -> int:
        if index < self._off_index:
            raise CompactedError(f"index {index} is compacted (first kept {self._off_index})")
        if index == self._off_index:
            return self._off_term
        if index > self._wal.last_index:
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self._wal.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        self._check_open()
        if lo <= self._off_index:
            raise CompactedError(f"index {lo} is compacted (first kept {self._off_index + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        if max_bytes is not None and lo < hi:
            hi = self._wal.limit_by_bytes(lo, hi, max_bytes)
        return self._wal.read(lo, hi)

    def snapshot(self) -> Snapshot:
        return self._snap

    # -- write side (LogStorage) -------------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        """Record ``hs``; it goes into the WAL with the next :meth:`append`, or alone by the
        next :meth:`sync` when its term or vote changed (a commit-only change alone at most
        every ``commit_persist_interval_ms``)."""
        self._hs = hs

    def _log_hard_state(self) -> None:
        """Write the current hard state into the WAL (not synced)."""
        self._cover_term()
        self._wal.append_hard_state(self._hs)
        self._hard_state_written()

    def _cover_term(self) -> None:
        """The term lease covers the hard state's term before the WAL records it."""
        self._hs_file.lease.cover(self._hs.term, durable=self.policy is not FsyncPolicy.NEVER)

    def _hard_state_written(self) -> None:
        self._hs_written = self._hs
        self._last_hs_write = self._clock()

    def _preserve_hard_state(self) -> None:
        """Before the WAL cuts records (a conflicting suffix, a reset for a snapshot): the
        newest hard state may be among them, so it goes to the ``hardstate`` file first."""
        self._hs_file.write(self._hs, durable=self.policy is not FsyncPolicy.NEVER)
        self._hard_state_written()

    def append(self, entries: Sequence[Entry]) -> None:
        """Append with one write; a conflicting suffix is durably cut first. Not durable
        until :meth:`sync`. Unlike MemoryStorage, refuses (ValueError) to rewrite entries the
        snapshot covers: they are committed (the core never does it), and a restart could not
        reproduce such a log."""
        self._check_open()
        if not entries:
            return
        first = self.first_index()
        if entries[0].index + len(entries) - 1 < first:
            return  # everything offered is already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        last = self.last_index()
        if entries[0].index > last + 1:
            raise UnavailableError(
                f"append at {entries[0].index} leaves a gap after last index {last}"
            )
        if entries[0].index <= min(last, self._snap.meta.index):
            raise ValueError(
                f"append at {entries[0].index} would rewrite entries covered by the snapshot "
                f"at {self._snap.meta.index}; they are committed and can never conflict"
            )
        truncating = entries[0].index <= last
        if truncating:
            self._preserve_hard_state()
        # The hard state rides with the entries (one write) when it changed, or after a cut.
        with_hs = truncating or self._hs != self._hs_written
        if with_hs:
            self._cover_term()
        self._wal.append(entries, self.term(entries[0].index - 1), self._hs if with_hs else None)
        if with_hs:
            self._hard_state_written()

    def sync(self) -> None:
        """Make everything written so far durable, as the policy allows (see FsyncPolicy).
        A hard state whose term or vote changed is always written; one where only the commit
        index moved is written at most every ``commit_persist_interval_ms`` (and on close):
        the commit index is volatile state in Raft (Figure 2), persisted only so a restart
        can apply sooner, and writing it on every Ready would triple the syncs per Ready."""
        self._check_open()
        if self.policy is FsyncPolicy.NEVER:
            if self._hs_write_due():
                self._log_hard_state()
            return
        if self.policy is FsyncPolicy.BATCH:
            elapsed_ms = (self._clock() - self._last_fsync) * 1000.0
            if elapsed_ms < self.batch_interval_ms:
                return
        self.flush()

    def flush_if_due(self) -> bool:
        """BATCH: fsync now if something is pending and the interval has passed (the runtime
        calls this on every tick so a quiet node does not keep writes unsynced). Returns
        whether it synced."""
        self._check_open()
        if self.policy is not FsyncPolicy.BATCH or not self.pending_sync():
            return False
        if (self._clock() - self._last_fsync) * 1000.0 < self.batch_interval_ms:
            return False
        self.flush()
        return True

    def pending_sync(self) -> bool:
        """Whether something written (entries, a term or a vote) is not yet durable."""
        hs, written = self._hs, self._hs_written
        return (
            self._wal.dirty()
            or (hs.term, hs.vote) != (written.term, written.vote)
            or self._durable_index < self.last_index()
        )

    def flush(self, *, include_commit: bool = False) -> None:
        """Write the hard state into the WAL if it is due (see :meth:`sync`;
        ``include_commit`` writes a changed commit index regardless), then fdatasync the WAL;
        whatever the policy."""
        self._check_open()
        if self._hs_write_due(include_commit):
            self._log_hard_state()
        try:
            self._wal.sync()
        except StorageIOError:
            self._hs_written = HardState(term=-1)  # unknown: written again next time
            raise
        self._durable_index = self.last_index()
        self._last_fsync = self._clock()

    # -- split sync, for a writer thread (raft.runtime.node's asynchronous durable writes) --
    def sync_begin(self, *, include_commit: bool = False) -> SyncTicket | None:
        """Start a sync that another thread finishes with ``ticket.run()`` while this one
        goes on appending; hand the ticket back to :meth:`sync_end` here afterwards. Covers
        the entries and hard state written so far (a hard state change that is due, or any
        change with ``include_commit``, is written into the WAL first). ``None`` when the
        split does not apply (policy not ALWAYS, a directory to sync) or there is nothing
        to make durable: then call :meth:`sync` if :meth:`pending_sync`, with no ticket
        outstanding."""
        self._check_open()
        if self.policy is not FsyncPolicy.ALWAYS:
            return None
        if self._hs_write_due(include_commit):
            self._log_hard_state()
        point = self._wal.sync_point()
        return None if point is None else SyncTicket(point)

    def sync_end(self, ticket: SyncTicket) -> None:
        """Book what ``ticket.run()`` made durable; re-raises its failure as the
        StorageIOError :meth:`sync` would have raised (the unsynced suffix is dropped)."""
        point, err = ticket.point, ticket.error
        if err is not None:
            self._wal.sync_failed(point)
            self._hs_written = HardState(term=-1)  # unknown: written again next time
            raise io_error("sync", point.path, err) from err
        self._wal.synced(point)
        self._durable_index = max(self._durable_index, point.last_index)
        self._last_fsync = self._clock()

    def _hs_write_due(self, include_commit: bool = False) -> bool:
        hs, written = self._hs, self._hs_written
        if hs == written:
            return False
        if (hs.term, hs.vote) != (written.term, written.vote) or include_commit:
            return True
        return (self._clock() - self._last_hs_write) * 1000.0 >= self.commit_persist_interval_ms

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Install ``snap`` (a follower receiving it): the file is made durable first, then
        the whole log is dropped, as MemoryStorage does."""
        self._check_open()
        if snap.meta.index <= self._snap.meta.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {snap.meta.index} is not newer than {self._snap.meta.index}"
            )
        self._snaps.save(snap, durable=self.policy is not FsyncPolicy.NEVER)
        self._snap = snap
        self._preserve_hard_state()
        self._wal.reset(snap.meta.index + 1)
        self._log_hard_state()
        self._off_index, self._off_term = snap.meta.index, snap.meta.term
        self._durable_index = min(self._durable_index, snap.meta.index)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Write a snapshot of the state machine as of ``index`` (durably, atomically; older
        snapshot files beyond the newest two are deleted). Does not compact."""
        snap = Snapshot(meta=self.snapshot_meta(index, conf_state), data=data)
        self.write_snapshot_file(snap)
        self.adopt_snapshot(snap)
        return snap

    # -- create_snapshot in three steps, so the file is written off the driver's loop --
    def snapshot_meta(self, index: int, conf_state: ConfState) -> SnapshotMeta:
        """Step 1 (driver): the metadata of a snapshot at ``index``, which must be newer than
        the current snapshot and within the log."""
        self._check_open()
        if index <= self._snap.meta.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snap.meta.index}"
            )
        if index > self.last_index():
            raise UnavailableError(f"snapshot index {index} is past last index {self.last_index()}")
        return SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)

    def write_snapshot_file(self, snap: Snapshot) -> None:
        """Step 2 (any thread): write the file durably and atomically. Touches no state of
        this object but the snapshot directory (whose writers are serialised), so the driver
        may go on appending meanwhile. The snapshot is not in effect until step 3."""
        self._snaps.save(snap, durable=self.policy is not FsyncPolicy.NEVER)

    def adopt_snapshot(self, snap: Snapshot) -> bool:
        """Step 3 (driver): make ``snap``, whose file is durable, the current snapshot (what
        :meth:`snapshot` returns and :meth:`compact` may compact up to). False, and nothing
        changes, when a newer one was installed meanwhile (its file then outranks this one)."""
        self._check_open()
        if snap.meta.index <= self._snap.meta.index:
            return False
        self._snap = snap
        return True

    def compact(self, index: int) -> None:
        """Drop entries ``<= index`` and delete the segments that hold only such entries.
        ``index`` must be covered by the snapshot (else CompactionNotCoveredError)."""
        self._check_open()
        if index <= self._off_index:
            return
        if index > self.last_index():
            raise UnavailableError(f"compact index {index} is past last index {self.last_index()}")
        if index > self._snap.meta.index:
            raise CompactionNotCoveredError(
                f"compact({index}) but the newest snapshot covers only up to "
                f"{self._snap.meta.index}"
            )
        term = self._wal.term(index)
        self._wal.forget_before(index + 1)
        self._off_index, self._off_term = index, term

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Sync everything (whatever the policy) and release the directory. Idempotent."""
        if self._closed:
            return
        try:
            self.flush(include_commit=True)
        finally:
            self._closed = True
            self._wal.close()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)

    def abandon(self) -> None:
        """Release files and lock without syncing (tests: what a crash leaves behind)."""
        if self._closed:
            return
        self._closed = True
        self._wal.close()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError(f"{self.data_dir} is closed")
