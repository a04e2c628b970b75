"""``raftlab check HISTORY``: is a client history linearizable?

Exit 0 linearizable, 1 not (a counterexample is printed), 2 unknown (time budget ran out) or
could not check (unreadable or malformed history: one line naming file:line and the fault).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from deploy.errors import LabError

_FORMATS = ("jsonl", "jepsen-edn", "jepsen-log")
_MODELS = (
    "register",
    "cas-register",
    "kv",
    "multi-register",
    "set",
    "counter",
    "queue",
    "mutex",
)
"""raft.lincheck.models.MODELS, listed here so that --help works without importing it."""
_PREFIX_SHOWN = 8


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check",
        help="check a client history for linearizability",
        description="Check a client history (history.jsonl, Jepsen history.edn or Jepsen log "
        "lines) for linearizability against a model. Exit 0 linearizable, 1 not, 2 unknown "
        "or could not check.",
    )
    p.add_argument("history", metavar="HISTORY", help="the history file")
    p.add_argument("--model", required=True, choices=_MODELS, help="sequential specification")
    p.add_argument(
        "--format",
        choices=_FORMATS,
        default=None,
        help="history format (default: from the content; the extension only when the "
        "content says nothing)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up with 'unknown' (exit 2) after this much CPU time per search process "
        "(default: no limit)",
    )
    p.add_argument(
        "--max-states",
        type=int,
        default=None,
        metavar="N",
        help="give up with 'unknown' after exploring N configurations in one key",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes for keys that are not decided at once (default: CPU count)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--html",
        metavar="OUT",
        help="write the counterexample as a self-contained HTML page (operations on a time "
        "axis per client, the longest linearizable prefix, where it fails)",
    )
    p.add_argument(
        "--export-edn",
        metavar="OUT",
        help="also write the history as Jepsen history.edn (for Knossos or Elle)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raft.lincheck import Verdict, check_operations, formats, pair_events
    from raft.lincheck.history import HistoryError
    from raft.lincheck.models import UnsupportedOperationError
    from raft.lincheck.visual import render_html, render_window_text

    path = Path(args.history)
    if args.timeout is not None and args.timeout < 0:
        raise LabError(f"--timeout must be >= 0, got {args.timeout}")
    if args.max_states is not None and args.max_states < 1:
        raise LabError(f"--max-states must be >= 1, got {args.max_states}")
    if args.jobs is not None and args.jobs < 1:
        raise LabError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabError(f"{path}: cannot read history: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise LabError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        parsed = formats.read_history(text, args.format, path.name)
    except formats.HistoryParseError as exc:
        fmt = formats.Format(args.format) if args.format else formats.sniff(text, path.name)
        raise LabError(f"{path}:{exc.line}: {exc.message} (read as {fmt.value})") from None
    except HistoryError as exc:
        raise LabError(f"{path}: {exc}") from None
    fmt = parsed.format
    if parsed.skipped:
        shown = "; ".join(f"line {n}: {why}" for n, why in parsed.skipped[:3])
        raise LabError(
            f"{path}: {len(parsed.skipped)} line(s) could not be read as operations (read as "
            f"{fmt.value}), so no verdict: {shown}"
        )
    if not parsed.events:
        raise LabError(
            f"{path}: no operations found (read as {fmt.value}, {parsed.ignored} other "
            "line(s) ignored); nothing to judge"
        )
    if args.export_edn:
        out_path = Path(args.export_edn)
        try:
            out_path.write_text(formats.render_edn(parsed.events), encoding="utf-8")
        except OSError as exc:
            raise LabError(f"{out_path}: cannot write EDN: {exc.strerror or exc}") from None
    try:
        ops = pair_events(parsed.events)
        result = check_operations(
            ops,
            args.model,
            timeout_s=args.timeout,
            max_states=args.max_states,
            workers=args.jobs or os.cpu_count() or 1,
        )
    except (HistoryError, UnsupportedOperationError) as exc:
        raise LabError(f"{path}: {exc}") from None
    if args.html:
        html_path = Path(args.html)
        try:
            html_path.write_text(render_html(result, ops, str(path)), encoding="utf-8")
        except OSError as exc:
            raise LabError(f"{html_path}: cannot write HTML: {exc.strerror or exc}") from None
    if args.json:
        out = result.to_json()
        out["history"] = str(path)
        out["format"] = fmt.value
        out["unpacked_keys"] = parsed.unpacked_keys
        out["ignored_lines"] = parsed.ignored
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return result.verdict.exit_code
    print(
        f"{path}: {result.verdict.value} ({result.model}, {result.operations} operations, "
        f"{result.dropped} dropped, {result.partitions} partition(s), "
        f"{result.states_explored} states, {result.elapsed_s:.3f}s)"
    )
    if parsed.ignored:  # log chatter and nemesis ops: shown, so nothing passes unseen
        print(f"  ignored {parsed.ignored} line(s) that are not client operations")
    if parsed.unpacked_keys:
        print(f"  read Jepsen [key value] tuples as {parsed.unpacked_keys} independent key(s)")
    if result.verdict is Verdict.UNKNOWN:
        print(f"  {result.reason}")
        for part in result.partial or []:
            key = "" if part["key"] is None else f"key {json.dumps(part['key'])}: "
            print(
                f"  {key}longest linearizable prefix {part['longest_linearizable_prefix']} of "
                f"{part['operations']} operations ({part['operations_left']} left)"
            )
    if result.counterexample is not None:
        _print_counterexample(result.counterexample)
        print(render_window_text(result.counterexample, ops), end="")
    if args.html:
        print(f"counterexample page: {args.html}")
    return result.verdict.exit_code


def _describe(op: dict[str, Any]) -> str:
    done = "never (info)" if op["complete_time"] is None else str(op["complete_time"])
    where = f" line {op['invoke_line']}" if "invoke_line" in op else ""
    key = "" if op["key"] is None else f" key={json.dumps(op['key'])}"
    return (
        f"process {op['process']} {op['f']}{key} {json.dumps(op['value'])} "
        f"[{op['status']}] invoked {op['invoke_time']}, completed {done}{where}"
    )


def _print_counterexample(cx: dict[str, Any]) -> None:
    key = "" if cx["key"] is None else f" for key {json.dumps(cx['key'])}"
    prefix = cx["linearized"]
    print(f"No linearization exists{key}. Longest linearizable prefix: {len(prefix)} operations")
    if len(prefix) > _PREFIX_SHOWN:
        print(f"  ... {len(prefix) - _PREFIX_SHOWN} earlier operations")
    for op in prefix[-_PREFIX_SHOWN:]:
        print(f"  {_describe(op)}")
    print(f"Model state after the prefix: {json.dumps(cx['state'])}")
    print("None of these can be linearized next:")
    for op in cx["unlinearizable"]:
        why = "" if op["model_accepts"] else "  <- the model rejects it in this state"
        print(f"  {_describe(op)}{why}")
    print(f"and {_describe(cx['deadline'])} must have taken effect before it completed.")
    if "stale_read" in cx:
        newer = cx["stale_read"]["overwritten_by"]
        did = "saw" if newer["f"] in ("read", "get") else "left"
        print(
            f"It reads a stale value: {_describe(newer)} {did} another value before the "
            "read began, after every write of the value read had completed."
        )
