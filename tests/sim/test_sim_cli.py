"""``raftlab sim``: summary, exit codes, replay command, usage errors."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from deploy.cli import main
from raft.core import Entry
from raft.core.log import RaftLog


def test_clean_run_exits_0_with_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--seeds", "3", "--nodes", "3", "--steps", "200", "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, out
    assert "seeds 3" in out and "violations 0" in out and "elections" in out
    assert "client ops" in out and "wall" in out
    assert "3/3 seeds (100%)" in err  # not a TTY: one line per 10%


def test_trace_of_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--seed", "4", "--steps", "150", "--faults", "drop,crash", "--trace"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "--- trace of seed 4 ---" in out
    assert " recv " in out and "seeds 1" in out


def _broken_find_conflict(self: RaftLog, entries: Sequence[Entry]) -> int:
    for e in entries:
        if e.index > self.last_index():
            return e.index
    return 0


def test_violation_exits_1_and_prints_replay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RaftLog, "find_conflict", _broken_find_conflict)
    code = main(["sim", "--seeds", "4", "--jobs", "1", "--no-lincheck"])
    out, _ = capsys.readouterr()
    assert code == 1
    m = re.search(
        r"VIOLATION seed (\d+): (log_matching|state_machine_safety|quorum|conformance) at n\d", out
    )
    assert m is not None, out
    assert "last events:" in out
    seed = m.group(1)
    assert f"replay: raftlab sim --seed {seed} --nodes 5 --faults all --steps 300 --trace" in out
    assert f"violations {out.count('VIOLATION seed')}" in out
    # The printed command replays the same violation.
    first_line = out[m.start() : out.index("\n", m.start())]
    replay = ["sim", "--seed", seed, "--nodes", "5", "--faults", "all", "--steps", "300"]
    assert main(replay) == 1
    assert first_line in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "--faults", "drop,meteor"], "meteor"),
        (["sim", "--nodes", "9"], "nodes must be in 3..7"),
        (["sim", "--seeds", "0"], "--seeds"),
        (["sim", "--steps", "10"], "steps must be at least"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_sizes_by_seed_clients_and_new_counters(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["sim", "--seeds", "2", "--nodes", "3,7", "--clients", "5", "--steps", "200", "--jobs", "1"]
    )
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "seeds 2" in out and "membership changes" in out and "late/stale messages" in out


def test_bad_nodes_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "3,x"]) == 2
    assert "--nodes must be a number or a list" in capsys.readouterr().err
