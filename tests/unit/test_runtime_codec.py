"""Wire codec of Raft messages: every peer message type round-trips; garbage is refused with
CodecError (never another exception)."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft.core.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from raft.runtime.codec import CodecError, decode_message, encode_message, message_to_wire

WIRE_TYPES = [t for t in MessageType if not t.is_local() or t is MessageType.READ_INDEX]


def _full(mtype: MessageType) -> Message:
    snap = Snapshot(
        meta=SnapshotMeta(
            index=40,
            term=3,
            conf_state=ConfState(
                voters=frozenset({"n1", "n2"}),
                learners=frozenset({"n4"}),
                voters_outgoing=frozenset({"n1", "n3"}),
                learners_next=frozenset({"n5"}),
                auto_leave=True,
            ),
        ),
        data=b"\x00state\xff",
    )
    return Message(
        type=mtype,
        to="n2",
        sender="n1",
        term=7,
        log_term=6,
        index=41,
        entries=(
            Entry(42, 7, b"cmd"),
            Entry(43, 7, b"", EntryType.NORMAL),
            Entry(44, 7, b"\x01cc", EntryType.CONF_CHANGE),
        ),
        commit=40,
        reject=True,
        reject_hint=12,
        context=b"ctx",
        snapshot=snap if mtype is MessageType.SNAP else None,
    )


@pytest.mark.parametrize("mtype", WIRE_TYPES, ids=lambda t: t.value)
def test_every_wire_type_round_trips(mtype: MessageType) -> None:
    for m in (Message(type=mtype, to="b", sender="a"), _full(mtype)):
        assert decode_message(encode_message(m)) == m


@pytest.mark.parametrize(
    "mtype", [t for t in MessageType if t not in WIRE_TYPES], ids=lambda t: t.value
)
def test_local_types_never_encoded_or_accepted(mtype: MessageType) -> None:
    with pytest.raises(CodecError):
        encode_message(Message(type=mtype))
    wire = message_to_wire(Message(type=MessageType.APP))
    wire[0] = mtype.value
    with pytest.raises(CodecError, match="unknown or local"):
        decode_message(msgpack.packb(wire))


def _mutated(i: int, value: object) -> bytes:
    wire = message_to_wire(_full(MessageType.APP))
    wire[i] = value
    return msgpack.packb(wire, use_bin_type=True)


@pytest.mark.parametrize(
    ("i", "value", "field"),
    [
        (1, 5, "message.to"),
        (3, -1, "message.term"),
        (3, True, "message.term"),
        (5, "7", "message.index"),
        (6, [[1, 2, "not bytes", "normal"]], "entry.data"),
        (6, [[1, 2, b"", "weird"]], "entry.type"),
        (8, 1, "message.reject"),
        (10, "text", "message.context"),
        (11, [1, 2], "snapshot"),
    ],
)
def test_bad_fields_name_the_field(i: int, value: object, field: str) -> None:
    with pytest.raises(CodecError, match=field.replace(".", r"\.")):
        decode_message(_mutated(i, value))


def test_wrong_arity_and_ext_types_refused() -> None:
    with pytest.raises(CodecError):
        decode_message(msgpack.packb([1, 2, 3]))
    with pytest.raises(CodecError, match="extension"):
        decode_message(msgpack.packb(msgpack.ExtType(1, b"x")))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_message(data)
