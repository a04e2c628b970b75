"""The built-in state machines: semantics, determinism, snapshots, malformed input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft.machines import (
    KV,
    MachineLoadError,
    Register,
    StateMachine,
    codec,
    load_machine,
    read_ops_of,
)
from raft.machines.codec import Result, ResultStatus, decode_result, encode_command
from raft.machines.kv import packed_size


def run(
    m: StateMachine, index: int, op: str, key: str | None = None, value=None, expect=None
) -> Result:
    return decode_result(m.apply(index, encode_command(op, key, value, expect)))


def query(m: StateMachine, op: str, key: str | None = None) -> Result:
    return decode_result(m.query(encode_command(op, key)))


def test_register_write_read_cas() -> None:
    r = Register()
    assert query(r, "read").value is None
    assert run(r, 1, "write", value=3).status is ResultStatus.OK
    assert query(r, "get").value == 3
    res = run(r, 2, "cas", value=4, expect=9)
    assert res.status is ResultStatus.FAIL and res.value == 3
    assert query(r, "read").value == 3
    assert run(r, 3, "cas", value=4, expect=3).status is ResultStatus.OK
    assert query(r, "read").value == 4
    assert run(r, 4, "put", value="x").status is ResultStatus.OK
    assert run(r, 5, "read").value == "x"


def test_kv_put_get_cas_delete() -> None:
    kv = KV()
    assert run(kv, 1, "put", "a", 1).status is ResultStatus.OK
    assert run(kv, 2, "put", "b", b"\x00raw").status is ResultStatus.OK
    assert query(kv, "get", "a").value == 1
    assert query(kv, "get", "b").value == b"\x00raw"
    assert query(kv, "get", "zz").value is None
    assert run(kv, 3, "cas", "a", 2, expect=5).status is ResultStatus.FAIL
    assert run(kv, 4, "cas", "a", 2, expect=1).status is ResultStatus.OK
    assert query(kv, "get", "a").value == 2
    # cas on a missing key matches nil
    assert run(kv, 5, "cas", "new", 7, expect=None).status is ResultStatus.OK
    assert run(kv, 6, "delete", "a").value is True
    assert run(kv, 7, "delete", "a").value is False
    assert query(kv, "get", "a").value is None
    assert len(kv) == 2


@pytest.mark.parametrize(
    "command",
    [
        b"",
        b"\xc1",
        codec.packb([1, 2, 3]),
        codec.packb({"op": 5}),
        codec.packb({"op": "put", "key": 3, "value": 1}),
        codec.packb({"op": "put", "value": 1}),  # kv needs a key
        codec.packb({"op": "nope", "key": "k"}),
        codec.packb({"op": "put", "key": "k", "value": 1, "extra": 1}),
        b"\xd4\x01\x00",  # ext type
        # A value that is a container still gets the full walk (scalars skip it):
        codec.packb({"op": "put", "key": "k", "value": {b"raw": 1}}),  # bytes map key
        codec.packb(
            {
                "op": "put",
                "key": "k",
                "value": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            }
        ),
    ],
)
def test_malformed_commands_give_error_results(command: bytes) -> None:
    for m in (KV(), Register()):
        before = m.snapshot()
        res = decode_result(m.apply(1, command))
        if isinstance(m, Register) and command == codec.packb({"op": "put", "value": 1}):
            assert res.status is ResultStatus.OK  # a register needs no key
            continue
        assert res.status is ResultStatus.ERROR
        assert res.error
        assert m.snapshot() == before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise(data: bytes) -> None:
    for m in (KV(), Register()):
        decode_result(m.apply(1, data))
        decode_result(m.query(data))


def _random_commands(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        op = rng.choice(["put", "cas", "delete", "get", "bogus"])
        key = f"k{rng.randrange(5)}"
        out.append(encode_command(op, key, rng.randrange(4), rng.randrange(4)))
    out.append(b"garbage")
    return out


@pytest.mark.parametrize("cls", [KV, Register])
def test_deterministic_and_snapshot_restore(cls: type[StateMachine]) -> None:
    cmds = _random_commands(7, 300)
    a, b = cls(), cls()
    ra = [a.apply(i, c) for i, c in enumerate(cmds, 1)]
    rb = [b.apply(i, c) for i, c in enumerate(cmds, 1)]
    assert ra == rb
    assert a.snapshot() == b.snapshot()
    # A replica restored from a snapshot mid-way continues identically.
    mid = cls()
    for i, c in enumerate(cmds[:150], 1):
        mid.apply(i, c)
    c2 = cls()
    c2.restore(mid.snapshot())
    rest = [c2.apply(i, c) for i, c in enumerate(cmds[150:], 151)]
    assert rest == ra[150:]
    assert c2.snapshot() == a.snapshot()


@pytest.mark.parametrize("cls", [KV, Register])
@pytest.mark.parametrize("data", [b"", b"\x01\x02", codec.packb({"machine": "other"})])
def test_restore_rejects_garbage(cls: type[StateMachine], data: bytes) -> None:
    with pytest.raises(ValueError):
        cls().restore(data)


def test_restore_rejects_kv_snapshot_in_register() -> None:
    kv = KV()
    kv.apply(1, encode_command("put", "a", 1))
    with pytest.raises(ValueError, match="register"):
        Register().restore(kv.snapshot())


class Counter:
    """A user machine as docs/runtime.md shows it."""

    read_ops = frozenset({"value"})

    def __init__(self) -> None:
        self.n = 0

    def apply(self, index: int, command: bytes) -> bytes:
        self.n += 1
        return codec.ok(self.n)

    def query(self, request: bytes) -> bytes:
        return codec.ok(self.n)

    def snapshot(self) -> bytes:
        return codec.packb(self.n)

    def restore(self, data: bytes) -> None:
        self.n = int(codec.unpackb(data))


class NotAMachine:
    pass


def test_load_machine() -> None:
    assert isinstance(load_machine("kv"), KV)
    assert isinstance(load_machine("register"), Register)
    m = load_machine(f"{__name__}:Counter")
    assert isinstance(m, Counter)
    assert read_ops_of(m) == frozenset({"value"})
    assert read_ops_of(KV()) == frozenset({"get", "read"})
    with pytest.raises(MachineLoadError, match="unknown machine"):
        load_machine("hashmap")
    with pytest.raises(MachineLoadError, match="cannot import"):
        load_machine("no_such_module_xyz:Foo")
    with pytest.raises(MachineLoadError, match="has no class"):
        load_machine(f"{__name__}:Missing")
    with pytest.raises(MachineLoadError, match="lacks"):
        load_machine(f"{__name__}:NotAMachine")


class _NeedsArgs:
    def __init__(self, x: int) -> None:
        self.x = x


def test_machine_specs_that_are_not_machines_are_clear_errors() -> None:
    """Issue 10 "Also": ``machine: 'os:system'`` ended in a TypeError traceback."""
    with pytest.raises(MachineLoadError, match=r"os\.system is not a class"):
        load_machine("os:system")
    with pytest.raises(MachineLoadError, match=r"_NeedsArgs\(\) failed: TypeError"):
        load_machine(f"{__name__}:_NeedsArgs")
    with pytest.raises(MachineLoadError, match="cannot import"):
        load_machine("no_such_module_xyz:Thing")


@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536, 70000])
def test_kv_sizes_values_as_msgpack_packs_them(size: int) -> None:
    """The KV counts its state's bytes on every put without packing str/bytes values."""
    for value in ("x" * size, "é" * (size // 2), b"\\0" * size, size, None, [size, "a"]):
        assert packed_size(value) == len(codec.packb(value)), (type(value), size)
