"""The address book of a running cluster: every member's peer, client and HTTP address.

The book travels with the configuration, never beside it (docs/membership.md): a
configuration change that adds a node carries the new node's addresses in its
``ConfChange.context`` (so every node applying the entry learns them from the log), and each
snapshot carries the whole book next to its ConfState (so a node that catches up by snapshot,
or restarts from one, learns it too). cluster.yml's ``nodes:`` is only the book a brand-new
cluster starts from; once the log or a snapshot holds a configuration, that wins.

Wire form (JSON in a context, msgpack in a snapshot): ``{id: {"peer": "h:p", "client": "h:p",
"http": "h:p" | None}}``. Decoding validates every field and raises :class:`MembersError`.
"""

from __future__ import annotations

import json
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
