"""The HTML report is one self-contained file with verdicts, one timeline lane per node,
fault shading by kind, latency/throughput plots and marked violations; PNG plots exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from deploy.analysis import analyze
from deploy.analysis.synthetic import SyntheticCluster, standard_run
from deploy.report import build_report_data, render_html, write_report
from deploy.report._data import generated_colors

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_for_a_faulty_run(tmp_path: Path) -> None:
    standard_run(tmp_path, bug="double_leader", offsets={"n2": 5.0, "n3": -3.0})
    a = analyze(tmp_path)
    path = write_report(a)
    assert path == tmp_path / "report.html"
    page = path.read_text()
    # Self-contained: nothing fetched from anywhere (the SVG namespace is not a fetch).
    assert not re.search(r'(src|href)="https?:', page)
    assert "<script src" not in page and "<link" not in page
    # Verdicts first, coloured.
    assert page.index('id="verdicts"') < page.index('id="timeline"')
    assert 'class="verdict overall v-invalid"' in page
    assert 'class="verdict invariants v-invalid"' in page
    assert 'class="verdict linearizability v-valid"' in page
    # One lane per node, with role segments and leader terms.
    lanes = re.findall(r'<g class="lane" data-node="(n\d)">', page)
    assert lanes == ["n1", "n2", "n3"]
    assert page.count('class="seg role-leader"') >= 5
    assert ">T2</text>" in page
    # Fault windows shaded by kind, on the timeline and the latency/throughput plots.
    kinds = set(re.findall(r'class="fault" data-fault="(\w+)"', page))
    assert kinds == {"kill", "pause", "partition"}
    assert page.count('class="fault" data-fault="kill"') == 2 * 3  # two kills, three plots
    # The election-safety violation is drawn and listed with links to the log lines.
    assert '<g class="marker violation"><title>election_safety: term 2 has 2 leaders' in page
    assert 'href="nodes/n2/events.jsonl"' in page
    assert 'id="latency"' in page and 'id="throughput"' in page
    assert 'class="ops ops-ok"' in page
    for png in ("timeline.png", "latency.png", "throughput.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == PNG_MAGIC


def test_counterexample_is_marked_on_timeline_and_latency(tmp_path: Path) -> None:
    c = standard_run(tmp_path, writes=5)
    t = c.history[-1]["time"] + 1000
    with (tmp_path / "history.jsonl").open("a") as fh:
        for x in (
            {"process": 900, "type": "invoke", "f": "read", "value": None, "time": t},
            {"process": 900, "type": "ok", "f": "read", "value": 42, "time": t + 5_000_000},
        ):
            fh.write(json.dumps(x) + "\n")
    a = analyze(tmp_path)
    assert a.verdicts["linearizability"] == "invalid"
    page = render_html(build_report_data(a))
    assert 'class="verdict linearizability v-invalid"' in page
    assert '<rect class="marker lin"' in page  # window on the timeline
    assert '<circle class="marker lin"' in page  # the operation on the latency plot
    assert "None of these operations can come next" in page


def test_many_fault_kinds_get_distinct_colours_and_no_cap(tmp_path: Path) -> None:
    c = SyntheticCluster(5, seed=2)
    c.boot()
    c.elect("n1")
    kinds = [f"custom{i}" for i in range(14)]
    for k in kinds:
        c._fault(k, "start", ["n2"])
        c.write(3)
        c._fault(k, "stop", ["n2"])
    c.write(400, batch=4)
    c.write_run(tmp_path)
    a = analyze(tmp_path, check_linearizable=False)
    d = build_report_data(a)
    assert len(set(d.fault_colors.values())) == len(kinds)
    page = render_html(d)
    assert set(re.findall(r'class="fault-bar" data-fault="(\w+)"', page)) == set(kinds)
    assert len(re.findall(r'<g class="lane"', page)) == 5
    assert len(d.ops) == len(a.history) > 400  # every operation is drawn


def test_generated_colours_are_distinct() -> None:
    cols = generated_colors(40)
    assert len(set(cols)) == 40
    assert all(re.fullmatch(r"#[0-9a-f]{6}", x) for x in cols)


def test_plots_focus_on_activity_when_the_cluster_idled_long(tmp_path: Path) -> None:
    c = SyntheticCluster(3, seed=8)
    c.boot()
    c.elect("n1")
    c.write(10)
    c.kill("n2")
    c.write(5)
    c.restart("n2")
    c.write(5)
    c.tick(600_000)  # ten idle minutes before the cluster is stopped
    for n in c.names:
        c.emit(n, "stop", reason="signal")
    c.write_run(tmp_path)
    a = analyze(tmp_path, check_linearizable=False)
    d = build_report_data(a)
    assert d.t_full[1] > 600
    assert d.t_max < 10  # the window is the workload, not the idle tail
    assert all(s.end <= d.t_max for s in d.segments)
    page = render_html(d)
    assert "the node logs span" in page


def test_report_without_history_or_faults(tmp_path: Path) -> None:
    c = SyntheticCluster(3, seed=9)
    c.boot()
    c.elect("n3")
    c.write(4)
    c.write_run(tmp_path, with_history=False)
    (tmp_path / "nemesis.jsonl").unlink()
    a = analyze(tmp_path)
    assert a.verdicts == {"invariants": "valid", "overall": "valid"}
    path = write_report(a)
    page = path.read_text()
    assert "no client history in this run" in page
    assert "No client history in this run." in page
    assert re.findall(r'<g class="lane" data-node="(n\d)">', page) == ["n1", "n2", "n3"]
    assert (tmp_path / "plots" / "latency.png").read_bytes()[:8] == PNG_MAGIC


def test_leader_segments_carry_the_term_they_were_won_in(tmp_path: Path) -> None:
    # As the runtime logs it: the deposed leader sees the new term (a vote request) before
    # it logs its step-down; its leader segment still belongs to term 1.
    rows = [
        {"ts": 10.0, "node": "n1", "term": 0, "ev": "start", "v": 1},
        {"ts": 10.1, "node": "n1", "term": 1, "ev": "role", "role": "leader", "leader": "n1"},
        {"ts": 12.0, "node": "n1", "term": 2, "ev": "vote", "candidate": "n2", "granted": True},
        {"ts": 12.1, "node": "n1", "term": 2, "ev": "role", "role": "follower", "leader": ""},
        {"ts": 13.0, "node": "n1", "term": 3, "ev": "role", "role": "leader", "leader": "n1"},
        {"ts": 14.0, "node": "n1", "term": 3, "ev": "commit", "index": 1, "eterm": 3},
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = build_report_data(analyze(tmp_path, check_linearizable=False))
    got = [(s.role, s.term, round(s.end - s.start, 3)) for s in d.segments]
    assert got == [
        ("follower", 0, 0.1),
        ("leader", 1, 2.0),
        ("follower", 2, 0.9),
        ("leader", 3, 1.0),
    ]


def test_report_command_writes_elsewhere_with_out(tmp_path: Path) -> None:
    from deploy.cli import main

    standard_run(tmp_path / "run", writes=4, bug="diverge")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'class="verdict overall v-invalid"' in page
    assert (tmp_path / "out" / "plots" / "timeline.png").is_file()
    assert not (tmp_path / "run" / "report.html").exists()
