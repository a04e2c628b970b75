"""The analysis's two children: the linearizability check beside the load and merge, and
the report beside merged.jsonl. Same verdicts and files as in one process; a child that
fails costs time, never a verdict or a report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from deploy.analysis import rundir
from deploy.analysis.synthetic import add_impossible_read, standard_run
from deploy.cli import cmd_analyze
from deploy.cli import main as raftlab


def _non_linearizable(tmp_path: Path) -> Path:
    add_impossible_read(tmp_path, standard_run(tmp_path))
    return tmp_path


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Children even for the small test runs; the results the check's child sent."""
    monkeypatch.setattr(rundir, "BACKGROUND_CHECK_MIN_BYTES", 0)
    monkeypatch.setattr(cmd_analyze, "REPORT_CHILD_MIN_EVENTS", 0)
    sent: list[Any] = []
    real = rundir.BackgroundCheck.result

    def result(self: rundir.BackgroundCheck) -> Any:
        got = real(self)
        sent.append(got)
        return got

    monkeypatch.setattr(rundir.BackgroundCheck, "result", result)
    return sent


def test_the_check_in_a_child_gives_the_same_verdicts(tmp_path: Path, children: list[Any]) -> None:
    standard_run(tmp_path / "good")
    good = rundir.analyze(tmp_path / "good")
    bad = rundir.analyze(_non_linearizable(tmp_path / "bad"))
    assert len(children) == 2 and all(children), "the child's results were not used"
    assert good.verdicts["linearizability"] == "valid"
    assert bad.verdicts["linearizability"] == "invalid"
    assert bad.linearizability is not None and bad.linearizability["_html"]  # counterexample
    assert children[1]["verdict"] == bad.linearizability["verdict"]


def test_a_check_child_that_dies_is_redone_in_process(
    tmp_path: Path, children: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rundir, "_background_check", lambda *a: os._exit(3))
    bad = rundir.analyze(_non_linearizable(tmp_path))
    assert children == [None]
    assert bad.verdicts["linearizability"] == "invalid"


def test_the_report_is_drawn_in_a_child(
    tmp_path: Path, children: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import deploy.report

    real = deploy.report.write_report
    drawn_by = tmp_path / "drawn-by"

    def write_report(a: Any, out: Path | None = None, **kw: Any) -> Path:
        drawn_by.write_text(str(os.getpid()))
        return real(a, out, **kw)

    monkeypatch.setattr(deploy.report, "write_report", write_report)
    run = tmp_path / "run"
    standard_run(run)
    assert raftlab(["analyze", str(run)]) == 0
    assert int(drawn_by.read_text()) != os.getpid()
    assert (run / "report.html").is_file() and (run / "plots" / "timeline.png").is_file()
    assert "merged.jsonl" in (run / "report.html").read_text()


def test_a_report_child_that_fails_is_redone_in_process(
    tmp_path: Path,
    children: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import deploy.report

    real = deploy.report.write_report
    parent = os.getpid()

    def write_report(a: Any, out: Path | None = None, **kw: Any) -> Path:
        if os.getpid() != parent:
            raise OSError("disk full (test)")
        return real(a, out, **kw)

    monkeypatch.setattr(deploy.report, "write_report", write_report)
    run = tmp_path / "run"
    standard_run(run)
    assert raftlab(["analyze", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert "drawing in a child failed: disk full (test)" in capfd.readouterr().err


def test_an_analysis_that_fails_stops_its_check_child(
    tmp_path: Path, children: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-daemon child would hold the command's exit until its check ended."""
    import multiprocessing
    import time

    monkeypatch.setattr(rundir, "_background_check", lambda *a: time.sleep(60))
    standard_run(tmp_path)
    with pytest.raises(rundir.EventLogNotFoundError, match="reference node 'nope'"):
        rundir.analyze(tmp_path, reference="nope")
    assert multiprocessing.active_children() == []
