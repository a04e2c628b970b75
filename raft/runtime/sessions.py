"""Client sessions in the replicated state: at-most-once application of retried writes.

Entry payload written by the runtime (msgpack): ``[1, client_id, seq, command]`` for one
command, or ``[2, [[client_id, seq, command], ...]]`` for a batch of commands proposed
together (one log entry, one fsync; the entry's result is the msgpack array of the commands'
results, in order). The table
``client_id -> (seq, result, index)`` is part of the replicated state (it is derived only from
the log and travels in snapshots), so a write retried with the same ``(client_id, seq)`` after
a leader change returns the first result instead of applying twice (Raft thesis §6.3).
The table is bounded: beyond :data:`SESSIONS_MAX` clients, the one idle longest (smallest
last index, a deterministic choice) is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

from raft.machines import codec
from raft.machines.base import StateMachine
from raft.machines.codec import CommandError

ENVELOPE_VERSION = 1
SESSIONS_MAX = 10000


BATCH_VERSION = 2


def encode_entry(client_id: str, seq: int, command: bytes) -> bytes:
    return codec.packb([ENVELOPE_VERSION, client_id, seq, command])


def encode_batch(items: list[tuple[str, int, bytes]]) -> bytes:
    return codec.packb([BATCH_VERSION, [list(i) for i in items]])


def decode_batch_results(result: bytes) -> list[bytes]:
    out = codec.unpackb(result, max_bytes=1 << 40)
    if not isinstance(out, list) or not all(isinstance(r, bytes) for r in out):
        raise ValueError("batch result is not an array of results")
    return out


def _is_item(v: object) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 3
        and isinstance(v[0], str)
        and isinstance(v[1], int)
        and isinstance(v[2], bytes)
    )


@dataclass(frozen=True, slots=True)
class _Session:
    seq: int
    result: bytes
    index: int


class Applier:
    """Wraps a :class:`StateMachine` with the session table. Deterministic."""

    def __init__(self, machine: StateMachine, sessions_max: int = SESSIONS_MAX) -> None:
        self.machine = machine
        self._sessions: dict[str, _Session] = {}
        self._max = sessions_max
        self.duplicates = 0

    def apply(self, index: int, data: bytes) -> bytes:
        if not data:
            return b""  # a leader's no-op
        try:
            env = codec.unpackb(data)
            if isinstance(env, list) and len(env) == 4 and env[0] == ENVELOPE_VERSION:
                if not _is_item(env[1:]):
                    raise CommandError("malformed runtime entry envelope")
                return self._apply_one(index, env[1], env[2], env[3])
            if (
                isinstance(env, list)
                and len(env) == 2
                and env[0] == BATCH_VERSION
                and isinstance(env[1], list)
                and all(_is_item(i) for i in env[1])
            ):
                results = [self._apply_one(index, c, s, cmd) for c, s, cmd in env[1]]
                return codec.packb(results)
            raise CommandError("not a runtime entry envelope")
        except CommandError as exc:
            return codec.error(f"entry {index}: {exc}")

    def _apply_one(self, index: int, client_id: str, seq: int, command: bytes) -> bytes:
        if not client_id:
            return self._machine_apply(index, command)
        sess = self._sessions.get(client_id)
        if sess is not None and seq <= sess.seq:
            self.duplicates += 1
            if seq == sess.seq:
                return sess.result
            return codec.error(f"seq {seq} of {client_id} is older than {sess.seq}")
        result = self._machine_apply(index, command)
        self._sessions[client_id] = _Session(seq, result, index)
        if len(self._sessions) > self._max:
            oldest = min(self._sessions.items(), key=lambda kv: (kv[1].index, kv[0]))[0]
            del self._sessions[oldest]
        return result

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

    def snapshot(self) -> bytes:
        sessions = [[c, s.seq, s.result, s.index] for c, s in sorted(self._sessions.items())]
        return codec.packb({"v": 1, "sessions": sessions, "machine": self.machine.snapshot()})

    def restore(self, data: bytes) -> None:
        try:
            obj = codec.unpackb(data, max_bytes=1 << 40)
        except CommandError as exc:
            raise ValueError(f"runtime snapshot: {exc}") from None
        if not isinstance(obj, dict) or obj.get("v") != 1:
            raise ValueError("runtime snapshot: unknown format")
        machine_data = obj.get("machine")
        sessions = obj.get("sessions")
        if not isinstance(machine_data, bytes) or not isinstance(sessions, list):
            raise ValueError("runtime snapshot: missing machine or sessions")
        table: dict[str, _Session] = {}
        for item in sessions:
            if not (
                isinstance(item, list)
                and len(item) == 4
                and isinstance(item[0], str)
                and isinstance(item[1], int)
                and isinstance(item[2], bytes)
                and isinstance(item[3], int)
            ):
                raise ValueError("runtime snapshot: malformed session")
            table[item[0]] = _Session(item[1], item[2], item[3])
        self.machine.restore(machine_data)
        self._sessions = table
