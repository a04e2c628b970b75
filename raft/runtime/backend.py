"""The one place that chooses the node's stable storage.

:func:`open_storage` returns :class:`raft.storage.DiskStorage` on ``<data_dir>``. A node
without its durable storage must not run: if ``raft.storage`` cannot be imported (a broken
install, a missing dependency), :class:`StorageUnavailableError` says why and the node refuses
to start, instead of silently running on memory and forgetting every acknowledged write and
vote at its next restart. Everything else in the runtime sees only the ``LogStorage``
protocol.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from raft.core.storage import LogStorage
from raft.runtime.config import FsyncMode

log = logging.getLogger("raft.runtime")

DATA_DIR_MODE = 0o700


class StorageUnavailableError(RuntimeError):
    """The durable storage implementation cannot be loaded; the node must not start."""


def disk_storage_class() -> Any:
    """``raft.storage.DiskStorage``; raises StorageUnavailableError naming the cause."""
    try:
        mod = importlib.import_module("raft.storage")
    except Exception as exc:  # ImportError, or anything raised while importing it
        raise StorageUnavailableError(
            f"durable storage unavailable: importing raft.storage failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(mod, "DiskStorage", None)
    if cls is None:
        raise StorageUnavailableError(
            "durable storage unavailable: raft.storage has no DiskStorage"
        )
    return cls


def open_storage(data_dir: str, fsync: FsyncMode) -> tuple[LogStorage, bool]:
    """(storage, durable); ``durable`` is always True (kept for callers that report it)."""
    cls = disk_storage_class()
    os.makedirs(data_dir, mode=DATA_DIR_MODE, exist_ok=True)
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
