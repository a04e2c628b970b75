"""A single register: the original example machine (Jepsen's "cas-register").

Ops: ``get``/``read`` (query), ``put``/``write``, ``cas`` (``expect`` -> ``value``). The
``key`` field is ignored: there is one register. The initial value is nil; ``cas`` succeeds
exactly when the current value equals ``expect`` (nil counts as a value).
"""

from __future__ import annotations

from collections.abc import Callable

from raft.machines import codec
from raft.machines.codec import CommandError, Value

READ_OPS = frozenset({"get", "read"})


class Register:
    read_ops = READ_OPS

    def __init__(self) -> None:
        self._value: Value = None

    @property
    def value(self) -> Value:
        return self._value

    def apply(self, index: int, command: bytes) -> bytes:
        try:
            cmd = codec.decode_command(command)
        except CommandError as exc:
            return codec.error(str(exc))
        if cmd.op in ("put", "write"):
            self._value = cmd.value
            return codec.ok()
        if cmd.op == "cas":
            if self._value != cmd.expect:
                return codec.fail(self._value, "expected value did not match")
            self._value = cmd.value
            return codec.ok()
        if cmd.op in READ_OPS:
            return codec.ok(self._value)
        return codec.error(f"unknown op {cmd.op!r} for register")

    def query(self, request: bytes) -> bytes:
        try:
            cmd = codec.decode_command(request)
        except CommandError as exc:
            return codec.error(str(exc))
        if cmd.op not in READ_OPS:
            return codec.error(f"op {cmd.op!r} is not a read")
        return codec.ok(self._value)

    def snapshot(self) -> bytes:
        return codec.packb({"machine": "register", "value": self._value})

    def snapshot_view(self) -> Callable[[], bytes]:
        """The value is never mutated in place (a write replaces it): keep a reference."""
        value = self._value
        return lambda: codec.packb({"machine": "register", "value": value})

    def restore(self, data: bytes) -> None:
        try:
            obj = codec.unpackb(data, max_bytes=codec.SNAPSHOT_BYTES_MAX)
        except CommandError as exc:
            raise ValueError(f"register snapshot: {exc}") from None
        if not isinstance(obj, dict) or obj.get("machine") != "register":
            raise ValueError("register snapshot: not a register snapshot")
        self._value = obj.get("value")
