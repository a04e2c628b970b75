"""The membership fault without a cluster: its spec, its plan (what is removed in which order,
who gets leadership, what heal puts back), the ``raft member`` commands it runs, and one
whole occurrence against an in-memory cluster (remove, stop, wipe; start --join, add)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from deploy.nemesis import FaultSpecError, parse_fault
from deploy.nemesis import membership as m
from deploy.nemesis.faults import FaultContext, start_fault
from deploy.remote import CommandResult
from raft.runtime.members import MemberGoal


def conf(
    voters: str = "n1,n2,n3", learners: str = "", leader: str | None = "n1", joint: bool = False
) -> m.Configuration:
    match = {"n1": 100, "n2": 90, "n3": 95, "n4": 80, "n5": 99}
    members = [m.Member(v, m.Role.VOTER, match=match.get(v, 0)) for v in voters.split(",") if v]
    members += [m.Member(v, m.Role.LEARNER) for v in learners.split(",") if v]
    return m.Configuration(leader, joint, tuple(members), 7)


def steps(plan: list[m.Step]) -> list[str]:
    return [str(s) for s in plan]


# -- spec ----------------------------------------------------------------------------------------


def test_membership_parses_with_defaults_and_targets_one_node_or_a_minority() -> None:
    f = parse_fault({"kind": "membership", "target": "leader", "duration_s": 3})
    assert f.params == {"wipe": True, "transfer": False, "timeout_s": 60.0}
    for target in ("random", "leader", "minority", "nodes:n2"):
        assert parse_fault({"kind": "membership", "target": target}).kind == "membership"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"kind": "membership", "target": "all"}, "membership cannot remove all nodes"),
        ({"kind": "membership", "target": "majority"}, "allowed: leader, minority, nodes, random"),
        ({"kind": "membership", "params": {"timeout_s": 0.5}}, "params.timeout_s: 0.5 must be"),
        ({"kind": "membership", "params": {"keep": 1}}, "params: unknown keep for membership"),
    ],
)
def test_bad_membership_specs_name_the_field(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(FaultSpecError) as e:
        parse_fault(raw)
    assert needle in str(e.value)


# -- plan ----------------------------------------------------------------------------------------


def test_a_follower_is_removed_stopped_and_wiped() -> None:
    assert steps(m.plan_break(conf(), ["n2"], wipe=True, transfer=False)) == [
        "remove n2",
        "stop n2",
        "wipe n2",
    ]
    assert steps(m.plan_break(conf(), ["n2"], wipe=False, transfer=True)) == [
        "remove n2",
        "stop n2",
    ]


def test_the_leader_removes_itself_or_hands_over_to_the_most_up_to_date_voter_first() -> None:
    assert steps(m.plan_break(conf(), ["n1"], wipe=True, transfer=False))[0] == "remove n1"
    five = conf("n1,n2,n3,n4,n5")
    plan = steps(m.plan_break(five, ["n1"], wipe=False, transfer=True))
    assert plan == ["transfer n1 -> n5", "remove n1", "stop n1"]  # n5 has the highest match


def test_the_leader_goes_last_when_a_minority_is_removed() -> None:
    five = conf("n1,n2,n3,n4,n5", leader="n2")
    plan = steps(m.plan_break(five, ["n2", "n4"], wipe=False, transfer=True))
    assert plan == ["remove n4", "stop n4", "transfer n2 -> n1", "remove n2", "stop n2"]


@pytest.mark.parametrize(
    ("c", "targets", "needle"),
    [
        (conf(joint=True), ["n2"], "a configuration change is in progress"),
        (conf(learners="n4"), ["n4"], "n4 is a learner"),
        (conf(), ["n7"], "n7 is not a member"),
        (conf(), ["n2", "n3"], "leaves 1 of 3 voters, fewer than a majority"),
        (conf(), [], "no node to remove"),
    ],
)
def test_unsafe_removals_are_refused(c: m.Configuration, targets: list[str], needle: str) -> None:
    with pytest.raises(m.MembershipError) as e:
        m.plan_break(c, targets, wipe=True, transfer=False)
    assert needle in str(e.value)


def test_heal_adds_back_the_missing_voters_and_promotes_a_learner_left_behind() -> None:
    now = conf("n1,n3", learners="n2")
    assert steps(m.plan_heal(["n1", "n2", "n3"], now)) == [
        "start-join n2",
        "add n2",
        "wait-voters n1,n2,n3",
    ]
    assert steps(m.plan_heal(["n1", "n2", "n3"], conf())) == ["wait-voters n1,n2,n3"]
    # No configuration could be read: every original voter is (re)started and added (the
    # add of a node that is a voter already is a no-op).
    assert steps(m.plan_heal(["n2", "n1"], None))[:2] == ["start-join n1", "add n1"]


def test_configuration_from_member_list_json() -> None:
    doc = {
        "leader": "n1",
        "joint": False,
        "index": 12,
        "members": [
            {"id": "n1", "role": "voter", "peer": "h:1", "client": "h:2", "http": None, "match": 9},
            {"id": "n4", "role": "learner", "peer": "h:4", "client": "h:5", "http": "h:6"},
        ],
    }
    c = m.Configuration.from_json(doc)
    assert c.voters == ("n1",) and c.role_of("n4") is m.Role.LEARNER and c.index == 12
    assert c.members[0].match == 9 and c.members[1].http == "h:6"
    with pytest.raises(m.MembershipError, match="member n1 has role 'boss'"):
        m.Configuration.from_json({"members": [{"id": "n1", "role": "boss"}]})
    with pytest.raises(m.MembershipError, match="not a configuration"):
        m.Configuration.from_json(["n1"])


# -- the commands --------------------------------------------------------------------------------


def test_member_admin_sends_the_admin_ops_and_names_refusals() -> None:
    calls: list[tuple[str, str | None, Any]] = []
    learner = {"leader": "n1", "members": [{"id": "n4", "role": "learner"}]}
    answers = iter(
        [
            ("ok", {"leader": "n1", "joint": False, "members": []}, ""),
            ("fail", None, "another configuration change is in progress"),
            ("timeout", None, "no leader"),
            ("ok", {"leader": "n1", "members": []}, ""),  # add: not a member yet
            ("ok", learner, ""),  # add-learner
            ("ok", learner, ""),  # promote
            ("ok", learner, ""),  # second add: it is a learner already
            ("ok", learner, ""),  # so only promote
            ("bad_request", None, "unknown op member_list"),
        ]
    )

    def call(op: str, node: str | None, value: Any, timeout_s: float) -> tuple[str, Any, str]:
        calls.append((op, node, value))
        return next(answers)

    admin = m.MemberAdmin(["10.0.0.1:7001"], call=call)
    assert admin.configuration().leader == "n1"
    with pytest.raises(m.MembershipError, match="member_remove n2: another configuration"):
        admin.remove("n2")
    with pytest.raises(m.MembershipError, match=r"no definite answer \(timeout\)"):
        admin.transfer("n3")
    a = m.NodeAddrs("n4", "h:7000", "h:7001", "h:7002")
    admin.add(a, 30)
    admin.add(a, 30)
    assert calls[3:] == [
        ("member_list", None, None),
        ("member_add_learner", "n4", {"peer": "h:7000", "client": "h:7001", "http": "h:7002"}),
        ("member_promote", "n4", None),
        ("member_list", None, None),
        ("member_promote", "n4", None),
    ]
    with pytest.raises(m.MembershipUnsupported, match="unknown op"):
        admin.configuration()


def test_the_fault_waits_with_the_goal_raft_member_wait_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault's waits are MemberGoal's (as the playbooks' `raft member wait`): a joint
    configuration is not done, the deadline names what was missing, and a cluster without
    membership commands is not waited for."""
    monkeypatch.setattr(m, "POLL_S", 0.01)
    answers = iter(
        [("timeout", None, "no leader")]
        + [("ok", {"leader": "n1", "joint": True, "voters": [], "members": []}, "")] * 3
        + [("ok", {"leader": "n1", "members": [{"id": "n2", "role": "voter"}]}, "")]
    )
    admin = m.MemberAdmin(["h:1"], call=lambda *_a: next(answers))
    goal = MemberGoal(voters=frozenset({"n2"}))
    assert m.wait_goal(admin, goal, time.monotonic() + 30).voters == ("n2",)
    stuck = m.MemberAdmin(
        ["h:1"],
        call=lambda *_a: ("ok", {"leader": "n1", "joint": True, "members": []}, ""),
    )
    with pytest.raises(m.MembershipError) as e:
        m.wait_goal(stuck, goal, time.monotonic() + 0.1)
    assert str(e.value).startswith("voters include n2; no joint configuration: not reached")
    assert str(e.value).endswith("a joint configuration is in progress; n2 not a voter")
    old = m.MemberAdmin(["h:1"], call=lambda *_a: ("bad_request", None, "unknown op"))
    with pytest.raises(m.MembershipUnsupported):
        m.wait_goal(old, goal, time.monotonic() + 30)


# -- one occurrence against an in-memory cluster -------------------------------------------------


class FakeCluster(m.MemberAdmin):
    """A cluster's configuration in memory, changed by the admin commands, and the hosts'
    processes and data directories (a ClusterControl of the inventory shape)."""

    kind = "inventory"
    own_network = True

    def __init__(self, hosts: int = 3) -> None:
        super().__init__([])
        self.vars = {
            f"h{i}": {"raft_node_id": f"n{i}", "raft_node_address": f"10.9.0.{i}"}
            for i in range(1, hosts + 1)
        }
        self.voters = [f"n{i}" for i in range(1, hosts + 1)]
        self.leader_id = "n1"
        self.running = {h: True for h in self.vars}
        self.joining: set[str] = set()
        self.data = {h: True for h in self.vars}
        self.log: list[str] = []
        self.refuse_once = {"remove"}

    # admin
    def configuration(self) -> m.Configuration:
        return m.Configuration(
            self.leader_id, False, tuple(m.Member(v, m.Role.VOTER) for v in self.voters)
        )

    def remove(self, node_id: str) -> None:
        if "remove" in self.refuse_once:  # as while another change commits: tried again
            self.refuse_once.discard("remove")
            raise m.MembershipError("another configuration change is in progress")
        self.log.append(f"remove {node_id}")
        self.voters.remove(node_id)
        if node_id == self.leader_id:
            self.leader_id = self.voters[0]

    def add(self, a: m.NodeAddrs, timeout_s: float) -> None:
        host = {v["raft_node_id"]: h for h, v in self.vars.items()}[a.id]
        assert self.running[host] and host in self.joining, "added before it runs with --join"
        assert a.peer == f"{self.vars[host]['raft_node_address']}:7000"
        self.log.append(f"add {a.id}")
        self.voters.append(a.id)

    def transfer(self, to: str) -> None:
        self.log.append(f"transfer {to}")
        self.leader_id = to

    # control
    def nodes(self) -> list[str]:
        return list(self.vars)

    def leader(self) -> str | None:
        return next(h for h, v in self.vars.items() if v["raft_node_id"] == self.leader_id)

    def pid(self, node: str) -> int | None:
        return 100 if self.running[node] else None

    def stop(self, node: str) -> None:
        self.log.append(f"stop {node}")
        self.running[node] = False

    def start(self, node: str, env: Mapping[str, str] | None = None) -> None:
        self.log.append(f"start {node} {dict(env or {})}")
        self.running[node] = True
        if (env or {}).get(m.JOIN_ENV) == "--join":
            self.joining.add(node)

    def data_dir(self, node: str) -> str:
        return f"/var/lib/raftlab/{self.vars[node]['raft_node_id']}"

    def run(self, node: str, command: str, *, check: bool = True, timeout_s: float = 60) -> Any:
        self.log.append(f"run {node}: {command}")
        if command.startswith("rm -rf"):
            self.data[node] = False
        return CommandResult(node, command, 0, "", "")


def test_one_occurrence_removes_and_wipes_then_heal_rejoins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCluster()
    monkeypatch.setattr(m.MemberAdmin, "for_control", staticmethod(lambda _c: fake))
    monkeypatch.setattr(m, "POLL_S", 0.01)
    spec = parse_fault(
        {"kind": "membership", "target": "leader", "params": {"transfer": True, "timeout_s": 5}}
    )
    ctx = FaultContext(fake, random.Random(1), 1)  # type: ignore[arg-type]
    active = start_fault(ctx, spec, ["h1"])
    # Equal match indexes: the first remaining voter by name gets leadership.
    assert fake.log[:2] == ["transfer n2", "remove n1"]
    assert "stop h1" in fake.log and not fake.data["h1"]
    assert fake.log[-1] == "run h1: rm -rf -- /var/lib/raftlab/n1"
    assert active.observed["voters_before"] == ["n1", "n2", "n3"]
    assert active.observed["voters_after_remove"] == ["n2", "n3"]
    assert active.observed["wiped"] == {"n1": "/var/lib/raftlab/n1"}
    assert active.observed["steps"][-1] == "wipe n1"
    fake.log.clear()
    healed = active.heal()
    assert fake.log == ["start h1 {'RAFTLAB_NODE_JOIN': '--join'}", "add n1"]
    assert healed["restored"] is True and sorted(healed["voters"]) == ["n1", "n2", "n3"]


def test_a_break_that_fails_half_way_puts_the_node_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster()
    monkeypatch.setattr(m.MemberAdmin, "for_control", staticmethod(lambda _c: fake))
    monkeypatch.setattr(m, "POLL_S", 0.01)

    def broken_wipe(control: Any, node: str) -> str:
        raise m.MembershipError(f"{node}: disk says no")

    monkeypatch.setattr(m, "wipe", broken_wipe)
    spec = parse_fault({"kind": "membership", "target": "nodes:h2", "params": {"timeout_s": 2}})
    with pytest.raises(m.MembershipError, match="h2: disk says no"):
        start_fault(FaultContext(fake, random.Random(1), 1), spec, ["h2"])  # type: ignore[arg-type]
    assert sorted(fake.voters) == ["n1", "n2", "n3"] and fake.running["h2"]
    assert fake.log[-1] == "add n2"


def test_wipe_refuses_a_running_node_or_a_shallow_path(tmp_path: Path) -> None:
    fake = FakeCluster()
    with pytest.raises(m.MembershipError, match="still running"):
        m.wipe(fake, "h1")  # type: ignore[arg-type]
    fake.running["h1"] = False
    fake.vars["h1"]["raft_node_id"] = ""
    fake.data_dir = lambda _n: "/"  # type: ignore[method-assign]
    with pytest.raises(m.MembershipError, match="refusing to wipe"):
        m.wipe(fake, "h1")  # type: ignore[arg-type]
