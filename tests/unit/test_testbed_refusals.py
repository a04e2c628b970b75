"""The testbed refuses clearly, before touching anything: not root, a tool missing (naming the
Debian package), a state directory the hosts would hide, a second testbed with other
parameters. Runs without root (the checks come first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.testbed import bed as bedmod
from deploy.testbed.bed import (
    MissingToolError,
    NotRootError,
    Testbed,
    TestbedConflictError,
    TestbedState,
    require_root_and_tools,
)


def state(tmp_path: Path, **changes: object) -> TestbedState:
    st = TestbedState(
        prefix="rlu",
        style="plain",
        subnet="10.79.9.0/24",
        inner_subnet="10.79.10.0/24",
        hosts=3,
        inventory_dir=str(tmp_path / "inv"),
    )
    for k, v in changes.items():
        setattr(st, k, v)
    return st


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bedmod.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root"):
        require_root_and_tools()


def test_missing_tool_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bedmod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(bedmod, "find_tool", lambda name: None if name == "sshd" else "/x")
    with pytest.raises(MissingToolError, match=r"sshd \(Debian package openssh-server\)"):
        require_root_and_tools()


def test_state_dir_under_a_private_mount_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bedmod, "require_root_and_tools", lambda: {})
    with pytest.raises(TestbedConflictError, match="mounts"):
        Testbed(Path("/tmp/raftlab-state")).up(state(tmp_path))
    assert not Path("/tmp/raftlab-state").exists()


def test_second_testbed_with_other_parameters_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bedmod, "require_root_and_tools", lambda: {})
    monkeypatch.setattr(bedmod, "_run", lambda argv, check=True, input_text=None: "[]")
    monkeypatch.setattr(bedmod, "PRIVATE_TMPFS", ())  # tmp_path lives under /tmp
    bed = Testbed(tmp_path / "state")
    (tmp_path / "state").mkdir()
    bed.state_file.write_text(state(tmp_path).to_json())
    with pytest.raises(TestbedConflictError, match="other parameters"):
        bed.up(state(tmp_path, hosts=5))


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    st = state(tmp_path)
    st.processes["h1"] = bedmod.HostProcess(launcher=10, init=11)
    st.created_mountpoints.append("/etc/raftlab")
    again = TestbedState.from_json(st.to_json())
    assert again == st
    assert again.plan().hosts[0].netns == "rlu-h1"
