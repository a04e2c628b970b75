"""The asyncio node runtime: drives :mod:`raft.core` with :mod:`raft.storage`, a TCP peer
transport, the client protocol and HTTP status/metrics (docs/runtime.md).

```python
from raft.runtime import RaftClient, load_config, Status
async with RaftClient(addrs) as c:
    resp = await c.put("k", "v")      # follows leader redirects, retries with the same seq
    assert resp.status is Status.OK
```

The names below are imported on first use (PEP 562), not with the package: a node process
(``raft serve``) imports ``raft.runtime.node`` and ``raft.runtime.server``, and loading the
client, the local-cluster manager and their dependencies with every submodule cost a
restarted node CPU and wall time before it could answer (issue 12: catch-up of a restarted
node, where the process start is most of the time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raft.runtime.client import ClientError, RaftClient
    from raft.runtime.config import (
        ClusterConfig,
        ConfigFileError,
        FsyncMode,
        NodeAddresses,
        ReadMode,
        load_config,
        parse_address_list,
    )
    from raft.runtime.localcluster import ClusterStateError, LocalCluster
    from raft.runtime.node import NodeUnavailableError, RaftNode
    from raft.runtime.protocol import Request, Response, Status
    from raft.runtime.server import ClientServer, serve
    from raft.runtime.transport import Address

_HOME = {
    "Address": "transport",
    "ClientError": "client",
    "ClientServer": "server",
    "ClusterConfig": "config",
    "ClusterStateError": "localcluster",
    "ConfigFileError": "config",
    "FsyncMode": "config",
    "LocalCluster": "localcluster",
    "NodeAddresses": "config",
    "NodeUnavailableError": "node",
    "RaftClient": "client",
    "RaftNode": "node",
    "ReadMode": "config",
    "Request": "protocol",
    "Response": "protocol",
    "Status": "protocol",
    "load_config": "config",
    "parse_address_list": "config",
    "serve": "server",
}

__all__ = [
    "Address",
    "ClientError",
    "ClientServer",
    "ClusterConfig",
    "ClusterStateError",
    "ConfigFileError",
    "FsyncMode",
    "LocalCluster",
    "NodeAddresses",
    "NodeUnavailableError",
    "RaftClient",
    "RaftNode",
    "ReadMode",
    "Request",
    "Response",
    "Status",
    "load_config",
    "parse_address_list",
    "serve",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'raft.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"raft.runtime.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
