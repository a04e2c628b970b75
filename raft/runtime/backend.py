"""The one place that chooses the node's stable storage.

:func:`open_storage` returns :class:`raft.storage.DiskStorage` on ``<data_dir>`` when that
package provides it, else the core's :class:`MemoryStorage` (nothing survives a restart; the
node logs a warning). Everything else in the runtime sees only the ``LogStorage`` protocol.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from raft.core.storage import LogStorage, MemoryStorage
from raft.runtime.config import FsyncMode

log = logging.getLogger("raft.runtime")


def disk_storage_class() -> Any | None:
    try:
        mod = importlib.import_module("raft.storage")
    except ImportError:
        return None
    return getattr(mod, "DiskStorage", None)


def open_storage(data_dir: str, fsync: FsyncMode) -> tuple[LogStorage, bool]:
    """(storage, durable). ``durable`` is False for the in-memory fallback."""
    cls = disk_storage_class()
    if cls is None:
        log.warning("raft.storage.DiskStorage is not available: using MemoryStorage")
        return MemoryStorage(), False
    os.makedirs(data_dir, exist_ok=True)
    try:
        storage = cls.open(data_dir, fsync=fsync.value)
    except TypeError:
        storage = cls.open(data_dir)
    return storage, True


def close_storage(storage: LogStorage) -> None:
    close = getattr(storage, "close", None)
    if callable(close):
        close()


def storage_failures() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the disk refused a write now" (the node stops accepting writes)."""
    try:
        from raft.storage.errors import StorageError

        return (StorageError, OSError)
    except ImportError:
        return (OSError,)
