"""Length-prefixed frames: limits are checked before the body is read."""

from __future__ import annotations

import asyncio
import struct

import pytest

from raft.runtime.framing import (
    ConnectionClosedError,
    FrameError,
    FrameTooLargeError,
    encode_frame,
    read_frame,
)


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


def test_round_trip_several_frames() -> None:
    async def main() -> list[bytes]:
        r = _reader(encode_frame(b"one") + encode_frame(b"two" * 1000))
        return [await read_frame(r), await read_frame(r)]

    assert asyncio.run(main()) == [b"one", b"two" * 1000]


def test_oversized_announcement_refused_without_body() -> None:
    async def main() -> None:
        # Only the header is available and no EOF: had the reader waited for the body,
        # this would hang; it must refuse at once.
        r = _reader(struct.pack(">I", 1 << 30), eof=False)
        await asyncio.wait_for(read_frame(r, max_bytes=1024), 1.0)

    with pytest.raises(FrameTooLargeError) as info:
        asyncio.run(main())
    assert info.value.size == 1 << 30 and info.value.limit == 1024


def test_encode_refuses_oversized_body() -> None:
    with pytest.raises(FrameTooLargeError):
        encode_frame(b"x" * 11, max_bytes=10)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00", struct.pack(">I", 10) + b"short"],
    ids=["eof", "torn-header", "torn-body"],
)
def test_truncated_streams(data: bytes) -> None:
    with pytest.raises(ConnectionClosedError):
        asyncio.run(_read(data))


def test_empty_frame_is_an_error() -> None:
    with pytest.raises(FrameError, match="empty"):
        asyncio.run(_read(struct.pack(">I", 0)))


async def _read(data: bytes) -> bytes:
    return await read_frame(_reader(data))
