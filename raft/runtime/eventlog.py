"""The node event log (``events.jsonl``, docs/formats.md) and message ids.

Lines are buffered in memory and written by :meth:`EventLog.flush` (the node calls it
periodically and on stop); when the buffer reaches its bound it is flushed at once, so memory
stays bounded whatever the event rate. Writes go to the OS (no fsync): the event log is for
analysis, not for recovery.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

FORMAT_VERSION = 1
BUFFER_LINES_MAX = 4096


def digest(data: bytes) -> str:
    """``blake2b(data, digest_size=8).hexdigest()``, the entry/result digest of the format."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class MessageIds:
    """Ids ``"<node>:<boot_ts>:<counter>"``, unique per sender process run."""

    def __init__(self, node: str, boot_ts: float | None = None) -> None:
        self.prefix = f"{node}:{boot_ts if boot_ts is not None else round(time.time(), 3)}:"
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n}"


class EventLog:
    def __init__(
        self,
        path: str,
        node: str,
        term_of: Callable[[], int],
        clock: Callable[[], float] = time.time,
        buffer_lines_max: int = BUFFER_LINES_MAX,
    ) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.node = node
        self._term_of = term_of
        self._clock = clock
        self._max = buffer_lines_max
        self._buf: list[str] = []
        self._file: TextIO | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.lines_written = 0

    def emit(self, ev: str, term: int | None = None, **fields: Any) -> None:
        """Record one event; ``term`` defaults to the node's current term."""
        rec: dict[str, Any] = {
            "ts": round(self._clock(), 6),
            "node": self.node,
            "term": self._term_of() if term is None else term,
            "ev": ev,
        }
        rec.update(fields)
        self._buf.append(json.dumps(rec, separators=(",", ":"), default=_jsonable))
        if len(self._buf) >= self._max:
            self.flush()

    def flush(self) -> None:
        if not self._buf or self._file is None:
            return
        self._file.write("\n".join(self._buf) + "\n")
        self._file.flush()
        self.lines_written += len(self._buf)
        self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def _jsonable(obj: object) -> object:
    if isinstance(obj, frozenset | set | tuple):
        return sorted(obj) if not isinstance(obj, tuple) else list(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    value = getattr(obj, "value", None)
    if isinstance(value, str | int):
        return value
    return str(obj)
