"""The address book of a running cluster: every member's peer, client and HTTP address.

The book travels with the configuration, never beside it (docs/membership.md): a
configuration change that adds a node carries the new node's addresses in its
``ConfChange.context`` (so every node applying the entry learns them from the log), and each
snapshot carries the whole book next to its ConfState (so a node that catches up by snapshot,
or restarts from one, learns it too). cluster.yml's ``nodes:`` is only the book a brand-new
cluster starts from; once the log or a snapshot holds a configuration, that wins.

Wire form (JSON in a context, msgpack in a snapshot): ``{id: {"peer": "h:p", "client": "h:p",
"http": "h:p" | None}}``. Decoding validates every field and raises :class:`MembersError`.

Also here, for the admin side: :class:`MemberGoal` and :func:`wait_members`, the one way to
wait until a change is in effect (``raft member wait``, the lab's membership fault, the
grow/shrink playbooks through that command).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raft.runtime.config import ConfigFileError, NodeAddresses, check_node_id, parse_address
from raft.runtime.transport import Address

MEMBERS_MAX = 1024
"""Entries accepted in one book (a bound on what a context or snapshot may make us build)."""


class MembersError(ValueError):
    """An address book (from a conf change context, a snapshot or a request) is malformed."""


@dataclass(frozen=True, slots=True)
class MemberAddrs:
    """Where one member listens. ``http`` is optional for members added at run time."""

    peer: Address
    client: Address
    http: Address | None = None

    def to_wire(self) -> dict[str, str | None]:
        return {
            "peer": str(self.peer),
            "client": str(self.client),
            "http": str(self.http) if self.http is not None else None,
        }

    @classmethod
    def of(cls, addrs: NodeAddresses) -> MemberAddrs:
        return cls(addrs.peer, addrs.client, addrs.http)


Book = dict[str, MemberAddrs]


def book_of(nodes: dict[str, NodeAddresses]) -> Book:
    """The book cluster.yml's ``nodes:`` describes."""
    return {nid: MemberAddrs.of(a) for nid, a in nodes.items()}


def member_from_wire(nid: object, doc: object, what: str = "member") -> tuple[str, MemberAddrs]:
    try:
        node = check_node_id(nid, what)
        if not isinstance(doc, dict):
            raise MembersError(f"{what} {node}: expected {{peer, client, http}}")
        extra = sorted(str(k) for k in set(doc) - {"peer", "client", "http"})
        if extra:
            raise MembersError(f"{what} {node}: unknown field(s) {', '.join(extra)}")
        http = doc.get("http")
        return node, MemberAddrs(
            peer=parse_address(doc.get("peer"), f"{what} {node}: peer"),
            client=parse_address(doc.get("client"), f"{what} {node}: client"),
            http=None if http is None else parse_address(http, f"{what} {node}: http"),
        )
    except ConfigFileError as exc:
        raise MembersError(str(exc)) from None


def book_to_wire(book: Book) -> dict[str, dict[str, str | None]]:
    return {nid: a.to_wire() for nid, a in sorted(book.items())}


def book_from_wire(doc: object, what: str = "address book") -> Book:
    if not isinstance(doc, dict):
        raise MembersError(f"{what}: expected a map of node id to addresses")
    if len(doc) > MEMBERS_MAX:
        raise MembersError(f"{what}: {len(doc)} members exceed the limit of {MEMBERS_MAX}")
    return dict(member_from_wire(nid, a, what) for nid, a in doc.items())


def encode_context(book: Book) -> str:
    """A ConfChange context carrying the addresses of the nodes the change adds."""
    return json.dumps({"members": book_to_wire(book)}, sort_keys=True, separators=(",", ":"))


def decode_context(context: str) -> Book:
    """The addresses a ConfChange context carries (an empty context carries none)."""
    if not context:
        return {}
    try:
        doc: Any = json.loads(context)
    except ValueError as exc:
        raise MembersError(f"conf change context is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MembersError("conf change context must be a JSON object")
    return book_from_wire(doc.get("members", {}), "conf change context")


def check_addresses_free(book: Book, nid: str, new: MemberAddrs) -> None:
    """Refuse addresses another member already listens on (two nodes on one port would
    each receive the other's traffic)."""
    mine = {new.peer, new.client} | ({new.http} if new.http is not None else set())
    for other, a in sorted(book.items()):
        if other == nid:
            continue
        theirs = {a.peer, a.client} | ({a.http} if a.http is not None else set())
        clash = mine & theirs
        if clash:
            used = ", ".join(sorted(str(x) for x in clash))
            raise MembersError(f"address {used} is already used by {other}")


# -- waiting for a configuration (admin side) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberGoal:
    """A configuration to wait for: every node of ``voters`` is a voter, no node of
    ``absent`` is a member, and no joint configuration is in progress (a change is only
    complete once its joint configuration was left, thesis §4.3)."""

    voters: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()

    def missing(self, view: Mapping[str, Any]) -> list[str]:
        """What ``view`` (a ``member_list`` answer, docs/membership.md) still lacks, in
        words; empty once the goal is reached."""
        out = []
        if view.get("joint"):
            out.append("a joint configuration is in progress")
        voters = {str(v) for v in view.get("voters") or ()}
        members = {
            str(m.get("id")) for m in view.get("members") or () if isinstance(m, Mapping)
        } | voters
        not_voters = sorted(self.voters - voters)
        if not_voters:
            out.append(f"{', '.join(not_voters)} not a voter")
        present = sorted(self.absent & members)
        if present:
            out.append(f"{', '.join(present)} still a member")
        return out

    def __str__(self) -> str:
        parts = [f"voters include {','.join(sorted(self.voters))}"] if self.voters else []
        if self.absent:
            parts.append(f"{','.join(sorted(self.absent))} not a member")
        return "; ".join([*parts, "no joint configuration"])


class MemberWaitTimeout(Exception):
    """The goal was not reached in time; the text says what was still missing (or why no
    configuration could be read)."""


def wait_members(
    fetch: Callable[[], Mapping[str, Any]],
    missing: Callable[[Mapping[str, Any]], list[str]],
    timeout_s: float,
    *,
    poll_s: float = 0.5,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    fatal: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping[str, Any]:
    """Poll ``fetch`` (the ``member_list`` answer) until ``missing`` finds nothing missing
    (e.g. :meth:`MemberGoal.missing`); returns that view. A ``fetch`` that raises one of
    ``retry_on`` (no leader right now, a node restarting) is tried again, unless it is also
    one of ``fatal``; anything else propagates. :class:`MemberWaitTimeout` after
    ``timeout_s``, naming what was missing when last seen."""
    deadline = clock() + timeout_s
    last = "no configuration read"
    while True:
        try:
            view = fetch()
        except retry_on as exc:
            if isinstance(exc, fatal):
                raise
            last = f"no configuration read: {exc}"
        else:
            lacking = missing(view)
            if not lacking:
                return view
            last = "; ".join(lacking)
        if clock() >= deadline:
            raise MemberWaitTimeout(f"not reached within {timeout_s:g} s: {last}")
        sleep(max(0.0, min(poll_s, deadline - clock())))
