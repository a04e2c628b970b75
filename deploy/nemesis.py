"""Faults injected during a run: for now, killing the leader (SIGKILL) and restarting it.

A nemesis is "how to break" plus "how to heal" (as in Jepsen): :meth:`LeaderKiller.loop`
kills the current leader every ``every_s`` seconds and restarts it after ``down_s``;
:meth:`LeaderKiller.heal` restarts whatever is still down and always runs, also when the
run is interrupted. Every fault start and stop is written to ``nemesis.jsonl``
(docs/formats.md, "Nemesis log").

Where the nodes run is behind :class:`NodeControl`: a ``raft cluster up`` directory
(:class:`LocalControl`) or hosts reached over SSH through an Ansible inventory written by
``raftlab testbed up`` or by hand (:class:`InventoryControl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import IO, Any, Protocol

import yaml

from deploy.errors import LabError
from raft.runtime.http import fetch_json
from raft.runtime.transport import Address


class NodeControl(Protocol):
    """Find the leader of a cluster, kill a node hard, start it again."""

    def leader(self) -> str | None: ...

    def kill(self, node: str) -> None: ...

    def start(self, node: str) -> None: ...


class LocalControl:
    """The node processes of a ``raft cluster up`` directory, named by node id."""

    def __init__(self, cluster_dir: str) -> None:
        from raft.runtime.localcluster import LocalCluster

        self.lc = LocalCluster(cluster_dir)

    def leader(self) -> str | None:
        return self.lc.leader()

    def kill(self, node: str) -> None:
        import signal

        self.lc.stop_node(node, signal.SIGKILL)

    def start(self, node: str) -> None:
        self.lc.start_node(node)


class InventoryControl:
    """Nodes deployed by the ``raft_node`` role, named by inventory host. The leader is found
    over HTTP ``/status``; kill and start go over SSH with the inventory's ssh config (the
    pidfile supervisor's control script, see playbooks/roles/raft_node)."""

    def __init__(self, inventory_dir: Path, http_port: int = 7002) -> None:
        from deploy.remote import Remote

        hosts = inventory_hosts(inventory_dir)
        self.http = {h: Address(addr, http_port) for h, addr in hosts.items()}
        self.remote = Remote.from_inventory(inventory_dir)
        self.install_dir = "/opt/raftlab"
        self.pidfile = "/run/raftlab/raftlab-node.pid"

    def leader(self) -> str | None:
        leaders = set()
        for host, addr in self.http.items():
            try:
                st = fetch_json(addr.host, addr.port, "/status", 0.5)
            except (OSError, ValueError):
                continue
            if isinstance(st, dict) and st.get("role") == "leader":
                leaders.add(host)
        return next(iter(leaders)) if len(leaders) == 1 else None

    def kill(self, node: str) -> None:
        self.remote.run(node, f'kill -9 "$(cat {self.pidfile})"', timeout_s=30)

    def start(self, node: str) -> None:
        self.remote.run(node, f"{self.install_dir}/bin/raftlab-node start", timeout_s=60)


def inventory_hosts(inventory_dir: Path) -> dict[str, str]:
    """Host name -> node address of the ``raft_nodes`` group in ``<dir>/hosts.yml``."""
    path = inventory_dir / "hosts.yml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        hosts = doc["all"]["children"]["raft_nodes"]["hosts"]
        return {str(h): str(v["raft_node_address"]) for h, v in hosts.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise LabError(f"{path}: cannot read the raft_nodes hosts ({exc})") from None


def inventory_client_addresses(inventory_dir: Path, client_port: int = 7001) -> str:
    return ",".join(f"{a}:{client_port}" for a in inventory_hosts(inventory_dir).values())


class LeaderKiller:
    """Kills the leader every ``every_s`` seconds and restarts it ``down_s`` later."""

    def __init__(
        self, control: NodeControl, every_s: float, down_s: float, log: IO[str], t0_ns: int
    ) -> None:
        self.control = control
        self.every_s = every_s
        self.down_s = down_s
        self.log = log
        self.t0_ns = t0_ns
        self.down: set[str] = set()
        self.kills = 0

    def _record(self, action: str, node: str, **extra: Any) -> None:
        line = {
            "time": time.monotonic_ns() - self.t0_ns,
            "ts": time.time(),
            "fault": "kill",
            "action": action,
            "targets": [node],
            **extra,
        }
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    async def _find_leader(self, stop: asyncio.Event, tries: int = 20) -> str | None:
        """The current leader, polling a little while an election is under way."""
        for _ in range(tries):
            leader = await asyncio.to_thread(self.control.leader)
            if leader is not None or stop.is_set():
                return leader
            await asyncio.sleep(0.1)
        return None

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
                return
            leader = await self._find_leader(stop)
            if leader is None:
                continue
            await asyncio.to_thread(self.control.kill, leader)
            self.down.add(leader)
            self.kills += 1
            self._record("start", leader, signal="SIGKILL")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.down_s)
            await asyncio.to_thread(self._restart, leader)

    def _restart(self, node: str) -> None:
        if node in self.down:
            self.control.start(node)
            self.down.discard(node)
            self._record("stop", node)

    def heal(self) -> None:
        for node in sorted(self.down):
            self._restart(node)
