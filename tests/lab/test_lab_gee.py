"""The GEE-style testbed: node hosts reachable only through a gateway's forwarded SSH
ports, deployed by the same site.yml, checked by testinfra, used from inside the slice, and
removed without a trace. Needs root; CI runs it as root."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest
from labkit import Lab, bring_up, lab_tmpdir, leftovers, run_testinfra

from deploy.remote import Remote
from deploy.testbed import Testbed, TestbedState

pytestmark = [pytest.mark.lab, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tmp = lab_tmpdir("gee")
    state = TestbedState(
        prefix="rltg",
        style="gee",
        subnet="10.79.1.0/24",
        inner_subnet="10.79.2.0/24",
        hosts=3,
        inventory_dir=str(tmp / "inventory"),
    )
    try:
        lab = bring_up(tmp, state)
        yield lab
    finally:
        Testbed(tmp / "state").down()
        shutil.rmtree(tmp, ignore_errors=True)


def test_only_the_gateway_is_reachable_from_the_controller(lab: Lab) -> None:
    assert lab.plan.gateway is not None
    with pytest.raises(OSError):
        socket.create_connection((str(lab.plan.hosts[0].address), 22), timeout=1.0).close()
    with Remote.from_inventory(lab.inventory) as remote:
        names = remote.run_all(["gw", "h1", "h2", "h3"], "hostname")
    assert {h: r.stdout.strip() for h, r in names.items()} == {
        "gw": "gw",
        "h1": "h1",
        "h2": "h2",
        "h3": "h3",
    }


def test_site_deploys_through_the_gateway(lab: Lab) -> None:
    lab.playbook("site.yml").assert_ok()


def test_testinfra_host_checks_pass_through_the_gateway(lab: Lab) -> None:
    proc = run_testinfra(lab)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_write_and_read_from_inside_the_slice(lab: Lab) -> None:
    raft = "/opt/raftlab/venv/bin/raft"
    addrs = lab.client_addresses()
    token = ["--token-file", "/etc/raftlab/secret"]  # the role turns client_auth on
    with Remote.from_inventory(lab.inventory) as remote:
        remote.run("h1", [raft, "client", *token, "--cluster", addrs, "put", "gee-k", "gee-v"])
        got = remote.run("h3", [raft, "client", *token, "--cluster", addrs, "get", "gee-k"])
    assert got.stdout.strip() == "gee-v"


def test_down_leaves_the_machine_as_it_was(lab: Lab) -> None:
    assert lab.bed.down() is True
    assert leftovers(lab) == []
