"""Experiment specs: every example loads, and bad input is refused with an error naming the
field and what is allowed (docs/experiments.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.errors import LabError
from deploy.experiment import SpecError, load_spec, parse_spec
from deploy.experiment.campaign import parse_seeds

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yml"))


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "t",
        "workload": {"model": "kv", "clients": 2, "duration_s": 10},
        "nemesis": [{"kind": "kill", "target": "leader", "start_s": 1, "duration_s": 2}],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.workload.duration_s > 0
    assert spec.faults_requested >= 1


def test_examples_cover_kills_partitions_mixed_and_quick() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"quick", "kills", "partitions", "lab-mixed", "sim-mixed"} <= names
    mixed = load_spec(next(p for p in EXAMPLES if p.stem == "lab-mixed"))
    assert {"partition", "kill", "pause", "loss"} <= {f.kind for f in mixed.nemesis}


def test_defaults_and_schedule() -> None:
    spec = parse_spec(
        _doc(
            nemesis=[
                {"kind": "kill", "start_s": 1, "interval_s": 4, "duration_s": 2},
                {"kind": "pause", "start_s": 2, "interval_s": 3, "duration_s": 1, "count": 2},
            ]
        )
    )
    assert spec.seed == 0 and spec.recovery_s == 5.0
    assert spec.checkers == ("invariants", "linearizability")
    assert spec.nemesis[0].starts(10) == [1, 5, 9]
    assert spec.nemesis[1].starts(10) == [2, 5]
    assert spec.faults_requested == 5


@pytest.mark.parametrize(
    ("doc", "field", "allowed"),
    [
        (_doc(workload={"model": "redis"}), "workload.model", "register, cas-register, kv"),
        (_doc(workload={"clients": 0}), "workload.clients", "[1, 1000]"),
        (_doc(workload={"clients": "many"}), "workload.clients", "an integer"),
        (_doc(workload={"read_share": 1.5}), "workload.read_share", "[0, 1]"),
        (_doc(workload={"duraton_s": 3}), "workload.duraton_s", "unknown field"),
        (_doc(nemesis=[{"kind": "meteor"}]), "nemesis[0].kind", "partition"),
        (_doc(nemesis=[{"kind": "kill", "target": "half"}]), "nemesis[0].target", "minority"),
        (
            _doc(nemesis=[{"kind": "kill", "interval_s": 2, "duration_s": 3}]),
            "nemesis[0].interval_s",
            "longer than duration_s",
        ),
        (_doc(nemesis=[{"kind": "kill", "start_s": 99}]), "nemesis[0].start_s", "never fire"),
        (_doc(nemesis={"kind": "kill"}), "nemesis", "must be a list"),
        (_doc(checkers=["vibes"]), "checkers", "invariants, linearizability"),
        (_doc(seed=-1), "seed", "an integer in"),
        (_doc(name="../x"), "name", "a directory name"),
        (_doc(cluster={"inventory": "a", "local": "b"}), "cluster", "not both"),
        (_doc(recovery="5"), "recovery", "unknown field"),
        ({"workload": {}}, "name", "required"),
    ],
)
def test_bad_input_names_field_and_allowed_values(doc: Any, field: str, allowed: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(doc, "x.yml")
    msg = str(err.value)
    assert msg.startswith(f"x.yml: {field}"), msg
    assert allowed in msg, msg


def test_load_refuses_unsafe_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "evil.yml"
    bad.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yml")
    top = tmp_path / "list.yml"
    top.write_text("- 1\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(top)


def test_parse_seeds() -> None:
    assert parse_seeds("1..5") == [1, 2, 3, 4, 5]
    assert parse_seeds("3,1,3") == [3, 1]
    assert parse_seeds("0..1,7") == [0, 1, 7]
    for bad in ("5..1", "x", "", "-1"):
        with pytest.raises(LabError, match="--seeds"):
            parse_seeds(bad)
