"""The Raft log as the core sees it: the stable part (a :class:`LogReader`) followed by
entries and possibly a snapshot that the driver has not yet persisted (:class:`Unstable`).

Index arithmetic (log indexes start at 1; index 0 term 0 is the empty log's sentinel):

- The log answers ``term(i)`` for ``first_index() - 1 <= i <= last_index()``; the lower end
  is the snapshot's (index, term).
- ``Unstable.entries[k]`` has index ``Unstable.offset + k``; every index ``< offset`` lives in
  storage (or in the unstable snapshot, whose index is ``offset - 1``).
- ``committed <= last_index()`` and ``applied <= applying <= committed`` always; ``committed``
  never decreases (Figure 2: commitIndex is monotonic).

The methods a test harness may override to break Raft on purpose are small and named after
the rule they enforce: :meth:`RaftLog.maybe_commit` (the §5.4.2 current-term check),
:meth:`RaftLog.find_conflict` and :meth:`RaftLog.maybe_append` (Figure 2 AppendEntries steps
2-4: consistency check and truncation of a conflicting suffix only).
"""

from __future__ import annotations

from collections.abc import Sequence

from raft.core.errors import CompactedError, UnavailableError
from raft.core.storage import LogReader
from raft.core.types import Entry, Snapshot


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Longest prefix of ``entries`` within ``max_bytes`` (by ``size_bytes``), but never
    empty when ``entries`` is not."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for n, e in enumerate(entries):
        total += e.size_bytes()
        if total > max_bytes and n > 0:
            return entries[:n]
    return entries


class Unstable:
    """Entries and a snapshot handed to the driver (or about to be) but not yet persisted.

    ``entries[k]`` has index ``offset + k``. Entries with index ``< offset_in_progress``
    were already handed out in a Ready and are being persisted; ``offset <=
    offset_in_progress <= offset + len(entries)``.
    """

    def __init__(self, offset: int) -> None:
        assert offset >= 1, offset
        self.snapshot: Snapshot | None = None
        self.snapshot_in_progress = False
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset

    def check(self) -> None:
        """O(1) invariant check (first and last entry only; appends are contiguous by
        construction, see ``truncate_and_append``)."""
        assert self.offset <= self.offset_in_progress <= self.offset + len(self.entries)
        if self.entries:
            assert self.entries[0].index == self.offset, (self.entries[0].index, self.offset)
            last = self.entries[-1].index
            assert last == self.offset + len(self.entries) - 1, (last, self.offset)
        if self.snapshot is not None:
            assert self.snapshot.meta.index == self.offset - 1 or self.entries == []

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == i:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out in a Ready."""
        k = self.offset_in_progress - self.offset
        return self.entries[k:]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """Everything now unstable has been handed out in a Ready."""
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (with term ``term``) are durable. Ignored when that entry
        has since been replaced (its term differs) or is not unstable any more."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            return
        n = index + 1 - self.offset
        self.entries = self.entries[n:]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.meta.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        """Append ``ents``, first dropping unstable entries at index >= ents[0].index."""
        frm = ents[0].index
        if frm == self.offset + len(self.entries):
            self.entries.extend(ents)  # plain append right after our last entry
        elif frm <= self.offset:
            # Replace everything unstable; the driver truncates storage at ``frm``.
            self.entries = list(ents)
            self.offset = frm
            self.offset_in_progress = frm
        else:
            # offset < frm < offset + len: keep entries[: frm - offset], then append.
            self.entries = self.entries[: frm - self.offset] + list(ents)
            self.offset_in_progress = min(self.offset_in_progress, frm)
        self.check()

    def slice(self, lo: int, hi: int) -> list[Entry]:
        assert self.offset <= lo <= hi <= self.offset + len(self.entries), (
            lo,
            hi,
            self.offset,
            len(self.entries),
        )
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Stable storage plus unstable tail, with the commit and apply cursors."""

    def __init__(self, storage: LogReader, max_applying_bytes: int = 1 << 22) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        assert first >= 1 and last >= first - 1, (first, last)
        self.unstable = Unstable(last + 1)
        # Everything up to the snapshot is committed and applied by definition.
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_bytes = max_applying_bytes
        self.truncations: list[int] = []
        """Indexes ``from`` at which a suffix was discarded (drained into "truncate"
        events by the core)."""

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"applying={self.applying}, unstable.offset={self.unstable.offset}, "
            f"len(unstable)={len(self.unstable.entries)})"
        )

    # -- bounds and terms ----------------------------------------------------------------
    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i``; valid for ``first_index() - 1 <= i <= last_index()``.
        Raises CompactedError below, UnavailableError above."""
        dummy = self.first_index() - 1
        if i < dummy:
            raise CompactedError(f"index {i} is compacted (first index {dummy + 1})")
        if i > self.last_index():
            raise UnavailableError(f"index {i} is past the last index {self.last_index()}")
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def zero_term(self, i: int) -> int:
        """Term of entry ``i``, or 0 when it is compacted or past the end."""
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        """Whether our entry at ``i`` exists and has ``term`` (Log Matching, §5.3)."""
        try:
            return self.term(i) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a log ending at (last_index, last_term) is at least as up-to-date as ours:
        later last term wins; same last term, the longer log wins."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- reading entries -----------------------------------------------------------------
    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, size-limited but never empty when ``lo < hi``. Raises
        CompactedError when ``lo < first_index()``."""
        assert lo <= hi, (lo, hi)
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"index {lo} is compacted (first index {fi})")
        assert hi <= self.last_index() + 1, (hi, self.last_index())
        if lo == hi:
            return []
        ents: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            stop = min(hi, off)
            ents = list(self.storage.entries(lo, stop, max_bytes))
            if len(ents) < stop - lo:
                return ents  # size limit reached inside storage
            assert all(e.index == lo + k for k, e in enumerate(ents)), "storage gap"
        if hi > off:
            ents.extend(self.unstable.slice(max(lo, off), hi))
        return limit_size(ents, max_bytes)

    def entries(self, i: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries from ``i`` to the end (size-limited)."""
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_bytes)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index())

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- appending -----------------------------------------------------------------------
    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of ``entries`` that is not already in our log with the same
        term (a conflict if it is within our log, new otherwise); 0 if all are present.
        Figure 2 AppendEntries step 3: only a *conflicting* entry and what follows it may be
        deleted; entries that match are kept (they may be committed)."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Fast backtracking hint: the largest ``j <= index`` whose term is ``<= term``,
        with that term. Every entry in ``(j, index]`` has a term > ``term`` and so cannot
        match a log whose entry at ``index`` has term ``term``. Compacted/unknown entries end
        the search with term 0 (unknown)."""
        while index > 0:
            try:
                our = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Figure 2 AppendEntries receiver steps 2-5. Returns None when our log has no entry
        at ``index`` with ``log_term`` (consistency check fails, step 2); otherwise appends
        what is new (truncating a conflicting suffix, step 3-4), advances commit to
        ``min(committed, index of last new entry)`` (step 5) and returns that last new
        index ``index + len(entries)``."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        ci = self.find_conflict(entries)
        if ci != 0:
            assert ci > self.committed, (
                f"entry {ci} conflicts with committed entry (committed {self.committed})"
            )
            start = ci - (index + 1)  # entries[k] has index index + 1 + k
            assert 0 <= start < len(entries), (ci, index, len(entries))
            self.append(entries[start:])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: Sequence[Entry]) -> int:
        """Append ``entries`` (which must follow on from some index ``> committed``),
        dropping any suffix they replace. Returns the new last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        assert after >= self.committed, (
            f"after ({after}) is out of range (committed {self.committed})"
        )
        assert after <= self.last_index(), f"append at {after + 1} leaves a gap"
        if after < self.last_index():
            self.truncations.append(after + 1)
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- commit and apply ----------------------------------------------------------------
    def commit_to(self, index: int) -> None:
        """Advance commit to ``index`` (never backwards)."""
        if self.committed < index:
            assert index <= self.last_index(), (
                f"commit {index} is past last index {self.last_index()} "
                "(log corrupted, truncated or lost?)"
            )
            self.committed = index

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Leader only: commit up to ``max_index`` (acknowledged by a quorum) if that entry
        is from ``term``, the leader's current term. §5.4.2: an entry of an earlier term is
        never committed by counting replicas; it commits when a current-term entry after it
        does (Figure 8 shows why)."""
        if max_index > self.committed and self.zero_term(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        assert self.applied <= index <= self.committed, (
            f"applied({index}) out of range [applied({self.applied}), committed({self.committed})]"
        )
        self.applied = index
        self.applying = max(self.applying, index)

    def applied_snap(self, index: int) -> None:
        """The driver installed a snapshot at ``index`` into its state machine."""
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def _max_appliable_index(self) -> int:
        # Committed entries may be handed out before they are durable here: the driver
        # persists a Ready's entries before applying its committed entries.
        return self.committed

    def has_next_committed_ents(self) -> bool:
        if self.has_next_or_in_progress_snapshot():
            return False
        return self.applying < self._max_appliable_index()

    def next_committed_ents(self) -> list[Entry]:
        """Committed entries not yet handed out for applying (size-limited). None while a
        snapshot is pending: it must be installed first."""
        if self.has_next_or_in_progress_snapshot():
            return []
        lo = self.applying + 1
        hi = self._max_appliable_index() + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_bytes)

    def accept_applying(self, index: int) -> None:
        assert self.applying <= index <= self.committed, (self.applying, index)
        self.applying = index

    def has_next_unstable_ents(self) -> bool:
        return bool(self.unstable.next_entries())

    def next_unstable_ents(self) -> list[Entry]:
        return self.unstable.next_entries()

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snap: Snapshot) -> None:
        """Replace the log with ``snap`` (a follower installing a leader's snapshot)."""
        self.committed = snap.meta.index
        self.unstable.restore(snap)
