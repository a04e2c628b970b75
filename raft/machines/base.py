"""The contract between Raft and the replicated application.

A state machine sees committed commands in log order, exactly once each, and must be
deterministic: every node applies the same commands and must reach the same state and return
the same results. Commands and results are bytes on the Raft side; machines define their own
(safe, non-executable) encoding, see :mod:`raft.machines.codec`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StateMachine(Protocol):
    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the committed command at log ``index`` and return its result. Must not raise
        for a malformed command: return an error result instead (every replica must agree)."""
        ...

    def query(self, request: bytes) -> bytes:
        """Answer a read without changing state. Linearizability is the caller's business
        (ReadIndex or lease); the machine just reads its current state."""
        ...

    def snapshot(self) -> bytes:
        """Serialise the whole state (at the last applied index)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with one produced by ``snapshot``. Must reject data that
        does not decode with a ValueError naming what was wrong."""
        ...
