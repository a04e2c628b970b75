"""The deterministic simulator: the real Raft core (:class:`raft.core.RawNode`) under a
seeded, hostile world (lossy network, partitions, crashes that lose unsynced writes, pauses,
clock skew, very late and replayed messages, membership changes), with Raft's safety
properties and protocol conformance checked after every step, liveness after faults heal,
and the clients' history checked for linearizability.

```python
from raft.sim import SimConfig, run_seed, run_swarm
result = run_seed(SimConfig(seed=7, nodes=5))
result.violation          # None, or the first broken invariant
```

``raftlab sim`` (``deploy/cli/cmd_sim.py``) is the command line.
"""

from raft.sim.clients import ClientPool, Workload
from raft.sim.conformance import Conformance
from raft.sim.disk import ForgetfulVoteDisk, SimDisk, UnreportedLossDisk
from raft.sim.faults import ALL_FAULTS, FaultKind, FaultSpecError, format_faults, parse_faults
from raft.sim.invariants import Invariant, LivenessMonitor, SafetyChecker, Violation
from raft.sim.network import Network
from raft.sim.swarm import SwarmSummary, run_swarm
from raft.sim.world import (
    SUBTICKS,
    DiskFactory,
    Drift,
    MessageFilter,
    ReadMode,
    Script,
    ScriptAction,
    SimConfig,
    SimConfigError,
    SimResult,
    World,
    run_seed,
)

__all__ = [
    "ALL_FAULTS",
    "SUBTICKS",
    "ClientPool",
    "Conformance",
    "DiskFactory",
    "Drift",
    "FaultKind",
    "FaultSpecError",
    "ForgetfulVoteDisk",
    "Invariant",
    "LivenessMonitor",
    "MessageFilter",
    "Network",
    "ReadMode",
    "SafetyChecker",
    "Script",
    "ScriptAction",
    "SimConfig",
    "SimConfigError",
    "SimDisk",
    "SimResult",
    "SwarmSummary",
    "UnreportedLossDisk",
    "Violation",
    "Workload",
    "World",
    "format_faults",
    "parse_faults",
    "run_seed",
    "run_swarm",
]
