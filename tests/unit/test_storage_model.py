"""DiskStorage against the reference MemoryStorage: random append / truncate / compact /
snapshot / hard state / reopen / crash sequences must leave both with the same observable
state (hypothesis stateful testing)."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raft.core.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.core.storage import MemoryStorage
from raft.core.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from raft.storage import DiskStorage, FsyncPolicy

NODES = ("n1", "n2", "n3", "n4")
COMMIT_EVERY_MS = 0.0  # every sync writes a changed hard state, as the model assumes


class DiskMatchesMemory(RuleBasedStateMachine):
    """The model: MemoryStorage, plus the hard state as last written (what a process crash
    keeps): by a sync, and with every append and snapshot install (it rides in the WAL).
    Entries survive a process crash whatever was synced (they are written to the file at
    once); a reopen starts the log right after the newest snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="raft-model-")
        self.disk = DiskStorage(
            self.dir,
            FsyncPolicy.ALWAYS,
            segment_bytes=400,
            commit_persist_interval_ms=COMMIT_EVERY_MS,
        )
        self.mem = MemoryStorage()
        self.synced_hs = HardState()

    def teardown(self) -> None:
        self.disk.abandon()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------
    @rule(
        back=st.integers(0, 12),
        n=st.integers(1, 8),
        bump=st.integers(0, 2),
        size=st.integers(0, 60),
        conf=st.booleans(),
    )
    def append(self, back: int, n: int, bump: int, size: int, conf: bool) -> None:
        # A batch may start below first_index: both storages ignore the compacted part.
        start = max(1, self.mem.last_index() + 1 - back)
        term = self.mem.term(max(start, self.mem.first_index()) - 1) + bump
        ents = [
            Entry(
                index=start + i,
                term=term + (i // 3),
                data=bytes([(start + i) % 256]) * size,
                type=EntryType.CONF_CHANGE if conf and i == 0 else EntryType.NORMAL,
            )
            for i in range(n)
        ]
        kept = [e for e in ents if e.index >= self.mem.first_index()]
        snap_index = self.mem.snapshot().meta.index
        if kept and kept[0].index <= min(self.mem.last_index(), snap_index):
            with pytest.raises(ValueError, match="covered by the snapshot"):
                self.disk.append(ents)  # committed entries never conflict
            return
        self.mem.append(list(ents))
        self.disk.append(ents)
        if kept:
            self.synced_hs = self.mem.hard_state  # written ahead of the entries

    @rule(gap=st.integers(2, 5))
    def append_with_gap_is_refused(self, gap: int) -> None:
        e = Entry(index=self.mem.last_index() + gap, term=self.mem.term(self.mem.last_index()))
        with pytest.raises(UnavailableError):
            self.mem.append([e])
        with pytest.raises(UnavailableError):
            self.disk.append([e])

    @rule(up=st.integers(0, 2), vote=st.sampled_from(("", *NODES)), commit=st.integers(0, 50))
    def set_hard_state(self, up: int, vote: str, commit: int) -> None:
        # As in Raft (Figure 2): the term never goes back, and a vote once cast in a term
        # stays; the storage may rely on it to tell the newer of two stored hard states.
        cur = self.mem.hard_state
        term = cur.term + up
        if term == cur.term and cur.vote:
            vote = cur.vote
        hs = HardState(term=term, vote=vote, commit=min(commit, self.mem.last_index()))
        self.mem.set_hard_state(hs)
        self.disk.set_hard_state(hs)

    @rule()
    def sync(self) -> None:
        self.disk.sync()
        self.synced_hs = self.mem.hard_state

    @rule(data=st.data(), voters=st.sets(st.sampled_from(NODES), min_size=1))
    def create_snapshot(self, data: st.DataObject, voters: set[str]) -> None:
        lo = self.mem.snapshot().meta.index + 1
        hi = self.mem.last_index()
        if lo > hi:
            with pytest.raises(UnavailableError):
                self.disk.create_snapshot(lo, ConfState(), b"")
            return
        index = data.draw(st.integers(max(lo, self.mem.first_index() - 1), hi))
        if index < lo:
            return
        cs = ConfState(voters=frozenset(voters))
        blob = data.draw(st.binary(max_size=64))
        a = self.mem.create_snapshot(index, cs, blob)
        b = self.disk.create_snapshot(index, cs, blob)
        assert a == b
        with pytest.raises(SnapshotOutOfDateError):
            self.disk.create_snapshot(index, cs, blob)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        lo = self.mem.first_index() - 1
        hi = min(self.mem.snapshot().meta.index, self.mem.last_index())
        if lo > hi:
            return
        index = data.draw(st.integers(lo, hi))
        self.mem.compact(index)
        self.disk.compact(index)

    @rule(ahead=st.integers(1, 20), bump=st.integers(0, 3), blob=st.binary(max_size=32))
    def apply_snapshot(self, ahead: int, bump: int, blob: bytes) -> None:
        index = self.mem.snapshot().meta.index + ahead
        term = self.mem.snapshot().meta.term + bump
        snap = Snapshot(
            meta=SnapshotMeta(
                index=index, term=term, conf_state=ConfState(voters=frozenset(NODES))
            ),
            data=blob,
        )
        self.mem.apply_snapshot(snap)
        self.disk.apply_snapshot(snap)
        self.synced_hs = self.mem.hard_state  # kept before the log is replaced
        with pytest.raises(SnapshotOutOfDateError):
            self.disk.apply_snapshot(snap)

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.synced_hs = self.mem.hard_state
        self._reopen()

    @rule()
    def crash(self) -> None:
        """A process crash: the hard state reverts to the last synced one."""
        self.disk.abandon()
        self.mem.set_hard_state(self.synced_hs)
        self._reopen()

    def _reopen(self) -> None:
        self.disk = DiskStorage(
            self.dir,
            FsyncPolicy.ALWAYS,
            segment_bytes=400,
            commit_persist_interval_ms=COMMIT_EVERY_MS,
        )
        rep = self.disk.recovery
        assert rep.torn_tail is None, rep.summary()
        snap_index = self.mem.snapshot().meta.index
        if self.mem.first_index() <= snap_index:
            self.mem.compact(snap_index)
        hs = self.mem.hard_state
        if hs.commit > self.mem.last_index():
            self.mem.set_hard_state(HardState(hs.term, hs.vote, self.mem.last_index()))
            assert rep.commit_clamped == (hs.commit, self.mem.last_index())
        self.synced_hs = self.disk.hard_state

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def same_observable_state(self) -> None:
        mem, disk = self.mem, self.disk
        assert disk.first_index() == mem.first_index()
        assert disk.last_index() == mem.last_index()
        assert disk.snapshot() == mem.snapshot()
        assert disk.initial_state() == mem.initial_state()
        first, last = mem.first_index(), mem.last_index()
        for i in range(first - 1, last + 1):
            assert disk.term(i) == mem.term(i), i
        assert disk.entries(first, last + 1) == mem.entries(first, last + 1)
        if last >= first:
            mid = (first + last) // 2
            assert disk.entries(mid, last + 1, max_bytes=100) == mem.entries(
                mid, last + 1, max_bytes=100
            )
        with pytest.raises(UnavailableError):
            disk.term(last + 1)
        with pytest.raises(UnavailableError):
            disk.entries(first, last + 2)
        if first >= 2:
            with pytest.raises(CompactedError):
                disk.term(first - 2)
            with pytest.raises(CompactedError):
                disk.entries(first - 1, last + 1)


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDiskMatchesMemory = DiskMatchesMemory.TestCase
