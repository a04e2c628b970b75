"""Exceptions raised by :mod:`raft.storage`, named for what happened on disk.

Two families: the files are damaged (:class:`CorruptLogError` and friends: the node refuses to
start until ``raft repair`` is run), or the disk refused an operation now
(:class:`StorageIOError`, :class:`DiskFullError`: the write was rolled back, nothing that was
acknowledged is lost, the caller may retry once the cause is gone).
"""

from __future__ import annotations

import errno


class StorageError(Exception):
    """Base class of everything :mod:`raft.storage` raises."""


class CorruptLogError(StorageError):
    """A file holds damage that is not a torn tail: a flipped byte before the end of the log,
    a missing segment, a gap or overlap in indexes, a bad header. The node must not start on
    it (it could forget acknowledged entries); ``raft repair DATA_DIR`` keeps the longest valid
    prefix. ``offset`` is the byte offset in ``path`` where the damage starts."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at byte {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CorruptSnapshotError(CorruptLogError):
    """A snapshot file fails its checksum or cannot be decoded."""


class CorruptHardStateError(CorruptLogError):
    """The hard state file fails its checksum or cannot be decoded. It is only ever replaced by
    an atomic rename, so this is media damage, not an interrupted write."""


class StorageIOError(StorageError):
    """The operating system failed a write, sync, rename or delete (EIO, EROFS, ...). The
    operation was rolled back to the last good state where possible; nothing written by it is
    reported as durable. ``op`` names the operation (``append``, ``sync``, ...)."""

    def __init__(self, op: str, path: str, cause: OSError) -> None:
        name = errno.errorcode.get(cause.errno or 0, str(cause.errno))
        super().__init__(f"{op} failed on {path}: {name}: {cause.strerror or cause}")
        self.op = op
        self.path = path
        self.cause = cause
        self.errno = cause.errno


class DiskFullError(StorageIOError):
    """The file system ran out of space (ENOSPC or EDQUOT) during ``op``. Rolled back like any
    :class:`StorageIOError`; the same call succeeds again once space is freed."""


class StorageLockedError(StorageError):
    """Another process holds the data directory's lock (two nodes on one directory would
    interleave their logs)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is locked by another process")
        self.path = path


class CompactionNotCoveredError(StorageError):
    """``compact(index)`` was asked to drop entries no snapshot covers yet; on disk they would
    come back after a restart, so the call is refused."""


class StorageClosedError(StorageError):
    """The storage was used after ``close()``."""


def io_error(op: str, path: str, exc: OSError) -> StorageIOError:
    """The right :class:`StorageIOError` subclass for ``exc``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(op, path, exc)
    return StorageIOError(op, path, exc)
