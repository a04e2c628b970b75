"""The analysis gives the same answers as before it was made to stream (issue 12).

Every case below is a deterministic run directory (the synthetic generator, plus hand-made
lines that exercise the reader's and the merger's corners). ``tests/unit/data/
analysis_pinned.json`` holds what the analysis said about each one *before* the streaming
rewrite (generated from commit e9b0336 with ``python tests/unit/test_analysis_pinned.py
--regen OUT``): results.json (verdicts, counts, every violation with its log lines, clock
offsets, problems), the exact bytes of merged.jsonl and shiviz.log (as hashes) and what the
report draws. The rewrite must not change any of it.

If the generator changes, the inputs' hash no longer matches and the test says so: then
regenerate the pins from a commit whose analysis you trust, never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy.analysis import analyze, write_outputs, write_shiviz
from deploy.analysis.synthetic import SyntheticCluster, standard_run
from deploy.report import build_report_data

PINNED = Path(__file__).parent / "data" / "analysis_pinned.json"


def _line(**kw: Any) -> str:
    return json.dumps(kw) + "\n"


def _restart_with_new_clock(d: Path) -> None:
    c = SyntheticCluster(3, seed=11, offsets={"n2": 0.0})
    c.boot()
    c.elect("n1")
    c.write(20)
    c.kill("n2")
    c.offsets["n2"] = 7.5
    c.restart("n2")
    c.write(20)
    c.write_run(d)


def _messy(d: Path) -> None:
    """A skewed run plus bad lines of every kind, odd but valid lines, a message cycle, a
    node seen only in a rotated file and a run window that cuts events at both ends."""
    c = standard_run(d, seed=5, offsets={"n2": 0.3, "n3": -0.2}, writes=8)
    n1 = d / "nodes" / "n1" / "events.jsonl"
    with n1.open("ab") as fh:
        fh.write(b"garbage\n")
        fh.write(b"   \n")
        fh.write(b"[1, 2]\n")
        fh.write(b'{"ts": NaN, "node": "n1", "ev": "role", "role": "leader"}\n')
        fh.write(b'{"ts": 1e400, "node": "n1", "ev": "role"}\n')
        fh.write(b"\xef\xbb\xbf" + _line(ts=c.t, node="n1", term=9, ev="note").encode())
        fh.write(b'{"ts": 1.0, "node": "n1", "ev": "x", "bad": "\xff\xfe"}\n')
        fh.write(b" " + _line(ts=c.t + 0.001, node="n1", term=9, ev="spaced", k=1).encode())
        fh.write(_line(ts=c.t + 0.002, node="n1", term=9, ev="commit", index="x").encode())
        fh.write(_line(ts=c.t + 0.003, node="n1", term=9, ev="persist", entries=[[1]]).encode())
        fh.write(_line(ts=c.t + 0.004, node="n1", term=-1, ev="vote").encode())
        # orjson reads integers past 64 bits as floats: one the checks read is re-read exactly
        # (an unchecked field of another kind would stay a float: a documented difference)
        fh.write(
            _line(ts=c.t + 0.005, node="n1", term=9, ev="truncate", **{"from": 10**30}).encode()
        )
        fh.write(b'{"ts": 1.0, "node": "n1", "ev": "esc", "s": "\\ud800"}\r\n')
        fh.write(_line(ts=c.t + 0.006, node="n1", term=9, ev="start", v=7).encode())
        fh.write(b"{}\n")
        fh.write(_line(ts=c.t + 0.007, node="n1", term=9, ev="commit", index=True).encode())
    rot = d / "nodes" / "n4" / "rotated-1.jsonl"
    rot.parent.mkdir(parents=True)
    t = c.t + 0.01
    rot.write_text(
        _line(ts=t, node="n4", term=1, ev="recv", **{"from": "n5", "msg": "app", "id": "n5:1"})
        + _line(ts=t + 1, node="n4", term=1, ev="send", to="n5", msg="app", id="n4:1")
        + _line(ts=t + 1.5, node="n4", term=1, ev="send", to="n5", msg="app", id="n4:dup")
        + _line(ts=t + 1.6, node="n4", term=1, ev="send", to="n5", msg="app", id="n4:dup")
        + _line(ts=t + 3, node="n4", term=1, ev="recv", **{"from": "n9", "msg": "x", "id": "n9:1"})
    )
    (d / "nodes" / "n5").mkdir()
    (d / "nodes" / "n5" / "events.jsonl").write_text(
        _line(ts=t, node="n5", term=1, ev="recv", **{"from": "n4", "msg": "app", "id": "n4:1"})
        + _line(ts=t + 1, node="n5", term=1, ev="send", to="n4", msg="app", id="n5:1")
        + _line(
            ts=t + 2, node="n5", term=1, ev="recv", **{"from": "n5", "msg": "self", "id": "n5:1"}
        )
    )
    (d / "results.json").write_text(
        json.dumps({"run_window": {"start_ts": c.t0 + 2.0, "end_ts": c.t + 2.5}})
    )


CASES: dict[str, Callable[[Path], object]] = {
    "clean_skewed": lambda d: standard_run(d, seed=7, offsets={"n2": 5.0, "n3": -3.0}),
    "five_nodes": lambda d: standard_run(d, seed=2, nodes=5, offsets={"n4": 1.5}, writes=12),
    "double_leader": lambda d: standard_run(d, bug="double_leader", writes=10),
    "diverge": lambda d: standard_run(d, bug="diverge", writes=10),
    "commit_regression": lambda d: standard_run(d, bug="commit_regression", writes=10),
    "apply_gap": lambda d: standard_run(d, bug="apply_gap", writes=10),
    "restart_new_clock": _restart_with_new_clock,
    "messy": _messy,
}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _inputs_sha(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(d).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def snapshot(d: Path) -> dict[str, Any]:
    """What the analysis says about run ``d``, in a form old and new code both produce."""
    inputs = _inputs_sha(d)
    a = analyze(d, check_linearizable=False)
    out = d.parent / (d.name + "-out")
    write_outputs(a, out)
    write_shiviz(a.timeline, out / "shiviz.log")
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    res.pop("analyzed_at")
    rd = build_report_data(a)
    report = {
        "t_min": rd.t_min,
        "t_max": rd.t_max,
        "t_full": list(rd.t_full),
        "segments": [[s.node, s.start, s.end, s.role, s.term] for s in rd.segments],
        "down": [list(x) for x in rd.down],
        "markers": [[m.t, m.end, list(m.nodes), m.kind, m.label] for m in rd.markers],
        "markers_outside": rd.markers_outside,
        "ops": len(rd.ops),
        "throughput": [list(b) for b in rd.throughput],
    }
    return _jsonable(
        {
            "inputs_sha256": inputs,
            "results": res,
            "merged_sha256": _sha(out / "merged.jsonl"),
            "shiviz_sha256": _sha(out / "shiviz.log"),
            "report": report,
        }
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_analysis_results_are_unchanged(tmp_path: Path, case: str) -> None:
    want = json.loads(PINNED.read_text(encoding="utf-8"))[case]
    d = tmp_path / case
    CASES[case](d)
    got = snapshot(d)
    assert got["inputs_sha256"] == want["inputs_sha256"], (
        "the generated inputs changed: regenerate the pins from a trusted analysis"
    )
    assert got["results"]["verdicts"] == want["results"]["verdicts"]
    assert got["results"]["invariants"] == want["results"]["invariants"]
    assert got["results"] == want["results"]
    assert got["report"] == want["report"]
    assert got["merged_sha256"] == want["merged_sha256"]
    assert got["shiviz_sha256"] == want["shiviz_sha256"]


def _regen(out: Path) -> None:
    import tempfile

    pins = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in sorted(CASES):
            d = Path(tmp) / case
            CASES[case](d)
            pins[case] = snapshot(d)
    out.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--regen":
        sys.exit("usage: python tests/unit/test_analysis_pinned.py --regen OUT.json")
    _regen(Path(sys.argv[2]))
