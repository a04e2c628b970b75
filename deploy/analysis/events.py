"""Reading node event logs, client histories and nemesis logs from disk (docs/formats.md).

Readers are forgiving about content and strict about reporting: a line that is not a JSON
object, or lacks one of the fields every event must carry, is skipped and recorded as a
:class:`LineProblem` naming ``file:line`` and what was wrong. Unknown event kinds and unknown
fields are kept (the format promises forward compatibility). Nothing here raises for bad
*content*; only an unreadable path raises :class:`EventLogNotFoundError`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from deploy.errors import LabError

_fast_loads: Callable[[bytes], Any] | None
try:  # the ``fast`` extra: a JSON parser in C, 3-4x the standard library's speed per line
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _fast_loads = None

__all__ = [
    "EventLogNotFoundError",
    "HistoryOp",
    "LineProblem",
    "LoadedLogs",
    "NemesisEvent",
    "NodeEvent",
    "Source",
    "display_name",
    "find_event_files",
    "load_event_logs",
    "load_history",
    "load_nemesis",
]

FORMAT_VERSION = 1
"""The node event log version this reader understands (docs/formats.md)."""

#: File names that sit beside event logs but are not event logs.
NON_EVENT_FILES = frozenset(
    {"history.jsonl", "nemesis.jsonl", "merged.jsonl", "results.json", "shiviz.log"}
)


class EventLogNotFoundError(LabError):
    """The path given holds no node event log at all."""


class Source(NamedTuple):
    """Where a record came from: ``file:line`` (1-based line), for every message we print.

    A named tuple rather than a frozen dataclass: one is made per event read (a million for
    a long run) and a tuple is built four times faster (bench/bench_analyze.py)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line that could not be used, and why."""

    source: Source
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class NodeEvent(NamedTuple):
    """One line of a node event log.

    ``run`` numbers the process runs of ``node`` (0 before the first ``start`` seen, then
    1, 2, ...): volatile state such as the commit index resets between runs. ``seq`` is the
    event's position in its node's program order (file order, files in name order), which is
    the only order we trust within a node.

    Immutable like the frozen dataclasses elsewhere, but a named tuple: the analysis makes
    one per line read, and building a tuple costs a quarter of a frozen dataclass's
    ``__init__`` (0.3 against 1.2 us, bench/results/analyze.md).
    """

    ts: float
    node: str
    term: int
    ev: str
    fields: Mapping[str, Any]
    source: Source
    run: int
    seq: int
    raw: bytes = b""
    """The line as read (bytes, without its newline and trailing blanks): merged.jsonl
    extends it instead of re-serialising the event."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass(slots=True)
class LoadedLogs:
    """Every node's events in program order, plus what could not be read."""

    events_by_node: dict[str, list[NodeEvent]] = field(default_factory=dict)
    problems: list[LineProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    outside_window: int = 0
    """Events read but left out because their ``ts`` fell outside the window asked for."""
    seen_nodes: set[str] = field(default_factory=set)
    """Every node with a valid event, inside the window or not."""
    commit_before: dict[str, int] = field(default_factory=dict)
    """Each node's commit index when the window opened, from its last ``commit`` (or
    ``start``) event before it: an apply just inside the window may rest on a commit just
    outside it."""

    @property
    def nodes(self) -> list[str]:
        return sorted(self.events_by_node)

    def all_events(self) -> Iterator[NodeEvent]:
        for node in self.nodes:
            yield from self.events_by_node[node]

    def count(self) -> int:
        return sum(len(v) for v in self.events_by_node.values())


@dataclass(frozen=True, slots=True)
class HistoryOp:
    """One completed (or never completed) client operation, paired from invoke/completion.

    ``end_ns`` is None for an operation that never completed; ``outcome`` is then ``info``.
    """

    process: int
    f: str
    key: Any
    value: Any
    start_ns: int
    end_ns: int | None
    outcome: str
    node: str | None
    source: Source


@dataclass(frozen=True, slots=True)
class NemesisEvent:
    time_ns: int | None
    ts: float | None
    fault: str
    action: str
    targets: tuple[str, ...]
    fields: Mapping[str, Any]
    source: Source


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Loading builds millions of small objects, none of them garbage: the cyclic GC would
    rescan them over and over (37% of load+merge measured). Off while loading; what was
    built is frozen (never rescanned) afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def _slow_line(
    line: bytes, newline: bool, src_name: str, lineno: int, problems: list[LineProblem]
) -> dict[str, Any] | None:
    """A line the fast parser refused (or that failed validation after it), read exactly as
    the text reader always read it: decoded with ``surrogateescape``, blank lines skipped,
    the standard library's parser (which also takes NaN, big integers and lone surrogates)
    and its error message."""
    text = line.decode("utf-8", "surrogateescape") + ("\n" if newline else "")
    if not text or text.isspace():
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or undecodable bytes
        problems.append(LineProblem(Source(src_name, lineno), f"not JSON ({exc})"))
        return None
    if not isinstance(obj, dict):
        problems.append(
            LineProblem(Source(src_name, lineno), f"not a JSON object but {type(obj).__name__}")
        )
        return None
    return obj


def _read_lines(path: Path, problems: list[LineProblem], name: str) -> list[bytes] | None:
    """The file's lines (split on ``\\n`` only, as the reader always did), or None after
    recording why it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(LineProblem(Source(name, 0), f"cannot open: {exc.strerror}"))
        return None
    return data.split(b"\n")


def _read_json_lines(
    path: Path, problems: list[LineProblem], name: str | None = None
) -> Iterator[tuple[Source, dict[str, Any]]]:
    """Yield (source, object) for every line that is a JSON object; record the others."""
    name = name or str(path)
    lines = _read_lines(path, problems, name)
    if lines is None:
        return
    for lineno, _line, obj in _json_objects(lines, name, problems):
        yield Source(name, lineno), obj


def _json_objects(
    lines: list[bytes], name: str, problems: list[LineProblem]
) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """(line number, line, object) for every line that is a JSON object; the others are
    recorded. orjson (when installed) reads lines that start with ``{``; any other line,
    and any it refuses, goes through :func:`_slow_line`."""
    loads = _fast_loads
    last = len(lines)
    for lineno, line in enumerate(lines, start=1):
        if not line:
            continue
        obj: Any = None
        if loads is not None and line[0] == 123:  # "{": no BOM, no leading blank
            try:
                obj = loads(line)
            except ValueError:
                obj = None
        if type(obj) is not dict:
            obj = _slow_line(line, lineno < last, name, lineno, problems)
            if obj is None:
                continue
        yield lineno, line, obj


def _looks_like_event_log(path: Path) -> bool:
    """True when the first JSON line of ``path`` has the fields of a node event."""
    try:
        with path.open("rb") as fh:
            for _ in range(20):
                raw = fh.readline()
                if not raw:
                    return False
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                return isinstance(obj, dict) and {"ts", "node", "ev"} <= obj.keys()
    except OSError:
        return False
    return False


def find_event_files(root: Path) -> list[Path]:
    """Every node event log below ``root`` (or ``root`` itself if it is a file).

    ``events.jsonl`` files always count; other ``*.jsonl`` files count when their first line
    looks like a node event (so rotated or renamed logs are found), except the run directory's
    own history, nemesis and merged files. Sorted by path, so program order across rotated
    files of one node follows their names.
    """
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise EventLogNotFoundError(f"{root}: no such file or directory")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in {"plots", "__pycache__"})
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name == "events.jsonl" or (
                name.endswith(".jsonl") and name not in NON_EVENT_FILES and _looks_like_event_log(p)
            ):
                found.append(p)
    return sorted(found)


def _validate_event(obj: dict[str, Any]) -> str | None:
    if not _is_number(obj.get("ts")):
        return "missing or non-numeric 'ts'"
    node = obj.get("node")
    if not isinstance(node, str) or not node:
        return "missing or empty 'node'"
    ev = obj.get("ev")
    if not isinstance(ev, str) or not ev:
        return "missing or empty 'ev'"
    term = obj.get("term", 0)
    if not isinstance(term, int) or isinstance(term, bool) or term < 0:
        return "'term' is not a non-negative integer"
    return _validate_fields(ev, obj)


def _is_entry_list(x: Any, width: int) -> bool:
    return isinstance(x, list) and all(
        isinstance(e, list)
        and len(e) >= width
        and isinstance(e[0], int)
        and isinstance(e[1], int)
        and all(isinstance(d, str) for d in e[2:width])
        for e in x
    )


def _validate_fields(ev: str, obj: Mapping[str, Any]) -> str | None:
    """Check the fields the analysis relies on, for the kinds it reads."""
    ints: tuple[str, ...] = ()
    if ev == "commit":
        ints = ("index",)
    elif ev == "truncate":
        ints = ("from",)
    elif ev == "snapshot":
        ints = ("index",)
    elif ev == "persist" and not _is_entry_list(obj.get("entries"), 3):
        return "'persist' needs 'entries' as a list of [index, term, digest]"
    elif ev == "apply" and not _is_entry_list(obj.get("entries"), 3):
        return "'apply' needs 'entries' as a list of [index, term, digest, result_digest]"
    elif ev in ("send", "recv") and not isinstance(obj.get("id"), str):
        return f"'{ev}' needs a string 'id'"
    for k in ints:
        v = obj.get(k)
        if not isinstance(v, int) or isinstance(v, bool):
            return f"'{ev}' needs an integer '{k}'"
    return None


def display_name(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` when it lies below it (shorter messages, stable across
    copies of a run directory), else as given."""
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


_CHECKED_KINDS = frozenset({"commit", "truncate", "snapshot", "persist", "apply", "send", "recv"})
"""Kinds whose fields :func:`_validate_fields` checks; other kinds need only the common ones."""


def _fields_ok(ev: str, obj: dict[str, Any]) -> bool:
    """A quick sufficient test that :func:`_validate_fields` accepts ``obj`` (exact types;
    a bool where an int is expected, for one, fails here and gets the full check)."""
    if ev == "send" or ev == "recv":
        return type(obj.get("id")) is str
    if ev == "commit" or ev == "snapshot":
        return type(obj.get("index")) is int
    if ev == "truncate":
        return type(obj.get("from")) is int
    entries = obj.get("entries")  # persist, apply
    if type(entries) is not list:
        return False
    for e in entries:
        if (
            type(e) is not list
            or len(e) < 3
            or type(e[0]) is not int
            or type(e[1]) is not int
            or type(e[2]) is not str
        ):
            return False
    return True


def load_event_logs(
    paths: Iterable[Path],
    base: Path | None = None,
    window: tuple[float, float] | None = None,
) -> LoadedLogs:
    """Parse event log files into per-node program order, numbering process runs. Sources
    are named relative to ``base`` when given. With ``window`` (wall seconds, inclusive)
    only events whose ``ts`` falls inside are kept (``seq`` numbers the kept ones); the
    others are still read, validated and counted in ``outside_window``, and their ``start``
    events still number the runs.

    This is the hot loop of the analysis (one pass per line, a million lines for a long
    run): lines are split from the file's bytes, parsed by orjson when installed (the
    ``fast`` extra), checked with inline type tests for the common case, and kept as
    named tuples; anything unusual takes the exact slow path (:func:`_slow_line`,
    :func:`_validate_event`), so what is kept or reported never depends on the parser."""
    out = LoadedLogs()
    problems = out.problems
    by_node = out.events_by_node
    seen = out.seen_nodes
    run_of: dict[str, int] = {}
    interned: dict[str, str] = {}
    loads = _fast_loads
    new = tuple.__new__
    lo, hi = window if window is not None else (-math.inf, math.inf)
    outside = 0
    commit_before = out.commit_before
    checked = _CHECKED_KINDS
    for path in paths:
        name = display_name(path, base)
        out.files.append(name)
        lines = _read_lines(path, problems, name)
        if lines is None:
            continue
        last_line = len(lines)
        cur_node = ""
        events: list[NodeEvent] = []
        run = 0
        ts: Any
        node: Any
        ev: Any
        for lineno, line, obj in _json_objects(lines, name, problems):
            ts = obj.get("ts")
            node = obj.get("node")
            ev = obj.get("ev")
            term = obj.get("term", 0)
            if not (
                ((type(ts) is float and ts - ts == 0.0) or type(ts) is int)
                and type(node) is str
                and node
                and type(ev) is str
                and ev
                and type(term) is int
                and term >= 0
                and (ev not in checked or _fields_ok(ev, obj))
            ):
                why = _validate_event(obj)
                if why is not None and loads is not None:
                    # The fast parser reads integers past 64 bits as floats: decide on what
                    # the standard library reads.
                    again = _slow_line(line, lineno < last_line, name, lineno, [])
                    if again is not None:
                        obj, why = again, _validate_event(again)
                if why is not None:
                    problems.append(LineProblem(Source(name, lineno), why))
                    continue
                ts, node, ev = obj.get("ts"), obj.get("node"), obj.get("ev")
            node = interned.setdefault(node, node)
            ev = interned.setdefault(ev, ev)
            if node != cur_node:
                if cur_node:
                    run_of[cur_node] = run
                cur_node = node
                seen.add(node)
                events = by_node.get(node) or []
                run = run_of.get(node, 0)
            if ev == "start":
                run += 1
                v = obj.get("v")
                if isinstance(v, int) and v > FORMAT_VERSION:
                    problems.append(
                        LineProblem(
                            Source(name, lineno),
                            f"event log format v{v} is newer than this reader's "
                            f"v{FORMAT_VERSION}; read anyway, fields may be misread",
                        )
                    )
            ts = float(obj.pop("ts"))
            if not lo <= ts <= hi:
                outside += 1
                if ts < lo and (ev == "commit" or ev == "start"):
                    c = obj.get("index" if ev == "commit" else "commit")
                    commit_before[node] = c if type(c) is int else 0
                continue
            if not events:
                by_node[node] = events
            term = int(obj.pop("term", 0))
            del obj["node"], obj["ev"]
            raw = line if line[-1] == 125 else line.rstrip()  # "}"
            # What is left of the line's object is the event's own fields.
            events.append(
                new(
                    NodeEvent,
                    (ts, node, term, ev, obj, new(Source, (name, lineno)), run, len(events), raw),
                )
            )
        if cur_node:
            run_of[cur_node] = run
    out.outside_window = outside
    return out


def load_history(
    path: Path, problems: list[LineProblem], base: Path | None = None
) -> list[HistoryOp]:
    """Pair each process's invoke with its completion. An invocation that never completed is
    returned with ``outcome="info"`` and no end time (Jepsen's meaning)."""
    ops: list[HistoryOp] = []
    pending: dict[int, tuple[Source, dict[str, Any]]] = {}
    for src, obj in _read_json_lines(path, problems, display_name(path, base)):
        proc, typ, t = obj.get("process"), obj.get("type"), obj.get("time")
        if not isinstance(proc, int) or not isinstance(t, int) or isinstance(t, bool):
            problems.append(LineProblem(src, "history op needs integer 'process' and 'time'"))
            continue
        if typ == "invoke":
            if proc in pending:
                problems.append(
                    LineProblem(src, f"process {proc} invoked twice without completing")
                )
            pending[proc] = (src, obj)
        elif typ in ("ok", "fail", "info"):
            if proc not in pending:
                problems.append(LineProblem(src, f"completion of process {proc} without invoke"))
                continue
            isrc, inv = pending.pop(proc)
            value = obj.get("value") if obj.get("f", inv.get("f")) == "read" else inv.get("value")
            ops.append(
                HistoryOp(
                    process=proc,
                    f=str(inv.get("f")),
                    key=inv.get("key"),
                    value=value,
                    start_ns=int(inv["time"]),
                    end_ns=t,
                    outcome=str(typ),
                    node=obj.get("node") or inv.get("node"),
                    source=isrc,
                )
            )
        else:
            problems.append(LineProblem(src, f"unknown history type {typ!r}"))
    for proc, (isrc, inv) in pending.items():
        ops.append(
            HistoryOp(
                process=proc,
                f=str(inv.get("f")),
                key=inv.get("key"),
                value=inv.get("value"),
                start_ns=int(inv["time"]),
                end_ns=None,
                outcome="info",
                node=inv.get("node"),
                source=isrc,
            )
        )
    ops.sort(key=lambda o: (o.start_ns, o.process))
    return ops


def load_nemesis(
    path: Path, problems: list[LineProblem], base: Path | None = None
) -> list[NemesisEvent]:
    out: list[NemesisEvent] = []
    for src, obj in _read_json_lines(path, problems, display_name(path, base)):
        fault, action = obj.get("fault"), obj.get("action")
        if not isinstance(fault, str) or action not in ("start", "stop"):
            problems.append(LineProblem(src, "nemesis event needs 'fault' and 'action' start|stop"))
            continue
        t, ts = obj.get("time"), obj.get("ts")
        if not _is_number(t) and not _is_number(ts):
            problems.append(LineProblem(src, "nemesis event needs 'time' or 'ts'"))
            continue
        targets = obj.get("targets") or []
        out.append(
            NemesisEvent(
                time_ns=int(t) if isinstance(t, int | float) and _is_number(t) else None,
                ts=float(ts) if isinstance(ts, int | float) and _is_number(ts) else None,
                fault=fault,
                action=str(action),
                targets=tuple(str(x) for x in targets) if isinstance(targets, list) else (),
                fields={
                    k: v
                    for k, v in obj.items()
                    if k not in ("time", "ts", "fault", "action", "targets")
                },
                source=src,
            )
        )
    return out
