"""Membership changes as pure functions from one :class:`ConfState` to the next.

Single-server changes (thesis §4.1) add or remove at most one voter at a time and take effect
directly. Anything more goes through a joint configuration (thesis §4.3): ``enter_joint``
keeps the old voters as ``voters_outgoing`` so every decision needs a majority of both, and
``leave_joint`` (an empty :class:`ConfChange`) drops them. A voter demoted to learner while
joint waits in ``learners_next`` until the joint config is left, because it still votes in
the outgoing half.

ConfChange entries are stored in the log as JSON (``encode_conf_change``); decoding validates
every field and raises :class:`ConfChangeError` naming what was wrong.
"""

from __future__ import annotations

import json

from raft.core.errors import ConfChangeError
from raft.core.types import ConfChange, ConfChangeSingle, ConfChangeType, ConfState, NodeId


def encode_conf_change(cc: ConfChange) -> bytes:
    """Stable, human-readable encoding of ``cc`` for a CONF_CHANGE entry's ``data``."""
    doc = {
        "changes": [{"type": c.type.value, "node": c.node} for c in cc.changes],
        "joint": cc.joint,
        "auto_leave": cc.auto_leave,
    }
    if cc.context:
        doc["context"] = cc.context  # only when set: older entries encode as before
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_conf_change(data: bytes) -> ConfChange:
    """Inverse of :func:`encode_conf_change`. Raises ConfChangeError on malformed data."""
    try:
        doc = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfChangeError(f"conf change entry is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ConfChangeError("conf change entry must be a JSON object")
    raw_changes = doc.get("changes", [])
    joint = doc.get("joint", False)
    auto_leave = doc.get("auto_leave", True)
    context = doc.get("context", "")
    if not isinstance(context, str):
        raise ConfChangeError("conf change 'context' must be a string")
    if not isinstance(raw_changes, list):
        raise ConfChangeError("conf change 'changes' must be a list")
    if not isinstance(joint, bool) or not isinstance(auto_leave, bool):
        raise ConfChangeError("conf change 'joint' and 'auto_leave' must be booleans")
    changes: list[ConfChangeSingle] = []
    for i, c in enumerate(raw_changes):
        if not isinstance(c, dict):
            raise ConfChangeError(f"conf change 'changes[{i}]' must be an object")
        node = c.get("node")
        if not isinstance(node, str) or not node:
            raise ConfChangeError(f"conf change 'changes[{i}].node' must be a non-empty string")
        try:
            typ = ConfChangeType(c.get("type"))
        except ValueError as e:
            raise ConfChangeError(f"conf change 'changes[{i}].type' is unknown: {e}") from e
        changes.append(ConfChangeSingle(type=typ, node=node))
    return ConfChange(changes=tuple(changes), joint=joint, auto_leave=auto_leave, context=context)


def is_leave_joint(cc: ConfChange) -> bool:
    return not cc.changes


def enters_joint(cc: ConfChange) -> bool:
    """Whether applying ``cc`` goes through a joint configuration."""
    return bool(cc.changes) and (cc.joint or len(cc.changes) > 1)


class _Sets:
    """Mutable working copy of a ConfState while changes are applied."""

    def __init__(self, cs: ConfState) -> None:
        self.voters = set(cs.voters)
        self.outgoing = set(cs.voters_outgoing)
        self.learners = set(cs.learners)
        self.learners_next = set(cs.learners_next)

    def make_voter(self, nid: NodeId) -> None:
        self.learners.discard(nid)
        self.learners_next.discard(nid)
        self.voters.add(nid)

    def make_learner(self, nid: NodeId) -> None:
        if nid in self.learners:
            return
        self.voters.discard(nid)
        self.learners_next.discard(nid)
        if nid in self.outgoing:
            self.learners_next.add(nid)  # still votes in the outgoing half until we leave
        else:
            self.learners.add(nid)

    def remove(self, nid: NodeId) -> None:
        self.voters.discard(nid)
        self.learners.discard(nid)
        self.learners_next.discard(nid)

    def apply(self, changes: tuple[ConfChangeSingle, ...]) -> None:
        for c in changes:
            if c.type == ConfChangeType.ADD_NODE:
                self.make_voter(c.node)
            elif c.type == ConfChangeType.ADD_LEARNER:
                self.make_learner(c.node)
            elif c.type == ConfChangeType.REMOVE_NODE:
                self.remove(c.node)
            else:  # pragma: no cover - closed enum
                raise ConfChangeError(f"unknown conf change type {c.type}")
        if not self.voters:
            raise ConfChangeError("removed all voters")

    def freeze(self, auto_leave: bool) -> ConfState:
        cs = ConfState(
            voters=frozenset(self.voters),
            learners=frozenset(self.learners),
            voters_outgoing=frozenset(self.outgoing),
            learners_next=frozenset(self.learners_next),
            auto_leave=auto_leave,
        )
        check_conf_state(cs)
        return cs


def check_conf_state(cs: ConfState) -> None:
    """Raise ConfChangeError unless ``cs`` is internally consistent."""
    if cs.learners & (cs.voters | cs.voters_outgoing):
        raise ConfChangeError("a node is both learner and voter")
    if not cs.learners_next <= cs.voters_outgoing:
        raise ConfChangeError("learners_next must be outgoing voters")
    if cs.learners_next & cs.voters:
        raise ConfChangeError("learners_next must not be incoming voters")
    if not cs.voters_outgoing and (cs.learners_next or cs.auto_leave):
        raise ConfChangeError("learners_next/auto_leave set outside a joint config")


def enter_joint(
    cs: ConfState, auto_leave: bool, changes: tuple[ConfChangeSingle, ...]
) -> ConfState:
    """Thesis §4.3: C_old,new. The current voters become the outgoing half."""
    if cs.voters_outgoing:
        raise ConfChangeError("configuration is already joint")
    if not cs.voters:
        raise ConfChangeError("cannot enter a joint configuration from an empty one")
    s = _Sets(cs)
    s.outgoing = set(cs.voters)
    s.apply(changes)
    return s.freeze(auto_leave)


def leave_joint(cs: ConfState) -> ConfState:
    """Thesis §4.3: C_new. Drop the outgoing voters; pending demotions become learners."""
    if not cs.voters_outgoing:
        raise ConfChangeError("configuration is not joint")
    s = _Sets(cs)
    s.learners |= s.learners_next
    s.learners_next = set()
    s.outgoing = set()
    return s.freeze(False)


def simple(cs: ConfState, changes: tuple[ConfChangeSingle, ...]) -> ConfState:
    """Thesis §4.1: at most one voter added or removed, applied directly (any two majorities
    of the old and new config then overlap)."""
    if cs.voters_outgoing:
        raise ConfChangeError("cannot apply a simple change to a joint configuration")
    s = _Sets(cs)
    s.apply(changes)
    if len(set(cs.voters) ^ s.voters) > 1:
        raise ConfChangeError("more than one voter changed without entering joint config")
    return s.freeze(False)


def apply_conf_change(cs: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after ``cc``: leave joint (no changes), enter joint (several changes
    or ``joint``), or a simple change."""
    if is_leave_joint(cc):
        return leave_joint(cs)
    if enters_joint(cc):
        return enter_joint(cs, cc.auto_leave, cc.changes)
    return simple(cs, cc.changes)
