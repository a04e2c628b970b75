"""Membership changes as a fault: take nodes out of the cluster's configuration and put them
back (docs/nemesis.md, issue 11).

One occurrence of ``kind: membership``:

- *break*: for each target in turn (leader first if it is one, and with ``transfer: true``
  after handing leadership to the most up-to-date other voter), ``raft member remove`` it,
  wait until the configuration without it is in effect, stop the node and (``wipe: true``,
  the default) delete its data directory: the node is gone, as a decommissioned host is;
- *heal*: start each target again with ``raft serve --join`` (a wiped node learns the
  configuration from the cluster instead of bootstrapping a cluster of its own from
  cluster.yml), ``raft member add`` it (a learner that catches up, then a voter through joint
  consensus), and wait until the configuration's voters are the original ones again.

Every step is bounded (``timeout_s``). The cluster is driven through the ``raft member`` and
``raft transfer-leader`` commands of the controller's own raftlab (the client protocol, the
cluster's client token), so the fault works wherever the workload reaches the nodes: a
``raft cluster up`` directory and inventories (the netns testbed, real hosts).

The plan of an occurrence is pure (:func:`plan_break`, :func:`plan_heal`) and unit-tested;
:class:`MemberAdmin` runs the commands; :func:`restore_membership` is what ``raftlab heal``
does after a crashed controller.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deploy.errors import LabError
from deploy.nemesis.control import ClusterControl, NotSupportedError
from raft.runtime.members import MemberGoal, MemberWaitTimeout, wait_members

#: Environment variable the role's control script and systemd unit turn into ``--join``.
JOIN_ENV = "RAFTLAB_NODE_JOIN"
#: Pause between two polls of the configuration.
POLL_S = 0.5


class MembershipError(LabError):
    """A membership change could not be made or did not complete in time."""


class MembershipUnsupported(MembershipError):
    """The controller's ``raft`` has no membership commands (argparse: invalid choice)."""


class Role(StrEnum):
    VOTER = "voter"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    role: Role
    peer: str = ""
    client: str = ""
    http: str | None = None
    match: int = 0


@dataclass(frozen=True, slots=True)
class Configuration:
    """The configuration in effect on the leader (``raft member list --json``)."""

    leader: str | None
    joint: bool
    members: tuple[Member, ...]
    index: int = 0

    @property
    def voters(self) -> tuple[str, ...]:
        return tuple(sorted(m.id for m in self.members if m.role is Role.VOTER))

    def role_of(self, node_id: str) -> Role | None:
        return next((m.role for m in self.members if m.id == node_id), None)

    def as_view(self) -> dict[str, Any]:
        """The ``member_list`` shape (what :class:`raft.runtime.members.MemberGoal` reads)."""
        return {
            "leader": self.leader,
            "joint": self.joint,
            "voters": list(self.voters),
            "members": [{"id": m.id, "role": m.role.value} for m in self.members],
        }

    @staticmethod
    def from_json(doc: Any) -> Configuration:
        """From ``raft member list --json``; :class:`MembershipError` names what is wrong."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("members"), list):
            raise MembershipError(f"raft member list --json: not a configuration: {doc!r:.300}")
        members = []
        for m in doc["members"]:
            if not isinstance(m, Mapping) or not isinstance(m.get("id"), str):
                raise MembershipError(f"raft member list --json: bad member {m!r:.200}")
            try:
                role = Role(str(m.get("role")))
            except ValueError:
                raise MembershipError(
                    f"raft member list --json: member {m['id']} has role {m.get('role')!r}"
                ) from None
            match = m.get("match")
            members.append(
                Member(
                    m["id"],
                    role,
                    str(m.get("peer") or ""),
                    str(m.get("client") or ""),
                    m.get("http") if isinstance(m.get("http"), str) else None,
                    match if isinstance(match, int) and not isinstance(match, bool) else 0,
                )
            )
        leader = doc.get("leader")
        index = doc.get("index")
        return Configuration(
            leader if isinstance(leader, str) and leader else None,
            bool(doc.get("joint")),
            tuple(members),
            index if isinstance(index, int) and not isinstance(index, bool) else 0,
        )


# -- the plan (pure) ----------------------------------------------------------------------------


class Action(StrEnum):
    TRANSFER = "transfer"  # hand leadership from ``node`` to ``to``
    REMOVE = "remove"  # raft member remove, wait until the configuration is without it
    STOP = "stop"  # stop the node process (graceful)
    WIPE = "wipe"  # delete its data directory
    START_JOIN = "start-join"  # start it with raft serve --join
    ADD = "add"  # raft member add (learner, caught up, voter)
    WAIT_VOTERS = "wait-voters"  # until the voters are ``voters`` and no joint change runs


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    node: str = ""
    to: str = ""
    voters: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.action is Action.TRANSFER:
            return f"transfer {self.node} -> {self.to}"
        if self.action is Action.WAIT_VOTERS:
            return f"wait-voters {','.join(self.voters)}"
        return f"{self.action.value} {self.node}"


def plan_break(
    conf: Configuration, targets: Sequence[str], *, wipe: bool, transfer: bool
) -> list[Step]:
    """The steps that take ``targets`` (node ids) out of ``conf``. Refuses (MembershipError)
    a change that is not safe to make now: a joint change in progress, a target that is not
    a voter, or removals that would leave fewer voters than a majority of ``conf``'s."""
    if conf.joint:
        raise MembershipError("a configuration change is in progress (joint configuration)")
    voters = conf.voters
    if not targets:
        raise MembershipError("membership: no node to remove")
    for t in targets:
        if t not in voters:
            role = conf.role_of(t)
            what = f"a {role.value}" if role is not None else "not a member"
            raise MembershipError(f"{t} is {what}; only voters are removed and re-added")
    if len(set(targets)) != len(targets):
        raise MembershipError(f"membership: a node named twice in {list(targets)}")
    rest = [v for v in voters if v not in targets]
    if len(rest) < len(voters) // 2 + 1:
        raise MembershipError(
            f"membership: removing {', '.join(targets)} leaves {len(rest)} of {len(voters)} "
            "voters, fewer than a majority; remove one node or a minority"
        )
    # The leader goes last: every other removal is decided by a leader that stays.
    order = sorted(targets, key=lambda t: (t == conf.leader, t))
    match = {m.id: m.match for m in conf.members}
    steps: list[Step] = []
    for t in order:
        if t == conf.leader and transfer:
            to = min(rest, key=lambda v: (-match.get(v, 0), v))  # the most up to date
            steps.append(Step(Action.TRANSFER, t, to=to))
        steps.append(Step(Action.REMOVE, t))
        steps.append(Step(Action.STOP, t))
        if wipe:
            steps.append(Step(Action.WIPE, t))
    return steps


def plan_heal(original_voters: Sequence[str], conf: Configuration | None) -> list[Step]:
    """The steps that bring the configuration back to ``original_voters``: each original
    voter missing from ``conf`` (None: all of them, as far as we know) is started with
    ``--join`` and added; a learner left by an interrupted add is added again (the command
    promotes it). Voters that are not original are left alone (another change's)."""
    want = tuple(sorted(original_voters))
    steps: list[Step] = []
    for n in want:
        role = conf.role_of(n) if conf is not None else None
        if role is Role.VOTER:
            continue
        steps.append(Step(Action.START_JOIN, n))
        steps.append(Step(Action.ADD, n))
    steps.append(Step(Action.WAIT_VOTERS, voters=want))
    return steps


# -- where the nodes are ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeAddrs:
    """A node's id in the cluster and its addresses (``host:port``)."""

    id: str
    peer: str
    client: str
    http: str | None


def node_addrs(control: ClusterControl) -> dict[str, NodeAddrs]:
    """Per node of ``control`` (its name there): its node id and addresses, from the local
    cluster's cluster.yml or the inventory's role variables."""
    lc = getattr(control, "lc", None)
    if lc is not None:
        cfg = lc.config()
        return {
            n: NodeAddrs(n, str(a.peer), str(a.client), str(a.http)) for n, a in cfg.nodes.items()
        }
    hv = getattr(control, "vars", None)
    if isinstance(hv, Mapping):
        out = {}
        for host, v in hv.items():
            addr = str(v.get("raft_node_address", host))
            out[str(host)] = NodeAddrs(
                str(v.get("raft_node_id", host)),
                f"{addr}:{int(v.get('raft_node_peer_port', 7000))}",
                f"{addr}:{int(v.get('raft_node_client_port', 7001))}",
                f"{addr}:{int(v.get('raft_node_http_port', 7002))}",
            )
        return out
    raise NotSupportedError(
        f"membership: no addresses for a {getattr(control, 'kind', '?')} cluster control"
    )


def token_file(control: ClusterControl) -> str | None:
    """The client token file of the cluster (client_auth on), for ``raft member``: a local
    cluster's secret, the secret the role keeps next to the inventory, else
    ``$RAFT_CLIENT_TOKEN_FILE``."""
    lc = getattr(control, "lc", None)
    if lc is not None:
        cfg = lc.config()
        return (cfg.client_token_file or cfg.secret_file) if cfg.client_auth else None
    inv = getattr(control, "inventory_dir", None)
    if inv is not None and os.path.exists(os.path.join(str(inv), "secret")):
        return os.path.join(str(inv), "secret")
    return os.environ.get("RAFT_CLIENT_TOKEN_FILE") or None


def start_joining(control: ClusterControl, node: str) -> None:
    """Start ``node`` with ``raft serve --join`` (nothing if it runs). A local cluster passes
    the flag itself; the role's control script and systemd unit turn ``RAFTLAB_NODE_JOIN``
    into it (under systemd the drop-in carrying it is removed once started: a later restart
    of the node, which has data by then, needs no flag)."""
    if control.pid(node) is not None:
        return
    lc = getattr(control, "lc", None)
    if lc is not None:
        lc.start_node(node, ("--join",))
        return
    control.start(node, {JOIN_ENV: "--join"})
    dropin = getattr(control, "_dropin", None)
    systemd = getattr(control, "systemd", None)
    if dropin is not None and systemd is not None and systemd(node):
        control.run(node, f"rm -f {shlex.quote(dropin(node))} && systemctl daemon-reload")


def has_data(control: ClusterControl, node: str) -> bool:
    """Whether the node's data directory holds anything (a wiped node's does not)."""
    d = shlex.quote(control.data_dir(node))
    return control.run(node, f'test -n "$(ls -A {d} 2>/dev/null)"', check=False).ok


def wipe(control: ClusterControl, node: str) -> str:
    """Delete the (stopped) node's data directory; returns its path."""
    d = control.data_dir(node).rstrip("/")
    if not d or d.count("/") < 2:
        raise MembershipError(f"{node}: refusing to wipe data directory {d!r}")
    if control.pid(node) is not None:
        raise MembershipError(f"{node}: still running, its data directory is not wiped")
    control.run(node, f"rm -rf -- {shlex.quote(d)}")
    return d


# -- running the commands ------------------------------------------------------------------------

#: One admin request: (op, node, value, timeout_s) -> (status, value, error). The default sends
#: it with the runtime's client (what ``raft member`` does, without a process per call).
Call = Callable[[str, "str | None", Any, float], tuple[str, Any, str]]


def _client_call(addrs: Sequence[str], token_file: str | None) -> Call:
    def call(op: str, node: str | None, value: Any, timeout_s: float) -> tuple[str, Any, str]:
        import asyncio

        from raft.runtime.client import RaftClient, load_token
        from raft.runtime.config import parse_address_list

        async def one() -> tuple[str, Any, str]:
            async with RaftClient(
                parse_address_list(",".join(addrs)),
                op_timeout_s=timeout_s + 10,
                attempt_timeout_s=timeout_s + 2,
                token=load_token(token_file),
            ) as client:
                resp = await client.admin(op, node, value)
            return resp.status.value, resp.value, resp.error or ""

        try:
            return asyncio.run(one())
        except Exception as exc:  # unreachable, refused token, no answer: said, not raised
            return "unavailable", None, f"{type(exc).__name__}: {exc}"

    return call


class MemberAdmin:
    """The admin operations of ``raft member`` / ``raft transfer-leader`` (client protocol,
    leader hints followed, the cluster's client token) against any member's address."""

    def __init__(
        self, cluster: Sequence[str], token_file: str | None = None, *, call: Call | None = None
    ) -> None:
        self.cluster = list(cluster)
        self._call = call or _client_call(self.cluster, token_file)

    @staticmethod
    def for_control(control: ClusterControl) -> MemberAdmin:
        addrs = node_addrs(control)
        return MemberAdmin([a.client for a in addrs.values()], token_file(control))

    def _op(
        self, op: str, node: str | None = None, value: Any = None, timeout_s: float = 30.0
    ) -> Any:
        from raft.runtime import protocol

        status, out, error = self._call(op, node, value, timeout_s)
        what = f"{op} {node or ''}".strip()
        if status == protocol.Status.OK.value:
            return out
        if status == protocol.Status.BAD_REQUEST.value:
            raise MembershipUnsupported(f"{what}: refused as malformed: {error}")
        if status in (protocol.Status.FAIL.value, protocol.Status.ERROR.value):
            raise MembershipError(f"{what}: {error or status}")
        raise MembershipError(f"{what}: no definite answer ({status}): {error}")

    def configuration(self) -> Configuration:
        from raft.runtime.protocol import OP_MEMBER_LIST

        return Configuration.from_json(self._op(OP_MEMBER_LIST, timeout_s=10.0))

    def remove(self, node_id: str) -> None:
        from raft.runtime.protocol import OP_MEMBER_REMOVE

        self._op(OP_MEMBER_REMOVE, node_id)

    def add(self, a: NodeAddrs, timeout_s: float) -> None:
        """Add-learner (unless it is one), then promote once it caught up (``raft member
        add``); the node answers within 55 s, a longer budget is retried by the caller."""
        from raft.runtime.protocol import OP_MEMBER_ADD_LEARNER, OP_MEMBER_PROMOTE

        if self.configuration().role_of(a.id) is None:
            value = {"peer": a.peer, "client": a.client, "http": a.http}
            self._op(OP_MEMBER_ADD_LEARNER, a.id, value)
        self._op(OP_MEMBER_PROMOTE, a.id, timeout_s=min(55.0, max(1.0, timeout_s)))

    def transfer(self, to: str) -> None:
        from raft.runtime.protocol import OP_TRANSFER_LEADER

        self._op(OP_TRANSFER_LEADER, to)


def _retrying(what: str, fn: Callable[[], Any], deadline: float) -> Any:
    """``fn()`` until it succeeds or ``deadline`` (monotonic) passes: a change refused
    because another is in progress, or made while no leader is known, is tried again."""
    last: Exception | None = None
    while True:
        try:
            return fn()
        except MembershipUnsupported:
            raise
        except MembershipError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise MembershipError(f"{what}: {last}") from None
        time.sleep(POLL_S * 2)


def wait_configuration(
    admin: MemberAdmin, ok: Callable[[Configuration], bool], what: str, deadline: float
) -> Configuration:
    """Poll the configuration until ``ok`` (and no joint change); MembershipError at the
    deadline, with the last configuration seen."""

    def missing(conf: Configuration) -> list[str]:
        if not conf.joint and ok(conf):
            return []
        return [f"voters {', '.join(conf.voters)}" + (" (joint)" if conf.joint else "")]

    return _wait(admin, missing, what, deadline)


def wait_goal(admin: MemberAdmin, goal: MemberGoal, deadline: float) -> Configuration:
    """Poll the configuration until ``goal`` is reached: the test ``raft member wait``
    makes (the grow and shrink playbooks run that command)."""
    return _wait(admin, lambda c: goal.missing(c.as_view()), str(goal), deadline)


def _wait(
    admin: MemberAdmin,
    missing: Callable[[Configuration], list[str]],
    what: str,
    deadline: float,
) -> Configuration:
    """The polling loop of ``raft member wait`` (raft.runtime.members.wait_members) over
    ``admin``: a refusal or no answer is asked again; MembershipUnsupported is not."""
    last: list[Configuration] = []

    def fetch() -> Mapping[str, Any]:
        last[:] = [admin.configuration()]
        return last[0].as_view()

    try:
        wait_members(
            fetch,
            lambda _view: missing(last[0]),
            max(0.0, deadline - time.monotonic()),
            poll_s=POLL_S,
            retry_on=(MembershipError,),
            fatal=(MembershipUnsupported,),
        )
    except MemberWaitTimeout as exc:
        raise MembershipError(f"{what}: {exc}") from None
    return last[0]


def run_steps(
    control: ClusterControl,
    admin: MemberAdmin,
    steps: Sequence[Step],
    ids: Mapping[str, str],
    timeout_s: float,
    done: list[str] | None = None,
) -> dict[str, Any]:
    """Carry out ``steps`` (node ids in them; ``ids`` maps a node id to its name in
    ``control``), each bounded by ``timeout_s``. Appends each finished step to ``done``;
    returns what was seen (transfers, wiped directories, the final voters)."""
    addrs = {a.id: a for a in node_addrs(control).values()}
    seen: dict[str, Any] = {}
    for step in steps:
        _run_step(control, admin, step, ids, addrs, time.monotonic() + timeout_s, seen)
        if done is not None:
            done.append(str(step))
    return seen


def _run_step(
    control: ClusterControl,
    admin: MemberAdmin,
    step: Step,
    ids: Mapping[str, str],
    addrs: Mapping[str, NodeAddrs],
    deadline: float,
    seen: dict[str, Any],
) -> None:
    n = step.node
    if step.action is Action.TRANSFER:
        _retrying(f"transfer leadership to {step.to}", lambda: admin.transfer(step.to), deadline)
        conf = wait_configuration(
            admin, lambda c: c.leader not in (None, n), f"{n} hands over", deadline
        )
        seen.setdefault("transferred", []).append({"from": n, "to": conf.leader})
    elif step.action is Action.REMOVE:
        _retrying(f"remove {n}", lambda: admin.remove(n), deadline)
        conf = wait_goal(admin, MemberGoal(absent=frozenset({n})), deadline)
        seen["voters_after_remove"] = list(conf.voters)
    elif step.action is Action.STOP:
        control.stop(ids[n])
    elif step.action is Action.WIPE:
        seen.setdefault("wiped", {})[n] = wipe(control, ids[n])
    elif step.action is Action.START_JOIN:
        start_joining(control, ids[n])
    elif step.action is Action.ADD:

        def add() -> None:
            # An earlier attempt may have added it (the answer was lost): done then.
            if admin.configuration().role_of(n) is not Role.VOTER:
                admin.add(addrs[n], deadline - time.monotonic())

        _retrying(f"add {n}", add, deadline)
    elif step.action is Action.WAIT_VOTERS:
        conf = wait_goal(admin, MemberGoal(voters=frozenset(step.voters)), deadline)
        seen["voters"] = list(conf.voters)


def restore_membership(
    control: ClusterControl, log: Callable[[str], None] = lambda _m: None, timeout_s: float = 60
) -> list[str]:
    """``raftlab heal``: every node of ``control`` that the configuration in effect lacks
    (or holds as a learner) is started with ``--join`` and added back. Nothing when the
    cluster has no membership commands or answers no configuration (said in the log)."""
    try:
        admin = MemberAdmin.for_control(control)
        ids = {a.id: n for n, a in node_addrs(control).items()}
        conf = wait_configuration(admin, lambda _c: True, "configuration", time.monotonic() + 10)
    except (MembershipError, NotSupportedError) as exc:
        log(f"membership not checked: {exc}")
        return []
    steps = plan_heal(sorted(ids), conf)
    if len(steps) == 1:
        return []
    done: list[str] = []
    run_steps(control, admin, steps, ids, timeout_s, done)
    for s in done:
        log(f"membership: {s}")
    return [f"membership: {s}" for s in done if not s.startswith("wait-")]


def missing_voters(control: ClusterControl, timeout_s: float = 10.0) -> list[str] | None:
    """Nodes of ``control`` that are not voters of the configuration in effect (None: no
    configuration could be read within ``timeout_s``)."""
    try:
        admin = MemberAdmin.for_control(control)
        conf = wait_configuration(
            admin, lambda _c: True, "configuration", time.monotonic() + timeout_s
        )
    except (MembershipError, NotSupportedError):
        return None
    voters = set(conf.voters)
    return sorted(n for n, a in node_addrs(control).items() if a.id not in voters)
