"""Client sessions: a retried (client_id, seq) applies at most once, in single and batched
entries, and the table survives snapshots; malformed entries give error results."""

from __future__ import annotations

from raft.machines import KV, Register
from raft.machines.codec import ResultStatus, decode_result, encode_command, packb
from raft.runtime.sessions import Applier, decode_batch_results, encode_batch, encode_entry


def _cas(expect: int, new: int) -> bytes:
    return encode_command("cas", None, new, expect)


def test_retry_applies_once_and_returns_first_result() -> None:
    ap = Applier(Register())
    ap.apply(1, encode_entry("", 0, encode_command("write", None, 0)))
    first = ap.apply(2, encode_entry("c1", 1, _cas(0, 1)))
    assert decode_result(first).status is ResultStatus.OK
    # The same request again (e.g. retried at a new leader): not re-applied, same answer.
    again = ap.apply(3, encode_entry("c1", 1, _cas(0, 1)))
    assert again == first
    assert ap.machine.value == 1  # type: ignore[attr-defined]
    # A later seq applies; an older one is refused.
    assert decode_result(ap.apply(4, encode_entry("c1", 2, _cas(1, 2)))).status is ResultStatus.OK
    old = decode_result(ap.apply(5, encode_entry("c1", 1, _cas(0, 9))))
    assert old.status is ResultStatus.ERROR
    assert ap.machine.value == 2  # type: ignore[attr-defined]
    # No client id: no deduplication.
    ap.apply(6, encode_entry("", 0, _cas(2, 3)))
    assert decode_result(ap.apply(7, encode_entry("", 0, _cas(2, 3)))).status is ResultStatus.FAIL


def test_batch_entries_dedup_within_and_across() -> None:
    ap = Applier(KV())
    put = encode_command("put", "k", 1)
    res = decode_batch_results(
        ap.apply(1, encode_batch([("a", 1, put), ("b", 1, put), ("a", 1, put)]))
    )
    assert len(res) == 3 and res[0] == res[2]
    assert ap.duplicates == 1
    assert ap.session_seq("a") == 1 and ap.session_seq("b") == 1


def test_snapshot_carries_sessions() -> None:
    ap = Applier(KV())
    r1 = ap.apply(1, encode_entry("c", 5, encode_command("put", "k", "v")))
    copy = Applier(KV())
    copy.restore(ap.snapshot())
    assert copy.apply(2, encode_entry("c", 5, encode_command("put", "k", "other"))) == r1
    assert copy.machine.get("k") == "v"  # type: ignore[attr-defined]
    assert copy.snapshot() == ap.snapshot()


def test_session_table_bounded_deterministically() -> None:
    a, b = Applier(KV(), sessions_max=3), Applier(KV(), sessions_max=3)
    for i in range(1, 8):
        e = encode_entry(f"c{i}", 1, encode_command("put", "k", i))
        a.apply(i, e)
        b.apply(i, e)
    assert a.snapshot() == b.snapshot()
    assert a.session_seq("c1") == 0 and a.session_seq("c7") == 1


def test_malformed_entries_are_error_results() -> None:
    ap = Applier(KV())
    assert ap.apply(1, b"") == b""  # leader no-op
    for data in (b"\xc1", packb([9, "x"]), packb([1, 5, 1, b""]), packb([2, [["a", 1]]])):
        assert decode_result(ap.apply(2, data)).status is ResultStatus.ERROR


class _Raises(KV):
    def apply(self, index: int, command: bytes) -> bytes:
        raise RuntimeError("boom")


def test_a_raising_machine_gives_an_error_result() -> None:
    ap = Applier(_Raises())
    res = decode_result(ap.apply(1, encode_entry("c", 1, encode_command("put", "k", 1))))
    assert res.status is ResultStatus.ERROR and "RuntimeError: boom" in res.error
    # The error result is what the session remembers: a retry gets the same answer.
    assert decode_result(ap.apply(2, encode_entry("c", 1, b""))).error == res.error
