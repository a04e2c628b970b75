"""Interaction tests: each testdata/*.txt script is run and its trace compared with the
expected one. ``pytest tests/interaction --rewrite`` regenerates them (review the diff)."""

from __future__ import annotations

from pathlib import Path

import pytest
from interaction_env import parse_script, render_script, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scripts() -> None:
    names = {p.stem for p in SCRIPTS}
    required = {"election", "replication", "conflicts", "prevote", "checkquorum", "readindex"}
    assert required <= names, required - names


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script(path: Path, request: pytest.FixtureRequest) -> None:
    text = path.read_text()
    actual = run_script(text)
    if request.config.getoption("--rewrite", default=False):
        path.write_text(render_script(actual))
        return
    expected = parse_script(text)
    assert [b.command for b in actual] == [b.command for b in expected]
    for exp, act in zip(expected, actual, strict=True):
        assert act.expected == exp.expected, f"{path.name}: command {exp.command!r}"
