"""Damaged data directories: each kind of damage gives its documented outcome (docs/storage.md
"Recovery"): a torn tail is cut and reported, anything else refuses to open with
CorruptLogError naming file and offset, and `raft repair` keeps the longest valid prefix."""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import pytest

from raft.cli import cmd_repair
from raft.core import Config, Message, MessageType, RawNode
from raft.core.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raft.storage import (
    CorruptHardStateError,
    CorruptLogError,
    CorruptSnapshotError,
    DiskStorage,
    FsyncPolicy,
    repair,
)
from raft.storage.hardstate import HardStateFile
from raft.storage.recovering import TERM_LEASE_STEP, WITHHELD_VOTE
from raft.storage.wal import SEGMENT_HEADER_SIZE, list_segments, scan_wal

MT = MessageType

SEG_BYTES = 1024
N = 120


def entry(i: int, term: int = 0) -> Entry:
    return Entry(index=i, term=term or 1 + i // 40, data=f"cmd-{i}".encode() * 3)


def build(d: Path, n: int = N) -> None:
    """``n`` entries; the hard state goes into the WAL with the first batch and again with
    the last (so the log ends with an entry record, as the torn-tail tests assume)."""
    s = DiskStorage(d, FsyncPolicy.ALWAYS, segment_bytes=SEG_BYTES)
    for lo in range(1, n + 1, 10):
        if lo == 1:
            s.set_hard_state(HardState(term=4, vote="n2", commit=0))
        if lo + 10 > n:
            s.set_hard_state(HardState(term=4, vote="n2", commit=n - 5))
        s.append([entry(i) for i in range(lo, min(lo + 10, n + 1))])
        s.sync()
    s.close()


def write_hard_state_file(d: Path) -> None:
    """A ``hardstate`` file as a node writes it before cutting WAL records (or as a data
    directory of version 1 holds it)."""
    HardStateFile(str(d)).write(HardState(term=4, vote="n2", commit=N - 5), durable=True)


def open_disk(d: Path) -> DiskStorage:
    return DiskStorage(d, FsyncPolicy.ALWAYS, segment_bytes=SEG_BYTES)


def segments(d: Path) -> list[str]:
    return [p for _, p in list_segments(str(d / "wal"))]


def record_offset(d: Path, index: int) -> tuple[str, int]:
    """(segment path, byte offset) of the record of ``index``."""
    scan = scan_wal(str(d / "wal"))
    seg = [p for first, p in list_segments(str(d / "wal")) if first <= index][-1]
    return seg, scan.offsets[index - scan.first_index]


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def assert_log(s: DiskStorage, last: int) -> None:
    assert s.first_index() == 1
    assert s.last_index() == last
    assert s.entries(1, last + 1) == [entry(i) for i in range(1, last + 1)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    build(d)
    assert len(segments(d)) >= 4
    return d


# -- torn tails: cut and reported --------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_half_written_last_record_is_cut_and_reported(data_dir: Path, cut: int) -> None:
    last_seg = segments(data_dir)[-1]
    size = os.path.getsize(last_seg)
    os.truncate(last_seg, size - cut)
    with open_disk(data_dir) as s:
        torn = s.recovery.torn_tail
        assert torn is not None
        assert torn.path == last_seg and torn.first_lost_index == N
        assert torn.offset + torn.dropped_bytes == size - cut
        assert_log(s, N - 1)
        assert s.hard_state == HardState(term=4, vote="n2", commit=N - 5)
    with open_disk(data_dir) as s:  # the cut is durable: the second open is clean
        assert s.recovery.is_clean(), s.recovery.summary()
        s.append([entry(N)])
        s.sync()
    with open_disk(data_dir) as s:
        assert_log(s, N)


def test_zero_filled_tail_is_torn(data_dir: Path) -> None:
    with open(segments(data_dir)[-1], "ab") as f:
        f.write(b"\0" * 4096)
    with open_disk(data_dir) as s:
        assert s.recovery.torn_tail is not None
        assert s.recovery.torn_tail.dropped_bytes == 4096
        assert_log(s, N)


def test_flipped_byte_in_last_record_is_a_torn_tail(data_dir: Path) -> None:
    seg, off = record_offset(data_dir, N)
    flip(seg, off + 20)
    with open_disk(data_dir) as s:
        assert s.recovery.torn_tail is not None
        assert (s.recovery.torn_tail.path, s.recovery.torn_tail.offset) == (seg, off)
        assert "checksum" in s.recovery.torn_tail.reason
        assert_log(s, N - 1)
        # A whole record failing its checksum was written, maybe synced and acknowledged:
        # the node comes back recovering (issue 10 §1), and stays so across restarts.
        assert s.recovering
    with open_disk(data_dir) as s:
        assert s.recovering and s.recovery.torn_tail is None


def test_flipped_length_of_last_record_is_damage_not_a_torn_write(data_dir: Path) -> None:
    seg, off = record_offset(data_dir, N)
    flip(seg, off + 9)  # the length field's high byte: the record now runs past the end
    with open_disk(data_dir) as s:
        assert s.recovery.torn_tail is not None
        assert "past end of file" in s.recovery.torn_tail.reason
        assert s.recovering


@pytest.mark.parametrize("cut", [1, 20])
def test_a_torn_write_is_not_a_loss(data_dir: Path, cut: int) -> None:
    """Only an unsynced write can be torn (fsync: always): nothing acknowledged is lost,
    and the node must not sit out votes, or a power loss on every node would stop the
    cluster for good."""
    last_seg = segments(data_dir)[-1]
    os.truncate(last_seg, os.path.getsize(last_seg) - cut)
    with open_disk(data_dir) as s:
        assert s.recovery.torn_tail is not None
        assert not s.recovering


def test_torn_segment_header_after_roll_removes_the_file(data_dir: Path) -> None:
    path = data_dir / "wal" / f"{N + 1:020d}.wal"
    path.write_bytes(b"\x01\x02\x03")
    with open_disk(data_dir) as s:
        assert str(path) in s.recovery.removed_files
        assert s.recovery.torn_tail is not None and s.recovery.torn_tail.offset == 0
        assert_log(s, N)
        s.append([entry(N + 1)])
    with open_disk(data_dir) as s:
        assert s.recovery.is_clean()
        assert_log(s, N + 1)


def test_stale_temp_files_are_removed_and_old_values_kept(data_dir: Path) -> None:
    (data_dir / "hardstate.tmp").write_bytes(b"half a hard st")
    (data_dir / "snap" / f"{50:020d}-{2:020d}.snap.tmp").write_bytes(b"half a snapshot")
    with open_disk(data_dir) as s:
        assert sorted(os.path.basename(p) for p in s.recovery.removed_files) == [
            f"{50:020d}-{2:020d}.snap.tmp",
            "hardstate.tmp",
        ]
        assert s.hard_state == HardState(term=4, vote="n2", commit=N - 5)
        assert s.snapshot().is_empty()
    assert not (data_dir / "hardstate.tmp").exists()


# -- corruption before the tail: refuse, then repair -------------------------------------


def expect_corrupt(d: Path, path: str, offset: int, words: str) -> None:
    with pytest.raises(CorruptLogError) as info:
        open_disk(d)
    assert info.value.path == path
    assert info.value.offset == offset
    assert words in info.value.reason
    assert "raft repair" in str(info.value)


def test_flipped_byte_mid_log_refuses_then_repair_keeps_prefix(data_dir: Path) -> None:
    seg, off = record_offset(data_dir, 50)
    assert seg != segments(data_dir)[-1]
    flip(seg, off + 25)
    expect_corrupt(data_dir, seg, off, "checksum mismatch")

    dry = repair(data_dir, dry_run=True)
    assert dry.changed() and dry.kept == (1, 49)
    expect_corrupt(data_dir, seg, off, "checksum mismatch")  # dry run changed nothing

    rep = repair(data_dir)
    assert rep.kept == (1, 49)
    assert rep.dropped_range == (50, N)
    assert rep.truncated == (seg, off)
    later = segments_after(seg, rep.dropped_files)
    assert later and all(not os.path.exists(p) for p in later)
    # The newest hard state record (with entries 111..) was cut with the log: every term up
    # to the lease may have had a vote, so the vote is withheld up to it.
    assert rep.hardstate_reset == HardState(term=4 + TERM_LEASE_STEP, vote=WITHHELD_VOTE)
    with open_disk(data_dir) as s:
        # Entries 50.. may have been acknowledged: the node starts recovering.
        assert s.recovering and s.recovery.recovering
        assert "index 50" in s.recovery.recovering
        assert_log(s, 49)
        assert s.hard_state == rep.hardstate_reset
        s.clear_recovering()
    with open_disk(data_dir) as s:
        assert s.recovery.is_clean() and not s.recovering
    assert not repair(data_dir).changed()


def segments_after(seg: str, dropped: tuple[str, ...]) -> list[str]:
    return [p for p in dropped if p > seg]


def test_flipped_byte_mid_last_segment_is_corruption_not_torn(data_dir: Path) -> None:
    seg, off = record_offset(data_dir, N - 3)
    assert seg == segments(data_dir)[-1]
    flip(seg, off + 22)
    expect_corrupt(data_dir, seg, off, "checksum mismatch")
    assert repair(data_dir).kept == (1, N - 4)
    with open_disk(data_dir) as s:
        assert_log(s, N - 4)


def test_flipped_length_field_mid_last_segment_is_corruption(data_dir: Path) -> None:
    seg, off = record_offset(data_dir, N - 3)
    with open(seg, "r+b") as f:
        f.seek(off + 8)
        f.write((10**6).to_bytes(4, "little"))  # the record now claims to run past EOF
    expect_corrupt(data_dir, seg, off, "runs past end of file")


def test_missing_middle_segment_refuses_then_repair_keeps_prefix(data_dir: Path) -> None:
    segs = segments(data_dir)
    gone = segs[2]
    first_gone = int(os.path.basename(gone)[:20])
    os.unlink(gone)
    expect_corrupt(data_dir, segs[3], 0, "missing segment")
    rep = repair(data_dir)
    assert rep.kept == (1, first_gone - 1)
    assert rep.dropped_range == (first_gone, N)
    assert set(rep.dropped_files) == set(segs[3:])
    with open_disk(data_dir) as s:
        assert_log(s, first_gone - 1)


def test_truncated_middle_segment_is_a_gap(data_dir: Path) -> None:
    segs = segments(data_dir)
    seg, off = record_offset(data_dir, int(os.path.basename(segs[2])[:20]) - 2)
    os.truncate(seg, off)  # segment 1 lost its last two records, cleanly at a boundary
    expect_corrupt(data_dir, segs[2], 0, "missing segment")


def test_missing_first_segment_is_corruption(data_dir: Path) -> None:
    segs = segments(data_dir)
    os.unlink(segs[0])
    expect_corrupt(data_dir, segs[1], 0, "snapshot covers only up to 0")
    rep = repair(data_dir)
    assert rep.kept == (1, 0)
    with open_disk(data_dir) as s:
        assert s.last_index() == 0
        assert s.hard_state.commit == 0


def test_gap_in_indexes_inside_a_segment_is_corruption(tmp_path: Path) -> None:
    d = tmp_path / "node"
    build(d, 10)
    seg, off = record_offset(d, 5)
    with open(seg, "r+b") as f:  # rewrite record 5 as a valid record claiming index 7
        f.seek(off)
        rec = bytearray(f.read(12 + 17 + len(entry(5).data)))
    import crc32c

    rec[12:20] = (7).to_bytes(8, "little")
    rec[0:4] = crc32c.crc32c(bytes(rec[4:])).to_bytes(4, "little")
    with open(seg, "r+b") as f:
        f.seek(off)
        f.write(rec)
    expect_corrupt(d, seg, off, "index 7 where 5 was expected")


def test_bad_segment_header_mid_log_is_corruption(data_dir: Path) -> None:
    seg = segments(data_dir)[1]
    flip(seg, 14)
    expect_corrupt(data_dir, seg, 0, "segment")
    rep = repair(data_dir)
    assert rep.kept[1] == int(os.path.basename(seg)[:20]) - 1
    with open_disk(data_dir) as s:
        assert_log(s, rep.kept[1])
    assert all(os.path.getsize(p) >= SEGMENT_HEADER_SIZE for p in segments(data_dir))


def test_damaged_hard_state_refuses_and_repair_resets_without_vote(data_dir: Path) -> None:
    write_hard_state_file(data_dir)
    flip(str(data_dir / "hardstate"), 17)
    with pytest.raises(CorruptHardStateError):
        open_disk(data_dir)
    rep = repair(data_dir)
    # The term lease (4 + 16) bounds every term the node stored; the vote is withheld in it.
    assert rep.hardstate_reset == HardState(term=4 + TERM_LEASE_STEP, vote=WITHHELD_VOTE)
    assert not any("may vote twice" in line for line in rep.lines())
    assert rep.recovering is None  # the log is intact
    with open_disk(data_dir) as s:
        assert s.hard_state == rep.hardstate_reset
        assert not s.recovering
        assert_log(s, N)


def _vote_granted(s: DiskStorage, term: int) -> bool:
    cfg = Config(id="n1", voters=("n1", "n2", "n3"), recovering=s.recovering)
    node = RawNode(cfg, s, random.Random(1))
    node.step(Message(type=MT.VOTE, to="n1", sender="n3", term=term, index=N, log_term=9))
    rd = node.ready()
    return any(m.type is MT.VOTE_RESP and not m.reject for m in rd.persisted_messages)


def test_repaired_hard_state_never_votes_twice_in_a_term(data_dir: Path) -> None:
    """Issue 10 §1: the node voted for n2 in term 4 (hard state). Damaged and repaired, it
    must not grant n3 a vote in term 4, nor in any term up to the lease, whatever the
    log's terms say; a term past the lease is one it never saw."""
    write_hard_state_file(data_dir)
    flip(str(data_dir / "hardstate"), 17)
    repair(data_dir)
    for term in (4, 4 + TERM_LEASE_STEP):
        with open_disk(data_dir) as s:
            assert not _vote_granted(s, term), term
    with open_disk(data_dir) as s:
        assert _vote_granted(s, 4 + TERM_LEASE_STEP + 1)


def test_repaired_hard_state_without_a_lease_is_marked_recovering(data_dir: Path) -> None:
    write_hard_state_file(data_dir)
    os.unlink(data_dir / "termlease")
    flip(str(data_dir / "hardstate"), 17)
    rep = repair(data_dir)
    assert rep.lease_missing and rep.recovering is not None
    assert any("may vote twice" in line for line in rep.lines())
    with open_disk(data_dir) as s:
        assert s.recovering
        assert s.hard_state.vote == WITHHELD_VOTE
        assert not _vote_granted(s, 5)


def test_damaged_newest_snapshot_refuses_and_repair_falls_back(data_dir: Path) -> None:
    with open_disk(data_dir) as s:
        s.create_snapshot(30, ConfState(voters=frozenset({"n1"})), b"at 30")
        s.create_snapshot(60, ConfState(voters=frozenset({"n1"})), b"at 60")
        s.compact(30)
    newest = sorted((data_dir / "snap").iterdir())[-1]
    flip(str(newest), os.path.getsize(newest) - 2)
    with pytest.raises(CorruptSnapshotError):
        open_disk(data_dir)
    rep = repair(data_dir)
    assert rep.removed_snapshots == (str(newest),)
    with open_disk(data_dir) as s:
        assert s.snapshot().meta.index == 30 and s.snapshot().data == b"at 30"
        assert s.first_index() == 31 and s.last_index() == N


def test_snapshot_files_are_garbage_collected_to_two(data_dir: Path) -> None:
    with open_disk(data_dir) as s:
        for i in (10, 20, 30, 40):
            s.create_snapshot(i, ConfState(voters=frozenset({"n1"})), str(i).encode())
    names = sorted(p.name for p in (data_dir / "snap").iterdir())
    assert [int(n[:20]) for n in names] == [30, 40]


def test_crash_while_installing_snapshot_drops_entries_that_disagree(data_dir: Path) -> None:
    """apply_snapshot writes the snapshot, then deletes the WAL; a crash between the two
    leaves old entries that the newer snapshot's term contradicts."""
    with open_disk(data_dir) as s:
        snap = Snapshot(SnapshotMeta(index=70, term=9, conf_state=ConfState()), b"s")
        s._snaps.save(snap, durable=True)  # the first half of apply_snapshot, then "crash"
    with open_disk(data_dir) as s:
        assert s.recovery.discarded_after_snapshot == (71, N)
        assert s.first_index() == 71 and s.last_index() == 70
        assert s.term(70) == 9


def test_crash_while_installing_snapshot_keeps_entries_that_agree(data_dir: Path) -> None:
    with open_disk(data_dir) as s:
        snap = Snapshot(SnapshotMeta(index=70, term=entry(70).term), b"s")
        s._snaps.save(snap, durable=True)
    with open_disk(data_dir) as s:
        assert s.recovery.discarded_after_snapshot is None
        assert s.first_index() == 71 and s.last_index() == N
        assert s.entries(71, N + 1) == [entry(i) for i in range(71, N + 1)]


def test_snapshot_past_the_whole_log_supersedes_it(data_dir: Path) -> None:
    with open_disk(data_dir) as s:
        s._snaps.save(Snapshot(SnapshotMeta(index=N + 50, term=9), b"s"), durable=True)
    with open_disk(data_dir) as s:
        assert s.recovery.discarded_after_snapshot == (1, N)
        assert (s.first_index(), s.last_index()) == (N + 51, N + 50)
        s.append([Entry(N + 51, 9, b"x")])
    with open_disk(data_dir) as s:
        assert s.entries(N + 51, N + 52) == [Entry(N + 51, 9, b"x")]


# -- the command line ---------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="raft")
    cmd_repair.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_repair_dry_run_then_repair(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg, off = record_offset(data_dir, 50)
    flip(seg, off + 25)
    assert run_cli(["repair", str(data_dir), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "would drop entries 50..120" in out and f"would truncate {seg} at byte {off}" in out
    assert run_cli(["repair", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "drop entries 50..120" in out and "would" not in out
    assert run_cli(["repair", str(data_dir), "--dry-run"]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_cli_repair_wiped_marks_a_lost_node_and_accept_loss_clears_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from raft.cli import CliError

    wiped = tmp_path / "replaced-disk" / "n2"
    assert run_cli(["repair", "--wiped", str(wiped)]) == 0
    assert "recovering" in capsys.readouterr().out
    with open_disk(wiped) as s:
        assert s.recovering and s.last_index() == 0
    with pytest.raises(CliError, match="not a wiped data directory"):
        run_cli(["repair", "--wiped", str(data_dir)])
    assert run_cli(["repair", "--accept-loss", str(wiped)]) == 0
    with open_disk(wiped) as s:
        assert not s.recovering
    assert run_cli(["repair", "--accept-loss", str(wiped)]) == 0
    assert "not marked recovering" in capsys.readouterr().out


def test_cli_repair_missing_dir_is_a_user_error(tmp_path: Path) -> None:
    from raft.cli import CliError

    with pytest.raises(CliError, match="not a directory"):
        run_cli(["repair", str(tmp_path / "nope")])


def test_repair_refuses_while_a_node_holds_the_directory(data_dir: Path) -> None:
    from raft.storage import StorageLockedError

    with open_disk(data_dir), pytest.raises(StorageLockedError):
        repair(data_dir)


def test_new_node_killed_while_creating_its_first_segment(tmp_path: Path) -> None:
    d = tmp_path / "node"
    (d / "wal").mkdir(parents=True)
    (d / "wal" / f"{1:020d}.wal").write_bytes(b"\xf1")
    with open_disk(d) as s:
        assert s.recovery.torn_tail is not None
        assert (s.first_index(), s.last_index()) == (1, 0)
        s.append([entry(1)])
    with open_disk(d) as s:
        assert s.recovery.is_clean()
        assert_log(s, 1)


def test_recovery_report_is_loggable(data_dir: Path) -> None:
    os.truncate(segments(data_dir)[-1], os.path.getsize(segments(data_dir)[-1]) - 3)
    with open_disk(data_dir) as s:
        line = s.recovery.summary()
        fields = s.recovery.as_fields()
    assert f"log 1..{N - 1}" in line and "torn tail cut" in line and "first lost index 120" in line
    assert fields["last_index"] == N - 1
    assert isinstance(fields["torn_tail"], dict) and fields["torn_tail"]["path"].endswith(".wal")


def test_repair_leaves_a_log_superseded_by_the_snapshot_alone(data_dir: Path) -> None:
    with open_disk(data_dir) as s:
        s._snaps.save(Snapshot(SnapshotMeta(index=N + 50, term=9), b"s"), durable=True)
    rep = repair(data_dir, dry_run=True)
    assert not rep.changed() and rep.kept == (N + 51, N + 50)
