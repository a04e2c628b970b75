"""The simulator's disk: a :class:`MemoryStorage` that knows what was made durable.

Writes (``append``, ``set_hard_state``, ``apply_snapshot``) land in the volatile image at
once, exactly as a page cache would; ``sync`` copies the volatile image into the durable one
(fsync). :meth:`SimDisk.crash` throws the volatile image away and goes back to the durable
image, so a node that skipped a sync it needed (``Ready.must_sync``) restarts without the
entries, term or vote it promised to keep: the bugs Figure 2's "respond after persisting"
rule exists to prevent become visible.

Snapshots the driver takes itself (``create_snapshot`` and ``compact``) are written durably,
with everything written before them, as a write-ahead log's fsync would.

Index arithmetic is the one of :class:`MemoryStorage`: ``_ents[0]`` is a dummy entry holding
the snapshot's (index, term) and ``_ents[i]`` has log index ``i + _ents[0].index``.
"""

from __future__ import annotations

import random

from raft.core.storage import MemoryStorage
from raft.core.types import NONE, ConfState, Entry, HardState, Snapshot


class SimDisk(MemoryStorage):
    """Storage with a volatile and a durable image; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._durable_hard_state = HardState()
        self._durable_snapshot = Snapshot()
        self._durable_ents: list[Entry] = [Entry(index=0, term=0)]
        self.syncs = 0
        """How many times ``sync`` ran (a statistic, and what the tests look at)."""
        self.dirty = False
        """True while something written is not durable yet."""
        self.recovering = False
        """A disk fault cut synced entries (found by CRC at restart): the node restarts in
        protocol-aware recovery (``Config.recovering``) until the core reports
        ``recovered``. Survives crashes, like the RECOVERING marker of raft.storage."""
        self.lost: dict[int, int] = {}
        """Index -> term of the synced entries the last disk faults cut, kept while
        :attr:`recovering` (for the checker only: the core never sees it). The node may have
        acknowledged them; recovery keeps such an acknowledgement good, since the node votes
        and counts again only after a leader gave it back what it lost."""

    # -- write side ----------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        super().append(entries)
        if entries:
            self.dirty = True

    def set_hard_state(self, hs: HardState) -> None:
        super().set_hard_state(hs)
        self.dirty = True

    def apply_snapshot(self, snap: Snapshot) -> None:
        super().apply_snapshot(snap)
        self.dirty = True

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Saving a snapshot fsyncs, and like a write-ahead log's fsync it makes everything
        written before it durable too (etcd's ``WAL.SaveSnapshot``): a restarted node never
        finds a snapshot newer than its durable commit index."""
        snap = super().create_snapshot(index, conf_state, data)
        self._force_sync()
        return snap

    def compact(self, index: int) -> None:
        super().compact(index)
        self._force_sync()

    def _force_sync(self) -> None:
        self.dirty = True
        self.sync()

    def sync(self) -> None:
        """Make everything written so far durable (fsync)."""
        self.syncs += 1
        if not self.dirty:
            return
        self._durable_hard_state = self._hard_state
        self._durable_snapshot = self._snapshot
        self._durable_ents = list(self._ents)
        self.dirty = False

    # -- faults --------------------------------------------------------------------------
    def crash(self) -> None:
        """Power loss: everything written since the last ``sync`` is gone."""
        self._hard_state = self._durable_hard_state
        self._snapshot = self._durable_snapshot
        self._ents = list(self._durable_ents)
        self.dirty = False

    def damage(self, rng: random.Random) -> str:
        """A disk fault on a crashed node (FaultKind.DISK): it loses its last 1..5 synced
        entries, or a bit flips in one of its last 8 records, which the CRC check at
        restart finds and cuts from there on, as raft.storage does. Either way the storage
        knows and reports it (:attr:`recovering`). Term and vote are kept; the commit index
        is lowered to the kept log. Returns what happened ("" when the log was empty)."""
        base = self._durable_ents[0].index
        # Entries the snapshot covers are not read back at restart (raft.storage scans from
        # the snapshot on), so the fault never reaches below it.
        first = max(base, self._durable_snapshot.meta.index)
        last = self.durable_last_index()
        if last <= first:
            return ""
        if rng.random() < 0.5:
            n = rng.randint(1, min(5, last - first))
            keep = last - n
            what = f"lost its last {n} synced entries ({keep + 1}..{last})"
        else:
            bad = rng.randint(max(first + 1, last - 7), last)
            keep = bad - 1
            what = f"bit flip in entry {bad}, CRC cut {bad}..{last}"
        for e in self._durable_ents[keep - base + 1 :]:
            self.lost.setdefault(e.index, e.term)
        self._durable_ents = self._durable_ents[: keep - base + 1]
        hs = self._durable_hard_state
        self._durable_hard_state = HardState(hs.term, hs.vote, min(hs.commit, keep))
        self.crash()
        self.recovering = True
        return what

    def clear_recovering(self) -> None:
        self.recovering = False
        self.lost.clear()

    @property
    def durable_hard_state(self) -> HardState:
        return self._durable_hard_state

    def durable_last_index(self) -> int:
        return self._durable_ents[0].index + len(self._durable_ents) - 1


class ForgetfulVoteDisk(SimDisk):
    """A broken disk for the simulator's own tests: the vote never survives a crash, as if the
    node kept it in memory only. Raft then lets a restarted node vote twice in one term, which
    Election Safety must catch."""

    def crash(self) -> None:
        super().crash()
        hs = self._hard_state
        self._hard_state = HardState(term=hs.term, vote=NONE, commit=hs.commit)
        self._durable_hard_state = self._hard_state


class UnreportedLossDisk(SimDisk):
    """A broken disk for the simulator's own tests: disk faults cut synced entries but the
    loss is never reported, so the node votes at once with a log missing entries it
    acknowledged (protocol-aware recovery disabled). A stale candidate can then win with
    its vote and overwrite committed entries, which the safety checker must catch."""

    def damage(self, rng: random.Random) -> str:
        what = super().damage(rng)
        self.recovering = False
        return what
