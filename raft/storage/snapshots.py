"""Snapshot files: checksummed, written atomically, the newest two kept.

Layout of ``<data_dir>/snap/<index:020d>-<term:020d>.snap`` (version 1)::

    magic     8 bytes  b"RAFTSNP1"
    crc       u32 LE   CRC32C of meta bytes followed by data bytes
    meta_len  u32 LE
    data_len  u64 LE
    meta               msgpack {"index", "term", "voters", "learners", "voters_outgoing",
                                "learners_next", "auto_leave"}
    data               the state machine's snapshot bytes, opaque here

A snapshot is written to ``<name>.tmp``, fsynced, renamed and the directory fsynced, so a crash
leaves either no file or a complete one under the final name.
"""

from __future__ import annotations

import os
import re
import struct
import threading

import msgpack

from raft.core.types import ConfState, Snapshot, SnapshotMeta
from raft.storage._files import atomic_write, read_file, remove_stale_temps
from raft.storage.checksum import crc32c
from raft.storage.errors import CorruptSnapshotError, io_error

SNAP_DIR = "snap"
KEEP_SNAPSHOTS = 2
"""How many snapshot files survive garbage collection (the newest ones)."""

_MAGIC = b"RAFTSNP1"
_HEAD = struct.Struct("<8sIIQ")
_NAME = re.compile(r"^(\d{20})-(\d{20})\.snap$")


def snapshot_file_name(meta: SnapshotMeta) -> str:
    return f"{meta.index:020d}-{meta.term:020d}.snap"


def encode_snapshot(snap: Snapshot) -> bytes:
    cs = snap.meta.conf_state
    meta: bytes = msgpack.packb(
        {
            "index": snap.meta.index,
            "term": snap.meta.term,
            "voters": sorted(cs.voters),
            "learners": sorted(cs.learners),
            "voters_outgoing": sorted(cs.voters_outgoing),
            "learners_next": sorted(cs.learners_next),
            "auto_leave": cs.auto_leave,
        },
        use_bin_type=True,
    )
    crc = crc32c(snap.data, crc32c(meta))
    return _HEAD.pack(_MAGIC, crc, len(meta), len(snap.data)) + meta + snap.data


def decode_snapshot(path: str, raw: bytes) -> Snapshot:
    """Parse a snapshot file; raise CorruptSnapshotError saying what is wrong."""
    if len(raw) < _HEAD.size:
        raise CorruptSnapshotError(path, 0, f"file is {len(raw)} bytes, shorter than a header")
    magic, crc, meta_len, data_len = _HEAD.unpack_from(raw, 0)
    if magic != _MAGIC:
        raise CorruptSnapshotError(path, 0, f"bad magic {magic!r}")
    if _HEAD.size + meta_len + data_len != len(raw):
        raise CorruptSnapshotError(
            path,
            _HEAD.size,
            f"file is {len(raw)} bytes, header says {_HEAD.size + meta_len + data_len}",
        )
    view = memoryview(raw)
    meta_b = view[_HEAD.size : _HEAD.size + meta_len]
    data_b = view[_HEAD.size + meta_len :]
    if crc32c(data_b, crc32c(meta_b)) != crc:
        raise CorruptSnapshotError(path, _HEAD.size, "checksum mismatch")
    try:
        m = msgpack.unpackb(meta_b, raw=False)
        meta = SnapshotMeta(
            index=int(m["index"]),
            term=int(m["term"]),
            conf_state=ConfState(
                voters=frozenset(m["voters"]),
                learners=frozenset(m["learners"]),
                voters_outgoing=frozenset(m["voters_outgoing"]),
                learners_next=frozenset(m["learners_next"]),
                auto_leave=bool(m["auto_leave"]),
            ),
        )
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise CorruptSnapshotError(path, _HEAD.size, f"undecodable metadata: {exc}") from exc
    return Snapshot(meta=meta, data=bytes(data_b))


class SnapshotStore:
    """The ``snap/`` directory: save, load the newest, collect garbage."""

    def __init__(self, data_dir: str) -> None:
        self.dir = os.path.join(data_dir, SNAP_DIR)
        self._lock = threading.Lock()
        """Serialises :meth:`save` / :meth:`gc`: a snapshot the node takes is written in a
        worker thread, possibly while one received from the leader is written in another."""

    def ensure_dir(self) -> None:
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as exc:
            raise io_error("create directory", self.dir, exc) from exc

    def remove_stale_temps(self) -> list[str]:
        return remove_stale_temps(self.dir)

    def files(self) -> list[tuple[int, int, str]]:
        """``(index, term, path)`` of every snapshot file, oldest first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            m = _NAME.match(name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), os.path.join(self.dir, name)))
        out.sort()
        return out

    def load(self, path: str) -> Snapshot:
        snap = decode_snapshot(path, read_file(path))
        m = _NAME.match(os.path.basename(path))
        if m and (int(m.group(1)), int(m.group(2))) != (snap.meta.index, snap.meta.term):
            raise CorruptSnapshotError(
                path, 0, f"name says index/term {m.group(1)}/{m.group(2)}, contents disagree"
            )
        return snap

    def load_newest(self) -> Snapshot | None:
        """The newest snapshot, or None when there is none. A damaged newest file raises
        CorruptSnapshotError (falling back to an older one silently could hide that the WAL
        was compacted past it)."""
        files = self.files()
        if not files:
            return None
        return self.load(files[-1][2])

    def save(self, snap: Snapshot, *, durable: bool) -> str:
        """Write ``snap`` atomically; then keep only the newest :data:`KEEP_SNAPSHOTS`."""
        self.ensure_dir()
        path = os.path.join(self.dir, snapshot_file_name(snap.meta))
        encoded = encode_snapshot(snap)
        with self._lock:
            atomic_write(path, encoded, durable=durable)
            self._gc(KEEP_SNAPSHOTS)
        return path

    def gc(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` snapshot files; return the deleted paths."""
        with self._lock:
            return self._gc(keep)

    def _gc(self, keep: int) -> list[str]:
        files = self.files()
        removed = []
        for _, _, path in files[: max(0, len(files) - keep)]:
            try:
                os.unlink(path)
            except OSError as exc:
                raise io_error("remove old snapshot", path, exc) from exc
            removed.append(path)
        return removed
