"""The asyncio node runtime: drives :mod:`raft.core` with :mod:`raft.storage`, a TCP peer
transport, the client protocol and HTTP status/metrics (docs/runtime.md).

```python
from raft.runtime import RaftClient, load_config, Status
async with RaftClient(addrs) as c:
    resp = await c.put("k", "v")      # follows leader redirects, retries with the same seq
    assert resp.status is Status.OK
```
"""

from __future__ import annotations

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
