"""``raft repair DATA_DIR``: cut a damaged data directory back to its longest valid prefix.

A node refuses to open a directory whose log is damaged anywhere but at the torn tail
(:class:`~raft.storage.errors.CorruptLogError`): silently dropping entries it may have
acknowledged could break Raft's guarantees. An operator who accepts that loss (the node will
fetch the missing entries from the leader, or a snapshot, as long as a majority still has them)
runs this repair, which:

- removes stale ``*.tmp`` files of interrupted atomic writes;
- removes snapshot files that fail their checksum (the newest valid one is used);
- keeps the WAL from the snapshot up to the first damage: the damaged segment is cut at the
  damage offset, every later segment is deleted, a log that does not connect to the snapshot
  is dropped entirely;
- clamps the stored commit index to the kept log; a damaged hard state file, or a cut that
  may have removed the newest hard state record of the WAL, is replaced by ``(term = the
  term lease, vote withheld)``: the lease bounds every term the node stored, so it cannot
  vote twice in a term (without a lease file: the highest term seen, and the node is marked
  recovering);
- marks the node recovering (``RECOVERING``, written before anything is cut) whenever it
  drops entries: the node may have acknowledged them, so it must not vote until a leader
  brought it back (protocol-aware recovery, docs/storage.md).

Everything dropped (files, byte offsets, index range) is in the :class:`RepairReport`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from raft.core.types import HardState, Snapshot
from raft.storage._files import TEMP_SUFFIX, fsync_dir
from raft.storage.disk import lock_data_dir, newer_hard_state
from raft.storage.errors import CorruptHardStateError, CorruptSnapshotError, io_error
from raft.storage.hardstate import HardStateFile
from raft.storage.recovering import (
    RECOVERING_FILE,
    WITHHELD_VOTE,
    clear_recovering,
    load_term_lease,
    mark_recovering,
)
from raft.storage.snapshots import SnapshotStore
from raft.storage.wal import WAL_DIR, WalScan, cut_at_damage, scan_wal


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :func:`repair` found and (unless ``dry_run``) changed."""

    data_dir: str
    dry_run: bool
    damage: str | None
    """Where the log is damaged and why (``path: byte N: reason``), or None."""
    kept: tuple[int, int]
    """``(first, last)`` index range of the log that is kept (``last < first``: empty)."""
    dropped_range: tuple[int, int] | None
    """``(lo, hi)`` indexes dropped; ``hi`` is the highest intact index found after the
    damage (``hi == lo - 1`` when none was intact)."""
    dropped_files: tuple[str, ...]
    truncated: tuple[str, int] | None
    """``(segment, byte offset)`` the damaged segment is cut at."""
    removed_temp_files: tuple[str, ...]
    removed_snapshots: tuple[str, ...]
    commit_clamped: tuple[int, int] | None
    hardstate_reset: HardState | None
    lease_missing: bool = False
    """The hard state was damaged and no term lease bounded its term."""
    recovering: str | None = None
    """Why the node is marked recovering (it lost entries or a vote it may have
    acknowledged), or None."""

    def changed(self) -> bool:
        """Whether the directory needs (or, without dry run, got) a change."""
        return bool(
            self.damage
            or self.dropped_files
            or self.truncated
            or self.removed_temp_files
            or self.removed_snapshots
            or self.commit_clamped
            or self.hardstate_reset
        )

    def lines(self) -> list[str]:
        """Human-readable account, one fact per line."""
        verb = "would " if self.dry_run else ""
        out = [f"data dir: {self.data_dir}"]
        if not self.changed():
            out.append("nothing to repair: every record verified")
            return out
        if self.damage:
            out.append(f"damage: {self.damage}")
        first, last = self.kept
        out.append(
            f"{verb}keep log {first}..{last}" if last >= first else f"{verb}keep an empty log"
        )
        if self.dropped_range is not None:
            lo, hi = self.dropped_range
            rng = f"{lo}..{hi}" if hi >= lo else f"from {lo} on (no intact record after it)"
            out.append(f"{verb}drop entries {rng}")
        if self.truncated is not None:
            out.append(f"{verb}truncate {self.truncated[0]} at byte {self.truncated[1]}")
        out += [f"{verb}delete segment {p}" for p in self.dropped_files]
        out += [f"{verb}delete stale temp file {p}" for p in self.removed_temp_files]
        out += [f"{verb}delete damaged snapshot {p}" for p in self.removed_snapshots]
        if self.commit_clamped is not None:
            out.append(f"{verb}lower commit {self.commit_clamped[0]} to {self.commit_clamped[1]}")
        if self.hardstate_reset is not None:
            hs = self.hardstate_reset
            out.append(
                f"{verb}replace the damaged hard state with term {hs.term} (vote withheld in "
                f"that term), commit {hs.commit}"
            )
            if self.lease_missing:
                out.append(
                    "WARNING: no term lease: if this node voted in a term above "
                    f"{hs.term} it may vote twice in that term"
                )
        if self.recovering is not None:
            out.append(
                f"{verb}mark the node recovering: it will not vote until a leader brought it "
                f"back ({self.recovering})"
            )
        return out


def _temp_files(data_dir: str) -> list[str]:
    out = []
    for sub in ("", WAL_DIR, "snap"):
        d = os.path.join(data_dir, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(TEMP_SUFFIX)]
    return out


def repair(data_dir: str | os.PathLike[str], *, dry_run: bool = False) -> RepairReport:
    """Find damage in ``data_dir`` and, unless ``dry_run``, keep the longest valid prefix.
    Takes the directory lock (fails with StorageLockedError while a node runs on it)."""
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    lock_fd = lock_data_dir(root)
    try:
        return _repair_locked(root, dry_run)
    finally:
        os.close(lock_fd)


def _repair_locked(root: str, dry_run: bool) -> RepairReport:
    temps = _temp_files(root)
    store = SnapshotStore(root)
    bad_snaps: list[str] = []
    snap = Snapshot()
    for _, _, path in reversed(store.files()):
        try:
            snap = store.load(path)
            break
        except CorruptSnapshotError:
            bad_snaps.append(path)
    snap_index = snap.meta.index

    scan = scan_wal(os.path.join(root, WAL_DIR))
    damage_text = None
    dropped_range = None
    if scan.damage is not None:
        d = scan.damage
        damage_text = f"{d.path}: byte {d.offset}: {d.reason}"
        dropped_range = (d.index, max(scan.highest_index_seen, d.index - 1))
    kept_first, kept_last = scan.first_index, scan.last_index
    dropped_files: list[str] = list(scan.after_damage)
    if scan.damage is not None and scan.damaged_segment_dropped:
        dropped_files.append(scan.damage.path)
    truncated = None
    if scan.damage is not None and not scan.damaged_segment_dropped:
        truncated = (scan.damage.path, scan.damage.offset)

    all_dropped = False
    if scan.segments and kept_first > snap_index + 1:
        # The valid prefix starts after the snapshot ends: none of it is usable. (A log that
        # ends before the snapshot is merely superseded; opening the storage drops it.)
        damage_text = damage_text or (
            f"log {kept_first}..{kept_last} does not connect to snapshot index {snap_index}"
        )
        lo = kept_first if dropped_range is None else min(kept_first, dropped_range[0])
        hi = kept_last if dropped_range is None else max(kept_last, dropped_range[1])
        dropped_range = (lo, hi)
        dropped_files = [s.path for s in scan.segments] + [
            p for p in dropped_files if p not in {s.path for s in scan.segments}
        ]
        truncated = None
        all_dropped = True
    if all_dropped or not scan.segments or kept_last < snap_index:
        kept_first, kept_last = snap_index + 1, snap_index
    else:
        kept_first = max(kept_first, snap_index + 1)

    hs_file = HardStateFile(root)
    hs_reset = None
    clamped = None
    lease_missing = False
    try:
        hs = newer_hard_state(hs_file.load(), scan.hard_state)
        # Records after the damage are cut: the newest hard state may be among them.
        hs_lost = scan.damage is not None or all_dropped
    except CorruptHardStateError:
        wal_term = 0 if scan.hard_state is None else scan.hard_state.term
        hs = HardState(term=wal_term, commit=min(snap_index, kept_last))
        hs_lost = True
    if hs_lost:
        top_term = max(snap.meta.term, scan.terms[-1] if len(scan.terms) else 0, hs.term)
        lease = load_term_lease(root)
        lease_missing = lease is None
        term = max(top_term, lease or 0)
        hs = hs_reset = HardState(term=term, vote=WITHHELD_VOTE, commit=hs.commit)
    if hs.commit > kept_last:
        clamped = (hs.commit, kept_last)
        hs = HardState(hs.term, hs.vote, kept_last)
        if hs_reset is not None:
            hs_reset = hs

    report = RepairReport(
        data_dir=root,
        dry_run=dry_run,
        damage=damage_text,
        kept=(kept_first, kept_last),
        dropped_range=dropped_range,
        dropped_files=tuple(dropped_files),
        truncated=truncated,
        removed_temp_files=tuple(temps),
        removed_snapshots=tuple(bad_snaps),
        commit_clamped=clamped,
        hardstate_reset=hs_reset,
        lease_missing=lease_missing,
        recovering=_recovering_reason(dropped_range, all_dropped, kept_first, lease_missing),
    )
    if not dry_run and report.changed():
        _apply(root, scan, all_dropped, report, hs)
    return report


def _recovering_reason(
    dropped: tuple[int, int] | None, all_dropped: bool, kept_first: int, lease_missing: bool
) -> str | None:
    if dropped is not None or all_dropped:
        lo = kept_first if dropped is None or all_dropped else dropped[0]
        return f"raft repair dropped entries from index {lo}"
    if lease_missing:
        return "raft repair restored a damaged hard state without a term lease"
    return None


def _apply(
    root: str, scan: WalScan, all_dropped: bool, report: RepairReport, hs: HardState
) -> None:
    if report.recovering is not None:
        # Before anything is cut, so a crash during the repair still leaves the marker.
        mark_recovering(root, report.recovering)
    for path in report.removed_temp_files + report.removed_snapshots:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise io_error("remove", path, exc) from exc
    if all_dropped:
        for path in reversed(report.dropped_files):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise io_error("remove segment", path, exc) from exc
    else:
        cut_at_damage(scan, durable=True)
    if report.commit_clamped is not None or report.hardstate_reset is not None:
        HardStateFile(root).write(hs, durable=True)
    for sub in ("", WAL_DIR, "snap"):
        d = os.path.join(root, sub)
        if os.path.isdir(d):
            fsync_dir(d)


def mark_wiped(data_dir: str | os.PathLike[str]) -> None:
    """``raft repair --wiped``: the node's data was lost. Create its (empty) directory
    marked recovering, so it does not vote before a leader brought it back. Refuses a
    directory that holds a log or a hard state: that is not a wiped node."""
    root = os.fspath(data_dir)
    os.makedirs(root, exist_ok=True)
    lock_fd = lock_data_dir(root)
    try:
        for name in ("hardstate", WAL_DIR, "snap"):
            p = os.path.join(root, name)
            if os.path.exists(p) and (not os.path.isdir(p) or os.listdir(p)):
                raise FileExistsError(f"{p} exists: {root} is not a wiped data directory")
        mark_recovering(root, "raft repair --wiped: the node's data was lost")
        fsync_dir(os.path.dirname(os.path.abspath(root)))
    finally:
        os.close(lock_fd)


def accept_loss(data_dir: str | os.PathLike[str], *, dry_run: bool = False) -> bool:
    """``raft repair --accept-loss``: drop the recovering mark. Returns whether there was
    one."""
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    lock_fd = lock_data_dir(root)
    try:
        if dry_run:
            return os.path.exists(os.path.join(root, RECOVERING_FILE))
        return clear_recovering(root)
    finally:
        os.close(lock_fd)
