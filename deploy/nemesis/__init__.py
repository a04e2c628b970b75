"""The nemesis: faults injected into a running cluster, and their healing (docs/nemesis.md).

A fault is "how to break" plus "how to heal" plus "how to see it took effect" (as in
Jepsen). The public API:

- :class:`ClusterControl` -- where the nodes run: :class:`LocalControl` (a ``raft cluster up``
  directory) or :class:`InventoryControl` (hosts over SSH: the testbed or real hosts);
- :class:`FaultSpec`, :func:`parse_fault`, :func:`parse_schedule`, :data:`FAULT_KINDS` -- the
  declarative catalogue;
- :class:`Nemesis` -- runs a schedule, records every start/stop, heals;
- :func:`heal_cluster` -- undoes anything any fault can leave behind (``raftlab heal``).
"""

from __future__ import annotations

from deploy.nemesis.control import (
    ClusterControl,
    InventoryControl,
    LocalControl,
    NotSupportedError,
    inventory_client_addresses,
    inventory_host_vars,
    inventory_hosts,
)
from deploy.nemesis.legacy import LeaderKiller, NodeControl
from deploy.nemesis.runner import Nemesis, heal_cluster, leftovers
from deploy.nemesis.spec import (
    FAULT_KINDS,
    NETWORK_KINDS,
    FaultSpec,
    FaultSpecError,
    Target,
    TargetKind,
    parse_fault,
    parse_schedule,
    select_targets,
)

__all__ = [
    "FAULT_KINDS",
    "NETWORK_KINDS",
    "ClusterControl",
    "FaultSpec",
    "FaultSpecError",
    "InventoryControl",
    "LeaderKiller",
    "LocalControl",
    "Nemesis",
    "NodeControl",
    "NotSupportedError",
    "Target",
    "TargetKind",
    "heal_cluster",
    "inventory_client_addresses",
    "inventory_host_vars",
    "inventory_hosts",
    "leftovers",
    "parse_fault",
    "parse_schedule",
    "select_targets",
]
