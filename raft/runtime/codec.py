"""Wire encoding of Raft messages: an explicit field mapping between
:mod:`raft.core.types` and msgpack arrays (never pickle).

Every value is checked on decode; anything that does not fit raises :class:`CodecError`, so a
peer sending garbage gets its connection closed instead of crashing the node.

Layout (version 1), all arrays:

- Message: ``[type, to, sender, term, log_term, index, entries, commit, reject, reject_hint,
  context, snapshot | nil]``
- Entry: ``[index, term, data, type]``
- Snapshot: ``[index, term, conf_state, data]``
- ConfState: ``[voters, learners, voters_outgoing, learners_next, auto_leave]``
"""

from __future__ import annotations

from typing import Any

import msgpack

from raft.core.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

MESSAGE_BYTES_MAX = 16 << 20
"""A message bigger than this is refused (also the peer frame limit)."""

_INT_MAX = 2**63 - 1

_MSG_TYPES = {t.value: t for t in MessageType if not t.is_local() or t is MessageType.READ_INDEX}
_ENTRY_TYPES = {t.value: t for t in EntryType}


class CodecError(ValueError):
    """Bytes that do not decode to a valid message; the text says which field."""


def _refuse_ext(code: int, data: bytes) -> object:
    raise CodecError(f"msgpack extension type {code} is not allowed")


def _unpackb(data: bytes, **limits: Any) -> Any:
    """msgpack decode without ext types or non-string keys; CodecError for malformed input
    (the element-limit signals of :func:`unpack_bounded` pass through)."""
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext, **limits
        )
    except (CodecError, _TooManyElementsError, msgpack.StackError):
        raise
    except Exception as exc:  # msgpack raises many exception types on garbage
        if isinstance(exc, ValueError) and "exceeds max_" in str(exc):
            raise CodecError(f"a container holds more elements than allowed: {exc}") from None
        raise CodecError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


def unpack(data: bytes, max_bytes: int = MESSAGE_BYTES_MAX) -> Any:
    """Safe msgpack decode (no ext types, str map keys) raising only CodecError."""
    if len(data) > max_bytes:
        raise CodecError(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return _unpackb(data)
    except msgpack.StackError:
        raise CodecError("nested too deeply") from None


class _TooManyElementsError(Exception):
    pass


def unpack_bounded(data: bytes, max_bytes: int, max_elements: int) -> Any:
    """Like :func:`unpack` for untrusted input (client frames): also refuses more than
    ``max_elements`` array items, map entries and containers in total, before building them
    (no container longer than the limit is even allocated), so a frame of millions of empty
    arrays costs a few milliseconds instead of seconds and hundreds of MB. Nesting is bounded
    by msgpack's own stack limit here; callers check plain-value depth afterwards, which the
    element bound keeps cheap."""
    if len(data) > max_bytes:
        raise CodecError(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    budget = [max_elements]

    def _count(items: Any) -> Any:
        budget[0] -= len(items) + 1
        if budget[0] < 0:
            raise _TooManyElementsError
        return items

    try:
        return _unpackb(
            data,
            list_hook=_count,
            object_hook=_count,
            max_array_len=max_elements,
            max_map_len=max_elements,
        )
    except _TooManyElementsError:
        raise CodecError(f"more than {max_elements} elements (arrays, maps and items)") from None
    except msgpack.StackError:
        raise CodecError("nested too deeply") from None


def pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


# -- encode ------------------------------------------------------------------------------


def conf_state_to_wire(cs: ConfState) -> list[Any]:
    return [
        sorted(cs.voters),
        sorted(cs.learners),
        sorted(cs.voters_outgoing),
        sorted(cs.learners_next),
        cs.auto_leave,
    ]


def entry_to_wire(e: Entry) -> list[Any]:
    return [e.index, e.term, e.data, e.type.value]


def snapshot_to_wire(s: Snapshot) -> list[Any]:
    return [s.meta.index, s.meta.term, conf_state_to_wire(s.meta.conf_state), s.data]


def message_to_wire(m: Message) -> list[Any]:
    return [
        m.type.value,
        m.to,
        m.sender,
        m.term,
        m.log_term,
        m.index,
        [entry_to_wire(e) for e in m.entries],
        m.commit,
        m.reject,
        m.reject_hint,
        m.context,
        None if m.snapshot is None else snapshot_to_wire(m.snapshot),
    ]


def encode_message(m: Message) -> bytes:
    if m.type.is_local() and m.type is not MessageType.READ_INDEX:
        raise CodecError(f"local message type {m.type.value} never goes on the wire")
    return pack(message_to_wire(m))


# -- decode ------------------------------------------------------------------------------


def _int(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT_MAX:
        raise CodecError(f"{what} must be a non-negative integer")
    return v


def _str(v: object, what: str) -> str:
    if not isinstance(v, str) or len(v) > 256:
        raise CodecError(f"{what} must be a string of at most 256 characters")
    return v


def _bytes(v: object, what: str) -> bytes:
    if not isinstance(v, bytes):
        raise CodecError(f"{what} must be bytes")
    return v


def _bool(v: object, what: str) -> bool:
    if not isinstance(v, bool):
        raise CodecError(f"{what} must be a boolean")
    return v


def _list(v: object, what: str, n: int | None = None) -> list[Any]:
    if not isinstance(v, list):
        raise CodecError(f"{what} must be an array")
    if n is not None and len(v) != n:
        raise CodecError(f"{what} must have {n} elements, not {len(v)}")
    return v


def _ids(v: object, what: str) -> frozenset[str]:
    return frozenset(_str(x, what) for x in _list(v, what))


def conf_state_from_wire(v: object) -> ConfState:
    f = _list(v, "conf_state", 5)
    return ConfState(
        voters=_ids(f[0], "conf_state.voters"),
        learners=_ids(f[1], "conf_state.learners"),
        voters_outgoing=_ids(f[2], "conf_state.voters_outgoing"),
        learners_next=_ids(f[3], "conf_state.learners_next"),
        auto_leave=_bool(f[4], "conf_state.auto_leave"),
    )


def entry_from_wire(v: object) -> Entry:
    f = _list(v, "entry", 4)
    etype = _ENTRY_TYPES.get(f[3]) if isinstance(f[3], str) else None
    if etype is None:
        raise CodecError(f"entry.type {f[3]!r} is unknown")
    return Entry(
        index=_int(f[0], "entry.index"),
        term=_int(f[1], "entry.term"),
        data=_bytes(f[2], "entry.data"),
        type=etype,
    )


def snapshot_from_wire(v: object) -> Snapshot:
    f = _list(v, "snapshot", 4)
    meta = SnapshotMeta(
        index=_int(f[0], "snapshot.index"),
        term=_int(f[1], "snapshot.term"),
        conf_state=conf_state_from_wire(f[2]),
    )
    return Snapshot(meta=meta, data=_bytes(f[3], "snapshot.data"))


def message_from_wire(v: object) -> Message:
    f = _list(v, "message", 12)
    mtype = _MSG_TYPES.get(f[0]) if isinstance(f[0], str) else None
    if mtype is None:
        raise CodecError(f"message type {f[0]!r} is unknown or local")
    entries = tuple(entry_from_wire(e) for e in _list(f[6], "message.entries"))
    return Message(
        type=mtype,
        to=_str(f[1], "message.to"),
        sender=_str(f[2], "message.sender"),
        term=_int(f[3], "message.term"),
        log_term=_int(f[4], "message.log_term"),
        index=_int(f[5], "message.index"),
        entries=entries,
        commit=_int(f[7], "message.commit"),
        reject=_bool(f[8], "message.reject"),
        reject_hint=_int(f[9], "message.reject_hint"),
        context=_bytes(f[10], "message.context"),
        snapshot=None if f[11] is None else snapshot_from_wire(f[11]),
    )


def decode_message(data: bytes) -> Message:
    return message_from_wire(unpack(data))
