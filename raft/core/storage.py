"""The storage contract the core reads through, and an in-memory implementation.

The core never writes to storage: it hands entries, hard state and snapshots to the driver in
a ``Ready``, the driver writes them (``LogStorage`` write methods) and then calls ``advance``.
The core reads the stable log through :class:`LogReader` only.

Index arithmetic for :class:`MemoryStorage`: ``self._ents[0]`` is a dummy entry holding the
snapshot's (index, term); ``self._ents[i]`` has log index ``i + self._ents[0].index``.
"""

from __future__ import annotations

from typing import Protocol

from raft.core.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.core.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta


class LogReader(Protocol):
    """Read side of stable storage, as the core sees it."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Hard state and membership as of the last restart."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries with index in ``[lo, hi)``. With ``max_bytes``, stop once the total
        ``size_bytes`` would exceed it, but always return at least one entry when ``lo < hi``.
        Raises CompactedError if ``lo <= snapshot index``, UnavailableError if
        ``hi > last_index() + 1``."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at ``index``; valid for ``first_index() - 1 <= index <=
        last_index()`` (``first_index() - 1`` answers from the snapshot). Raises
        CompactedError below that range, UnavailableError above it."""
        ...

    def first_index(self) -> int:
        """Index of the first entry that may be read (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """Index of the last stored entry (the snapshot index when no entry follows it)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot."""
        ...


class LogStorage(LogReader, Protocol):
    """Write side, used by the driver (runtime or simulator), never by the core."""

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``; stored entries at index >= entries[0].index are discarded
        first (conflicting suffix, Figure 2 AppendEntries step 3). Not durable until
        ``sync``."""
        ...

    def set_hard_state(self, hs: HardState) -> None:
        """Record the hard state (durable on ``sync`` or, for disk storage, atomically)."""
        ...

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the log with ``snap``: entries it covers are dropped; entries after it are
        dropped too unless they agree with it (the caller is a follower installing it)."""
        ...

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of applied ``index``."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to and including ``index`` (which a snapshot must cover)."""
        ...

    def sync(self) -> None:
        """Make everything written so far durable."""
        ...


class MemoryStorage:
    """In-memory :class:`LogStorage`, for tests and as the base of the simulator's disk."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(index=0, term=0)]

    # -- read side -----------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"index {index} is compacted (first kept {offset})")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first kept {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        out = self._ents[lo - offset : hi - offset]
        if max_bytes is None or not out:
            return list(out)
        total = 0
        for n, e in enumerate(out):
            total += e.size_bytes()
            if total > max_bytes and n > 0:
                return out[:n]
        return list(out)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- write side ----------------------------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # everything offered is already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise UnavailableError(
                f"append at {entries[0].index} leaves a gap after last index {self.last_index()}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.meta.index <= self._snapshot.meta.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {snap.meta.index} is not newer than {self._snapshot.meta.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(index=snap.meta.index, term=snap.meta.term)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snapshot.meta.index}"
            )
        if index > self.last_index():
            raise UnavailableError(f"snapshot index {index} is past last index {self.last_index()}")
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(meta=meta, data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        offset = self._ents[0].index
        if index <= offset:
            return
        if index > self.last_index():
            raise UnavailableError(f"compact index {index} is past last index {self.last_index()}")
        i = index - offset
        self._ents = [Entry(index=index, term=self._ents[i].term), *self._ents[i + 1 :]]

    def sync(self) -> None:
        """Memory is as durable as it gets here; the simulator subclasses this to model loss."""
