"""The testbed sizes the kernel's ARP table (one for all namespaces) for its host mesh: at
the default limit of 1024 entries a 100-host cluster overflowed it and SSH to some hosts
failed with "No route to host"."""

from __future__ import annotations

from deploy.testbed.bed import neighbour_thresholds

DEFAULTS = {"gc_thresh2": 512, "gc_thresh3": 1024}


def test_a_hundred_hosts_get_room_for_their_full_mesh() -> None:
    got = neighbour_thresholds(100, DEFAULTS)
    # every host knows its 99 peers and the bridge; the controller knows all 100 hosts
    mesh = 100 * 100 + 100
    assert got["gc_thresh3"] >= 2 * mesh
    assert mesh <= got["gc_thresh2"] < got["gc_thresh3"]


def test_small_testbeds_leave_the_defaults_alone() -> None:
    assert neighbour_thresholds(5, DEFAULTS) == {}
    assert neighbour_thresholds(15, DEFAULTS) == {}


def test_limits_are_only_raised_never_lowered() -> None:
    big = {"gc_thresh2": 100_000, "gc_thresh3": 200_000}
    assert neighbour_thresholds(100, big) == {}
    partly = neighbour_thresholds(40, {"gc_thresh2": 100_000, "gc_thresh3": 1024})
    assert set(partly) == {"gc_thresh3"} and partly["gc_thresh3"] > 1024
