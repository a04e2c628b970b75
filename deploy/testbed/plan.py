"""Planning a testbed: names, addresses and ports, computed before anything is created.

Pure functions and frozen values only (no I/O), so the plan can be tested without root and
``down`` can recompute exactly what ``up`` made from the recorded parameters. Every kernel
object the testbed creates carries the plan's prefix, which is how teardown removes ours and
nothing else.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from deploy.errors import LabError

#: Hosts a testbed may have (measured up to 100: bench/results/lab_scale.md).
HOSTS_MAX = 100
#: Host ``hN`` gets the address ``subnet[HOST_OFFSET + N]`` (10.77.0.11 for h1, as in the docs).
HOST_OFFSET = 10
#: In the GEE style host ``hN`` is reached on gateway port ``GEE_PORT_BASE + N`` (2201 for h1).
GEE_PORT_BASE = 2200
#: Public addresses of the GEE-style gateway: as slivers of a real slice sit behind the
#: gateways of several sites, host ``hN`` is forwarded on address ``(N - 1) % 2`` of them.
GEE_GATEWAY_ADDRESSES = 2
#: Linux interface names are at most 15 bytes; the longest we build is ``<prefix>-v<NN>``.
PREFIX_LEN_MAX = 10

DEFAULT_PREFIX = "raftlab"
DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_INNER_SUBNET = "10.78.0.0/24"

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")


class TestbedStyle(enum.Enum):
    """How the controller reaches the hosts."""

    __test__ = False  # not a pytest test class, despite the name

    #: Every host has an address on a bridge the controller sits on.
    PLAIN = "plain"
    #: Like a GEE slicelet: only a gateway is reachable; each host is a forwarded SSH port.
    GEE = "gee"


class SubnetOverlapError(LabError):
    """The requested subnet overlaps a route this machine already has."""


class PlanError(LabError):
    """The testbed parameters cannot describe a valid testbed (bad prefix, subnet too small)."""


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One testbed host: a network namespace running sshd, seen by Ansible as a machine."""

    index: int
    name: str  # hostname inside the UTS namespace and the inventory name: "h1"
    node_id: str  # the raft node id deployed there: "n1"
    netns: str  # "<prefix>-h1"
    address: IPv4Address  # the host's own address (on the bridge, or the inner bridge for GEE)
    veth: str  # our end of the host's link, outside the host namespace
    ssh_host: IPv4Address  # where the controller dials: the host, or the gateway for GEE
    ssh_port: int


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """The GEE-style gateway: the only namespace the controller can reach."""

    name: str  # "gw"
    netns: str  # "<prefix>-gw"
    outer_address: IPv4Address  # on the lab bridge, reachable from the controller
    #: Every address the gateway forwards hosts' SSH ports on (outer_address first).
    outer_addresses: tuple[IPv4Address, ...]
    inner_address: IPv4Address  # on the inner bridge inside the gateway namespace
    veth: str  # our end (root namespace) of the gateway's outer link
    inner_bridge: str  # lives inside the gateway namespace
    nat_chain: str  # our own nat chain in the gateway namespace (DNAT of forwarded ports)


@dataclass(frozen=True, slots=True)
class TestbedPlan:
    """Everything ``up`` creates and ``down`` removes, by name."""

    __test__ = False  # not a pytest test class, despite the name

    prefix: str
    style: TestbedStyle
    subnet: IPv4Network
    inner_subnet: IPv4Network | None
    bridge: str  # the lab bridge in the root namespace
    bridge_address: IPv4Address  # the controller's address on it
    forward_chain: str  # our own filter chain in the root namespace (jumped to from FORWARD)
    hosts: tuple[HostPlan, ...]
    gateway: GatewayPlan | None

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the plan, the gateway first."""
        gw = (self.gateway.netns,) if self.gateway else ()
        return gw + tuple(h.netns for h in self.hosts)

    def host(self, name: str) -> HostPlan:
        """The host called ``name`` (``h1``) or with node id ``name`` (``n1``)."""
        for h in self.hosts:
            if name in (h.name, h.node_id, h.netns):
                return h
        raise PlanError(f"no host {name!r} in the testbed (hosts: h1..h{len(self.hosts)})")


def validate_prefix(prefix: str) -> str:
    """Check that ``prefix`` can name every object (netns, links, bridge, chains)."""
    if not _PREFIX_RE.match(prefix) or len(prefix) > PREFIX_LEN_MAX:
        raise PlanError(
            f"bad testbed prefix {prefix!r}: use 1..{PREFIX_LEN_MAX} lowercase letters and "
            "digits, starting with a letter"
        )
    return prefix


def parse_subnet(text: str, what: str = "--subnet") -> IPv4Network:
    """An IPv4 network from CIDR text, with an error naming the option."""
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise PlanError(f"bad {what} {text!r}: {exc} (example: {DEFAULT_SUBNET})") from exc


def _need_room(net: IPv4Network, last_offset: int, what: str) -> None:
    # The highest address we hand out must stay below the broadcast address.
    if last_offset >= net.num_addresses - 1:
        raise PlanError(
            f"{what} {net} is too small: it needs {last_offset + 2} addresses "
            f"(use a /{min(24, 32 - (last_offset + 2 - 1).bit_length())} or larger)"
        )


def plan_testbed(
    hosts: int,
    style: TestbedStyle = TestbedStyle.PLAIN,
    subnet: str = DEFAULT_SUBNET,
    prefix: str = DEFAULT_PREFIX,
    inner_subnet: str = DEFAULT_INNER_SUBNET,
) -> TestbedPlan:
    """Plan a testbed of ``hosts`` hosts; raises :class:`PlanError` on impossible input."""
    validate_prefix(prefix)
    if not 1 <= hosts <= HOSTS_MAX:
        raise PlanError(f"--hosts must be between 1 and {HOSTS_MAX}, not {hosts}")
    net = parse_subnet(subnet)
    _need_room(net, HOST_OFFSET + hosts, "--subnet")
    bridge_address = net[1]
    upper = prefix.upper()
    gateway: GatewayPlan | None = None
    inner: IPv4Network | None = None
    if style is not TestbedStyle.PLAIN:
        inner = parse_subnet(inner_subnet, "--inner-subnet")
        if inner.overlaps(net):
            raise PlanError(f"--inner-subnet {inner} overlaps --subnet {net}; pick disjoint ranges")
        _need_room(inner, HOST_OFFSET + hosts, "--inner-subnet")
        gateway = GatewayPlan(
            name="gw",
            netns=f"{prefix}-gw",
            outer_address=net[2],
            outer_addresses=tuple(net[2 + k] for k in range(GEE_GATEWAY_ADDRESSES)),
            inner_address=inner[1],
            veth=f"{prefix}-vgw",
            inner_bridge=f"{prefix}-ibr0",
            nat_chain=f"{upper}-DNAT",
        )

    def host(i: int) -> HostPlan:
        # Plain: each host on the lab bridge, SSH straight to it. GEE: hosts on the gateway's
        # inner bridge, SSH to the gateway's forwarded port for that host.
        address = net[HOST_OFFSET + i] if inner is None else inner[HOST_OFFSET + i]
        return HostPlan(
            index=i,
            name=f"h{i}",
            node_id=f"n{i}",
            netns=f"{prefix}-h{i}",
            address=address,
            veth=f"{prefix}-v{i}",
            ssh_host=(
                address
                if gateway is None
                else gateway.outer_addresses[(i - 1) % len(gateway.outer_addresses)]
            ),
            ssh_port=22 if gateway is None else GEE_PORT_BASE + i,
        )

    return TestbedPlan(
        prefix=prefix,
        style=style,
        subnet=net,
        inner_subnet=inner,
        bridge=f"{prefix}-br0",
        bridge_address=bridge_address,
        forward_chain=f"{upper}-FWD",
        hosts=tuple(host(i) for i in range(1, hosts + 1)),
        gateway=gateway,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One route of this machine, as ``ip -j route show table all`` reports it."""

    network: IPv4Network
    dev: str
    table: str


def parse_routes(routes_json: Iterable[dict[str, object]]) -> list[Route]:
    """Routes from ``ip -j -4 route show table all`` output; ``default`` routes are skipped
    (they overlap everything and say nothing about what is in use)."""
    out: list[Route] = []
    for r in routes_json:
        dst = str(r.get("dst", ""))
        if not dst or dst == "default":
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue  # an IPv6 or multicast oddity: not ours to judge
        out.append(Route(net, str(r.get("dev", "")), str(r.get("table", "main"))))
    return out


def overlapping_routes(
    subnet: IPv4Network, routes: Sequence[Route], own_devices: Iterable[str] = ()
) -> list[Route]:
    """The routes of this machine ``subnet`` would collide with, ignoring the testbed's own
    devices (so a second ``up`` of the same testbed is not refused)."""
    own = set(own_devices)
    return [r for r in routes if r.dev not in own and r.network.overlaps(subnet)]


def check_subnet_free(
    subnet: IPv4Network, routes: Sequence[Route], own_devices: Iterable[str] = ()
) -> None:
    """Raise :class:`SubnetOverlapError` naming the colliding routes, if any."""
    clash = overlapping_routes(subnet, routes, own_devices)
    if clash:
        shown = ", ".join(f"{r.network} dev {r.dev or '?'}" for r in clash[:4])
        raise SubnetOverlapError(
            f"subnet {subnet} overlaps existing route(s) on this machine: {shown}; "
            "choose another with --subnet (see `ip route`)"
        )
