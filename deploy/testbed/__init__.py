"""The local testbed: hosts made of network namespaces, each with its own address, hostname,
process table, private directories and sshd, so Ansible cannot tell them from real machines.
A GEE style puts them behind a gateway reached on forwarded SSH ports, like a GEE slicelet.
"""

from deploy.testbed.bed import (
    DEFAULT_STATE_DIR,
    HostStatus,
    MissingToolError,
    NotRootError,
    Testbed,
    TestbedCommandError,
    TestbedConflictError,
    TestbedState,
)
from deploy.testbed.inventory import InventoryFiles
from deploy.testbed.plan import (
    DEFAULT_INNER_SUBNET,
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    HostPlan,
    PlanError,
    SubnetOverlapError,
    TestbedPlan,
    TestbedStyle,
    plan_testbed,
)

__all__ = [
    "DEFAULT_INNER_SUBNET",
    "DEFAULT_PREFIX",
    "DEFAULT_STATE_DIR",
    "DEFAULT_SUBNET",
    "HostPlan",
    "HostStatus",
    "InventoryFiles",
    "MissingToolError",
    "NotRootError",
    "PlanError",
    "SubnetOverlapError",
    "Testbed",
    "TestbedCommandError",
    "TestbedConflictError",
    "TestbedPlan",
    "TestbedState",
    "TestbedStyle",
    "plan_testbed",
]
