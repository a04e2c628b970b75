"""``raftlab check``: exit codes 0/1/2, counterexample output, one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from deploy.cli import main
from raft.lincheck import formats
from raft.lincheck.generate import linearizable_history

DATA = Path(__file__).parent / "data" / "histories"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_linearizable_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DATA / "register_concurrent_ok.jsonl"), "--model", "register")
    assert code == 0
    assert "linearizable" in out and "not_linearizable" not in out


def test_not_linearizable_exits_1_with_counterexample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DATA / "register_stale_read.jsonl"), "--model", "register")
    assert code == 1
    assert "Longest linearizable prefix: 2 operations" in out
    assert "Model state after the prefix: 2" in out
    assert "process 1 read 1 [ok] invoked 40, completed 50 line 5" in out
    assert "the model rejects it in this state" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DATA / "cas_race_bad.edn"), "--model", "cas-register", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "not_linearizable"
    assert doc["format"] == "jepsen-edn"
    assert doc["counterexample"]["state"] == 1
    assert [o["value"] for o in doc["counterexample"]["unlinearizable"]] == [[0, 2]]


def test_format_flag_overrides_sniffing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = (DATA / "cas_info_took_effect.log").read_text()
    path = tmp_path / "history.data"
    path.write_text(src)
    code, _, _ = run(capsys, str(path), "--model", "cas-register", "--format", "jepsen-log")
    assert code == 0
    code, _, err = run(capsys, str(path), "--model", "cas-register", "--format", "jsonl")
    assert code == 2
    assert f"{path}:1: not valid JSON" in err


def test_timeout_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gen = linearizable_history(random.Random(2), 300, 4, model="kv")
    path = tmp_path / "history.jsonl"
    path.write_text(formats.render_jsonl(gen.events))
    code, out, _ = run(capsys, str(path), "--model", "kv", "--timeout", "0")
    assert code == 2
    assert "unknown" in out and "time budget" in out
    code, _, _ = run(capsys, str(path), "--model", "kv")
    assert code == 0


@pytest.mark.parametrize(
    ("fixture", "model", "message"),
    [
        ("malformed.jsonl", "register", "malformed.jsonl:3: not valid JSON"),
        ("malformed.log", "cas-register", "malformed.log:2: bad value '[3'"),
        ("cas_race_bad.edn", "register", "model register does not support cas"),
    ],
)
def test_unusable_history_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], fixture: str, model: str, message: str
) -> None:
    code, out, err = run(capsys, str(DATA / fixture), "--model", model)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.jsonl"), "--model", "kv")
    assert code == 2
    assert "nope.jsonl: cannot read history" in err


def test_history_contract_violation_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process":0,"type":"ok","f":"read","value":1,"time":3}\n')
    code, _, err = run(capsys, str(path), "--model", "register")
    assert code == 2
    assert "line 1: process 0: ok read without a preceding invoke" in err


# --- a checker that cannot say "linearizable" about nothing (issue 14) -------------------


def test_space_separated_jepsen_log_is_read_not_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = (DATA / "cas_info_flipflop_bad.log").read_text().replace("\t", "   ")
    path = tmp_path / "etcd.log"
    path.write_text(bad)
    code, out, _ = run(capsys, str(path), "--model", "cas-register")
    assert code == 1
    assert "not_linearizable" in out


def test_format_comes_from_content_not_extension(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "history.txt"
    path.write_text((DATA / "cas_race_bad.edn").read_text())
    code, out, _ = run(capsys, str(path), "--model", "cas-register", "--json")
    assert code == 1
    assert json.loads(out)["format"] == "jepsen-edn"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("history.jsonl", ""),
        ("history.jsonl", "\n\n"),
        ("etcd.log", "INFO  jepsen.core - Worker 0 starting\nsomething else\n"),
        ("history.edn", "[]\n"),
        ("history.edn", "{:type :info, :process :nemesis, :f :start, :value nil}\n"),
    ],
)
def test_input_without_operations_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run(capsys, str(path), "--model", "register")
    assert code == 2
    assert "no operations found" in err
    assert "linearizable" not in out


def test_skipped_operation_lines_exit_2_naming_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (DATA / "cas_info_took_effect.log").read_text() + "INFO  jepsen.util - 3 :invoke\n"
    path = tmp_path / "etcd.log"
    path.write_text(text)
    code, out, err = run(capsys, str(path), "--model", "cas-register")
    assert code == 2
    assert out == ""
    n = text.count("\n")
    assert "1 line(s) could not be read as operations" in err and f"line {n}:" in err


_TUPLES_LOG = """\
INFO  jepsen.util - 0\t:invoke\t:write\t[0 1]
INFO  jepsen.util - 0\t:ok\t:write\t[0 1]
INFO  jepsen.util - 1\t:invoke\t:write\t[1 2]
INFO  jepsen.util - 1\t:ok\t:write\t[1 2]
INFO  jepsen.util - 2\t:invoke\t:read\t[0 nil]
INFO  jepsen.util - 2\t:ok\t:read\t[0 {read}]
INFO  jepsen.util - 3\t:invoke\t:cas\t[1 [2 3]]
INFO  jepsen.util - 3\t:info\t:cas\t:timed-out
"""


@pytest.mark.parametrize(("read", "code_wanted"), [("1", 0), ("2", 1)])
def test_jepsen_independent_tuples_are_checked_per_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, read: str, code_wanted: int
) -> None:
    # As one register, reading 1 after 2 was written would be refuted; per key it is fine,
    # while reading key 1's value 2 from key 0 is refuted.
    path = tmp_path / "independent.log"
    path.write_text(_TUPLES_LOG.format(read=read))
    code, out, _ = run(capsys, str(path), "--model", "cas-register")
    assert code == code_wanted
    assert "2 independent key(s)" in out


def test_jepsen_independent_tuple_tag_in_edn(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "history.edn"
    path.write_text(
        "{:type :invoke, :process 0, :f :write, :value #jepsen.independent/tuple [0 [5 6]]}\n"
        "{:type :ok, :process 0, :f :write, :value #jepsen.independent/tuple [0 [5 6]]}\n"
        "{:type :invoke, :process 1, :f :write, :value #jepsen.independent/tuple [1 7]}\n"
        "{:type :ok, :process 1, :f :write, :value #jepsen.independent/tuple [1 7]}\n"
    )
    code, out, _ = run(capsys, str(path), "--model", "register", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["unpacked_keys"] == 2 and doc["partitions"] == 2


def test_export_edn_round_trips_to_the_same_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "history.edn"
    src = DATA / "register_stale_read.jsonl"
    code, _, _ = run(capsys, str(src), "--model", "register", "--export-edn", str(out))
    assert code == 1
    assert out.read_text().startswith("{:index 0, :time ")
    code, _, _ = run(capsys, str(out), "--model", "register")
    assert code == 1


def test_html_counterexample_and_failing_window(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "cx.html"
    src = DATA / "register_stale_read.jsonl"
    code, out, _ = run(capsys, str(src), "--model", "register", "--html", str(page))
    assert code == 1
    assert "Failing window: time 0..50, 3 operations" in out
    assert "process 0 write 2 [ok] 20..30 line 3  <- linearized #2" in out
    assert "(model rejects it); DEADLINE" in out
    doc = page.read_text()
    assert (
        doc.startswith("<!doctype html>")
        and "<script" not in doc
        and "http" not in doc.split("xmlns=")[0]
    )
    assert doc.count("<rect") == 4  # the window's shading and the three operations
    assert "#2 write 2" in doc and "#ef9a9a" in doc  # prefix numbered; rejected read in red


def test_analyze_writes_and_links_the_counterexample_page(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "history.jsonl").write_text((DATA / "register_stale_read.jsonl").read_text())
    assert main(["analyze", str(tmp_path), "--model", "register"]) == 1
    capsys.readouterr()
    assert (tmp_path / "counterexample.html").read_text().count("<rect") == 4
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["linearizability"]["counterexample_html"] == "counterexample.html"
    assert '<a href="counterexample.html">' in (tmp_path / "report.html").read_text()


def test_ignored_non_operation_lines_are_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Log chatter is not an error (Jepsen logs are full of it), but a verdict must not hide
    # that lines were left out: the summary counts them.
    path = tmp_path / "mixed.txt"
    path.write_text("0 :invoke :write 1\n0 :ok :write 1\njunk line here\n")
    code, out, _ = run(capsys, str(path), "--model", "register")
    assert code == 0
    assert "ignored 1 line(s) that are not client operations" in out
    code, out, _ = run(capsys, str(path), "--model", "register", "--json")
    assert json.loads(out)["ignored_lines"] == 1


def test_stale_read_refutation_is_explained_and_drawn(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raft.lincheck import checker

    monkeypatch.setattr(checker, "QUICK_STEPS", 0)  # the stale-read rule answers alone
    path = tmp_path / "h.jsonl"
    path.write_text(
        "".join(
            json.dumps({"process": p, "type": t, "f": f, "value": v, "time": tm}) + "\n"
            for p, t, f, v, tm in [
                (0, "invoke", "write", 1, 0),
                (0, "ok", "write", 1, 1),
                (1, "invoke", "write", 2, 2),
                (1, "ok", "write", 2, 3),
                (0, "invoke", "read", None, 4),
                (0, "ok", "read", 1, 5),
            ]
        )
    )
    html = tmp_path / "cx.html"
    code, out, _ = run(capsys, str(path), "--model", "register", "--html", str(html))
    assert code == 1
    assert (
        "It reads a stale value: process 1 write 2 [ok] invoked 2, completed 3 line 3 left" in out
    )
    assert "STALE: left or saw a newer value" in out
    assert "<svg" in html.read_text()
