"""Client sessions: a retried (client_id, seq) applies at most once, in single and batched
entries, only for the same command, only for the holder of the session key; the table
survives snapshots; malformed entries give error results."""

from __future__ import annotations

from raft.machines import KV, Register
from raft.machines.codec import ResultStatus, decode_result, encode_command, packb
from raft.runtime.sessions import (
    Applier,
    decode_batch_results,
    encode_batch,
    encode_entry,
    encode_open,
    key_hash,
)

KEY = key_hash(b"k" * 16)
OTHER_KEY = key_hash(b"x" * 16)


def _cas(expect: int, new: int) -> bytes:
    return encode_command("cas", None, new, expect)


def _open(ap: Applier, index: int, khash: bytes = KEY) -> str:
    res = decode_result(ap.apply(index, encode_open(khash)))
    assert res.status is ResultStatus.OK and isinstance(res.value, str)
    return res.value


def test_retry_applies_once_and_returns_first_result() -> None:
    ap = Applier(Register())
    ap.apply(1, encode_entry("", 0, encode_command("write", None, 0)))
    c1 = _open(ap, 2)
    first = ap.apply(3, encode_entry(c1, 1, _cas(0, 1), KEY))
    assert decode_result(first).status is ResultStatus.OK
    # The same request again (e.g. retried at a new leader): not re-applied, same answer.
    again = ap.apply(4, encode_entry(c1, 1, _cas(0, 1), KEY))
    assert again == first
    assert ap.machine.value == 1  # type: ignore[attr-defined]
    # A later seq applies; an older one is refused.
    assert decode_result(ap.apply(5, encode_entry(c1, 2, _cas(1, 2), KEY))).status is (
        ResultStatus.OK
    )
    old = decode_result(ap.apply(6, encode_entry(c1, 1, _cas(0, 9), KEY)))
    assert old.status is ResultStatus.ERROR
    assert ap.machine.value == 2  # type: ignore[attr-defined]
    # No client id: no deduplication.
    ap.apply(7, encode_entry("", 0, _cas(2, 3)))
    assert decode_result(ap.apply(8, encode_entry("", 0, _cas(2, 3)))).status is ResultStatus.FAIL


def test_retry_with_a_different_command_is_an_error_not_a_silent_ok() -> None:
    """Issue 10 §4: the old table answered any command under a used (client_id, seq) with
    the stored result, so 'put k w' was acknowledged ok and never applied."""
    ap = Applier(KV())
    c = _open(ap, 1)
    assert decode_result(ap.apply(2, encode_entry(c, 1, encode_command("put", "k", "v"), KEY)))
    res = decode_result(ap.apply(3, encode_entry(c, 1, encode_command("put", "k", "w"), KEY)))
    assert res.status is ResultStatus.ERROR and "different command" in res.error
    assert ap.machine.get("k") == "v"  # type: ignore[attr-defined]


def test_a_session_cannot_be_hijacked_or_locked_out() -> None:
    """Issue 10 §4: seq 2**63-1 sent under another client's id locked that client out."""
    ap = Applier(KV())
    victim = _open(ap, 1)
    assert victim.startswith("s1.")
    put = encode_command("put", "k", "evil")
    for khash in (OTHER_KEY, b""):
        res = decode_result(ap.apply(2, encode_entry(victim, 2**63 - 1, put, khash)))
        assert res.status is ResultStatus.ERROR and "session key does not match" in res.error
    res = decode_result(ap.apply(3, encode_entry(victim, 1, encode_command("put", "k", 1), KEY)))
    assert res.status is ResultStatus.OK and ap.machine.get("k") == 1  # type: ignore[attr-defined]
    # An id nobody opened cannot be used either.
    res = decode_result(ap.apply(4, encode_entry("s99.0", 1, put, KEY)))
    assert res.status is ResultStatus.ERROR and "unknown session" in res.error


def test_batch_entries_dedup_within_and_across() -> None:
    ap = Applier(KV())
    ids = decode_batch_results(ap.apply(1, encode_batch([("", 0, b"", KEY), ("", 0, b"", KEY)])))
    a, b = (decode_result(r).value for r in ids)
    assert a != b  # two sessions opened in one entry get distinct ids
    put = encode_command("put", "k", 1)
    res = decode_batch_results(
        ap.apply(2, encode_batch([(a, 1, put, KEY), (b, 1, put, KEY), (a, 1, put, KEY)]))
    )
    assert len(res) == 3 and res[0] == res[2]
    assert ap.duplicates == 1
    assert ap.session_seq(a) == 1 and ap.session_seq(b) == 1


def test_snapshot_carries_sessions() -> None:
    ap = Applier(KV())
    c = _open(ap, 1)
    put = encode_command("put", "k", "v")
    r1 = ap.apply(2, encode_entry(c, 5, put, KEY))
    copy = Applier(KV())
    copy.restore(ap.snapshot())
    assert copy.apply(3, encode_entry(c, 5, put, KEY)) == r1
    other = decode_result(copy.apply(4, encode_entry(c, 5, encode_command("put", "k", "o"), KEY)))
    assert other.status is ResultStatus.ERROR
    assert copy.machine.get("k") == "v"  # type: ignore[attr-defined]
    assert copy.snapshot() == ap.snapshot()


def test_legacy_entries_still_apply() -> None:
    ap = Applier(KV())
    put = encode_command("put", "k", 1)
    r1 = ap.apply(1, packb([1, "old", 1, put]))
    assert decode_result(r1).status is ResultStatus.OK
    assert ap.apply(2, packb([2, [["old", 1, put]]])) == packb([r1])
    assert ap.session_seq("old") == 1


def test_session_table_bounded_deterministically() -> None:
    a, b = Applier(KV(), sessions_max=3), Applier(KV(), sessions_max=3)
    ids = []
    for i in range(1, 8):
        ids.append(_open(a, i))
        assert _open(b, i) == ids[-1]
    assert a.snapshot() == b.snapshot()
    gone = decode_result(a.apply(9, encode_entry(ids[0], 1, encode_command("put", "k", 1), KEY)))
    assert gone.status is ResultStatus.ERROR and "expired" in gone.error


def test_malformed_entries_are_error_results() -> None:
    ap = Applier(KV())
    assert ap.apply(1, b"") == b""  # leader no-op
    for data in (
        b"\xc1",
        packb([9, "x"]),
        packb([1, 5, 1, b""]),
        packb([2, [["a", 1]]]),
        packb([3, "a", 1, b"", "not-bytes"]),
        packb([4, [["a", 1, b""]]]),
    ):
        assert decode_result(ap.apply(2, data)).status is ResultStatus.ERROR


class _Raises(KV):
    def apply(self, index: int, command: bytes) -> bytes:
        raise RuntimeError("boom")


def test_a_raising_machine_gives_an_error_result() -> None:
    ap = Applier(_Raises())
    res = decode_result(ap.apply(1, encode_entry("", 0, encode_command("put", "k", 1))))
    assert res.status is ResultStatus.ERROR and "RuntimeError: boom" in res.error
