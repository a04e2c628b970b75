"""The simulated network and fault specs."""

from __future__ import annotations

import random

import pytest

from raft.sim import ALL_FAULTS, FaultKind, FaultSpecError, Network, format_faults, parse_faults


def test_parse_faults_names_and_all() -> None:
    assert parse_faults("drop, dup,crash") == {FaultKind.DROP, FaultKind.DUP, FaultKind.CRASH}
    assert parse_faults("all") == ALL_FAULTS
    assert parse_faults("none") == frozenset()
    assert format_faults(parse_faults("crash,drop")) == "drop,crash"
    assert parse_faults(format_faults(ALL_FAULTS)) == ALL_FAULTS


def test_parse_faults_rejects_unknown_kind_by_name() -> None:
    with pytest.raises(FaultSpecError, match="'explode'"):
        parse_faults("drop,explode")


def test_links_are_fifo_without_reorder() -> None:
    net = Network(random.Random(1), latency_min=1, latency_max=50)
    arrivals = [net.route("n1", "n2", now=t)[0] for t in range(0, 200, 2)]
    assert arrivals == sorted(arrivals)
    assert len(set(arrivals)) == len(arrivals)


def test_reorder_lets_messages_overtake() -> None:
    net = Network(random.Random(1), latency_min=1, latency_max=50)
    net.reorder_jitter = 400
    arrivals = [net.route("n1", "n2", now=t)[0] for t in range(0, 200, 2)]
    assert arrivals != sorted(arrivals)


def test_partition_is_symmetric_oneway_is_not_and_heal_clears() -> None:
    net = Network(random.Random(2), latency_min=1, latency_max=5)
    net.partition(["n1"], ["n2", "n3"])
    assert net.route("n1", "n2", 0) == ()
    assert net.route("n3", "n1", 0) == ()
    assert net.route("n2", "n3", 0) != ()
    net.heal()
    net.block("n1", "n2")
    assert net.route("n1", "n2", 0) == ()
    assert len(net.route("n2", "n1", 0)) == 1
    net.heal()
    assert len(net.route("n1", "n2", 0)) == 1


def test_drop_and_dup_rates() -> None:
    net = Network(random.Random(3), latency_min=1, latency_max=5)
    net.drop_rate = 0.5
    lost = sum(1 for _ in range(1000) if not net.route("n1", "n2", 0))
    assert 400 < lost < 600
    net.drop_rate = 0.0
    net.dup_rate = 1.0
    assert len(net.route("n1", "n2", 0)) == 2
