"""Durable storage for Raft nodes: a segmented write-ahead log, the hard state file and
snapshot files under one data directory (layout and guarantees: docs/storage.md).

:class:`DiskStorage` implements :class:`raft.core.storage.LogStorage` with the semantics of
:class:`raft.core.storage.MemoryStorage`; opening it recovers the directory and reports what
it fixed in a :class:`RecoveryReport`. :func:`repair` (``raft repair DATA_DIR``) cuts a
damaged log back to its longest valid prefix.
"""

from raft.storage.disk import DiskStorage, FsyncPolicy, RecoveryReport, TornTail
from raft.storage.errors import (
    CompactionNotCoveredError,
    CorruptHardStateError,
    CorruptLogError,
    CorruptSnapshotError,
    DiskFullError,
    StorageClosedError,
    StorageError,
    StorageIOError,
    StorageLockedError,
)
from raft.storage.repair import RepairReport, repair

__all__ = [
    "CompactionNotCoveredError",
    "CorruptHardStateError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "DiskFullError",
    "DiskStorage",
    "FsyncPolicy",
    "RecoveryReport",
    "RepairReport",
    "StorageClosedError",
    "StorageError",
    "StorageIOError",
    "StorageLockedError",
    "TornTail",
    "repair",
]
