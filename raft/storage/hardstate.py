"""The hard state file: term, vote and commit, replaced atomically.

Layout of ``<data_dir>/hardstate`` (version 1)::

    magic   8 bytes  b"RAFTHS01"
    crc     u32 LE   CRC32C of the payload
    length  u32 LE   payload length
    payload          msgpack [term, vote, commit]

It is only ever replaced by :func:`~raft.storage._files.atomic_write` (temp file, fsync,
rename, fsync of the directory), so a crash leaves the old or the new value, never a mix; a
``hardstate.tmp`` found at start is the remains of an interrupted write and is removed.
"""

from __future__ import annotations

import os
import struct

import msgpack

from raft.core.types import HardState
from raft.storage._files import TEMP_SUFFIX, atomic_write, read_file
from raft.storage.checksum import crc32c
from raft.storage.errors import CorruptHardStateError
from raft.storage.recovering import TermLease

HARDSTATE_FILE = "hardstate"
_MAGIC = b"RAFTHS01"
_HEAD = struct.Struct("<8sII")


def encode_hard_state(hs: HardState) -> bytes:
    payload: bytes = msgpack.packb([hs.term, hs.vote, hs.commit], use_bin_type=True)
    return _HEAD.pack(_MAGIC, crc32c(payload), len(payload)) + payload


def decode_hard_state(path: str, raw: bytes) -> HardState:
    """Parse a hard state file's bytes; raise CorruptHardStateError naming what is wrong."""
    if len(raw) < _HEAD.size:
        raise CorruptHardStateError(path, 0, f"file is {len(raw)} bytes, shorter than a header")
    magic, crc, length = _HEAD.unpack_from(raw, 0)
    if magic != _MAGIC:
        raise CorruptHardStateError(path, 0, f"bad magic {magic!r}")
    payload = raw[_HEAD.size :]
    if len(payload) != length:
        raise CorruptHardStateError(
            path, _HEAD.size, f"payload is {len(payload)} bytes, header says {length}"
        )
    if crc32c(payload) != crc:
        raise CorruptHardStateError(path, _HEAD.size, "checksum mismatch")
    try:
        term, vote, commit = msgpack.unpackb(payload, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptHardStateError(path, _HEAD.size, f"undecodable payload: {exc}") from exc
    if not (isinstance(term, int) and isinstance(vote, str) and isinstance(commit, int)):
        raise CorruptHardStateError(path, _HEAD.size, "payload has the wrong field types")
    return HardState(term=term, vote=vote, commit=commit)


class HardStateFile:
    """Reads and atomically replaces ``<data_dir>/hardstate``."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, HARDSTATE_FILE)
        self.lease = TermLease(data_dir)
        """Upper bound on every term written here, kept in its own file: what lets
        ``raft repair`` restore a damaged hard state without a second vote in a term."""

    def remove_stale_temp(self) -> str | None:
        """Delete ``hardstate.tmp`` left by an interrupted write; return its path if removed."""
        tmp = self.path + TEMP_SUFFIX
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            return None
        return tmp

    def load(self) -> HardState | None:
        """The stored hard state, or None when the file does not exist (a new node)."""
        if not os.path.exists(self.path):
            return None
        return decode_hard_state(self.path, read_file(self.path))

    def write(self, hs: HardState, *, durable: bool) -> None:
        """Replace the stored hard state. Durable on return when ``durable`` is true. The
        term lease is raised first when ``hs.term`` passes it."""
        self.lease.cover(hs.term, durable=durable)
        atomic_write(self.path, encode_hard_state(hs), durable=durable)
