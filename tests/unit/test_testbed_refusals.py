"""The testbed refuses clearly, before touching anything: not root, a tool missing (naming the
Debian package), a state directory the hosts would hide, a second testbed with other
parameters. Runs without root (the checks come first)."""

from __future__ import annotations

from collections.abc import Callable
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


def recorded_testbed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_run: Callable[..., str]
) -> Testbed:
    """A testbed whose state is recorded, with every command going to ``fake_run``; every
    link it lists is reported present."""
    monkeypatch.setattr(bedmod, "require_root_and_tools", lambda: {})
    monkeypatch.setattr(bedmod, "_run", fake_run)
    monkeypatch.setattr(bedmod, "_ok", lambda argv: argv[:3] == ["ip", "link", "show"])
    monkeypatch.setattr(Testbed, "_close_shared_ssh", staticmethod(lambda plan: None))
    monkeypatch.setattr(Testbed, "_stop_hosts", lambda self, procs: None)
    monkeypatch.setattr(Testbed, "_kill_netns_processes", staticmethod(lambda ns: None))
    bed = Testbed(tmp_path / "state")
    (tmp_path / "state").mkdir()
    bed.state_file.write_text(state(tmp_path).to_json())
    return bed


def test_down_tolerates_a_link_the_kernel_removes_after_its_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Deleting a namespace removes its veth pair in deferred kernel work: a host-side link
    that `ip link show` still listed can be gone by the time `ip link del` runs (a CI
    teardown failed with `Cannot find device "rle-v2"`). That is the state down() wants, so
    it goes on and removes the rest."""
    deleted: list[str] = []

    def fake_run(argv: list[str], check: bool = True, input_text: str | None = None) -> str:
        if argv[:3] == ["ip", "link", "del"]:
            if argv[3].endswith("-v2"):  # listed a moment ago, gone now
                raise bedmod.TestbedCommandError(argv, 1, f'Cannot find device "{argv[3]}"')
            deleted.append(argv[3])
        return ""

    bed = recorded_testbed(monkeypatch, tmp_path, fake_run)
    assert bed.down() is True
    assert deleted == ["rlu-br0", "rlu-v1", "rlu-v3"]
    assert not (tmp_path / "state").exists()


def test_down_still_reports_a_link_it_cannot_remove(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fake_run(argv: list[str], check: bool = True, input_text: str | None = None) -> str:
        if argv[:3] == ["ip", "link", "del"]:
            raise bedmod.TestbedCommandError(argv, 2, "RTNETLINK answers: Operation not permitted")
        return ""

    bed = recorded_testbed(monkeypatch, tmp_path, fake_run)
    with pytest.raises(bedmod.TestbedCommandError, match="not permitted"):
        bed.down()
