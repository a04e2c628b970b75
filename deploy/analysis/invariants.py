"""Raft's safety properties checked from the nodes' event logs.

The definitions live in :mod:`raft.invariants`, shared with the simulator (one set of
invariants, one spelling); this module keeps the analysis package's names.
"""

from __future__ import annotations

from raft.invariants import (
    MAX_REPORTED_PER_INVARIANT,
    CommittedEntry,
    Invariant,
    InvariantReport,
    Violation,
    check_invariants,
    check_invariants_by_node,
)

__all__ = [
    "MAX_REPORTED_PER_INVARIANT",
    "CommittedEntry",
    "Invariant",
    "InvariantReport",
    "Violation",
    "check_invariants",
    "check_invariants_by_node",
]
