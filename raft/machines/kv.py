"""A hash map of string keys to plain values.

Ops: ``get``/``read`` (query), ``put``/``write``, ``cas`` (``expect`` -> ``value``; a
missing key counts as nil), ``delete`` (result value: whether the key existed).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import msgpack

from raft.machines import codec
from raft.machines.codec import CommandError, Value

READ_OPS = frozenset({"get", "read"})
KEY_BYTES_MAX = 4096
# No cap on the state as a whole: snapshots are streamed in chunks (raft/runtime/snapstream.py),
# so the state is bounded by memory and disk only. Requests are bounded at the door
# (raft/runtime/protocol.py: frame, value and element limits).
_ITEM_OVERHEAD_BYTES = 16
SORT_RUN_KEYS = 8192
"""Snapshot serialisation sorts runs of this many keys and merges them, packing one item at
a time: no single C call holds the GIL for long, so the event loop keeps running while a
worker thread serialises millions of keys."""


class KV:
    read_ops = READ_OPS

    def __init__(self) -> None:
        self._data: dict[str, Value] = {}
        self._sizes: dict[str, int] = {}
        self.state_bytes = 0
        """Approximate size of the state: encoded keys and values plus a per-item overhead."""

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Value:
        return self._data.get(key)

    def apply(self, index: int, command: bytes) -> bytes:
        try:
            cmd = codec.decode_command(command)
        except CommandError as exc:
            return codec.error(str(exc))
        key = cmd.key
        if key is None:
            return codec.error(f"op {cmd.op!r} needs a key")
        if len(key.encode()) > KEY_BYTES_MAX:
            return codec.error(f"key longer than {KEY_BYTES_MAX} bytes")
        if cmd.op in ("put", "write"):
            if cmd.value is None:
                return codec.error("put needs a value (use delete to remove a key)")
            return self._store(key, cmd.value)
        if cmd.op == "cas":
            current = self._data.get(key)
            if current != cmd.expect:
                return codec.fail(current, "expected value did not match")
            if cmd.value is None:
                return codec.error("cas needs a new value")
            return self._store(key, cmd.value)
        if cmd.op == "delete":
            existed = self._data.pop(key, None) is not None
            self.state_bytes -= self._sizes.pop(key, 0)
            return codec.ok(existed)
        if cmd.op in READ_OPS:
            return codec.ok(self._data.get(key))
        return codec.error(f"unknown op {cmd.op!r} for kv")

    def _store(self, key: str, value: Value) -> bytes:
        size = _item_bytes(key, value)
        self.state_bytes += size - self._sizes.get(key, 0)
        self._data[key] = value
        self._sizes[key] = size
        return codec.ok()

    def query(self, request: bytes) -> bytes:
        try:
            cmd = codec.decode_command(request)
        except CommandError as exc:
            return codec.error(str(exc))
        if cmd.op not in READ_OPS:
            return codec.error(f"op {cmd.op!r} is not a read")
        if cmd.key is None:
            return codec.error("get needs a key")
        return codec.ok(self._data.get(cmd.key))

    def snapshot(self) -> bytes:
        return self.snapshot_view()()

    def snapshot_view(self) -> Callable[[], bytes]:
        """A shallow copy of the map (values are never mutated in place, only replaced), so
        the view costs one dict copy on the event loop; the sorting and packing happen when
        it is called, in a worker thread. Bytes are those of ``packb({"machine": "kv",
        "items": sorted [key, value] pairs})``."""
        data = dict(self._data)
        return lambda: _serialise(data)

    def restore(self, data: bytes) -> None:
        try:
            obj = codec.unpackb(data, max_bytes=codec.SNAPSHOT_BYTES_MAX)
        except CommandError as exc:
            raise ValueError(f"kv snapshot: {exc}") from None
        if not isinstance(obj, dict) or obj.get("machine") != "kv":
            raise ValueError("kv snapshot: not a kv snapshot")
        items = obj.get("items")
        if not isinstance(items, list):
            raise ValueError("kv snapshot: 'items' must be a list")
        new: dict[str, Value] = {}
        sizes: dict[str, int] = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError("kv snapshot: each item must be [key, value]")
            new[item[0]] = item[1]
            sizes[item[0]] = _item_bytes(item[0], item[1])
        self._data = new
        self._sizes = sizes
        self.state_bytes = sum(sizes.values())


def _serialise(data: dict[str, Value]) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    keys = list(data)
    runs = [sorted(keys[i : i + SORT_RUN_KEYS]) for i in range(0, len(keys), SORT_RUN_KEYS)]
    parts = [
        packer.pack_map_header(2),
        packer.pack("machine"),
        packer.pack("kv"),
        packer.pack("items"),
        packer.pack_array_header(len(keys)),
    ]
    parts.extend(packer.pack([k, data[k]]) for k in heapq.merge(*runs))
    return b"".join(parts)


def _item_bytes(key: str, value: Value) -> int:
    return len(key.encode()) + packed_size(value) + _ITEM_OVERHEAD_BYTES


def packed_size(value: Value) -> int:
    """``len(codec.packb(value))``, without packing the common values (str, bytes): the
    size is counted on every put, and packing a value only to measure it was a tenth of
    a restarted node's catch-up (bench/results/perf.md)."""
    kind = type(value)
    if kind is str:
        n = len(value.encode())
        return n + (1 if n < 32 else 2 if n < 0x100 else 3 if n < 0x10000 else 5)
    if kind is bytes:
        n = len(value)
        return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)
    return len(codec.packb(value))
