"""Fault internals that need no cluster: partition shapes, the iptables/tc scripts, and the
NFQUEUE delayer's netlink parsing."""

from __future__ import annotations

import random
import struct

import pytest

from deploy.nemesis import net
from deploy.nemesis.delayer import NFNL_SUBSYS_QUEUE, NFQA_PACKET_HDR, _attr, packet_ids
from deploy.nemesis.faults import partition_blocks

NODES = ["n1", "n2", "n3", "n4", "n5"]


def _hears(blocked: dict[str, set[str]], a: str) -> set[str]:
    return {b for b in NODES if b != a and b not in blocked[a]}


def _symmetric(blocked: dict[str, set[str]]) -> bool:
    return all(a in blocked[b] for a in blocked for b in blocked[a])


def test_isolate_cuts_each_target_from_everyone_both_ways() -> None:
    blocked, parts = partition_blocks("isolate", NODES, ["n2"], None, random.Random(1))
    assert blocked["n2"] == {"n1", "n3", "n4", "n5"}
    assert all(blocked[n] == {"n2"} for n in ("n1", "n3", "n4", "n5"))
    assert parts == [["n2"], ["n1", "n3", "n4", "n5"]]


def test_one_way_the_targets_stop_hearing_the_others_only() -> None:
    blocked, _ = partition_blocks("one-way", NODES, ["n1"], None, random.Random(1))
    assert blocked["n1"] == {"n2", "n3", "n4", "n5"}
    assert all(not blocked[n] for n in NODES[1:])


def test_halves_split_into_a_minority_and_a_majority() -> None:
    blocked, parts = partition_blocks("halves", NODES, [], None, random.Random(3))
    assert sorted(len(p) for p in parts) == [2, 3] and _symmetric(blocked)
    for p in parts:
        for a in p:
            assert _hears(blocked, a) == set(p) - {a}


def test_ring_gives_every_node_a_different_majority() -> None:
    blocked, _ = partition_blocks("ring", NODES, [], None, random.Random(5))
    views = {a: frozenset(_hears(blocked, a) | {a}) for a in NODES}
    assert all(len(v) == 3 for v in views.values())
    assert len(set(views.values())) == 5 and _symmetric(blocked)


def test_bridge_joins_two_halves_through_one_node() -> None:
    blocked, parts = partition_blocks("bridge", NODES, [], None, random.Random(2))
    left, (bridge,), right = parts
    assert len(left) == 2 and len(right) == 2
    assert _hears(blocked, bridge) == set(NODES) - {bridge}
    for a in left:
        assert _hears(blocked, a) == (set(left) | {bridge}) - {a}
    assert _symmetric(blocked)


def test_groups_and_unnamed_nodes_form_their_own_group() -> None:
    blocked, parts = partition_blocks("groups", NODES, [], [["n1", "n2"], ["n3"]], random.Random())
    assert parts == [["n1", "n2"], ["n3"], ["n4", "n5"]]
    assert _hears(blocked, "n1") == {"n2"} and _hears(blocked, "n4") == {"n5"}
    with pytest.raises(ValueError, match="unknown node"):
        partition_blocks("groups", NODES, [], [["n1"], ["n9"]], random.Random())


def test_scripts_touch_only_our_chain_and_our_qdisc_handle() -> None:
    add = net.add_rules_script("filter", 7, ["-s 10.0.0.2 -j DROP"])
    assert f"-A {net.CHAIN} -s 10.0.0.2 -j DROP -m comment --comment raftlab-nemesis-7" in add
    assert f"-I INPUT 1 -j {net.CHAIN}" in add and f"-I OUTPUT 1 -j {net.CHAIN}" in add
    for script in (add, net.remove_rules_script("filter", 7), net.remove_all_script()):
        assert " -F INPUT" not in script and " -F OUTPUT" not in script and "-F\n" not in script
        for word in script.split():
            assert word not in ("-F", "--flush") or net.CHAIN in script.split(word, 1)[1][:40]
    assert f"handle {net.QDISC_HANDLE}" in net.remove_qdisc_script("eth0")
    assert f"grep -q ' {net.QDISC_HANDLE} '" in net.remove_qdisc_script("eth0")


def test_delayer_reads_packet_ids_from_a_netlink_batch() -> None:
    def packet(pid: int) -> bytes:
        attrs = _attr(NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x0800, 3))
        body = struct.pack("=BBH", 2, 0, 0) + attrs
        return struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_QUEUE << 8, 0, 0, 0) + body

    assert packet_ids(packet(7) + packet(9) + packet(4096)) == [7, 9, 4096]
    assert packet_ids(b"") == []
