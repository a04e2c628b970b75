"""``raft member wait`` and what it shares with the lab (docs/membership.md): the goal test
(:class:`MemberGoal`: voters present, removed nodes absent, no joint configuration), the
polling loop (:func:`wait_members`: retries what may pass, gives up at the deadline naming
what was missing), and the command against a real in-process node (exit 0 reached, 1 not
reached in time, 2 bad usage)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from single_node import serving, single_node_config

from raft.runtime.client import RaftClient
from raft.runtime.members import MemberGoal, MemberWaitTimeout, wait_members
from raft.runtime.protocol import OP_MEMBER_ADD_LEARNER, OP_MEMBER_REMOVE, Status


def view(voters: str, learners: str = "", joint: bool = False) -> dict[str, Any]:
    vs, ls = [v for v in voters.split(",") if v], [v for v in learners.split(",") if v]
    members = [{"id": v, "role": "voter"} for v in vs] + [{"id": v, "role": "learner"} for v in ls]
    return {"leader": "n1", "joint": joint, "voters": vs, "members": members}


def test_goal_names_what_is_missing_until_the_change_is_complete() -> None:
    back = MemberGoal(voters=frozenset({"n3"}))
    assert back.missing(view("n1,n2", "n3")) == ["n3 not a voter"]  # still a learner
    assert back.missing(view("n1,n2,n3", joint=True)) == ["a joint configuration is in progress"]
    assert back.missing(view("n1,n2,n3")) == []
    gone = MemberGoal(absent=frozenset({"n2", "n4"}))
    assert gone.missing(view("n1,n3", "n4")) == ["n4 still a member"]  # learners count
    assert gone.missing(view("n1,n3")) == []
    both = MemberGoal(voters=frozenset({"n5"}), absent=frozenset({"n2"}))
    assert both.missing(view("n1,n2", joint=True)) == [
        "a joint configuration is in progress",
        "n5 not a voter",
        "n2 still a member",
    ]
    assert str(both) == "voters include n5; n2 not a member; no joint configuration"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_wait_retries_what_may_pass_and_names_the_last_thing_missing() -> None:
    clock = FakeClock()
    answers: list[Any] = [
        ConnectionError("no leader"),
        view("n1,n2", "n3"),
        view("n1,n2,n3", joint=True),
        view("n1,n2,n3"),
    ]

    def fetch() -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    goal = MemberGoal(voters=frozenset({"n3"}))
    got = wait_members(
        fetch, goal.missing, 10, poll_s=0.5, retry_on=(OSError,), clock=clock, sleep=clock.sleep
    )
    assert got["voters"] == ["n1", "n2", "n3"] and clock.now == 1.5 and not answers

    clock = FakeClock()
    with pytest.raises(MemberWaitTimeout, match=r"within 2 s: n3 not a voter$"):
        wait_members(lambda: view("n1,n2", "n3"), goal.missing, 2, clock=clock, sleep=clock.sleep)
    assert clock.now == 2.0
    clock = FakeClock()
    with pytest.raises(MemberWaitTimeout, match="no configuration read: no leader"):
        wait_members(fetch_down, goal.missing, 1, clock=clock, sleep=clock.sleep)


def fetch_down() -> Any:
    raise ConnectionError("no leader")


def test_wait_does_not_retry_what_cannot_pass() -> None:
    class Unsupported(ValueError):
        pass

    def fetch() -> Any:
        raise Unsupported("unknown op member_list")

    goal = MemberGoal()
    with pytest.raises(KeyError):  # not in retry_on
        wait_members(lambda: {}["x"], goal.missing, 5, retry_on=(ValueError,))
    with pytest.raises(Unsupported):  # in retry_on, but fatal
        wait_members(fetch, goal.missing, 5, retry_on=(ValueError,), fatal=(Unsupported,))


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raft.cli",
        "member",
        "wait",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_raft_member_wait_on_a_real_node(tmp_path: Path) -> None:
    cfg = single_node_config(tmp_path)
    addr = str(cfg.nodes["n1"].client)
    n2 = {"peer": "127.0.0.2:1", "client": "127.0.0.2:2", "http": None}

    async def go() -> None:
        node, server = await serving(cfg)
        try:
            rc, out, _ = await _cli("--voter", "n1", "--cluster", addr, "--json")
            assert rc == 0 and json.loads(out)["voters"] == ["n1"]
            async with RaftClient([cfg.nodes["n1"].client], op_timeout_s=20) as c:
                r = await c.admin(OP_MEMBER_ADD_LEARNER, "n2", n2)
                assert r.status is Status.OK, r
                # n2 never runs: it stays a learner, and the wait says so at its deadline.
                rc, _, err = await _cli("--voter", "n2", "--cluster", addr, "--timeout", "1.5")
                assert rc == 1, err
                assert "raft member wait: voters include n2; no joint configuration:" in err
                assert err.strip().endswith("not reached within 1.5 s: n2 not a voter")
                rc, _, err = await _cli("--absent", "n2", "--cluster", addr, "--timeout", "1")
                assert rc == 1 and "n2 still a member" in err
                # Waiting while the change is made: the wait returns once it is in effect.
                waiting = asyncio.create_task(
                    _cli("--absent", "n2", "--voter", "n1", "--cluster", addr, "--timeout", "30")
                )
                await asyncio.sleep(0.5)
                r = await c.admin(OP_MEMBER_REMOVE, "n2")
                assert r.status is Status.OK, r
                rc, out, err = await waiting
                assert rc == 0, err
                assert out.startswith("reached: voters include n1; n2 not a member;")
                assert "n2" not in out.split("\n", 1)[1]  # the member table
        finally:
            await server.stop()
            await node.stop()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--voter", "n1", "--absent", "n1"], "n1 cannot be both --voter and --absent"),
        (["--voter", "bad id"], "ID"),
        (["--timeout", "0"], "--timeout must be in (0, 3600] seconds"),
    ],
)
def test_raft_member_wait_refuses_bad_usage(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from raft.cli import main

    assert main(["member", "wait", *args, "--cluster", "127.0.0.1:1"]) == 2
    assert needle in capsys.readouterr().err
