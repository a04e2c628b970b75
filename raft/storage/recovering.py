"""Durable facts for protocol-aware recovery (docs/storage.md "Protocol-aware recovery").

``<data_dir>/RECOVERING``: present while the node may have lost entries (or a vote) it
acknowledged. Opening the storage reports it (``DiskStorage.recovering``), the driver passes
it to the core (``Config.recovering``): the node neither votes nor campaigns until a leader
brought it to that leader's tail; then the driver removes the file
(``DiskStorage.clear_recovering``). It is written (durably) *before* the damage it describes
is cut, so a crash in between still finds it. Its content is one human-readable line; only
its presence matters, so a damaged marker still counts.

``<data_dir>/termlease``: an upper bound on every term the hard state ever held. Before a
hard state with a term above the lease is written, the lease is raised (durably) to that
term plus :data:`TERM_LEASE_STEP`, so it costs one extra atomic write per 16 terms. When
the hard state file is damaged, ``raft repair`` restores ``term = lease`` with the vote
withheld (:data:`WITHHELD_VOTE`): the node cannot vote a second time in any term it may have
voted in, and the next election it joins is in a term it never saw.
"""

from __future__ import annotations

import os
import struct

from raft.storage._files import atomic_write, fsync_dir, read_file
from raft.storage.checksum import crc32c
from raft.storage.errors import io_error

RECOVERING_FILE = "RECOVERING"
TERM_LEASE_FILE = "termlease"
TERM_LEASE_STEP = 16
WITHHELD_VOTE = "!withheld"
"""The vote a repaired hard state records: it names no node (node ids never contain ``!``),
so the node grants no vote in that term (one vote per term, §5.2) without knowing whom it
may have voted for."""

_LEASE_MAGIC = b"RAFTTL01"
_LEASE = struct.Struct("<8sIQ")


def recovering_reason(data_dir: str) -> str | None:
    """The marker's text if ``data_dir`` is marked recovering (``""`` if unreadable)."""
    path = os.path.join(data_dir, RECOVERING_FILE)
    if not os.path.exists(path):
        return None
    try:
        return read_file(path).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def mark_recovering(data_dir: str, reason: str, *, durable: bool = True) -> None:
    """Create (or replace) the marker. Durable on return when ``durable``."""
    atomic_write(os.path.join(data_dir, RECOVERING_FILE), reason.encode() + b"\n", durable=durable)


def clear_recovering(data_dir: str, *, durable: bool = True) -> bool:
    """Remove the marker; returns whether there was one. The removal is made durable, so
    a crash afterwards does not bring back a recovery that already finished (harmless, but
    it would cost a round of catch-up)."""
    path = os.path.join(data_dir, RECOVERING_FILE)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise io_error("remove", path, exc) from exc
    if durable:
        fsync_dir(data_dir)
    return True


def load_term_lease(data_dir: str) -> int | None:
    """The stored term lease, or None when missing or damaged."""
    path = os.path.join(data_dir, TERM_LEASE_FILE)
    if not os.path.exists(path):
        return None
    try:
        raw = read_file(path)
    except OSError:
        return None
    if len(raw) != _LEASE.size:
        return None
    magic, crc, lease = _LEASE.unpack(raw)
    if magic != _LEASE_MAGIC or crc32c(raw[12:]) != crc:
        return None
    return int(lease)


def write_term_lease(data_dir: str, lease: int, *, durable: bool) -> None:
    body = struct.pack("<Q", lease)
    raw = _LEASE.pack(_LEASE_MAGIC, crc32c(body), lease)
    atomic_write(os.path.join(data_dir, TERM_LEASE_FILE), raw, durable=durable)


class TermLease:
    """Keeps ``termlease`` above every term about to be written to the hard state."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.value = load_term_lease(data_dir) or 0

    def cover(self, term: int, *, durable: bool) -> None:
        """Call before writing a hard state with ``term``."""
        if term <= self.value:
            return
        lease = term + TERM_LEASE_STEP
        write_term_lease(self.data_dir, lease, durable=durable)
        self.value = lease


_REC_HEAD = struct.Struct("<IHBBI")  # crc, magic, type, flags, length (raft/storage/wal.py)


def may_hold_acknowledged(path: str, offset: int, reason: str) -> bool:
    """Whether the damaged tail of WAL segment ``path`` from ``offset`` may hold a record
    that was whole on disk, hence possibly synced and acknowledged, rather than the remains
    of an interrupted (never acknowledged, under ``fsync: always``) write.

    An interrupted write leaves zeros, less than a record header, or a record whose length
    runs past the end of the file. A record that runs past the end only because a bit of
    its length field flipped is told apart by trying the length that ends at the end of the
    file against the record's checksum. Anything else (a whole record failing its
    checksum, garbage where a record starts) is damage to written data."""
    try:
        data = read_file(path)[offset:]
    except OSError:
        return True
    if not any(data):
        return False
    if reason.startswith("truncated record") or len(data) < _REC_HEAD.size:
        return False
    if "runs past end of file" in reason:
        crc, magic, rtype, flags, _length = _REC_HEAD.unpack_from(data, 0)
        whole = len(data) - _REC_HEAD.size
        patched = struct.pack("<HBBI", magic, rtype, flags, whole) + data[_REC_HEAD.size :]
        return bool(crc32c(patched) == crc)
    return True
