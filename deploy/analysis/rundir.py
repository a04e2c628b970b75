"""Run directories: find their inputs, analyse them, write results, list runs.

A run directory (``runs/<experiment>/<timestamp>/``, docs/formats.md) holds
``nodes/<host>/**/events.jsonl`` and optionally ``history.jsonl``, ``nemesis.jsonl`` and
``results.json``. Any other folder of node event logs (the data folder of ``raft cluster
up``, a tarball someone sent) is analysed the same way; a ``history.jsonl`` or
``nemesis.jsonl`` beside the logs is picked up.

:func:`analyze` never raises for bad content: unreadable lines become problems, a history
the checker cannot read makes the linearizability verdict ``unknown``.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
import operator
import os
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.analysis.events import (
    EventLogNotFoundError,
    HistoryOp,
    LineProblem,
    LoadedLogs,
    NemesisEvent,
    Source,
    display_name,
    find_event_files,
    gc_paused,
    load_event_logs,
    load_history,
    load_nemesis,
)
from deploy.analysis.invariants import InvariantReport, check_invariants_by_node
from deploy.analysis.merge import MergedTimeline, merge

__all__ = [
    "Analysis",
    "RunInfo",
    "RunInputs",
    "analyze",
    "exit_code",
    "list_runs",
    "locate",
    "update_latest",
    "write_outputs",
]

COUNTEREXAMPLE_HTML = "counterexample.html"
"""The linearizability counterexample page a refuted run gets (raft.lincheck.visual)."""

_ev_of = operator.attrgetter("ev")

VALID, INVALID, UNKNOWN, SKIPPED = "valid", "invalid", "unknown", "skipped"
"""Verdicts. ``skipped`` means the check was not run (``--no-lin``, or no node logs for the
invariants); it does not count towards ``overall``, which is ``unknown`` only when nothing at
all was checked or a check that ran could not decide."""


class PhaseClock:
    """Wall and CPU time per phase, lap by lap. CPU time counts this process and its
    children that ended (the linearizability checker's worker processes)."""

    def __init__(self) -> None:
        self.laps: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()

    @staticmethod
    def _cpu_now() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), self._cpu_now()
        w0, c0 = self.laps.get(name, (0.0, 0.0))
        self.laps[name] = (w0 + wall - self._wall, c0 + cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


@dataclass(frozen=True, slots=True)
class RunInputs:
    root: Path
    event_files: tuple[Path, ...]
    history: Path | None
    nemesis: Path | None
    results: Path | None


def _find_named(root: Path, name: str) -> Path | None:
    """``root/name`` or, failing that, the shallowest file of that name below ``root``."""
    direct = root / name
    if direct.is_file():
        return direct
    best: Path | None = None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "plots")
        if name in filenames:
            p = Path(dirpath) / name
            if best is None or len(p.parts) < len(best.parts):
                best = p
    return best


def locate(path: Path, history: Path | None = None) -> RunInputs:
    """Find the inputs of the run (or log folder) at ``path``."""
    if not path.exists():
        raise EventLogNotFoundError(f"{path}: no such file or directory")
    root = path if path.is_dir() else path.parent
    files = tuple(find_event_files(path))
    found_history = (
        history or _find_named(root, "history.jsonl") or _find_named(root, "history.edn")
    )
    if not files and found_history is None:
        raise EventLogNotFoundError(
            f"{path}: no node event logs found (looked for events.jsonl and *.jsonl files "
            "whose lines have ts, node and ev, and no history.jsonl or history.edn)"
        )
    if history is not None and not history.is_file():
        raise EventLogNotFoundError(f"{history}: history file not found")
    return RunInputs(
        root=root,
        event_files=files,
        history=found_history,
        nemesis=_find_named(root, "nemesis.jsonl"),
        results=(root / "results.json") if (root / "results.json").is_file() else None,
    )


@dataclass(slots=True)
class Analysis:
    inputs: RunInputs
    logs: LoadedLogs
    timeline: MergedTimeline
    invariants: InvariantReport
    history: list[HistoryOp]
    nemesis: list[NemesisEvent]
    linearizability: dict[str, Any] | None
    run_start_ts: float
    """Wall-clock second at which history/nemesis ``time`` 0 falls (on the merged clock)."""
    run_start_method: str
    problems: list[LineProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Why the run cannot be called valid even if every check passes (no operation
    succeeded; faults were asked for and none fired): the ``run`` verdict is then unknown."""
    window: tuple[float, float] | None = None
    """The run's window (wall seconds) the node events were cut to, from results.json."""
    events_outside_window: int = 0
    shiviz: Path | None = None
    """Where the ShiViz log of this analysis was written (``raftlab analyze --shiviz``);
    None when it was not (the default: it is as big as merged.jsonl and ShiViz itself
    cannot open a log of a long run). The report links it only when set."""
    kind_counts: dict[str, int] | None = None
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Phase -> (wall, CPU) seconds this analysis took (``raftlab analyze --timings``,
    bench/bench_analyze.py); the CPU time includes finished child processes."""

    @property
    def verdicts(self) -> dict[str, str]:
        v: dict[str, str] = {}
        if not self.inputs.event_files:
            v["invariants"] = SKIPPED
        elif self.logs.count() == 0:
            v["invariants"] = UNKNOWN
        else:
            v["invariants"] = VALID if self.invariants.valid else INVALID
        if self.warnings:
            v["run"] = UNKNOWN
        if self.linearizability is not None:
            v["linearizability"] = {
                "linearizable": VALID,
                "not_linearizable": INVALID,
                "skipped": SKIPPED,
            }.get(str(self.linearizability.get("verdict")), UNKNOWN)
        vals = set(v.values()) - {SKIPPED}
        if INVALID in vals:
            v["overall"] = INVALID
        elif UNKNOWN in vals or not vals:
            v["overall"] = UNKNOWN
        else:
            v["overall"] = VALID
        return v

    def _events_by_kind(self) -> dict[str, int]:
        """Events per kind (counted once: the report and results.json both ask)."""
        if self.kind_counts is None:
            c: Counter[str] = Counter()
            for evs in self.logs.events_by_node.values():
                c.update(map(_ev_of, evs))
            self.kind_counts = dict(sorted(c.items()))
        return dict(self.kind_counts)

    def counts(self) -> dict[str, Any]:
        inv = self.invariants
        faults = Counter(n.fault for n in self.nemesis if n.action == "start")
        outcomes = Counter(o.outcome for o in self.history)
        return {
            "nodes": len(self.logs.nodes),
            "events": self.logs.count(),
            "events_by_kind": self._events_by_kind(),
            "malformed_lines": len(self.problems),
            "elections": inv.elections,
            "leaders_per_term": {str(t): ns for t, ns in sorted(inv.leaders_per_term.items())},
            "commit_events": inv.commit_events,
            "max_commit_index": inv.max_commit,
            "applied_entries": inv.applied_entries,
            "faults": dict(sorted(faults.items())),
            "messages_matched": self.timeline.pairs_matched,
            "recv_without_send": self.timeline.recv_unmatched,
            "operations": dict(sorted(outcomes.items())),
        }

    def results_json(self) -> dict[str, Any]:
        clocks = self.timeline.clocks
        return {
            "verdicts": self.verdicts,
            "counts": self.counts(),
            "invariants": self.invariants.to_json(),
            "linearizability": None
            if self.linearizability is None
            else {k: v for k, v in self.linearizability.items() if k != "_html"},
            "clock_offsets": {
                "reference": clocks.reference,
                "offset_s": {n: round(x, 6) for n, x in clocks.offsets.items()},
                "node_offset_s": {n: round(x, 6) for n, x in clocks.node_offsets.items()},
                "uncertainty_s": {
                    n: (round(x, 6) if x != float("inf") else None)
                    for n, x in clocks.uncertainty.items()
                },
                "unlinked": list(clocks.unlinked),
            },
            "time_alignment": {
                "run_start_ts": round(self.run_start_ts, 6),
                "method": self.run_start_method,
            },
            "problems": [str(p) for p in self.problems[:200]],
            "warnings": list(self.warnings),
            "analysis_window": None
            if self.window is None
            else {
                "start_ts": self.window[0],
                "end_ts": self.window[1],
                "events_outside": self.events_outside_window,
            },
            "analyzed_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "inputs": {
                "event_files": [display_name(p, self.inputs.root) for p in self.inputs.event_files],
                "history": _rel(self.inputs.history, self.inputs.root),
                "nemesis": _rel(self.inputs.nemesis, self.inputs.root),
            },
        }


def _rel(p: Path | None, root: Path) -> str | None:
    return None if p is None else display_name(p, root)


def exit_code(verdicts: dict[str, str]) -> int:
    """0 valid, 1 invalid, 2 unknown (the checking commands' convention)."""
    return {VALID: 0, INVALID: 1}.get(verdicts.get("overall", UNKNOWN), 2)


def _guess_model(ops: list[HistoryOp]) -> str:
    if any(o.key is not None for o in ops):
        return "kv"
    if any(o.f == "cas" for o in ops):
        return "cas-register"
    return "register"


def check_linearizability(
    path: Path, ops: list[HistoryOp], model: str | None, timeout_s: float
) -> dict[str, Any]:
    """Run ``raft.lincheck`` on the history file; unknown (with the reason) when the checker
    is not installed or cannot read the history."""
    model = model or _guess_model(ops)
    try:
        from raft.lincheck import (
            HistoryError,
            UnsupportedOperationError,
            check_operations,
            pair_events,
        )
    except ImportError as exc:
        return {"verdict": "unknown", "model": model, "reason": f"checker unavailable: {exc}"}
    from raft.lincheck import formats

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        parsed = formats.read_history(text, None, path.name)
        if parsed.skipped:
            line, why = parsed.skipped[0]
            return {
                "verdict": "unknown",
                "model": model,
                "reason": f"{len(parsed.skipped)} history line(s) could not be read "
                f"(line {line}: {why})",
            }
        paired = pair_events(parsed.events)
        res = check_operations(
            paired, model=model, timeout_s=timeout_s, workers=os.cpu_count() or 1
        )
    except (HistoryError, UnsupportedOperationError, ValueError) as exc:
        return {"verdict": "unknown", "model": model, "reason": f"history not checkable: {exc}"}
    out: dict[str, Any] = res.to_json()
    if res.counterexample is not None:
        from raft.lincheck.visual import render_html

        # Written by write_outputs beside results.json; the report links it.
        out["_html"] = render_html(res, paired, f"{path.name}: linearizability")
    return out


BACKGROUND_CHECK_MIN_BYTES = 256 * 1024
"""A history smaller than this is checked in the analysing process: a fork would cost more
than the check."""


class BackgroundCheck:
    """:func:`check_linearizability` in a forked child while the parent loads and merges the
    node logs (the two share nothing but the history file). The child sends its result as
    JSON over a pipe; :meth:`result` is None when it could not (it died, was killed, or
    ``fork`` is not available), and the caller then checks in its own process, so a lost
    child costs time, never a verdict."""

    def __init__(self, proc: Any, conn: Any) -> None:
        self._proc, self._conn = proc, conn

    @classmethod
    def start(
        cls, history: Path, root: Path, model: str | None, timeout_s: float
    ) -> BackgroundCheck | None:
        import multiprocessing

        try:
            if history.stat().st_size < BACKGROUND_CHECK_MIN_BYTES:
                return None
            ctx = multiprocessing.get_context("fork")
        except (OSError, ValueError):
            return None
        recv, send = ctx.Pipe(duplex=False)
        # Not a daemon: the checker forks its own search workers.
        proc = ctx.Process(
            target=_background_check,
            args=(send, history, root, model, timeout_s),
            name="raftlab-lincheck",
        )
        try:
            proc.start()
        except OSError:
            recv.close()
            send.close()
            return None
        send.close()
        return cls(proc, recv)

    def result(self) -> dict[str, Any] | None:
        try:
            text = self._conn.recv_bytes()
        except (EOFError, OSError):
            text = b""
        finally:
            self._conn.close()
            self._proc.join()
        try:
            got = json.loads(text) if text else None
        except ValueError:
            got = None
        return got if isinstance(got, dict) and "verdict" in got else None

    def cancel(self) -> None:
        """The analysis failed before it needed the result: stop the child (a non-daemon
        child would otherwise hold the exit until its check ended)."""
        self._conn.close()
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()


def _background_check(
    conn: Any, history: Path, root: Path, model: str | None, timeout_s: float
) -> None:
    try:
        hist = _load_any_history(history, [], root)
        lin = check_linearizability(history, hist, model, timeout_s)
        conn.send_bytes(json.dumps(lin).encode())
    finally:
        conn.close()


def _parse_history(path: Path) -> list[Any]:
    """History events parsed by ``raft.lincheck.formats`` in whichever format the file is
    (history.jsonl, Jepsen EDN, Jepsen log lines); the parser names a bad line."""
    from raft.lincheck import formats

    text = path.read_text(encoding="utf-8", errors="replace")
    return list(formats.parse(text, formats.sniff(text, path.name)))


def _is_jsonl_history(path: Path) -> bool:
    try:
        from raft.lincheck import formats
    except ImportError:
        return True
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096)
    return formats.sniff(head, path.name) is formats.Format.JSONL


def _load_any_history(path: Path, problems: list[LineProblem], root: Path) -> list[HistoryOp]:
    """The history's operations for plotting: ``history.jsonl`` read line by line (bad lines
    skipped and reported), Jepsen formats through ``raft.lincheck``."""
    if _is_jsonl_history(path):
        return load_history(path, problems, root)
    from raft.lincheck import HistoryError, pair_events

    name = display_name(path, root)
    try:
        ops = pair_events(_parse_history(path))
    except (HistoryError, ValueError) as exc:
        problems.append(LineProblem(Source(name, 0), f"history not readable: {exc}"))
        return []
    return [
        HistoryOp(
            process=o.process,
            f=str(o.f),
            key=o.key,
            value=o.value,
            start_ns=o.invoke_time,
            end_ns=o.complete_time,
            outcome=str(o.status.value),
            node=None,
            source=Source(name, o.invoke_line or 0),
        )
        for o in ops
    ]


ALIGN_BIN_S = 0.05
"""Bin width of the completion-rate histograms compared to find the coarse shift."""


def _coarse_shift(server: list[float], done: list[float], hint: float) -> float:
    """The shift (server time minus history time) at which the rate of ``client`` events
    the nodes logged best matches the rate of completions the clients recorded: the peak of
    the cross-correlation of the two histograms. Dense histories have a node event near
    almost any shift, so matching single events alone can lock onto the wrong one (for
    example requests another client made before the workload); the rate's shape (dips at
    faults, start and end) cannot. Ties go to the shift nearest ``hint``."""
    import numpy as np

    def hist(ts: list[float]) -> Any:
        idx = ((np.asarray(ts) - ts[0]) / ALIGN_BIN_S).astype(np.int64)
        return np.bincount(idx).astype(np.float64)

    s, h = hist(server), hist(done)
    corr = np.correlate(s, h, mode="full")  # index k: server bin j matches history bin j-k+len(h)-1
    shifts = server[0] - done[0] + (np.arange(len(corr)) - (len(h) - 1)) * ALIGN_BIN_S
    best = np.flatnonzero(corr >= corr.max() - 1e-9)
    return float(shifts[best[np.argmin(np.abs(shifts[best] - hint))]])


def _align_by_client_events(
    history: list[HistoryOp], timeline: MergedTimeline, hint: float | None = None
) -> float | None:
    """Wall second of history time 0 from the nodes' ``client`` events: each answered
    request is logged by the node that answered it, moments before the client records the
    completion. Find the coarse shift from the two event rates (:func:`_coarse_shift`,
    ties broken toward ``hint``, a start the controller recorded, else toward aligning the
    first completions), then take the median offset to the nearest node event (twice).
    None when either side is empty."""
    server = sorted(
        c
        for e, c in zip(timeline.order, timeline.cts, strict=True)
        if e.ev == "client" and e.fields.get("outcome") == "ok"
    )
    done = sorted(o.end_ns / 1e9 for o in history if o.outcome == "ok" and o.end_ns is not None)
    if not server or not done:
        return None
    shift = _coarse_shift(server, done, server[0] - done[0] if hint is None else hint)
    for _ in range(2):
        diffs = []
        for h in done:
            t = h + shift
            i = bisect.bisect_left(server, t)
            near = [server[j] for j in (i - 1, i) if 0 <= j < len(server)]
            diffs.append(min(near, key=lambda c: abs(c - t)) - h)
        shift = statistics.median(diffs)
    return shift


def _run_start(
    nemesis: list[NemesisEvent],
    results: dict[str, Any],
    timeline: MergedTimeline,
    history: list[HistoryOp],
) -> tuple[float, str]:
    """Wall second of history time 0 on the merged (reference node's) clock, and how it was
    found. In order: aligning the history with the nodes' ``client`` events (on the merged
    clock itself, ties broken toward a recorded start); nemesis lines, which carry both the
    run's time and the controller's wall clock (right when the controller's clock agrees
    with the reference node's); a ``start_ts`` in results.json (written by ``raftlab
    workload``; the same caveat); the first merged event."""
    recorded: tuple[float, str] | None = None
    pairs = [n.ts - n.time_ns / 1e9 for n in nemesis if n.ts is not None and n.time_ns is not None]
    if pairs:
        recorded = statistics.median(pairs), "nemesis.jsonl ts"
    else:
        for key in ("start_ts", "started_ts", "run_start_ts"):
            v = results.get(key)
            if isinstance(v, int | float):
                recorded = float(v), f"results.json {key}"
                break
    aligned = _align_by_client_events(history, timeline, recorded[0] if recorded else None)
    if aligned is not None:
        return aligned, "client events"
    if recorded is not None:
        return recorded
    return (timeline.cts[0] if timeline.cts else 0.0), "first node event"


def analyze(
    path: Path,
    *,
    history: Path | None = None,
    model: str | None = None,
    lin_timeout_s: float = 30.0,
    check_linearizable: bool = True,
    reference: str | None = None,
) -> Analysis:
    """Load, merge (clock offsets relative to ``reference``, default the first node by
    name), check invariants and, with a history, linearizability."""
    clock = PhaseClock()
    inputs = locate(path, history)
    prior = _read_results(inputs.results)
    window = _run_window(prior)
    background = None
    if check_linearizable and inputs.history is not None:
        # The check needs only the history: it runs beside the load, merge and invariants.
        background = BackgroundCheck.start(inputs.history, inputs.root, model, lin_timeout_s)
    try:
        return _analyze(
            clock,
            inputs,
            prior,
            window,
            background,
            model,
            lin_timeout_s,
            check_linearizable,
            reference,
        )
    except BaseException:
        if background is not None:
            background.cancel()
        raise


def _analyze(
    clock: PhaseClock,
    inputs: RunInputs,
    prior: dict[str, Any],
    window: tuple[float, float] | None,
    background: BackgroundCheck | None,
    model: str | None,
    lin_timeout_s: float,
    check_linearizable: bool,
    reference: str | None,
) -> Analysis:
    with gc_paused():
        logs = load_event_logs(inputs.event_files, inputs.root, window)
    clock.lap("load")
    problems = list(logs.problems)
    if reference is not None and reference not in logs.seen_nodes:
        raise EventLogNotFoundError(
            f"reference node {reference!r} has no events; the logs have "
            f"{', '.join(sorted(logs.seen_nodes))}"
        )
    outside = logs.outside_window
    with gc_paused():
        timeline = merge(logs, reference)
        problems.extend(timeline.problems)
        clock.lap("merge")
        # Each node's events in program order: the merged order is not needed for these.
        report = check_invariants_by_node(logs.events_by_node, logs.commit_before)
        clock.lap("invariants")
    hist: list[HistoryOp] = []
    lin: dict[str, Any] | None = None
    if inputs.history is not None:
        with gc_paused():
            hist = _load_any_history(inputs.history, problems, inputs.root)
        clock.lap("history")
        if check_linearizable:
            got = background.result() if background is not None else None
            lin = got or check_linearizability(inputs.history, hist, model, lin_timeout_s)
            clock.lap("linearizability")
        else:
            lin = {"verdict": "skipped", "reason": "not checked (--no-lin)"}
    nem = load_nemesis(inputs.nemesis, problems, inputs.root) if inputs.nemesis else []
    start_ts, start_how = _run_start(nem, prior, timeline, hist)
    clock.lap("align")
    return Analysis(
        inputs=inputs,
        logs=logs,
        timeline=timeline,
        invariants=report,
        history=hist,
        nemesis=nem,
        linearizability=lin,
        run_start_ts=start_ts,
        run_start_method=start_how,
        problems=problems,
        warnings=run_warnings(prior, hist if inputs.history is not None else None, nem),
        window=window,
        events_outside_window=outside,
        timings=clock.laps,
    )


# -- the run's own window and honest verdicts (docs/experiments.md) -----------------------

WINDOW_MARGIN_S = 1.0
"""Slack around the recorded run window for clock differences between the controller that
recorded it and the nodes that stamped their events."""


def _read_results(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _run_window(results: dict[str, Any]) -> tuple[float, float] | None:
    """``run_window`` as recorded by ``raftlab run``/``workload``/``sim``: the wall seconds
    the run spans; None when absent (a folder of logs, an older run)."""
    w = results.get("run_window")
    if not isinstance(w, dict):
        return None
    lo, hi = w.get("start_ts"), w.get("end_ts")
    if not isinstance(lo, int | float) or isinstance(lo, bool):
        return None
    end = float(hi) if isinstance(hi, int | float) and not isinstance(hi, bool) else float("inf")
    return float(lo) - WINDOW_MARGIN_S, end + WINDOW_MARGIN_S


def run_warnings(
    results: dict[str, Any], history: list[HistoryOp] | None, nemesis: list[NemesisEvent]
) -> list[str]:
    """Reasons a run proves nothing: a history in which no operation succeeded, or a run
    that asked for faults (``faults_requested`` in results.json) of which none fired."""
    out: list[str] = []
    if history is not None and not any(o.outcome == "ok" for o in history):
        out.append(f"no operation succeeded ({len(history)} recorded): the checks prove nothing")
    asked = results.get("faults_requested")
    fired = sum(1 for n in nemesis if n.action == "start")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0 and fired == 0:
        out.append(f"{asked} fault(s) were requested and none fired")
    return out


def write_outputs(a: Analysis, out_dir: Path | None = None) -> Path:
    """Write ``results.json`` (keeping keys other tools wrote there) and ``merged.jsonl``.
    Returns the results path."""
    out = out_dir or a.inputs.root
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            data = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError):
            data = {}
    lin = a.linearizability
    if lin is not None and "_html" in lin:
        (out / COUNTEREXAMPLE_HTML).write_text(lin.pop("_html"), encoding="utf-8")
        lin["counterexample_html"] = COUNTEREXAMPLE_HTML
    data.update(a.results_json())
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    a.timeline.write_jsonl(out / "merged.jsonl")
    return path


# -- listing runs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunInfo:
    experiment: str
    timestamp: str
    path: Path
    verdicts: dict[str, str]

    @property
    def overall(self) -> str:
        return self.verdicts.get("overall", "not analysed")


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and any(
        (p / n).exists() for n in ("nodes", "results.json", "history.jsonl", "nemesis.jsonl")
    )


def list_runs(root: Path) -> list[RunInfo]:
    """Runs under ``root`` laid out as ``<experiment>/<timestamp>/``, oldest first."""
    out: list[RunInfo] = []
    if not root.is_dir():
        return out
    for exp in sorted(root.iterdir()):
        if exp.is_symlink() or not exp.is_dir():
            continue
        for run in sorted(exp.iterdir()):
            if run.is_symlink() or not _is_run_dir(run):
                continue
            verdicts: dict[str, str] = {}
            res = run / "results.json"
            if res.is_file():
                try:
                    v = json.loads(res.read_text(encoding="utf-8")).get("verdicts", {})
                    verdicts = {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}
                except (OSError, json.JSONDecodeError, AttributeError):
                    verdicts = {"overall": "unreadable results.json"}
            out.append(RunInfo(exp.name, run.name, run, verdicts))
    out.sort(key=lambda r: (r.timestamp, r.experiment))
    return out


def update_latest(runs_root: Path) -> Path | None:
    """Point ``runs_root/latest`` at the newest run (by timestamp directory name); returns the
    target, or None when there is no run."""
    runs = list_runs(runs_root)
    if not runs:
        return None
    newest = runs[-1].path
    link = runs_root / "latest"
    target = os.path.relpath(newest, runs_root)
    if link.is_symlink() and os.readlink(link) == target:
        return newest
    tmp = runs_root / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)
    return newest
