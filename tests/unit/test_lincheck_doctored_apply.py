"""Issue 14's "the two apply invariants fire on doctored logs", on a whole faulty run.

The unit tests of :mod:`deploy.analysis.invariants` build minimal logs for "applied entries
were committed by a quorum"; this one doctors a realistic run (elections, leader kills, a
partitioned leader with an uncommitted suffix): the partitioned leader is made to commit and
apply an entry only it persisted, as a buggy node would.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.analysis.events import find_event_files, load_event_logs
from deploy.analysis.invariants import Invariant, check_invariants
from deploy.analysis.merge import merge
from deploy.analysis.synthetic import standard_run


def _entries_applied(run: Path) -> set[tuple[int, int, str]]:
    out = set()
    for path in (run / "nodes").glob("*/events.jsonl"):
        for line in path.read_text().splitlines():
            ev = json.loads(line)
            if ev["ev"] == "apply":
                out.update((i, t, d) for i, t, d, _ in ev["entries"])
    return out


def test_applying_an_uncommitted_suffix_entry_breaks_applied_by_quorum(tmp_path: Path) -> None:
    standard_run(tmp_path, seed=1)
    logs = load_event_logs(find_event_files(tmp_path), tmp_path)
    clean = check_invariants([m.event for m in merge(logs).events])
    assert not clean.violations, clean.violation_counts
    applied = _entries_applied(tmp_path)
    path = tmp_path / "nodes" / "n2" / "events.jsonl"
    lines = path.read_text().splitlines()
    # n2's persisted entries nobody ever applied: the suffix it wrote while partitioned.
    at, (idx, term, digest) = next(
        (n, tuple(e))
        for n, line in enumerate(lines)
        for e in json.loads(line).get("entries", [])
        if json.loads(line)["ev"] == "persist" and tuple(e) not in applied
    )
    ev = json.loads(lines[at])
    doctored = [
        {**ev, "ev": "commit", "index": idx, "eterm": term},
        {**ev, "ev": "apply", "entries": [[idx, term, digest, "0000000000000000"]]},
    ]
    for key in ("first", "last", "entries"):
        doctored[0].pop(key, None)
    for key in ("first", "last"):
        doctored[1].pop(key, None)
    lines[at + 1 : at + 1] = [json.dumps(d) for d in doctored]
    path.write_text("\n".join(lines) + "\n")
    logs = load_event_logs(find_event_files(tmp_path), tmp_path)
    rep = check_invariants([m.event for m in merge(logs).events])
    hits = [v for v in rep.violations if v.invariant is Invariant.APPLIED_BY_QUORUM]
    assert hits, rep.violation_counts
    assert hits[0].nodes == ("n2",) and hits[0].index == idx
