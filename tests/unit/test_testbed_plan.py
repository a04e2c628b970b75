"""Testbed planning: names, addresses, ports and subnet overlap detection (no root needed)."""

from __future__ import annotations

import ipaddress

import pytest

from deploy.testbed.plan import (
    PlanError,
    Route,
    SubnetOverlapError,
    TestbedStyle,
    check_subnet_free,
    overlapping_routes,
    parse_routes,
    plan_testbed,
)

# What `ip -j -4 route show table all` prints on a machine like the lab's.
IP_ROUTE_JSON = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "prefsrc": "192.0.2.2"},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
    {"type": "local", "dst": "192.0.2.2", "dev": "eth0", "table": "local"},
    {"type": "broadcast", "dst": "192.0.2.255", "dev": "eth0", "table": "local"},
    {"dst": "10.77.0.0/24", "dev": "raftlab-br0", "protocol": "kernel"},
]


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_parse_routes_skips_default_and_keeps_device_and_table() -> None:
    routes = parse_routes(IP_ROUTE_JSON)
    assert net("0.0.0.0/0") not in [r.network for r in routes]
    assert Route(net("127.0.0.0/8"), "lo", "local") in routes
    assert Route(net("192.0.2.2/32"), "eth0", "local") in routes


def test_overlap_with_an_existing_route_is_refused_with_the_route_named() -> None:
    routes = parse_routes(IP_ROUTE_JSON)
    with pytest.raises(SubnetOverlapError, match=r"192\.0\.2\.0/24 dev eth0"):
        check_subnet_free(net("192.0.2.128/25"), routes)
    with pytest.raises(SubnetOverlapError, match=r"127\.0\.0\.0/8"):
        check_subnet_free(net("127.1.0.0/16"), routes)
    # A supernet of a route overlaps too.
    assert overlapping_routes(net("192.0.0.0/16"), routes)


def test_disjoint_subnet_is_accepted() -> None:
    routes = parse_routes(IP_ROUTE_JSON)
    check_subnet_free(net("10.79.0.0/24"), routes)


def test_own_bridge_route_does_not_block_a_second_up() -> None:
    routes = parse_routes(IP_ROUTE_JSON)
    with pytest.raises(SubnetOverlapError, match="raftlab-br0"):
        check_subnet_free(net("10.77.0.0/24"), routes)
    check_subnet_free(net("10.77.0.0/24"), routes, own_devices=["raftlab-br0"])


def test_plain_plan_names_everything_with_the_prefix() -> None:
    plan = plan_testbed(5, TestbedStyle.PLAIN, "10.77.0.0/24", "raftlab")
    assert [h.name for h in plan.hosts] == ["h1", "h2", "h3", "h4", "h5"]
    assert [h.node_id for h in plan.hosts] == ["n1", "n2", "n3", "n4", "n5"]
    assert [str(h.address) for h in plan.hosts][:2] == ["10.77.0.11", "10.77.0.12"]
    assert all(h.netns.startswith("raftlab-") for h in plan.hosts)
    assert all(h.veth.startswith("raftlab-") and len(h.veth) <= 15 for h in plan.hosts)
    assert plan.bridge == "raftlab-br0" and str(plan.bridge_address) == "10.77.0.1"
    assert plan.forward_chain == "RAFTLAB-FWD"
    assert all(h.ssh_host == h.address and h.ssh_port == 22 for h in plan.hosts)
    assert plan.gateway is None
    assert plan.namespaces == tuple(f"raftlab-h{i}" for i in range(1, 6))


def test_fifteen_hosts_fit_and_names_are_unique() -> None:
    plan = plan_testbed(15, TestbedStyle.GEE, "10.77.0.0/24", "raftlab", "10.78.0.0/24")
    names = [h.netns for h in plan.hosts] + [h.veth for h in plan.hosts]
    assert len(set(names)) == len(names)
    assert max(len(n) for n in names) <= 15
    assert [h.ssh_port for h in plan.hosts] == list(range(2201, 2216))


def test_a_hundred_hosts_fit_with_the_longest_prefix_and_more_are_refused() -> None:
    plan = plan_testbed(100, TestbedStyle.GEE, "10.77.0.0/24", "r" * 10, "10.78.0.0/24")
    names = [h.netns for h in plan.hosts] + [h.veth for h in plan.hosts]
    assert len(set(names)) == len(names) and max(len(n) for n in names) <= 15
    assert str(plan.hosts[-1].address) == "10.78.0.110"
    with pytest.raises(PlanError, match="--hosts must be between 1 and 100"):
        plan_testbed(101)


def test_gee_plan_reaches_hosts_only_through_the_gateway() -> None:
    plan = plan_testbed(3, TestbedStyle.GEE, "10.77.0.0/24", "rl", "10.78.0.0/24")
    gw = plan.gateway
    assert gw is not None
    assert str(gw.outer_address) == "10.77.0.2" and str(gw.inner_address) == "10.78.0.1"
    assert gw.netns == "rl-gw" and gw.nat_chain == "RL-DNAT"
    # Like slivers behind the gateways of several sites: two public addresses, alternating.
    assert [str(a) for a in gw.outer_addresses] == ["10.77.0.2", "10.77.0.3"]
    assert [str(h.ssh_host) for h in plan.hosts] == ["10.77.0.2", "10.77.0.3", "10.77.0.2"]
    for h in plan.hosts:
        assert h.ssh_port == 2200 + h.index
        assert h.address in net("10.78.0.0/24")
    assert plan.namespaces[0] == "rl-gw"


def test_gee_inner_subnet_must_not_overlap_the_lab_subnet() -> None:
    with pytest.raises(PlanError, match="overlaps"):
        plan_testbed(3, TestbedStyle.GEE, "10.77.0.0/16", "rl", "10.77.3.0/24")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hosts": 0}, "--hosts"),
        ({"hosts": 500}, "--hosts"),
        ({"prefix": "Raft"}, "prefix"),
        ({"prefix": "averyverylongprefix"}, "prefix"),
        ({"prefix": "1abc"}, "prefix"),
        ({"subnet": "10.77.0.1/24"}, "host bits"),
        ({"subnet": "not-a-net"}, "--subnet"),
        ({"subnet": "10.77.0.0/29"}, "too small"),
    ],
)
def test_bad_parameters_are_refused_with_the_culprit_named(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"hosts": 3, "subnet": "10.77.0.0/24", "prefix": "raftlab"}
    args.update(kwargs)
    with pytest.raises(PlanError, match=message):
        plan_testbed(args["hosts"], TestbedStyle.PLAIN, str(args["subnet"]), str(args["prefix"]))  # type: ignore[arg-type]


def test_host_lookup_by_any_name() -> None:
    plan = plan_testbed(3)
    assert plan.host("n2") is plan.host("h2") is plan.host("raftlab-h2")
    with pytest.raises(PlanError, match="no host"):
        plan.host("h9")
