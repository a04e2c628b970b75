"""The node event log (``events.jsonl``, docs/formats.md) and message ids.

Events are buffered in memory as records and serialised only when flushed: the node hands
them to a writer thread periodically (:meth:`EventLog.flush_background`) and flushes in
place on stop; when the buffer reaches its bound it is flushed at once, so memory stays
bounded whatever the event rate. Writes go to the OS (no fsync): the event log is for
analysis, not for recovery.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any, BinaryIO

try:  # the ``fast`` extra: serialising the log is ~10x cheaper (docs/runtime.md)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by the fallback test
    _orjson = None  # type: ignore[assignment]

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
        self._buf: list[dict[str, Any]] = []
        self._file: BinaryIO | None = open(path, "ab")  # noqa: SIM115
        self.lines_written = 0
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        """One thread, so background flushes are written in the order they were taken."""

    def emit(self, ev: str, term: int | None = None, **fields: Any) -> None:
        """Record one event; ``term`` defaults to the node's current term."""
        rec: dict[str, Any] = {
            "ts": round(self._clock(), 6),
            "node": self.node,
            "term": self._term_of() if term is None else term,
            "ev": ev,
        }
        rec.update(fields)
        self._buf.append(rec)  # serialised when flushed: off the request path
        if len(self._buf) >= self._max:
            self.flush()

    def flush(self) -> None:
        """Write everything emitted so far, now (after any background flush still running,
        so lines stay in emit order)."""
        if not self._buf or self._file is None:
            return
        recs, self._buf = self._buf, []
        if self._writer is not None:
            self._writer.submit(self._write, recs).result()
        else:
            self._write(recs)

    def flush_background(self) -> None:
        """Hand what was emitted so far to the writer thread (serialise + write) and return
        at once; the driver calls this periodically. Records must not be mutated after
        ``emit`` (the node's are built fresh)."""
        if not self._buf or self._file is None:
            return
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, "eventlog")
        recs, self._buf = self._buf, []
        self._writer.submit(self._write, recs)

    def _write(self, recs: list[dict[str, Any]]) -> None:
        f = self._file
        if f is None:
            return
        f.write(b"\n".join(map(encode_record, recs)) + b"\n")
        f.flush()
        self.lines_written += len(recs)

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None


_ORJSON_OPTIONS = (
    _orjson.OPT_NON_STR_KEYS | _orjson.OPT_PASSTHROUGH_DATACLASS if _orjson is not None else 0
)


def encode_record(rec: dict[str, Any]) -> bytes:
    """One event as a JSON line (without its newline): orjson when installed, else the
    standard library, the same values either way (``_jsonable`` for sets, bytes, enums and
    other objects; an integer past 64 bits, which orjson refuses, takes the standard
    library's path)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(rec, default=_jsonable, option=_ORJSON_OPTIONS)
        except TypeError:
            pass
    return json.dumps(rec, separators=(",", ":"), default=_jsonable).encode()


def _jsonable(obj: object) -> object:
    if isinstance(obj, frozenset | set | tuple):
        return sorted(obj) if not isinstance(obj, tuple) else list(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    value = getattr(obj, "value", None)
    if isinstance(value, str | int):
        return value
    return str(obj)
