"""Small file-system helpers shared by the WAL, the hard state and the snapshot store.

Every helper turns an ``OSError`` into a :class:`~raft.storage.errors.StorageIOError` (or
:class:`~raft.storage.errors.DiskFullError`) naming the operation and the path, and leaves no
half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os

from raft.storage.errors import io_error

TEMP_SUFFIX = ".tmp"
"""Files being written before an atomic rename end in this; any found at start are stale."""


def fsync_dir(path: str) -> None:
    """Make the directory entries in ``path`` (creations, renames, deletions) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise io_error("open directory", path, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise io_error("fsync directory", path, exc) from exc
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (the kernel may write less than asked)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:  # pragma: no cover - pwrite raises rather than returning 0 on Linux
            raise OSError(5, "short write")
        done += n


def atomic_write(path: str, data: bytes, *, durable: bool) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Writes ``path + ".tmp"``, fsyncs it, renames it over ``path`` and fsyncs the directory
    (the fsyncs are skipped when ``durable`` is false). On failure the temp file is removed and
    the old file is untouched.
    """
    tmp = path + TEMP_SUFFIX
    directory = os.path.dirname(path) or "."
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise io_error("create", tmp, exc) from exc
    try:
        try:
            write_all(fd, data, 0)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise io_error("write", path, exc) from exc
    if durable:
        fsync_dir(directory)


def remove_stale_temps(directory: str) -> list[str]:
    """Delete leftover ``*.tmp`` files (an interrupted atomic write); return their paths."""
    removed: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in names:
        if name.endswith(TEMP_SUFFIX):
            p = os.path.join(directory, name)
            try:
                os.unlink(p)
            except OSError as exc:
                raise io_error("remove stale temp file", p, exc) from exc
            removed.append(p)
    return removed


def read_file(path: str) -> bytes:
    """The whole file, in one big read."""
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except OSError as exc:
        raise io_error("read", path, exc) from exc
