"""The contract between Raft and the replicated application.

A state machine sees committed commands in log order, exactly once each, and must be
deterministic: every node applies the same commands and must reach the same state and return
the same results. Commands and results are bytes on the Raft side; machines define their own
(safe, non-executable) encoding, see :mod:`raft.machines.codec`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

SnapshotView = Callable[[], bytes]
"""Serialises the state as it was when the view was taken; safe to call in another thread
while the machine goes on applying commands (it touches nothing the machine changes)."""


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
        does not decode with a ValueError naming what was wrong. The runtime restores into a
        fresh instance in a worker thread and swaps it in afterwards, so ``restore`` never
        races with ``apply`` or ``query`` on the same instance."""
        ...


def snapshot_view_of(machine: StateMachine) -> SnapshotView:
    """A :data:`SnapshotView` of ``machine`` now. A machine may define ``snapshot_view()``
    returning one cheaply (a shallow copy of its immutable values, a copy-on-write
    generation): the runtime calls it on its event loop and serialises in a worker thread, so
    a big state never stalls heartbeats. Without it, ``snapshot()`` runs here, on the caller's
    thread, and only the file writing happens elsewhere."""
    view = getattr(machine, "snapshot_view", None)
    if callable(view):
        got: SnapshotView = view()
        return got
    data = machine.snapshot()
    return lambda: data
