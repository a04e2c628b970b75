"""Fault specs: parsing with errors that name the field, and target selection."""

from __future__ import annotations

import random

import pytest

from deploy.nemesis import (
    FAULT_KINDS,
    FaultSpecError,
    Target,
    TargetKind,
    parse_fault,
    parse_schedule,
    select_targets,
)

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_defaults_are_filled_in_and_enums_become_strings() -> None:
    f = parse_fault({"kind": "partition", "target": "leader"})
    assert f.target == Target(TargetKind.LEADER)
    assert f.params == {"mode": "isolate", "groups": None}
    assert (f.start_s, f.duration_s, f.interval_s, f.count) == (0.0, 5.0, None, None)
    f = parse_fault({"kind": "loss", "params": {"probability": 0.3}, "target": "nodes:n1,n2"})
    assert f.params == {"probability": 0.3, "mechanism": "auto"}
    assert f.target.nodes == ("n1", "n2")
    assert parse_fault({"kind": "kill", "target": ["n3"]}).target == Target(
        TargetKind.NODES, ("n3",)
    )
    assert parse_fault({"kind": "kill", "target": {"nodes": ["n3"]}}).target.nodes == ("n3",)


def test_catalogue_lists_every_kind_and_each_parses_with_defaults() -> None:
    assert {"kill", "pause", "restart", "partition", "loss", "duplicate", "delay"} <= set(
        FAULT_KINDS
    )
    assert {"reorder", "rate", "clock", "disk-fill", "disk-corrupt"} <= set(FAULT_KINDS)
    for kind in FAULT_KINDS:
        assert parse_fault({"kind": kind}).kind == kind


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"kind": "los"}, "kind: 'los' is not a fault; allowed: kill, pause"),
        ({"kind": "membership", "target": "majority"}, "membership cannot remove majority"),
        ({"kind": "membership", "params": {"wipe": "yes"}}, "params.wipe: 'yes' must be true"),
        ({"kind": "kill", "when": 3}, "unknown field(s) when; allowed: kind, target"),
        ({"kind": "kill", "target": "boss"}, "target: 'boss' is not a target; allowed: random"),
        ({"kind": "kill", "target": "nodes:"}, "names no node"),
        ({"kind": "loss", "params": {"prob": 0.1}}, "params: unknown prob for loss"),
        ({"kind": "loss", "params": {"probability": 1.5}}, "params.probability: 1.5 must be in"),
        ({"kind": "partition", "params": {"mode": "ring2"}}, "allowed: isolate, halves, ring"),
        ({"kind": "partition", "params": {"mode": "groups"}}, "params.groups: mode groups needs"),
        (
            {"kind": "partition", "params": {"mode": "groups", "groups": [["n1"], ["n1", "n2"]]}},
            "a node is in two groups",
        ),
        ({"kind": "kill", "duration_s": -1}, "duration_s: -1 must be a finite number >= 0"),
        ({"kind": "kill", "duration_s": "5"}, "duration_s: '5' is not a number"),
        ({"kind": "kill", "duration_s": 5, "interval_s": 5}, "interval_s: 5 must be longer"),
        ({"kind": "kill", "count": 0}, "count: 0 must be at least 1"),
        ({"kind": "rate", "params": {"kbit": 2.5}}, "params.kbit: 2.5 must be a whole number"),
        ({"kind": "clock", "params": {"mode": "strobe", "monotonic": True}}, "run backwards"),
    ],
)
def test_bad_specs_name_the_field_and_the_allowed_values(
    raw: dict[str, object], needle: str
) -> None:
    with pytest.raises(FaultSpecError) as exc:
        parse_fault(raw)
    assert needle in str(exc.value)


def test_schedule_errors_name_the_entry() -> None:
    with pytest.raises(FaultSpecError, match=r"^nemesis\[1\]\.params\.probability"):
        parse_schedule([{"kind": "kill"}, {"kind": "loss", "params": {"probability": 0}}])
    with pytest.raises(FaultSpecError, match="must be a list"):
        parse_schedule({"kind": "kill"})


def test_target_selection_sizes_and_seeded_choice() -> None:
    rng = random.Random(7)
    assert select_targets(Target(TargetKind.ALL), NODES, None, rng) == NODES
    assert select_targets(Target(TargetKind.LEADER), NODES, "n3", rng) == ["n3"]
    assert select_targets(Target(TargetKind.LEADER), NODES, None, rng) == []
    assert len(select_targets(Target(TargetKind.MINORITY), NODES, None, rng)) == 2
    assert len(select_targets(Target(TargetKind.MAJORITY), NODES, None, rng)) == 3
    assert len(select_targets(Target(TargetKind.MINORITY), NODES[:3], None, rng)) == 1
    a = [select_targets(Target(TargetKind.RANDOM), NODES, None, random.Random(s)) for s in range(9)]
    b = [select_targets(Target(TargetKind.RANDOM), NODES, None, random.Random(s)) for s in range(9)]
    assert a == b and len({x[0] for x in a}) > 1  # seeded: repeatable, and not constant
    with pytest.raises(FaultSpecError, match="unknown node"):
        select_targets(Target(TargetKind.NODES, ("n9",)), NODES, None, rng)
