"""The safe encoding of the built-in machines' commands and results.

Commands and results are msgpack maps of plain values only (nil, bool, int, float, str, bytes,
lists and string-keyed maps): nothing that decodes to code or to an object of the decoder's
choosing. Decoding never raises anything but :class:`CommandError`, so a machine can turn any
malformed input into an error result that every replica agrees on.

Command: ``{"op": str, "key": str | None, "value": any, "expect": any}``.
Result: ``{"status": "ok" | "fail" | "error", "value": any, "error": str}``; ``fail`` means the
operation certainly had no effect (a compare-and-set whose expectation did not hold),
``error`` means the command was malformed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack

Value = Any
"""A plain msgpack value: None, bool, int, float, str, bytes, list or str-keyed dict."""

COMMAND_BYTES_MAX = 8 << 20
"""Larger commands are refused before decoding (the client port admits no larger frame)."""

SNAPSHOT_BYTES_MAX = 1 << 40
"""What :func:`unpackb` accepts for a snapshot the node itself wrote or received from an
authenticated peer: no practical limit, because a state the node accepted must always
restore (limits on input are enforced at the door, on requests)."""

NESTING_MAX = 32


class CommandError(ValueError):
    """A command or result did not decode; the message says what was wrong."""


class ResultStatus(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    key: str | None = None
    value: Value = None
    expect: Value = None


@dataclass(frozen=True, slots=True)
class Result:
    status: ResultStatus
    value: Value = None
    error: str = ""


def check_plain(value: object, depth: int = 0) -> None:
    """Raise CommandError unless ``value`` is a plain msgpack value (no ext types)."""
    if depth > NESTING_MAX:
        raise CommandError(f"value nested deeper than {NESTING_MAX} levels")
    if value is None or isinstance(value, bool | int | float | str | bytes):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise CommandError("integer out of the 64-bit range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CommandError("map keys must be strings")
            check_plain(v, depth + 1)
        return
    raise CommandError(f"unsupported value type {type(value).__name__}")


_SCALARS = frozenset({str, bytes, bool, int, float})
"""Types a decoded msgpack scalar has (``type(v) in``: subclasses cannot come out of it)."""


def packb(obj: object) -> bytes:
    """Encode plain values (bytes stay bytes, str stays str)."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def unpackb(data: bytes, max_bytes: int = COMMAND_BYTES_MAX) -> Any:
    """Decode msgpack without ext types or non-string map keys; CommandError on anything
    else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandError("expected bytes")
    if len(data) > max_bytes:
        raise CommandError(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
        )
    except CommandError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for malformed input
        raise CommandError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None
    return obj


def _refuse_ext(code: int, data: bytes) -> object:
    raise CommandError(f"msgpack extension type {code} is not allowed")


def encode_command(
    op: str, key: str | None = None, value: Value = None, expect: Value = None
) -> bytes:
    cmd: dict[str, Value] = {"op": op}
    if key is not None:
        cmd["key"] = key
    if value is not None:
        cmd["value"] = value
    if expect is not None:
        cmd["expect"] = expect
    check_plain(cmd)
    return packb(cmd)


def decode_command(data: bytes) -> Command:
    obj = unpackb(data)
    if not isinstance(obj, dict):
        raise CommandError("command must be a map")
    unknown = set(obj) - {"op", "key", "value", "expect"}
    if unknown:
        raise CommandError(f"unknown command fields: {', '.join(sorted(unknown))}")
    op = obj.get("op")
    if not isinstance(op, str) or not op:
        raise CommandError("command field 'op' must be a non-empty string")
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        raise CommandError("command field 'key' must be a string")
    # unpackb already refused ext types and non-string top-level keys, and msgpack cannot
    # decode an integer outside the 64-bit range: a command of scalars (the common put or
    # get) is plain as it is; only containers need the recursive walk. The walk was the
    # largest cost of applying a put (a restarted node re-applies thousands; issue 12).
    if not all(v is None or type(v) in _SCALARS for v in obj.values()):
        check_plain(obj)
    return Command(op=op, key=key, value=obj.get("value"), expect=obj.get("expect"))


def encode_result(result: Result) -> bytes:
    out: dict[str, Value] = {"status": result.status.value}
    if result.value is not None:
        out["value"] = result.value
    if result.error:
        out["error"] = result.error
    return packb(out)


def decode_result(data: bytes) -> Result:
    obj = unpackb(data)
    if not isinstance(obj, dict):
        raise CommandError("result must be a map")
    try:
        status = ResultStatus(obj.get("status"))
    except ValueError:
        raise CommandError(f"unknown result status {obj.get('status')!r}") from None
    error = obj.get("error", "")
    if not isinstance(error, str):
        raise CommandError("result field 'error' must be a string")
    return Result(status=status, value=obj.get("value"), error=error)


def ok(value: Value = None) -> bytes:
    if value is None:
        return _OK_NONE
    return encode_result(Result(ResultStatus.OK, value))


def fail(value: Value = None, error: str = "") -> bytes:
    return encode_result(Result(ResultStatus.FAIL, value, error))


def error(message: str) -> bytes:
    return encode_result(Result(ResultStatus.ERROR, None, message))


_OK_NONE = encode_result(Result(ResultStatus.OK))
"""``ok()``, the result of every put: the same bytes each time, encoded once."""
