"""``raftlab diff``: pinpoints the first divergence, missing ranges and result differences,
in text and JSON; compares two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.analysis.synthetic import SyntheticCluster, digest, standard_run
from deploy.cli import main


def _diff(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["diff", *argv])
    return code, capsys.readouterr().out


def test_first_divergence_in_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = standard_run(tmp_path, bug="diverge", offsets={"n3": 2.0})
    (bad,) = [i for (_, i) in c.corrupt]
    code, text = _diff(capsys, str(tmp_path))
    assert code == 1
    assert f"FIRST DIVERGENCE at index {bad}:" in text
    assert f"  agree    1..{bad - 1}" in text
    assert f"  DIVERGE  {bad}" in text
    n3_line = next(line for line in text.splitlines() if line.startswith("  n3: term"))
    assert digest(b"corrupt-%d" % bad) in n3_line and "nodes/n3/events.jsonl:" in n3_line

    code, out = _diff(capsys, str(tmp_path), "--json")
    assert code == 1
    d = json.loads(out)
    assert d["first_divergence"]["index"] == bad
    assert set(d["first_divergence"]["entries"]) == {"n1", "n2", "n3"}
    statuses = [(r["from"], r["to"], r["status"]) for r in d["ranges"]]
    assert (bad, bad, "diverge") in statuses


def test_nodes_and_from_select_what_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = standard_run(tmp_path, bug="diverge")
    (bad,) = [i for (_, i) in c.corrupt]
    code, text = _diff(capsys, str(tmp_path), "--nodes", "n1,n2")
    assert code == 0 and "no divergence" in text
    code, out = _diff(capsys, str(tmp_path), "--from", str(bad + 1), "--json")
    d = json.loads(out)
    assert code == 0 and d["first_divergence"] is None and d["from"] == bad + 1
    assert main(["diff", str(tmp_path), "--nodes", "n1,n9"]) == 2
    assert "unknown node(s) n9" in capsys.readouterr().err


def test_missing_ranges_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = SyntheticCluster(3, seed=5)
    c.boot()
    c.elect("n1")
    c.write(5)
    c.kill("n3")  # never comes back: misses everything after
    c.write(5)
    c.write_run(tmp_path)
    # n2 took a snapshot covering 1..3 and logged no entries below it afterwards.
    lines = (tmp_path / "nodes/n2/events.jsonl").read_text().splitlines()
    kept = [ln for ln in lines if json.loads(ln)["ev"] not in ("apply", "commit")]
    snap = {
        "ts": 1.7e9 + 100,
        "node": "n2",
        "term": 1,
        "ev": "snapshot",
        "action": "load",
        "index": 3,
        "sterm": 1,
    }
    (tmp_path / "nodes/n2/events.jsonl").write_text("\n".join([*kept, json.dumps(snap)]) + "\n")
    code, out = _diff(capsys, str(tmp_path), "--json")
    d = json.loads(out)
    assert code == 0
    last = d["ranges"][-1]
    assert last["missing"]["n3"] == "not replicated"
    assert any(r["missing"].get("n2") == "compacted" for r in d["ranges"])


def test_different_results_for_the_same_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = SyntheticCluster(3, seed=6)
    c.boot()
    c.elect("n1")
    c.write(3)
    c.write_run(tmp_path)
    p = tmp_path / "nodes/n2/events.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    for r in rows:
        if r["ev"] == "apply":
            for e in r["entries"]:
                if e[0] == 2:
                    e[3] = "ffffffffffffffff"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, text = _diff(capsys, str(tmp_path))
    assert code == 1
    assert "DIFFERENT RESULTS" in text and "index 2: " in text and "n2=ffffffffffffffff" in text


def test_two_runs_are_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standard_run(tmp_path / "a", seed=1)
    standard_run(tmp_path / "b", seed=1, bug="double_leader")
    code, text = _diff(capsys, str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0
    row = next(line for line in text.splitlines() if line.startswith("elections"))
    assert row.split()[1:] == ["4", "5", "*"]
    inv = next(line for line in text.splitlines() if line.startswith("verdict invariants"))
    assert inv.split()[2:] == ["valid", "invalid", "*"]
    code, out = _diff(capsys, str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    d = json.loads(out)
    lat = d["a"]["commit_latency_ms"]
    assert lat["count"] > 100 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert d["events"]["role"][1] == d["events"]["role"][0] + 2


def test_two_runs_verdicts_are_recomputed_not_read_from_results_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standard_run(tmp_path / "a", seed=1)
    standard_run(tmp_path / "b", seed=1, bug="double_leader")
    forged = {"verdicts": {"invariants": "valid", "linearizability": "valid", "overall": "valid"}}
    (tmp_path / "b" / "results.json").write_text(json.dumps(forged))
    code, out = _diff(capsys, str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert code == 0
    b = json.loads(out)["b"]["verdicts"]
    assert b["invariants"] == "invalid" and b["overall"] == "invalid"
    assert b["recorded_overall"] == "valid"


def test_two_seeded_runs_show_where_they_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standard_run(tmp_path / "a", seed=1)
    standard_run(tmp_path / "same", seed=1)
    standard_run(tmp_path / "b", seed=1, bug="double_leader")
    for name in ("x", "y"):  # the same workload, a different first leader
        c = SyntheticCluster(3, seed=5)
        c.boot()
        c.elect("n1" if name == "x" else "n2")
        c.write(5)
        c.write_run(tmp_path / name)
    code, out = _diff(capsys, str(tmp_path / "a"), str(tmp_path / "same"), "--json", "--no-lin")
    fd = json.loads(out)["first_differences"]
    assert code == 0 and fd["leader_terms"] is None and fd["first_election"]["same"]
    assert fd["committed"]["first_difference"] is None and fd["committed"]["agree_up_to"] > 100
    _, out = _diff(capsys, str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--no-lin")
    fd = json.loads(out)["first_differences"]
    assert fd["leader_terms"] == {"term": 2, "a": ["n2"], "b": ["n2", "n3"]}
    first = fd["committed"]["first_difference"]
    assert first["index"] == fd["committed"]["agree_up_to"] + 1 > 1
    assert first["a"]["digest"] != first["b"]["digest"]
    _, text = _diff(capsys, str(tmp_path / "x"), str(tmp_path / "y"), "--no-lin")
    assert "first election: A n1 in term 1, B n2 in term 1" in text
