"""Info-heavy histories: does ``raftlab check`` decide them within 10 s of CPU?

Issue 14's goal: histories where 0-20% of the operations end ``info`` (a crashed client: the
write may or may not have taken effect, at any time after its invocation) decide in seconds,
linearizable or not. The grid: 1k / 5k / 20k operations, 0 / 5 / 10 / 20% info, 10
processes, cas-register, three classes of history:

- ``linearizable``: linearizable by construction (:mod:`raft.lincheck.generate`), values
  from range(5) (many equal-looking states: the hard case for proving);
- ``stale read``: a late read changed to return a value that was written, but certainly
  overwritten (by a write that completed before the read began) after every write of it had
  completed, and that no info operation writes; values from range(1000) so such a value
  exists. Not refutable on its face (the value was there once);
- ``stale after newer read``: a late read changed to return a value ``v`` although an
  earlier read (completed before it began) saw another value, and every write of ``v``
  completed before that earlier read began (no info write of ``v``): the newer value is
  witnessed by a read only;
- ``bad value``: a late read changed to a value nobody wrote.

Each cell is one ``check_history`` call with a 10 s CPU budget; ``UNKNOWN`` = the budget ran
out. A Porcupine section compares against Porcupine's Go checker when a build is available
(``PORCUPINE_BIN``: a binary taking a Jepsen EDN history path and a model name, printing
``ok`` / ``illegal`` / ``unknown``); without one it says why it was skipped.

Writes ``bench/results/check_info.md``. Run with ``python -m bench check_info``.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_lincheck import _corrupt_late_read, _stale_late_read
from raft.lincheck import (
    HistoryEvent,
    Operation,
    OpStatus,
    Verdict,
    check_history,
    formats,
    pair_events,
)
from raft.lincheck.generate import linearizable_history

SIZES = (1_000, 5_000, 20_000)
INFO = (0.0, 0.05, 0.10, 0.20)
PROCESSES = 10
BUDGET_S = 10.0
CLASSES = ("linearizable", "stale read", "stale after newer read", "bad value")
RESULTS = Path(__file__).parent / "results" / "check_info.md"


@dataclass(frozen=True, slots=True)
class Cell:
    klass: str
    ops: int
    info: float
    info_ops: int
    verdict: Verdict | None
    """``None``: no such history could be built (no stale value to plant)."""
    cpu_s: float
    expected: Verdict
    porcupine: str = ""


def _events(klass: str, ops: int, info: float) -> tuple[list[HistoryEvent], int] | None:
    rng = random.Random(ops * 7 + int(info * 100))
    values = 1000 if klass.startswith("stale") else 5
    gen = linearizable_history(
        rng, ops, PROCESSES, model="cas-register", info_fraction=info, values=values
    )
    if klass == "linearizable":
        return gen.events, gen.info_operations
    if klass == "bad value":
        return _corrupt_late_read(gen.events, rng), gen.info_operations
    plant = _stale_late_read if klass == "stale read" else _stale_after_newer_read
    try:
        return plant(gen.events, rng), gen.info_operations
    except RuntimeError:
        return None


def _stale_after_newer_read(events: list[HistoryEvent], rng: random.Random) -> list[HistoryEvent]:
    """Make a late read return a value ``v`` older than what an earlier read saw: every write
    of ``v`` completed before that earlier read began, and no write that could be linearized
    between them (ok or info) exists at all: the only witness of the newer value is a read
    (a new-old inversion, the stale read a deposed leader serves)."""
    ops = pair_events(events)
    writers: dict[object, list[Operation]] = {}
    for op in ops:
        if op.f == "write" or (op.f == "cas" and op.status != OpStatus.FAIL):
            writers.setdefault(op.value if op.f == "write" else op.value[1], []).append(op)
    settled = {
        v: max(w.return_time for w in ws)
        for v, ws in writers.items()
        if all(w.status == OpStatus.OK for w in ws)
    }
    reads = [op for op in ops if op.f == "read" and op.status == OpStatus.OK]
    late = reads[len(reads) * 8 // 10 :]
    for r2 in rng.sample(late, k=len(late)):
        for r1 in reads:
            if r1.return_time >= r2.invoke_time:
                break
            for v, last in sorted(settled.items(), key=lambda kv: repr(kv[0])):
                if v != r1.value and last < r1.invoke_time:
                    i = next(
                        j
                        for j, e in enumerate(events)
                        if e.process == r2.process and e.type == "ok" and e.time == r2.complete_time
                    )
                    e = events[i]
                    out = list(events)
                    out[i] = HistoryEvent(e.process, e.type, e.f, e.key, v, e.time)
                    return out
    raise RuntimeError("no stale read could be planted")


def _porcupine(events: list[HistoryEvent]) -> str:
    binary = os.environ.get("PORCUPINE_BIN")
    if not binary:
        return ""
    with tempfile.NamedTemporaryFile("w", suffix=".edn", delete=False) as f:
        f.write(formats.render_edn(events))
        path = f.name
    try:
        start = time.perf_counter()
        got = subprocess.run(
            [binary, path, "cas-register"], capture_output=True, text=True, timeout=120
        )
        took = time.perf_counter() - start
        return f"{got.stdout.strip() or got.stderr.strip()[:40]} ({took:.2f} s wall)"
    except subprocess.TimeoutExpired:
        return "timeout at 120 s"
    finally:
        os.unlink(path)


def measure(klass: str, ops: int, info: float) -> Cell:
    expected = Verdict.LINEARIZABLE if klass == "linearizable" else Verdict.NOT_LINEARIZABLE
    built = _events(klass, ops, info)
    if built is None:
        return Cell(klass, ops, info, 0, None, 0.0, expected)
    events, info_ops = built
    cpu0 = time.process_time()
    res = check_history(events, "cas-register", timeout_s=BUDGET_S)
    cpu = time.process_time() - cpu0
    if res.verdict not in (expected, Verdict.UNKNOWN):
        raise AssertionError(f"{klass} {ops} ops {info:.0%} info: wrong verdict {res.verdict}")
    return Cell(klass, ops, info, info_ops, res.verdict, cpu, expected, _porcupine(events))


def porcupine_note() -> str:
    """Why the Porcupine column is empty, when it is."""
    if os.environ.get("PORCUPINE_BIN"):
        return f"Porcupine: `{os.environ['PORCUPINE_BIN']}` (wall seconds, one process)."
    go = shutil.which("go")
    if go is None:
        return (
            "Porcupine: skipped. No Go toolchain on this machine (`go` not on PATH), so "
            "Porcupine cannot be built; set `PORCUPINE_BIN` to a Porcupine driver to compare."
        )
    return (
        "Porcupine: skipped. Go is installed "
        f"(`{go}`), but no Porcupine build was given (`PORCUPINE_BIN` unset): its source "
        "(github.com/anishathalye/porcupine) must be fetched through the Go module proxy, "
        "which this machine cannot reach."
    )


def render(cells: list[Cell], wall_s: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# raft.lincheck: info-heavy histories, decided within 10 s of CPU?",
        "",
        f"Generated by `python -m bench check_info` on {stamp} (Python "
        f"{platform.python_version()}, {platform.machine()}, a 2-core machine shared with "
        f"other jobs; whole bench {wall_s:.0f} s wall). cas-register, {PROCESSES} processes, "
        f"budget {BUDGET_S:.0f} s CPU per check; seconds are CPU seconds of one "
        "`check_history` call. `UNKNOWN` = the budget ran out; `-` = no history of that "
        "class could be built (no overwritten value without an info writer to plant).",
        "",
        porcupine_note(),
        "",
    ]
    for klass in CLASSES:
        lines += [
            f"## {klass}",
            "",
            "| ops | info | info ops | verdict | CPU s | Porcupine |",
            "|---:|---:|---:|---|---:|---|",
        ]
        for c in cells:
            if c.klass != klass:
                continue
            verdict = "-" if c.verdict is None else c.verdict.value.upper()
            lines.append(
                f"| {c.ops} | {c.info:.0%} | {c.info_ops} | {verdict} | {c.cpu_s:.3f} | "
                f"{c.porcupine or '-'} |"
            )
        lines.append("")
    decided = [c for c in cells if c.verdict is not None]
    unknown = [c for c in decided if c.verdict is Verdict.UNKNOWN]
    slowest = max((c.cpu_s for c in decided if c.verdict is not Verdict.UNKNOWN), default=0.0)
    lines.append(
        f"Decided {len(decided) - len(unknown)} of {len(decided)} histories within the "
        f"budget; the slowest decided one took {slowest:.2f} s CPU."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    start = time.perf_counter()
    cells = []
    for klass in CLASSES:
        for n in SIZES:
            for info in INFO:
                cell = measure(klass, n, info)
                cells.append(cell)
                print(
                    f"{klass:12} ops={n:6} info={info:4.0%} "
                    f"{'-' if cell.verdict is None else cell.verdict.value:16} "
                    f"{cell.cpu_s:7.3f}s",
                    flush=True,
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(render(cells, time.perf_counter() - start))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
