"""The segmented, append-only write-ahead log of Raft entries.

Files: ``<data_dir>/wal/<first_index:020d>.wal``. A segment starts with a segment-header record
and then holds entry records with consecutive indexes; segment ``k+1`` starts at the index
after segment ``k``'s last entry. Segments roll once they exceed ``segment_bytes``.

Record framing (little endian)::

    crc     u32   CRC32C of everything after it in the record (magic .. end of payload)
    magic   u16   0xA7F1, lets a scan find the next record start after damage
    type    u8    RecordType
    flags   u8    0 (reserved)
    length  u32   payload length
    payload       SEGMENT_HEADER: b"RAFTWAL\\0", u16 version, u64 first_index
                  ENTRY: u64 index, u64 term, u8 entry type (0 normal, 1 conf change), data
                  HARD_STATE: u64 term, u64 commit, u16 vote length, vote (UTF-8)

Hard state records (version 2) sit between entry records: the newest one in the WAL is the
node's term, vote and commit (see :class:`~raft.storage.disk.DiskStorage`). Every segment
created by version 2 starts with the hard state current when it was created, so deleting old
segments never deletes the newest hard state; an entry that follows a hard state record in the
same write is never durable without it (it is written first). Version 1 segments (no hard
state records) are read as before.

Invariants kept by :class:`Wal` (``base`` is the first index held in memory):

- ``terms[i]``, ``offsets[i]``, ``lengths[i]`` describe the entry with index ``base + i``;
  ``offsets`` are byte offsets in the segment that contains that index (found by bisecting
  ``firsts``).
- Only the last (active) segment may hold bytes that are not yet fsynced: a segment is
  fdatasynced before the next one is created.
- A suffix is removed by deleting whole segments from the highest down and then truncating one
  file, so a crash in between never leaves a hole in the middle of the log.

Recovery (:func:`scan_wal`) verifies every record. Damage in the last segment after which no
valid record follows is a torn tail (an interrupted write); any other damage is corruption.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import os
import re
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from raft.core.types import Entry, EntryType, HardState
from raft.storage._files import fsync_dir, read_file, write_all
from raft.storage.checksum import crc32c
from raft.storage.errors import CorruptLogError, StorageIOError, io_error

WAL_DIR = "wal"
WAL_VERSION = 2
READABLE_VERSIONS = (1, 2)
SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 << 20

MAGIC = 0xA7F1
_MAGIC_BYTES = struct.pack("<H", MAGIC)
_CRC = struct.Struct("<I")
_TAIL = struct.Struct("<HBBI")  # magic, type, flags, length (covered by the crc)
HEADER_SIZE = _CRC.size + _TAIL.size  # 12
_ENTRY_HEAD = struct.Struct("<HBBIQQB")  # tail + index, term, entry type
_ENTRY_FIXED = 17  # payload bytes before the data
_ENTRY_REC = struct.Struct("<IHBBIQQB")  # a whole entry record header, for scanning
_SEG_PAYLOAD = struct.Struct("<8sHQ")
_SEG_MAGIC = b"RAFTWAL\x00"
SEGMENT_HEADER_SIZE = HEADER_SIZE + _SEG_PAYLOAD.size  # 30
_NAME = re.compile(r"^(\d{20})\.wal$")

_ETYPE_CODE = {EntryType.NORMAL: 0, EntryType.CONF_CHANGE: 1}
_CODE_ETYPE = (EntryType.NORMAL, EntryType.CONF_CHANGE)


CACHE_BYTES_MAX = 16 << 20
"""The read cache of recent entries holds at most this many record bytes (and at most twice
``cache_entries`` entries)."""


class RecordType(enum.IntEnum):
    SEGMENT_HEADER = 1
    ENTRY = 2
    HARD_STATE = 3


_HS_PAYLOAD = struct.Struct("<QQH")  # term, commit, vote length
_HS_MAX_VOTE = 1024


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def encode_segment_header(first_index: int) -> bytes:
    payload = _SEG_PAYLOAD.pack(_SEG_MAGIC, WAL_VERSION, first_index)
    body = _TAIL.pack(MAGIC, RecordType.SEGMENT_HEADER, 0, len(payload)) + payload
    return _CRC.pack(crc32c(body)) + body


def encode_hard_state_record(hs: HardState) -> bytes:
    """A HARD_STATE record holding ``hs``."""
    vote = hs.vote.encode()
    if len(vote) > _HS_MAX_VOTE:
        raise ValueError(f"vote {hs.vote[:40]!r}... is longer than {_HS_MAX_VOTE} bytes")
    payload = _HS_PAYLOAD.pack(hs.term, hs.commit, len(vote)) + vote
    body = _TAIL.pack(MAGIC, RecordType.HARD_STATE, 0, len(payload)) + payload
    return _CRC.pack(crc32c(body)) + body


def decode_hard_state_record(data: bytes | memoryview, off: int) -> tuple[HardState, int] | None:
    """The hard state record at ``off`` and its total length, or None if there is no intact
    one there (wrong type, short, checksum or contents bad)."""
    n = len(data)
    if n - off < HEADER_SIZE + _HS_PAYLOAD.size:
        return None
    crc, magic, rtype, _flags, length = struct.unpack_from("<IHBBI", data, off)
    end = off + HEADER_SIZE + length
    if magic != MAGIC or rtype != RecordType.HARD_STATE or end > n:
        return None
    if length < _HS_PAYLOAD.size or crc32c(memoryview(data)[off + 4 : end]) != crc:
        return None
    term, commit, vlen = _HS_PAYLOAD.unpack_from(data, off + HEADER_SIZE)
    if vlen != length - _HS_PAYLOAD.size:
        return None
    start = off + HEADER_SIZE + _HS_PAYLOAD.size
    try:
        vote = bytes(data[start:end]).decode()
    except UnicodeDecodeError:
        return None
    return HardState(term=term, vote=vote, commit=commit), end - off


def encode_entries(
    entries: Sequence[Entry], out: bytearray, prev_index: int, prev_term: int
) -> list[int]:
    """Append the records of ``entries`` to ``out``; return each record's length. Refuses
    (ValueError) entries that do not follow ``(prev_index, prev_term)`` with consecutive
    indexes and non-decreasing terms: a Raft log never has them, and recovery treats them as
    damage."""
    lengths = []
    pack = _ENTRY_HEAD.pack
    crc = crc32c
    pack_crc = _CRC.pack
    for e in entries:
        if e.index != prev_index + 1 or e.term < prev_term:
            raise ValueError(
                f"entry {e.index} (term {e.term}) cannot follow entry {prev_index} "
                f"(term {prev_term}): indexes must be consecutive and terms non-decreasing"
            )
        prev_index, prev_term = e.index, e.term
        body = pack(MAGIC, RecordType.ENTRY, 0, _ENTRY_FIXED + len(e.data), e.index, e.term,
                    _ETYPE_CODE[e.type]) + e.data  # fmt: skip
        out += pack_crc(crc(body))
        out += body
        lengths.append(_CRC.size + len(body))
    return lengths


def decode_entry(path: str, buf: bytes | memoryview, off: int, length: int) -> Entry:
    """Decode and verify the entry record at ``off`` (of total size ``length``)."""
    crc, magic, rtype, _flags, plen, index, term, code = _ENTRY_REC.unpack_from(buf, off)
    end = off + length
    if (
        magic != MAGIC
        or rtype != RecordType.ENTRY
        or plen + HEADER_SIZE != length
        or code > 1
        or crc32c(memoryview(buf)[off + 4 : end]) != crc
    ):
        raise CorruptLogError(path, off, "entry record failed verification on read")
    return Entry(
        index=index,
        term=term,
        data=bytes(buf[off + HEADER_SIZE + _ENTRY_FIXED : end]),
        type=_CODE_ETYPE[code],
    )


# -- recovery scan -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Damage:
    """Where the scan stopped. ``torn`` is true when this is the last segment and no valid
    record follows the damage (an interrupted write, safe to cut off); ``index`` is the log
    index that was expected at ``offset``."""

    path: str
    offset: int
    reason: str
    torn: bool
    index: int


@dataclass(slots=True)
class ScannedSegment:
    path: str
    first_index: int
    valid_end: int
    """Bytes of the file that hold valid records (the file may be longer only when damaged)."""


@dataclass(slots=True)
class WalScan:
    """The valid prefix of the WAL plus what stopped the scan, if anything."""

    segments: list[ScannedSegment] = field(default_factory=list)
    first_index: int = 0
    terms: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    lengths: array[int] = field(default_factory=lambda: array("L"))
    damage: Damage | None = None
    damaged_segment_dropped: bool = False
    """The damaged segment's own header is bad: none of it is part of the valid prefix."""
    after_damage: list[str] = field(default_factory=list)
    """Segments after the damaged one: not part of the valid prefix."""
    highest_index_seen: int = 0
    """Best effort: the highest index of any intact record, including after the damage."""
    bytes_scanned: int = 0
    hard_state: HardState | None = None
    """The newest intact hard state record of the valid prefix (None: version 1 segments)."""

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.terms) - 1


def list_segments(wal_dir: str) -> list[tuple[int, str]]:
    """``(first_index, path)`` of every segment file, in index order."""
    try:
        names = os.listdir(wal_dir)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _NAME.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(wal_dir, name)))
    out.sort()
    return out


def _valid_records_after(data: bytes, after: int, min_index: int) -> list[int]:
    """Indexes (``>= min_index``) of intact entry records that start at an offset greater
    than ``after``, found by their magic; used to tell a torn tail from corruption."""
    found: list[int] = []
    n = len(data)
    mv = memoryview(data)
    pos = data.find(_MAGIC_BYTES, after + 5)
    while pos != -1:
        start = pos - 4
        if n - start >= _ENTRY_REC.size:
            crc, _m, rtype, _f, length, index, _t, code = _ENTRY_REC.unpack_from(data, start)
            end = start + HEADER_SIZE + length
            if (
                rtype == RecordType.ENTRY
                and length >= _ENTRY_FIXED
                and end <= n
                and code <= 1
                and index >= min_index
                and crc32c(mv[start + 4 : end]) == crc
            ):
                found.append(index)
                pos = data.find(_MAGIC_BYTES, end + 4)
                continue
        pos = data.find(_MAGIC_BYTES, pos + 1)
    return found


def _hard_state_after(data: bytes, after: int) -> bool:
    """Whether an intact hard state record starts after offset ``after``."""
    mv = memoryview(data)
    pos = data.find(_MAGIC_BYTES, after + 5)
    while pos != -1:
        if pos >= 4 and decode_hard_state_record(mv, pos - 4) is not None:
            return True
        pos = data.find(_MAGIC_BYTES, pos + 1)
    return False


def _check_segment_header(data: bytes, first_index: int) -> str | None:
    if len(data) < SEGMENT_HEADER_SIZE:
        return f"segment header truncated ({len(data)} bytes)"
    crc, magic, rtype, _flags, length = struct.unpack_from("<IHBBI", data, 0)
    if magic != MAGIC or rtype != RecordType.SEGMENT_HEADER or length != _SEG_PAYLOAD.size:
        return "bad segment header record"
    if crc32c(memoryview(data)[4:SEGMENT_HEADER_SIZE]) != crc:
        return "segment header checksum mismatch"
    seg_magic, version, first = _SEG_PAYLOAD.unpack_from(data, HEADER_SIZE)
    if seg_magic != _SEG_MAGIC:
        return "bad segment magic"
    if version not in READABLE_VERSIONS:
        return f"unsupported WAL version {version}"
    if first != first_index:
        return f"segment header says first index {first}, file name says {first_index}"
    return None


def _scan_entries(
    data: bytes, expect: int, last_term: int, scan: WalScan
) -> tuple[int, int, int, str | None]:
    """Verify entry records from the end of the segment header. Returns ``(offset reached,
    next expected index, last term, reason it stopped or None at a clean end)``."""
    n = len(data)
    mv = memoryview(data)
    off = SEGMENT_HEADER_SIZE
    unpack = _ENTRY_REC.unpack_from
    crc_of = crc32c
    terms_add = scan.terms.append
    offsets_add = scan.offsets.append
    lengths_add = scan.lengths.append
    stop = n - _ENTRY_REC.size  # a record starting after this cannot be whole
    magic_ok, entry_type, hsize, fixed = MAGIC, int(RecordType.ENTRY), HEADER_SIZE, _ENTRY_FIXED
    # The fast path checks everything in as few branches as possible; the slow path below
    # says what was wrong.
    while True:
        if off > stop:
            # Too short for an entry record; a hard state record is shorter.
            hs = decode_hard_state_record(mv, off) if off < n else None
            if hs is None:
                break
            scan.hard_state = hs[0]
            off += hs[1]
            continue
        crc, magic, rtype, _flags, length, index, term, code = unpack(data, off)
        end = off + hsize + length
        if (
            magic != magic_ok
            or end > n
            or rtype != entry_type
            or length < fixed
            or code > 1
            or index != expect
            or term < last_term
            or crc_of(mv[off + 4 : end]) != crc
        ):
            hs = decode_hard_state_record(mv, off)
            if hs is not None:
                scan.hard_state = hs[0]
                off += hs[1]
                continue
            return off, expect, last_term, _record_problem(data, off, expect, last_term)
        terms_add(term)
        offsets_add(off)
        lengths_add(end - off)
        last_term = term
        expect += 1
        off = end
    if off < n:
        return off, expect, last_term, f"truncated record ({n - off} bytes left)"
    return off, expect, last_term, None


def _record_problem(data: bytes, off: int, expect: int, last_term: int) -> str:
    """Why the record at ``off`` failed verification (the order matches how much of the record
    can be trusted: framing first, then the checksum, then the contents)."""
    crc, magic, rtype, _flags, length, index, term, code = _ENTRY_REC.unpack_from(data, off)
    end = off + HEADER_SIZE + length
    if magic != MAGIC:
        return "bad record magic"
    if end > len(data):
        return f"record of {length} bytes runs past end of file"
    if crc32c(memoryview(data)[off + 4 : end]) != crc:
        return "checksum mismatch"
    if rtype != RecordType.ENTRY or length < _ENTRY_FIXED or code > 1:
        return f"unexpected record type {rtype}"
    if index != expect:
        return f"index {index} where {expect} was expected"
    return f"term {term} after term {last_term}"


def scan_wal(wal_dir: str) -> WalScan:
    """Read and verify every segment; stop at the first damage. Changes nothing on disk."""
    scan = WalScan()
    files = list_segments(wal_dir)
    expect = 0
    last_term = 0
    for k, (first, path) in enumerate(files):
        is_last = k == len(files) - 1
        if k == 0:
            scan.first_index = expect = first
        elif first != expect:
            what = "missing segment" if first > expect else "overlapping segment"
            scan.damage = Damage(
                path,
                0,
                f"{what}: the log reaches index {expect - 1}, this segment starts at {first}",
                torn=False,
                index=expect,
            )
            scan.damaged_segment_dropped = True
            scan.after_damage = [p for _, p in files[k + 1 :]]
            _note_highest(scan, [(first, path), *files[k + 1 :]])
            return scan
        data = read_file(path)
        scan.bytes_scanned += len(data)
        problem = _check_segment_header(data, first)
        if problem is not None:
            later = _valid_records_after(data, -1, first)
            scan.damage = Damage(path, 0, problem, torn=is_last and not later, index=expect)
            scan.damaged_segment_dropped = True
            scan.after_damage = [p for _, p in files[k + 1 :]]
            scan.highest_index_seen = max([scan.last_index, *later])
            _note_highest(scan, files[k + 1 :])
            return scan
        off, expect, last_term, problem = _scan_entries(data, expect, last_term, scan)
        scan.segments.append(ScannedSegment(path, first, off))
        scan.highest_index_seen = max(scan.highest_index_seen, expect - 1)
        if problem is not None:
            later = _valid_records_after(data, off, expect)
            torn = is_last and not later and not _hard_state_after(data, off)
            scan.damage = Damage(path, off, problem, torn=torn, index=expect)
            scan.after_damage = [p for _, p in files[k + 1 :]]
            scan.highest_index_seen = max([scan.highest_index_seen, *later])
            _note_highest(scan, files[k + 1 :])
            return scan
    return scan


def cut_at_damage(scan: WalScan, *, durable: bool = True) -> list[str]:
    """Make the files match the scan's valid prefix: delete the segments after the damage
    (highest first, so a crash midway never leaves a hole), then cut the damaged segment at
    the damage offset (or delete it when its own header is bad). Returns the deleted paths."""
    damage = scan.damage
    if damage is None:
        return []
    removed: list[str] = []
    doomed = list(reversed(scan.after_damage))
    if scan.damaged_segment_dropped:
        doomed.append(damage.path)
    for path in doomed:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise io_error("remove segment", path, exc) from exc
        removed.append(path)
    if not scan.damaged_segment_dropped:
        try:
            fd = os.open(damage.path, os.O_RDWR)
            try:
                os.ftruncate(fd, damage.offset)
                if durable:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise io_error("truncate", damage.path, exc) from exc
    if durable:
        fsync_dir(os.path.dirname(damage.path))
    return removed


def _note_highest(scan: WalScan, files: Sequence[tuple[int, str]]) -> None:
    for first, path in files:
        try:
            data = read_file(path)
        except StorageIOError:
            continue
        later = _valid_records_after(data, -1, 0)
        scan.highest_index_seen = max([scan.highest_index_seen, first, *later])


# -- the live log ------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    path: str
    first_index: int
    size: int
    synced_size: int


@dataclass(slots=True)
class SyncPoint:
    """What one off-thread sync makes durable: ``size`` bytes of the segment at ``path``
    (entries up to ``last_index``), through a private duplicate ``fd``."""

    fd: int
    path: str
    size: int
    last_index: int
    generation: int

    def run(self) -> None:
        """fdatasync, then close the duplicate; safe in any thread. Raises OSError."""
        try:
            os.fdatasync(self.fd)
        finally:
            os.close(self.fd)


class Wal:
    """The open WAL: appends, truncation, prefix removal, reads, sync.

    Writes go straight to the file (``pwrite``), so a process crash loses nothing written; a
    machine crash loses what was written after the last :meth:`sync`. With ``durable=False``
    (fsync policy NEVER) no fsync is ever issued.
    """

    def __init__(
        self,
        wal_dir: str,
        scan: WalScan,
        *,
        durable: bool,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_entries: int = 4096,
    ) -> None:
        if segment_bytes < SEGMENT_HEADER_SIZE + _ENTRY_REC.size:
            raise ValueError(f"segment_bytes={segment_bytes} is too small for one record")
        self.dir = wal_dir
        self.durable = durable
        self.segment_bytes = segment_bytes
        self._segments = [
            _Segment(s.path, s.first_index, s.valid_end, s.valid_end) for s in scan.segments
        ]
        self._firsts = [s.first_index for s in self._segments]
        self._base = scan.first_index
        self._terms = scan.terms
        self._offsets = scan.offsets
        self._lengths = scan.lengths
        self._fd = -1  # the active (last) segment, open for writing
        self._read_fds: dict[str, int] = {}
        self._dir_dirty = False
        self._generation = 0
        """Bumped when written bytes of the active segment may be cut or replaced (truncate,
        roll, reset): a :class:`SyncPoint` taken before that must not mark anything synced."""
        self._cache: list[Entry] = []
        self._cache_first = self.last_index + 1
        self._cache_max = max(1, cache_entries)
        self._cache_bytes = 0
        """Record bytes of the cached entries: the cache is bounded by bytes as well as by
        entries, since one entry may pack hundreds of commands (the runtime's batches)."""
        self._hs_record: bytes | None = (
            None if scan.hard_state is None else encode_hard_state_record(scan.hard_state)
        )
        """The newest hard state record written (or found), which every new segment starts
        with; None until there is one."""
        self._hs_cut = False
        """A truncation may have cut the newest hard state record: the next write repeats it."""
        if self._segments:
            self._open_active()

    # -- shape -------------------------------------------------------------------------
    @property
    def first_index(self) -> int:
        """First index held in memory (earlier ones are forgotten, maybe still in a file)."""
        return self._base

    @property
    def last_index(self) -> int:
        return self._base + len(self._terms) - 1

    @property
    def segment_paths(self) -> list[str]:
        return [s.path for s in self._segments]

    def term(self, index: int) -> int:
        return self._terms[index - self._base]

    def dirty(self) -> bool:
        """Whether anything written is not yet fsynced."""
        if self._dir_dirty:
            return True
        return bool(self._segments) and self._segments[-1].synced_size < self._segments[-1].size

    # -- reads -------------------------------------------------------------------------
    def limit_by_bytes(self, lo: int, hi: int, max_bytes: int) -> int:
        """The end ``h <= hi`` such that entries ``[lo, h)`` have a total ``size_bytes()`` of
        at most ``max_bytes``, but at least one entry (MemoryStorage's rule), computed from
        the index without reading the entries; stops scanning as soon as the limit is hit."""
        overhead = HEADER_SIZE + _ENTRY_FIXED - 16  # record length - Entry.size_bytes()
        lengths = self._lengths
        total = 0
        for i in range(lo - self._base, hi - self._base):
            total += lengths[i] - overhead
            if total > max_bytes and i > lo - self._base:
                return self._base + i
        return hi

    def read(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``; the caller checked the range. Verifies each record's CRC."""
        if lo >= hi:
            return []
        if lo >= self._cache_first:
            return self._cache[lo - self._cache_first : hi - self._cache_first]
        out: list[Entry] = []
        idx = lo
        stop = min(hi, self._cache_first)
        while idx < stop:
            k = bisect.bisect_right(self._firsts, idx) - 1
            seg = self._segments[k]
            seg_stop = stop if k + 1 == len(self._segments) else min(stop, self._firsts[k + 1])
            i0, i1 = idx - self._base, seg_stop - self._base
            start = self._offsets[i0]
            end = self._offsets[i1 - 1] + self._lengths[i1 - 1]
            buf = self._pread(seg.path, end - start, start)
            for i in range(i0, i1):
                out.append(decode_entry(seg.path, buf, self._offsets[i] - start, self._lengths[i]))
            idx = seg_stop
        if hi > stop:
            out.extend(self._cache[: hi - self._cache_first])
        return out

    def _pread(self, path: str, n: int, off: int) -> bytes:
        fd = self._read_fds.get(path)
        try:
            if fd is None:
                if len(self._read_fds) >= 32:
                    old_path, old_fd = next(iter(self._read_fds.items()))
                    del self._read_fds[old_path]
                    os.close(old_fd)
                fd = os.open(path, os.O_RDONLY)
                self._read_fds[path] = fd
            buf = os.pread(fd, n, off)
        except OSError as exc:
            raise io_error("read", path, exc) from exc
        if len(buf) != n:
            raise CorruptLogError(path, off + len(buf), "file is shorter than its index says")
        return buf

    # -- writes ------------------------------------------------------------------------
    @property
    def hard_state(self) -> HardState | None:
        """The newest hard state written to (or found in) the WAL."""
        if self._hs_record is None:
            return None
        decoded = decode_hard_state_record(self._hs_record, 0)
        assert decoded is not None
        return decoded[0]

    def append(
        self, entries: Sequence[Entry], prev_term: int, hard_state: HardState | None = None
    ) -> None:
        """Write ``entries`` (consecutive indexes from ``first_index <= entries[0].index <=
        last_index + 1``, terms non-decreasing from ``prev_term``, the term of the entry before
        them) with one ``pwrite``, after durably cutting any stored suffix they replace; a
        ``hard_state`` goes first in the same write. Bad input raises ValueError before
        anything changes. On a write failure the file is cut back to where it was and the
        error raised; memory is unchanged."""
        if not entries:
            if hard_state is not None:
                self.append_hard_state(hard_state)
            return
        first = entries[0].index
        buf = bytearray()
        lengths = encode_entries(entries, buf, first - 1, prev_term)
        if first <= self.last_index:
            self.truncate_from(first)
        if not self._segments:
            self._create_segment(first)
        seg = self._segments[-1]
        head = self._hs_head(hard_state)
        if seg.first_index <= self.last_index and seg.size + len(buf) > self.segment_bytes:
            self._roll(first, hard_state)
            seg = self._segments[-1]
            head = b""  # the new segment starts with it
        start = seg.size
        try:
            write_all(self._fd, head + buf if head else buf, start)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise io_error("append", seg.path, exc) from exc
        self._hs_written(hard_state, head)
        seg.size = start + len(head) + len(buf)
        off = start + len(head)
        offsets = self._offsets
        for n in lengths:
            offsets.append(off)
            off += n
        self._terms.extend(e.term for e in entries)
        self._lengths.extend(lengths)
        self._cache.extend(entries)
        self._cache_bytes += len(buf)
        if len(self._cache) > 2 * self._cache_max or self._cache_bytes > CACHE_BYTES_MAX:
            drop = max(0, len(self._cache) - self._cache_max)
            lo = self._cache_first - self._base
            kept_bytes = self._cache_bytes - sum(self._lengths[lo : lo + drop])
            while kept_bytes > CACHE_BYTES_MAX // 2 and drop < len(self._cache) - 1:
                kept_bytes -= self._lengths[lo + drop]
                drop += 1
            del self._cache[:drop]
            self._cache_first += drop
            self._cache_bytes = kept_bytes

    def append_hard_state(self, hs: HardState) -> None:
        """Write a hard state record alone (not synced: see :meth:`sync`)."""
        if not self._segments:
            raise ValueError("no segment to write a hard state to")
        seg = self._segments[-1]
        rec = encode_hard_state_record(hs)
        try:
            write_all(self._fd, rec, seg.size)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, seg.size)
            raise io_error("write hard state", seg.path, exc) from exc
        seg.size += len(rec)
        self._hs_record = rec
        self._hs_cut = False

    def _hs_head(self, hs: HardState | None) -> bytes:
        """The hard state record to write before entries: ``hs``, or the newest one again
        after a truncation may have cut it."""
        if hs is not None:
            return encode_hard_state_record(hs)
        if self._hs_cut and self._hs_record is not None:
            return self._hs_record
        return b""

    def _hs_written(self, hs: HardState | None, head: bytes) -> None:
        if hs is not None:
            self._hs_record = head or encode_hard_state_record(hs)
        self._hs_cut = False

    def sync(self) -> None:
        """fdatasync the active segment (and the directory if entries changed). If the sync
        fails, the unsynced bytes may or may not be on disk: they are cut off (file and
        memory) and StorageIOError is raised, so nothing unsynced is ever taken as durable."""
        if not self._segments:
            if self._dir_dirty:
                fsync_dir(self.dir)
                self._dir_dirty = False
            return
        seg = self._segments[-1]
        if seg.synced_size < seg.size:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._drop_unsynced(seg)
                raise io_error("sync", seg.path, exc) from exc
            seg.synced_size = seg.size
        if self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False

    def sync_point(self) -> SyncPoint | None:
        """For a sync done by another thread while this one keeps appending: what is written
        now (the active segment's size, its file descriptor duplicated so a later roll or
        close cannot recycle it under the syncing thread). ``None`` when a plain :meth:`sync`
        is needed (the directory must be synced too) or when there is nothing to sync."""
        if self._dir_dirty or not self._segments or not self.durable:
            return None
        seg = self._segments[-1]
        if seg.synced_size >= seg.size:
            return None
        return SyncPoint(os.dup(self._fd), seg.path, seg.size, self.last_index, self._generation)

    def synced(self, point: SyncPoint) -> None:
        """``point`` was fdatasynced (by :func:`SyncPoint.run`): mark its bytes durable,
        unless the segment was cut, rolled or replaced since."""
        seg = self._segments[-1] if self._segments else None
        if seg is not None and point.generation == self._generation and seg.path == point.path:
            seg.synced_size = max(seg.synced_size, min(point.size, seg.size))

    def sync_failed(self, point: SyncPoint) -> None:
        """``point``'s fdatasync failed: drop what is not known durable, as :meth:`sync`."""
        seg = self._segments[-1] if self._segments else None
        if seg is not None and point.generation == self._generation and seg.path == point.path:
            self._drop_unsynced(seg)

    def _drop_unsynced(self, seg: _Segment) -> None:
        self._hs_cut = True
        keep = bisect.bisect_left(self._offsets, seg.synced_size, lo=self._index_lo(seg))
        self._forget_from(self._base + keep)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, seg.synced_size)
        seg.size = seg.synced_size

    def _index_lo(self, seg: _Segment) -> int:
        return max(0, seg.first_index - self._base)

    def truncate_from(self, index: int) -> None:
        """Durably remove entries ``>= index`` (``first_index <= index <= last_index + 1``):
        delete later segments from the highest down, then cut the file holding ``index``."""
        if index > self.last_index:
            return
        if index < self._base:
            raise ValueError(f"truncate at {index} below first index {self._base}")
        k = bisect.bisect_right(self._firsts, index) - 1
        while len(self._segments) > k + 1:
            self._delete_last_segment()
        seg = self._segments[-1]
        if self._fd < 0:
            self._open_active()
        cut = self._offsets[index - self._base]
        try:
            os.ftruncate(self._fd, cut)
            if self.durable:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise io_error("truncate", seg.path, exc) from exc
        seg.size = cut
        seg.synced_size = min(seg.synced_size, cut)
        self._generation += 1
        self._hs_cut = True
        self._forget_from(index)
        if self.durable and self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False

    def _forget_from(self, index: int) -> None:
        i = index - self._base
        del self._terms[i:]
        del self._offsets[i:]
        del self._lengths[i:]
        if index >= self._cache_first:
            del self._cache[index - self._cache_first :]
        else:
            self._cache = []
            self._cache_first = index
        self._cache_recount()

    def _cache_recount(self) -> None:
        lo = self._cache_first - self._base
        self._cache_bytes = sum(self._lengths[lo : lo + len(self._cache)])

    def _delete_last_segment(self) -> None:
        self._generation += 1
        seg = self._segments[-1]
        self._close_active()
        self._unlink(seg.path)
        self._segments.pop()
        self._firsts.pop()
        if seg.first_index <= self.last_index:
            self._forget_from(max(seg.first_index, self._base))
        if self._segments:
            self._open_active()

    def forget_before(self, index: int) -> None:
        """Forget entries ``< index`` from memory and delete every segment whose entries are
        all ``< index`` (never the active one), oldest first."""
        if index <= self._base:
            return
        if index > self.last_index + 1:
            raise ValueError(f"cannot forget past the log end ({index} > {self.last_index + 1})")
        drop = index - self._base
        del self._terms[:drop]
        del self._offsets[:drop]
        del self._lengths[:drop]
        self._base = index
        if self._cache_first < self._base:
            del self._cache[: self._base - self._cache_first]
            self._cache_first = self._base
            self._cache_recount()
        while len(self._segments) > 1 and self._firsts[1] <= index:
            seg = self._segments.pop(0)
            self._firsts.pop(0)
            self._unlink(seg.path)
        if self.durable and self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False

    def reset(self, first_index: int) -> None:
        """Drop every entry and segment; the log continues at ``first_index``."""
        while self._segments:
            self._delete_last_segment()
        self._terms = array("Q")
        self._offsets = array("Q")
        self._lengths = array("L")
        self._base = first_index
        self._cache = []
        self._cache_first = first_index
        self._cache_bytes = 0
        self._create_segment(first_index)

    def ensure_segment(self, first_index: int) -> None:
        """Create the first segment of an empty WAL directory."""
        if not self._segments:
            self._base = first_index
            self._cache_first = first_index
            self._create_segment(first_index)

    def close(self) -> None:
        self._close_active()
        for fd in self._read_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._read_fds.clear()

    # -- segment files -----------------------------------------------------------------
    def _roll(self, first_index: int, hard_state: HardState | None = None) -> None:
        self._generation += 1
        seg = self._segments[-1]
        if self.durable and seg.synced_size < seg.size:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._drop_unsynced(seg)
                raise io_error("sync", seg.path, exc) from exc
            seg.synced_size = seg.size
        self._create_segment(first_index, hard_state)

    def _create_segment(self, first_index: int, hard_state: HardState | None = None) -> None:
        """A new active segment: its header, then the newest hard state (``hard_state`` if
        given, else the newest written), synced, and the directory synced."""
        path = os.path.join(self.dir, segment_name(first_index))
        if hard_state is not None:
            self._hs_record = encode_hard_state_record(hard_state)
        header = encode_segment_header(first_index) + (self._hs_record or b"")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise io_error("create segment", path, exc) from exc
        try:
            write_all(fd, header, 0)
            if self.durable:
                os.fdatasync(fd)
                fsync_dir(self.dir)  # also makes earlier deletions durable
                self._dir_dirty = False
        except (OSError, StorageIOError) as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            if isinstance(exc, StorageIOError):
                raise
            raise io_error("create segment", path, exc) from exc
        self._close_active()
        self._fd = fd
        self._hs_cut = False
        synced = len(header) if self.durable else 0
        self._segments.append(_Segment(path, first_index, len(header), synced))
        self._firsts.append(first_index)
        if not self.durable:
            self._dir_dirty = True

    def _open_active(self) -> None:
        self._close_active()
        path = self._segments[-1].path
        try:
            self._fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise io_error("open segment", path, exc) from exc

    def _close_active(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _unlink(self, path: str) -> None:
        fd = self._read_fds.pop(path, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise io_error("remove segment", path, exc) from exc
        self._dir_dirty = True
