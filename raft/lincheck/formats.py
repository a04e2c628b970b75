"""Client history formats: our ``history.jsonl``, Jepsen's ``history.edn`` and Jepsen's older
text log lines. Strings in, strings out: the caller reads and writes files.

- ``jsonl`` (docs/formats.md, "Client history"): one JSON object per line; unknown fields are
  skipped.
- ``jepsen-edn``: one EDN map per line (or one vector of maps), as Jepsen's ``history.edn``:
  ``{:type :invoke, :f :cas, :value [1 4], :process 3, :time 1234, :index 7}``. Entries whose
  ``:process`` is not an integer (``:nemesis``) are skipped. When some entry has no ``:time``,
  every event's time is its position in the file. Reading uses a small EDN reader written
  here: maps, vectors, lists, sets, keywords, symbols, strings, characters, numbers, ``nil``,
  ``true``/``false``, comments and ``#_``; tagged elements (``#inst``,
  ``#jepsen.history.Op{...}``) read as their untagged value. Nothing is ever evaluated.
- ``jepsen-log``: Jepsen's log lines ``INFO  jepsen.util - 3\\t:invoke\\t:cas\\t[1 4]``;
  other log lines are skipped, as are ``:nemesis`` lines. The value is EDN (``nil``, numbers,
  ``[from to]``); on ``fail``/``info`` lines a keyword value (``:timed-out``) is the error.
  Times are line numbers.

Every parse error is a :class:`HistoryParseError` naming the 1-based line.
"""

from __future__ import annotations

import bisect
import enum
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from raft.lincheck.history import HistoryError, HistoryEvent

__all__ = [
    "Format",
    "HistoryParseError",
    "Keyword",
    "ParsedHistory",
    "Symbol",
    "parse",
    "parse_edn",
    "parse_jepsen_log",
    "parse_jsonl",
    "read_edn",
    "read_history",
    "render",
    "render_edn",
    "render_jepsen_log",
    "render_jsonl",
    "sniff",
    "unpack_tuples",
    "write_edn",
]


class Format(enum.Enum):
    JSONL = "jsonl"
    JEPSEN_EDN = "jepsen-edn"
    JEPSEN_LOG = "jepsen-log"


class HistoryParseError(HistoryError):
    """A history text could not be read. ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class Keyword(str):
    """An EDN keyword, stored without its colon (``:cas`` is ``Keyword("cas")``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{str.__str__(self)}"


class Symbol(str):
    """An EDN symbol (never resolved or evaluated)."""

    __slots__ = ()


# --------------------------------------------------------------------------------------
# format choice


_EXTENSIONS = {
    ".jsonl": Format.JSONL,
    ".json": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".edn": Format.JEPSEN_EDN,
    ".log": Format.JEPSEN_LOG,
    ".txt": Format.JEPSEN_LOG,
}


def sniff(text: str, filename: str | None = None) -> Format:
    """The format of a history, from its content: a JSON object line is ``jsonl``, an EDN
    form (``{:``, ``[``, ``(``, ``#``, ``;``) is ``jepsen-edn``, a Jepsen operation line
    (``P :invoke :f value`` with any whitespace) is ``jepsen-log``. Only when the content
    says nothing (empty, or junk) does the file extension decide; then ``jsonl``."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith('{"') or first.startswith('{ "') or first == "{}":
        return Format.JSONL
    if first[:1] in ("{", "[", "(", "#", ";"):
        return Format.JEPSEN_EDN
    if any(_SNIFF_OP.search(ln) for ln in text.splitlines()[:10_000]):
        return Format.JEPSEN_LOG
    if filename is not None:
        for ext, fmt in _EXTENSIONS.items():
            if filename.lower().endswith(ext):
                return fmt
    return Format.JSONL


@dataclass(frozen=True, slots=True)
class ParsedHistory:
    """A history read from text, with what the reader could not use.

    ``skipped`` lists lines that look like operations but could not be read (1-based line,
    why); a checker must not judge a history with skipped lines as if it were complete.
    ``ignored`` counts lines that are not operations at all (other log lines, ``:nemesis``
    entries). ``unpacked_keys`` is the number of keys when Jepsen ``independent`` tuples
    (``:value [k v]``) were unpacked into per-key operations, else 0.
    """

    events: list[HistoryEvent]
    format: Format
    skipped: tuple[tuple[int, str], ...] = ()
    ignored: int = 0
    unpacked_keys: int = 0


def read_history(
    text: str, fmt: Format | str | None = None, filename: str | None = None
) -> ParsedHistory:
    """Read a history in ``fmt`` (default: :func:`sniff`), report skipped lines, and unpack
    Jepsen ``independent`` tuples per key (see :func:`unpack_tuples`)."""
    f = Format(fmt) if fmt is not None else sniff(text, filename)
    skipped: list[tuple[int, str]] = []
    ignored = [0]
    if f is Format.JSONL:
        events = parse_jsonl(text)
    elif f is Format.JEPSEN_EDN:
        events = _parse_edn(text, ignored)
    else:
        events = _parse_log(text, skipped, ignored)
    tagged = f is Format.JEPSEN_EDN and "#jepsen.independent/tuple" in text
    unpacked = unpack_tuples(events, force=tagged)
    keys = 0
    if unpacked is not None:
        events = unpacked
        keys = len({repr(e.key) for e in events})
    return ParsedHistory(events, f, tuple(skipped), ignored[0], keys)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) == 2


def unpack_tuples(
    events: Sequence[HistoryEvent], *, force: bool = False
) -> list[HistoryEvent] | None:
    """Jepsen's ``independent`` histories carry ``[key value]`` tuples as values; return the
    events with ``key`` and ``value`` split out, or ``None`` when the history is not of that
    form.

    Without the EDN tag (``force``) the form is recognised when no event has a key, every
    invocation's value is a pair, and some read or cas invocation shows it: a plain
    register's read invokes with ``nil`` and its cas with ``[old new]``, while a tuple read
    invokes with ``[k nil]`` and a tuple cas with ``[k [old new]]``. A completion without a
    tuple (an error keyword) takes its invocation's key.
    """
    if not events or any(e.key is not None for e in events):
        return None
    invokes = [e for e in events if e.type == "invoke"]
    if not invokes or not all(_is_pair(e.value) for e in invokes):
        return None
    if not force:
        telling = [e for e in invokes if e.f in ("read", "cas")]
        if not telling or not all(e.f == "read" or _is_pair(e.value[1]) for e in telling):
            return None
    open_key: dict[int, Any] = {}
    out = []
    for e in events:
        if e.type == "invoke":
            key, value = e.value[0], e.value[1]
            open_key[e.process] = key
        elif _is_pair(e.value) and e.value[0] == open_key.get(e.process, e.value[0]):
            key, value = e.value[0], e.value[1]
        else:
            key, value = open_key.get(e.process), e.value
        out.append(
            HistoryEvent(e.process, e.type, e.f, key, value, e.time, e.node, e.error, e.line)
        )
    return out


def parse(text: str, fmt: Format | str) -> list[HistoryEvent]:
    """Parse ``text`` in format ``fmt`` (a :class:`Format` or its value)."""
    return read_history(text, fmt).events


def render(events: Iterable[HistoryEvent], fmt: Format | str) -> str:
    """Render ``events`` in format ``fmt``."""
    fmt = Format(fmt)
    if fmt is Format.JSONL:
        return render_jsonl(events)
    if fmt is Format.JEPSEN_EDN:
        return render_edn(events)
    return render_jepsen_log(events)


# --------------------------------------------------------------------------------------
# history.jsonl


def _event(line: int, **fields: Any) -> HistoryEvent:
    try:
        return HistoryEvent(line=line, **fields)
    except HistoryError as exc:
        raise HistoryParseError(line, str(exc).removeprefix(f"line {line}: ")) from None


def parse_jsonl(text: str) -> list[HistoryEvent]:
    """Parse ``history.jsonl``; blank lines are skipped, unknown fields ignored."""
    events = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HistoryParseError(lineno, f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise HistoryParseError(lineno, "expected a JSON object")
        for name in ("process", "type", "f", "time"):
            if name not in obj:
                raise HistoryParseError(lineno, f"missing field {name!r}")
        for name in ("node", "error"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise HistoryParseError(lineno, f"field {name!r} must be a string")
        if not isinstance(obj["type"], str) or not isinstance(obj["f"], str):
            raise HistoryParseError(lineno, "fields 'type' and 'f' must be strings")
        events.append(
            _event(
                lineno,
                process=obj["process"],
                type=obj["type"],
                f=obj["f"],
                key=obj.get("key"),
                value=obj.get("value"),
                time=obj["time"],
                node=obj.get("node"),
                error=obj.get("error"),
            )
        )
    return events


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted((_to_json(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def render_jsonl(events: Iterable[HistoryEvent]) -> str:
    """Render ``history.jsonl`` (one compact object per line, ending with a newline)."""
    out = []
    for ev in events:
        obj: dict[str, Any] = {
            "process": ev.process,
            "type": ev.type,
            "f": ev.f,
            "key": _to_json(ev.key),
            "value": _to_json(ev.value),
            "time": ev.time,
        }
        if ev.node is not None:
            obj["node"] = ev.node
        if ev.error is not None:
            obj["error"] = ev.error
        out.append(json.dumps(obj, separators=(",", ":")) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------------------
# EDN reader and writer

_TOKEN = re.compile(
    r"""(?:[\s,]+|;[^\n]*)*
    (?:(?P<str>"(?:[^"\\]|\\.)*")
    |(?P<open>\#\{|[(\[{])
    |(?P<close>[)\]}])
    |(?P<discard>\#_)
    |(?P<tag>\#[A-Za-z][^\s,()\[\]{}";]*)
    |(?P<char>\\(?:[^\s,()\[\]{}";]+|.))
    |(?P<atom>[^\s,()\[\]{}";#\\][^\s,()\[\]{}";]*))?""",
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?")
_ATOM = re.compile(r"[^\s,()\[\]{}\";]+")
_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}
_CHAR_NAMES = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f"}
_CLOSERS = {"(": ")", "[": "]", "{": "}", "#{": "}"}


class _BadTokenError(ValueError):
    """A token that is not valid EDN; the reader adds the line."""


class _Lines:
    """Maps text offsets to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def at(self, pos: int) -> int:
        return bisect.bisect_right(self._newlines, pos - 1) + 1


@dataclass(slots=True)
class _Frame:
    opener: str
    start: int
    items: list[Any]
    starts: list[int]
    discards: int = 0


def _read_forms(text: str) -> list[tuple[int, Any, list[int] | None]]:
    """Every top-level EDN form: (line, value, lines of its elements if it is a sequence).

    One pass over a tokenizing regex with an explicit stack: no recursion limit, no eval.
    Raises HistoryParseError naming the line.
    """
    lines = _Lines(text)
    out: list[tuple[int, Any, list[int] | None]] = []
    stack: list[_Frame] = []
    top_discards = 0
    pos = 0
    end = len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)  # never None: whitespace alone matches
        assert m is not None
        kind = m.lastgroup
        if kind is None:
            pos = m.end()
            if pos >= end:
                break
            c = text[pos]
            if c == '"':
                raise HistoryParseError(lines.at(pos), "unterminated string in EDN")
            if c == "#":
                raise HistoryParseError(
                    lines.at(pos), f"unsupported EDN dispatch {text[pos : pos + 2]!r}"
                )
            raise HistoryParseError(lines.at(pos), f"unexpected {c!r} in EDN")
        tok = m.group(kind)
        start = m.start(kind)
        pos = m.end()
        value: Any
        if kind == "tag":
            continue  # a tagged element reads as its value
        if kind == "discard":
            if stack:
                stack[-1].discards += 1
            else:
                top_discards += 1
            continue
        if kind == "open":
            stack.append(_Frame(tok, start, [], []))
            continue
        if kind == "close":
            if not stack or _CLOSERS[stack[-1].opener] != tok:
                raise HistoryParseError(lines.at(start), f"unexpected {tok!r} in EDN")
            frame = stack.pop()
            if frame.discards:
                raise HistoryParseError(lines.at(start), "#_ with nothing to discard")
            value = _collection(frame, lines)
            start = frame.start
            children: list[int] | None = frame.starts
        else:
            children = None
            try:
                if kind == "str":
                    value = _unescape(tok[1:-1]) if "\\" in tok else tok[1:-1]
                elif kind == "char":
                    value = _char(tok[1:])
                else:
                    value = _atom(tok)
            except _BadTokenError as exc:
                raise HistoryParseError(lines.at(start), str(exc)) from None
        if stack:
            frame = stack[-1]
            if frame.discards:
                frame.discards -= 1
            else:
                frame.items.append(value)
                frame.starts.append(start)
        elif top_discards:
            top_discards -= 1
        else:
            child_lines = None
            if children is not None and isinstance(value, list):  # a history vector
                child_lines = [lines.at(p) for p in children]
            out.append((lines.at(start), value, child_lines))
    if stack:
        frame = stack[-1]
        raise HistoryParseError(lines.at(frame.start), f"unclosed {frame.opener!r} (end of input)")
    return out


def _collection(frame: _Frame, lines: _Lines) -> Any:
    if frame.opener == "{":
        items = frame.items
        if len(items) % 2:
            raise HistoryParseError(lines.at(frame.start), "map literal has an odd number of forms")
        out: dict[Any, Any] = {}
        for k, v in zip(items[::2], items[1::2], strict=True):
            try:
                out[_hashable(k)] = v
            except TypeError:
                raise HistoryParseError(
                    lines.at(frame.start), f"unhashable map key {k!r}"
                ) from None
        return out
    if frame.opener == "#{":
        try:
            return frozenset(_hashable(i) for i in frame.items)
        except TypeError:
            raise HistoryParseError(lines.at(frame.start), "unhashable set element") from None
    return frame.items


def _char(name: str) -> str:
    if len(name) == 1:
        return name
    if name in _CHAR_NAMES:
        return _CHAR_NAMES[name]
    if name[0] == "u" and len(name) == 5:
        try:
            return chr(int(name[1:], 16))
        except ValueError:
            pass
    raise _BadTokenError(f"bad character literal \\{name}")


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[e])
            i += 2
        elif e == "u":
            try:
                out.append(chr(int(body[i + 2 : i + 6], 16)))
            except ValueError:
                raise _BadTokenError("bad \\u escape in string") from None
            i += 6
        else:
            raise _BadTokenError(f"bad escape \\{e} in string")
    return "".join(out)


def _atom(tok: str) -> Any:
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    c = tok[0]
    if c == ":":
        if len(tok) == 1:
            raise _BadTokenError("empty keyword")
        return Keyword(tok[1:])
    if c.isdigit() or (len(tok) > 1 and c in "+-" and tok[1].isdigit()):
        if _INT.fullmatch(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.fullmatch(tok):
            return float(tok.rstrip("M"))
        raise _BadTokenError(f"unsupported number {tok!r}")
    return Symbol(tok)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((_hashable(k), _hashable(v)) for k, v in value.items()), key=repr))
    hash(value)
    return value


def read_edn(text: str) -> list[tuple[int, Any]]:
    """Every top-level EDN form in ``text`` with the line it starts on."""
    return [(line, value) for line, value, _ in _read_forms(text)]


def write_edn(value: Any) -> str:
    """EDN text for ``value`` (the inverse of the reader for the types it produces)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Keyword):
        return f":{str.__str__(value)}"
    if isinstance(value, Symbol):
        return str.__str__(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"EDN cannot represent {value!r}")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(write_edn(v) for v in value) + "]"
    if isinstance(value, frozenset | set):
        return "#{" + " ".join(sorted(write_edn(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{write_edn(k)} {write_edn(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"EDN cannot represent a {type(value).__name__}")


def _keyword_name(value: Any, field: str, line: int) -> str:
    if isinstance(value, Keyword | Symbol):
        return str.__str__(value)
    if isinstance(value, str):
        return value
    raise HistoryParseError(line, f"{field} must be a keyword, got {write_edn_safe(value)}")


def write_edn_safe(value: Any) -> str:
    try:
        return write_edn(value)
    except ValueError:
        return repr(value)


def parse_edn(text: str) -> list[HistoryEvent]:
    """Parse a Jepsen ``history.edn``: maps one per line, or one vector/list of maps."""
    return _parse_edn(text, [0])


def _parse_edn(text: str, ignored: list[int]) -> list[HistoryEvent]:
    forms = _read_forms(text)
    maps: list[tuple[int, Any]]
    if len(forms) == 1 and isinstance(forms[0][1], list):
        _, items, lines = forms[0]
        assert lines is not None
        maps = list(zip(lines, items, strict=True))
    else:
        maps = [(line, value) for line, value, _ in forms]
    raw: list[tuple[int, dict[str, Any]]] = []
    for line, form in maps:
        if not isinstance(form, dict):
            raise HistoryParseError(line, f"expected an operation map, got {write_edn_safe(form)}")
        op = {str.__str__(k) if isinstance(k, str) else k: v for k, v in form.items()}
        process = op.get("process")
        if isinstance(process, str) or process is None:
            if process is None:
                raise HistoryParseError(line, "operation map has no :process")
            ignored[0] += 1
            continue  # :nemesis and other non-client processes
        raw.append((line, op))
    with_time = all(isinstance(op.get("time"), int) for _, op in raw)
    events = []
    for position, (line, op) in enumerate(raw):
        for name in ("type", "f"):
            if name not in op:
                raise HistoryParseError(line, f"operation map has no :{name}")
        error = op.get("error")
        events.append(
            _event(
                line,
                process=op["process"],
                type=_keyword_name(op["type"], ":type", line),
                f=_keyword_name(op["f"], ":f", line),
                key=op.get("key"),
                value=op.get("value"),
                time=op["time"] if with_time else position,
                node=op.get("node") if isinstance(op.get("node"), str) else None,
                error=None if error is None else _error_text(error),
            )
        )
    return events


def _error_text(error: Any) -> str:
    if isinstance(error, Keyword):
        return str.__str__(error)
    if isinstance(error, str):
        return error
    return write_edn_safe(error)


def render_edn(events: Iterable[HistoryEvent]) -> str:
    """Render Jepsen ``history.edn``: one map per line, with ``:index`` and ``:time``."""
    out = []
    for index, ev in enumerate(events):
        parts = [
            f":index {index}",
            f":time {ev.time}",
            f":type :{ev.type}",
            f":process {ev.process}",
            f":f :{ev.f}",
        ]
        if ev.key is not None:
            parts.append(f":key {write_edn(ev.key)}")
        parts.append(f":value {write_edn(ev.value)}")
        if ev.node is not None:
            parts.append(f":node {write_edn(ev.node)}")
        if ev.error is not None:
            err = f":{ev.error}" if _ATOM.fullmatch(ev.error) else write_edn(ev.error)
            parts.append(f":error {err}")
        out.append("{" + ", ".join(parts) + "}\n")
    return "".join(out)


# --------------------------------------------------------------------------------------
# Jepsen log lines

_LOG_LINE = re.compile(
    r"(?:^|\s)(?P<process>[^\s:-]\S*|-\d+|:[\w.-]+)\s+:(?P<type>[\w-]+)\s+:(?P<f>[\w-]+)"
    r"(?:\s+(?P<value>.*?))?\s*$"
)
_LOOKS_LIKE_OP = re.compile(r"jepsen\.util\s+-\s|(?:^|\s):(?:invoke|ok|fail|info)(?:\s|$)")
_SNIFF_OP = re.compile(r"(?:^|\s)-?\d+\s+:(?:invoke|ok|fail|info)\s+:[\w-]+")
"""A line that is meant to be an operation (so failing to read it is a skipped line, not
another log line)."""


def parse_jepsen_log(text: str) -> list[HistoryEvent]:
    """Parse Jepsen's log lines (fields separated by any whitespace); lines that are not
    operation lines are ignored. See :func:`read_history` for the skipped lines."""
    return _parse_log(text, [], [0])


def _parse_log(text: str, skipped: list[tuple[int, str]], ignored: list[int]) -> list[HistoryEvent]:
    events = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        m = _LOG_LINE.search(raw)
        if m is None:
            if _LOOKS_LIKE_OP.search(raw):
                skipped.append((lineno, f"not an operation line: {raw.strip()[:80]!r}"))
            elif raw.strip():
                ignored[0] += 1
            continue
        proc_tok = m.group("process")
        if proc_tok.startswith(":"):
            ignored[0] += 1
            continue  # :nemesis
        if not re.fullmatch(r"-?\d+", proc_tok):
            raise HistoryParseError(lineno, f"process {proc_tok!r} is not an integer")
        value_text = m.group("value")
        value: Any = None
        if value_text:
            try:
                forms = _read_forms(value_text)
                if len(forms) != 1:
                    raise HistoryParseError(1, "more than one value" if forms else "no value")
                value = forms[0][1]
            except HistoryParseError as exc:
                raise HistoryParseError(
                    lineno, f"bad value {value_text!r}: {exc.message}"
                ) from None
        kind = m.group("type")
        error = None
        if kind in ("fail", "info") and isinstance(value, Keyword):
            error, value = str.__str__(value), None
        events.append(
            _event(
                lineno,
                process=int(proc_tok),
                type=kind,
                f=m.group("f"),
                value=value,
                time=lineno,
                error=error,
            )
        )
    return events


def render_jepsen_log(events: Iterable[HistoryEvent]) -> str:
    """Render Jepsen log lines (``INFO  jepsen.util - P\\t:type\\t:f\\tvalue``). Keys and times
    are not representable in this format and are dropped."""
    out = []
    for ev in events:
        if ev.error is not None and ev.type in ("fail", "info"):
            value = f":{ev.error}" if _ATOM.fullmatch(ev.error) else write_edn(ev.value)
        else:
            value = write_edn(ev.value)
        out.append(f"INFO  jepsen.util - {ev.process}\t:{ev.type}\t:{ev.f}\t{value}\n")
    return "".join(out)


def events_equal(a: Sequence[HistoryEvent], b: Sequence[HistoryEvent]) -> bool:
    """Whether two histories hold the same events, ignoring line numbers and the difference
    between lists and tuples (used to test round trips)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x.process, x.type, x.f, x.time, x.node, x.error) != (
            y.process,
            y.type,
            y.f,
            y.time,
            y.node,
            y.error,
        ):
            return False
        if _to_json(x.key) != _to_json(y.key) or _to_json(x.value) != _to_json(y.value):
            return False
    return True
