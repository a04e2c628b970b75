"""Length-prefixed frames: a 4-byte big-endian body length, then the body.

The length is checked against a hard limit *before* the body is read, so a peer announcing a
huge frame costs nothing but the 4 bytes; the connection is then closed by the caller.
"""

from __future__ import annotations

import asyncio
import struct

FRAME_BYTES_MAX = 16 << 20
"""Default hard limit of one frame body (16 MiB)."""

_LEN = struct.Struct(">I")
HEADER_BYTES = _LEN.size


class FrameError(Exception):
    """The byte stream is not a valid sequence of frames (too large, empty, cut short)."""


class FrameTooLargeError(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class ConnectionClosedError(FrameError):
    """The peer closed the connection (cleanly between frames or in the middle of one)."""


def encode_frame(body: bytes, max_bytes: int = FRAME_BYTES_MAX) -> bytes:
    if len(body) > max_bytes:
        raise FrameTooLargeError(len(body), max_bytes)
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = FRAME_BYTES_MAX) -> bytes:
    """The next frame body. Raises ConnectionClosedError at end of stream,
    FrameTooLargeError when the announced length exceeds ``max_bytes`` (body not read),
    FrameError for an empty frame."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosedError(
            "connection closed" if not exc.partial else "connection closed inside a frame header"
        ) from None
    (size,) = _LEN.unpack(header)
    if size > max_bytes:
        raise FrameTooLargeError(size, max_bytes)
    if size == 0:
        raise FrameError("empty frame")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosedError(
            f"connection closed after {len(exc.partial)} of {size} frame bytes"
        ) from None
