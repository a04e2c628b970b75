"""``raftlab analyze`` and ``raftlab runs``: outputs, verdicts and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deploy.analysis.synthetic import SyntheticCluster, add_impossible_read, standard_run
from deploy.cli import main


def test_analyze_clean_run_writes_results_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standard_run(tmp_path, offsets={"n2": 5.0, "n3": -3.0})
    (tmp_path / "results.json").write_text(json.dumps({"spec": "kept", "verdicts": {}}))
    assert main(["analyze", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: VALID")
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["spec"] == "kept"  # keys other tools wrote survive
    assert res["verdicts"] == {
        "invariants": "valid",
        "linearizability": "valid",
        "overall": "valid",
    }
    c = res["counts"]
    assert c["elections"] == 4 and c["leaders_per_term"] == {
        "1": ["n1"],
        "2": ["n2"],
        "3": ["n3"],
        "4": ["n1"],
    }
    assert c["faults"] == {"kill": 2, "partition": 1, "pause": 1}
    assert c["max_commit_index"] > 100 and c["malformed_lines"] == 0
    assert abs(res["clock_offsets"]["node_offset_s"]["n2"] - 5.0) < 0.005
    assert set(res["clock_offsets"]["offset_s"]) == {"n1#1", "n1#2", "n2", "n3#1", "n3#2"}
    merged = (tmp_path / "merged.jsonl").read_text().splitlines()
    assert len(merged) == c["events"]
    assert {"cts", "lamport", "src"} <= json.loads(merged[0]).keys()
    for name in ("report.html", "plots/timeline.png"):
        assert (tmp_path / name).is_file(), name
    # ShiViz only on request, and the report links it only then.
    assert not (tmp_path / "shiviz.log").exists()
    assert "shiviz" not in (tmp_path / "report.html").read_text().lower()
    assert main(["analyze", str(tmp_path), "--shiviz"]) == 0
    assert (tmp_path / "shiviz.log").is_file()
    assert 'href="shiviz.log"' in (tmp_path / "report.html").read_text()


def test_analyze_invalid_run_exits_1_and_names_the_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standard_run(tmp_path, bug="double_leader")
    assert main(["analyze", str(tmp_path), "--no-report", "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["verdicts"]["invariants"] == "invalid"
    (v,) = res["invariants"]["violations"]
    assert v["invariant"] == "election_safety" and v["term"] == 2 and v["nodes"] == ["n2", "n3"]


def test_non_linearizable_history_makes_the_run_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_impossible_read(tmp_path, standard_run(tmp_path))
    assert main(["analyze", str(tmp_path), "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "linearizability: not_linearizable" in out
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["verdicts"]["linearizability"] == "invalid"
    assert res["verdicts"]["invariants"] == "valid"


def test_folder_of_logs_without_history_and_with_garbage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = SyntheticCluster(3, seed=3)
    c.boot()
    c.elect("n2")
    c.write(4)
    c.write_run(tmp_path / "x", with_history=False)
    (tmp_path / "x" / "nemesis.jsonl").unlink()
    # A data folder like `raft cluster up` leaves: logs under per-node dirs, one bad line.
    with (tmp_path / "x" / "nodes" / "n1" / "events.jsonl").open("a") as fh:
        fh.write("garbage\n")
    assert main(["analyze", str(tmp_path / "x"), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "1 line(s) skipped:" in out and "nodes/n1/events.jsonl:" in out
    res = json.loads((tmp_path / "x" / "results.json").read_text())
    assert "linearizability" not in res["verdicts"] and res["linearizability"] is None


def test_no_logs_is_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no node event logs found" in err and err.count("\n") == 1
    assert main(["analyze", str(tmp_path / "missing")]) == 2


def test_runs_lists_verdicts_and_points_latest_at_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    standard_run(runs / "smoke" / "20260101T000000Z", writes=3)
    standard_run(runs / "smoke" / "20260102T000000Z", writes=3, bug="diverge")
    standard_run(runs / "kill" / "20260103T000000Z", writes=3)
    for d in ("smoke/20260101T000000Z", "smoke/20260102T000000Z"):
        main(["analyze", str(runs / d), "--no-report", "--no-lin"])
    capsys.readouterr()
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    # --no-lin: the invariants decide (linearizability is marked skipped, not unknown)
    assert out[1].split()[:3] == ["smoke", "20260101T000000Z", "valid"]
    assert out[2].split()[:4] == ["smoke", "20260102T000000Z", "invalid", "invalid"]
    assert out[3].split()[:3] == ["kill", "20260103T000000Z", "not"]  # not analysed yet
    assert out[3].endswith("<- latest")
    assert os.readlink(runs / "latest") == "kill/20260103T000000Z"
    assert main(["runs", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["latest"] for r in listed] == [False, False, True]
    assert main(["runs", str(tmp_path / "none")]) == 2


def test_reference_node_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standard_run(tmp_path, writes=4, offsets={"n2": 5.0, "n3": -3.0})
    assert main(["analyze", str(tmp_path), "--reference", "n3", "--no-report", "--json"]) == 0
    offs = json.loads(capsys.readouterr().out)["clock_offsets"]
    assert offs["reference"] == "n3#1"
    assert abs(offs["node_offset_s"]["n1"] - 3.0) < 0.005
    assert abs(offs["node_offset_s"]["n2"] - 8.0) < 0.005
    assert main(["analyze", str(tmp_path), "--reference", "n7", "--no-report"]) == 2
    assert "reference node 'n7' has no events" in capsys.readouterr().err


def test_history_is_placed_on_the_reference_node_clock(tmp_path: Path) -> None:
    from deploy.analysis import analyze

    c = standard_run(tmp_path, writes=6, offsets={"n1": 2.0, "n2": 5.0, "n3": -3.0})
    # Merged time is n1's clock (2 s fast): history time 0 is c.t0 + 2 s there. The nodes'
    # client events say so; the nemesis log's ts is the controller's (true) clock.
    a = analyze(tmp_path, check_linearizable=False)
    assert a.run_start_method == "client events"
    assert abs(a.run_start_ts - (c.t0 + 2.0)) < 0.005
    for n in ("n1", "n2", "n3"):
        p = tmp_path / "nodes" / n / "events.jsonl"
        kept = [ln for ln in p.read_text().splitlines() if '"ev": "client"' not in ln]
        p.write_text("\n".join(kept) + "\n")
    a = analyze(tmp_path, check_linearizable=False)
    assert a.run_start_method == "nemesis.jsonl ts"
    assert abs(a.run_start_ts - c.t0) < 0.005


def test_jepsen_edn_history_beside_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from raft.lincheck import formats

    standard_run(tmp_path, writes=5)
    hist = tmp_path / "history.jsonl"
    events = formats.parse_jsonl(hist.read_text())
    (tmp_path / "history.edn").write_text(formats.render(events, "jepsen-edn"))
    hist.unlink()
    assert main(["analyze", str(tmp_path), "--no-report", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["inputs"]["history"] == "history.edn"
    assert res["verdicts"]["linearizability"] == "valid"
    assert sum(res["counts"]["operations"].values()) == len(events) // 2


def test_no_lin_is_valid_when_invariants_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standard_run(tmp_path, writes=3)
    assert main(["analyze", str(tmp_path), "--no-report", "--no-lin", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdicts"]["linearizability"] == "skipped"
    assert doc["verdicts"]["overall"] == "valid"


def test_folder_with_only_a_history_is_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = Path(__file__).parent / "data" / "histories" / "register_stale_read.jsonl"
    (tmp_path / "history.jsonl").write_text(src.read_text())
    assert main(["analyze", str(tmp_path), "--model", "register", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdicts"]["invariants"] == "skipped"
    assert doc["verdicts"]["linearizability"] == "invalid"
    assert (tmp_path / "report.html").is_file()
