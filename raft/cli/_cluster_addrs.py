"""Where ``raft client`` and ``raft status`` find the cluster: ``--cluster``, else the
``RAFT_CLUSTER`` environment variable, else the ``raft cluster up`` directory."""

from __future__ import annotations

import os

from raft.cli import CliError
from raft.runtime.config import ConfigFileError, parse_address_list
from raft.runtime.transport import Address


def resolve(cluster: str | None, cluster_dir: str | None) -> list[Address]:
    text = cluster or os.environ.get("RAFT_CLUSTER", "")
    if not text:
        from raft.runtime.localcluster import ClusterStateError, LocalCluster

        lc = LocalCluster(cluster_dir or ".raftlab-cluster")
        try:
            text = lc.client_addresses()
        except (ClusterStateError, ConfigFileError) as exc:
            raise CliError(f"no --cluster, no RAFT_CLUSTER, and {exc}") from None
    try:
        return parse_address_list(text)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None


def http_of(cluster_dir: str | None, client_addrs: list[Address]) -> dict[str, Address]:
    """HTTP addresses to poll: from cluster.yml when the client addresses match its nodes,
    else the client address with port + 1 (the default layout)."""
    from raft.runtime.localcluster import ClusterStateError, LocalCluster

    try:
        cfg = LocalCluster(cluster_dir or ".raftlab-cluster").config()
        by_client = {a.client: (nid, a.http) for nid, a in cfg.nodes.items()}
        if all(c in by_client for c in client_addrs):
            return {by_client[c][0]: by_client[c][1] for c in client_addrs}
    except (ClusterStateError, ConfigFileError, OSError):
        pass
    return {str(c): Address(c.host, c.port + 1) for c in client_addrs}
