"""Client sessions in the replicated state: at-most-once application of retried writes,
bound to a secret only the session's client holds.

Entry payload written by the runtime (msgpack), version 3 (docs/runtime.md, "Sessions"):
``[3, client_id, seq, command, key_hash]`` for one item, or ``[4, [[client_id, seq, command,
key_hash], ...]]`` for a batch proposed together (one log entry, one fsync; the entry's result
is the msgpack array of the items' results, in order). An item is

- a session open when ``client_id`` is empty, ``seq`` 0, ``command`` empty and ``key_hash``
  set: the session gets the server-assigned id ``s<index>.<position>`` (the ``ok`` value), so
  no client can choose, guess into use, or squat another's id;
- a session write when ``client_id`` is set: applied only when ``key_hash`` (SHA-256 of the
  client's ``session_key``, computed by the node that took the request) matches the one the
  session was opened with, so a client without the key can neither write under the id nor
  lock it out with a huge ``seq``;
- an anonymous write otherwise (no deduplication).

The table ``client_id -> (seq, result, index, key_hash, command digest)`` is part of the
replicated state (derived only from the log, carried in snapshots), so a write retried with
the same ``(client_id, seq)`` after a leader change returns the first result instead of
applying twice (Raft thesis §6.3) -- but only when it carries the same command; a different
command under a used ``seq`` is an error, never a silent ``ok``. The table is bounded: beyond
:data:`SESSIONS_MAX` clients, the one idle longest (smallest last index, a deterministic
choice) is forgotten, and its client must open a new session.

Entries of versions 1 and 2 (``[1, client_id, seq, command]``, ``[2, [[client_id, seq,
command], ...]]``) written by older nodes still apply as they did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from raft.machines import codec
from raft.machines.base import SnapshotView, StateMachine, snapshot_view_of
from raft.machines.codec import CommandError

SESSIONS_MAX = 10000
ENVELOPE_VERSION = 3
BATCH_VERSION = 4
_LEGACY_ENVELOPE = 1
_LEGACY_BATCH = 2
SNAPSHOT_VERSION = 2
_DIGEST_BYTES = 16

Item = tuple[str, int, bytes, bytes]
"""(client_id, seq, command, key_hash) of one proposal."""


def key_hash(session_key: bytes) -> bytes:
    """What the log records of a client's session key (never the key itself)."""
    return hashlib.sha256(b"raftlab-session" + session_key).digest()


def command_digest(command: bytes) -> bytes:
    return hashlib.sha256(command).digest()[:_DIGEST_BYTES]


def session_id(index: int, position: int) -> str:
    """The id a session opened by item ``position`` of the entry at ``index`` gets."""
    return f"s{index}.{position}"


def encode_entry(client_id: str, seq: int, command: bytes, key_hash: bytes = b"") -> bytes:
    return codec.packb([ENVELOPE_VERSION, client_id, seq, command, key_hash])


def encode_open(key_hash: bytes) -> bytes:
    """A single-item entry opening a session."""
    return encode_entry("", 0, b"", key_hash)


def encode_batch(items: list[Item]) -> bytes:
    return codec.packb([BATCH_VERSION, [list(i) for i in items]])


def decode_batch_results(result: bytes) -> list[bytes]:
    out = codec.unpackb(result, max_bytes=codec.SNAPSHOT_BYTES_MAX)
    if not isinstance(out, list) or not all(isinstance(r, bytes) for r in out):
        raise ValueError("batch result is not an array of results")
    return out


def _is_item(v: object, width: int = 4) -> bool:
    """``[client_id, seq, command, key_hash]`` (``width`` 3: a legacy item without the key)."""
    return (
        isinstance(v, list)
        and len(v) == width
        and isinstance(v[0], str)
        and isinstance(v[1], int)
        and all(isinstance(x, bytes) for x in v[2:])
    )


@dataclass(frozen=True, slots=True)
class _Session:
    seq: int
    result: bytes
    index: int
    key_hash: bytes = b""
    digest: bytes = b""
    """Digest of the command applied at ``seq``; empty for sessions of legacy entries."""


class Applier:
    """Wraps a :class:`StateMachine` with the session table. Deterministic."""

    def __init__(self, machine: StateMachine, sessions_max: int = SESSIONS_MAX) -> None:
        self.machine = machine
        self._sessions: dict[str, _Session] = {}
        self._max = sessions_max
        self.duplicates = 0
        self.restored_members: object = None
        """The address book the last restored snapshot carried (None: it had none)."""

    def apply(self, index: int, data: bytes) -> bytes:
        if not data:
            return b""  # a leader's no-op
        try:
            env = codec.unpackb(data)
            if isinstance(env, list) and len(env) == 5 and env[0] == ENVELOPE_VERSION:
                if not _is_item(env[1:]):
                    raise CommandError("malformed runtime entry envelope")
                return self._apply_item(index, 0, env[1], env[2], env[3], env[4])
            if (
                isinstance(env, list)
                and len(env) == 2
                and env[0] == BATCH_VERSION
                and isinstance(env[1], list)
                and all(_is_item(i) for i in env[1])
            ):
                return codec.packb(
                    [self._apply_item(index, pos, *item) for pos, item in enumerate(env[1])]
                )
            if isinstance(env, list) and len(env) == 4 and env[0] == _LEGACY_ENVELOPE:
                if not _is_item(env[1:], 3):
                    raise CommandError("malformed runtime entry envelope")
                return self._apply_legacy(index, env[1], env[2], env[3])
            if (
                isinstance(env, list)
                and len(env) == 2
                and env[0] == _LEGACY_BATCH
                and isinstance(env[1], list)
                and all(_is_item(i, 3) for i in env[1])
            ):
                return codec.packb([self._apply_legacy(index, c, s, cmd) for c, s, cmd in env[1]])
            raise CommandError("not a runtime entry envelope")
        except CommandError as exc:
            return codec.error(f"entry {index}: {exc}")

    def _apply_item(
        self, index: int, position: int, client_id: str, seq: int, command: bytes, khash: bytes
    ) -> bytes:
        if not client_id:
            if khash and seq == 0 and not command:
                sid = session_id(index, position)
                self._remember(sid, _Session(0, b"", index, khash))
                return codec.ok(sid)
            return self._machine_apply(index, command)
        sess = self._sessions.get(client_id)
        if sess is None:
            return codec.error(
                f"unknown session {client_id!r}: it was never opened or has expired "
                "(open a new session)"
            )
        if not khash or khash != sess.key_hash:
            return codec.error(f"session key does not match session {client_id!r}")
        digest = command_digest(command)
        if seq <= sess.seq:
            if seq < sess.seq:
                return codec.error(f"seq {seq} of {client_id} is older than {sess.seq}")
            if digest != sess.digest:
                return codec.error(
                    f"seq {seq} of {client_id} was already used for a different command"
                )
            self.duplicates += 1
            return sess.result
        result = self._machine_apply(index, command)
        self._remember(client_id, _Session(seq, result, index, khash, digest))
        return result

    def _apply_legacy(self, index: int, client_id: str, seq: int, command: bytes) -> bytes:
        """Entries of versions 1 and 2, as older nodes applied them."""
        if not client_id:
            return self._machine_apply(index, command)
        sess = self._sessions.get(client_id)
        if sess is not None and seq <= sess.seq:
            self.duplicates += 1
            if seq == sess.seq:
                return sess.result
            return codec.error(f"seq {seq} of {client_id} is older than {sess.seq}")
        result = self._machine_apply(index, command)
        self._remember(client_id, _Session(seq, result, index))
        return result

    def _remember(self, client_id: str, sess: _Session) -> None:
        self._sessions[client_id] = sess
        if len(self._sessions) > self._max:
            oldest = min(self._sessions.items(), key=lambda kv: (kv[1].index, kv[0]))[0]
            del self._sessions[oldest]

    def _machine_apply(self, index: int, command: bytes) -> bytes:
        """A machine must not raise (base.py); one that does gets an error result instead of
        taking the node down. Replicas agree as long as the machine raises deterministically."""
        try:
            return self.machine.apply(index, command)
        except Exception as exc:
            return codec.error(f"state machine raised {type(exc).__name__}: {exc}")

    def session_seq(self, client_id: str) -> int:
        sess = self._sessions.get(client_id)
        return 0 if sess is None else sess.seq

    def snapshot(self, members: object = None) -> bytes:
        return self.snapshot_view(members)()

    def snapshot_view(self, members: object = None) -> SnapshotView:
        """The session table and the machine as of now, serialised when called (in a worker
        thread: raft/runtime/node.py). Costs a copy of the table (sessions are immutable)
        plus the machine's own view (:func:`raft.machines.snapshot_view_of`). ``members``
        (the runtime's address book, raft/runtime/members.py, already in wire form) rides
        along when given, so the book travels with the ConfState in every snapshot."""
        table = dict(self._sessions)
        machine = snapshot_view_of(self.machine)

        def serialise() -> bytes:
            sessions = [
                [c, s.seq, s.result, s.index, s.key_hash, s.digest]
                for c, s in sorted(table.items())
            ]
            doc: dict[str, object] = {
                "v": SNAPSHOT_VERSION,
                "sessions": sessions,
                "machine": machine(),
            }
            if members is not None:
                doc["members"] = members
            return codec.packb(doc)

        return serialise

    @staticmethod
    def members_in(data: bytes) -> object:
        """The address book a runtime snapshot carries (None if none), without restoring
        anything: the node needs it at boot, before the state is restored off the loop."""
        try:
            obj = codec.unpackb(data, max_bytes=codec.SNAPSHOT_BYTES_MAX)
        except CommandError as exc:
            raise ValueError(f"runtime snapshot: {exc}") from None
        return obj.get("members") if isinstance(obj, dict) else None

    def restore(self, data: bytes) -> None:
        try:
            obj = codec.unpackb(data, max_bytes=codec.SNAPSHOT_BYTES_MAX)
        except CommandError as exc:
            raise ValueError(f"runtime snapshot: {exc}") from None
        if not isinstance(obj, dict) or obj.get("v") not in (1, SNAPSHOT_VERSION):
            raise ValueError("runtime snapshot: unknown format")
        machine_data = obj.get("machine")
        sessions = obj.get("sessions")
        if not isinstance(machine_data, bytes) or not isinstance(sessions, list):
            raise ValueError("runtime snapshot: missing machine or sessions")
        width = 4 if obj["v"] == 1 else 6
        table: dict[str, _Session] = {}
        for item in sessions:
            if not (
                isinstance(item, list)
                and len(item) == width
                and isinstance(item[0], str)
                and isinstance(item[1], int)
                and isinstance(item[2], bytes)
                and isinstance(item[3], int)
                and all(isinstance(x, bytes) for x in item[4:])
            ):
                raise ValueError("runtime snapshot: malformed session")
            table[item[0]] = _Session(*item[1:])
        self.machine.restore(machine_data)
        self._sessions = table
        self.restored_members = obj.get("members")
