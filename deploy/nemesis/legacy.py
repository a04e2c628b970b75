"""The first nemesis of the project, kept for ``raftlab workload --kill-leader-every``:
kill the leader every ``every_s`` seconds, restart it ``down_s`` later, heal on exit. New code
uses :class:`deploy.nemesis.Nemesis` with a ``kill`` fault targeting the leader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import IO, Any, Protocol


class NodeControl(Protocol):
    """Find the leader of a cluster, kill a node hard, start it again (a subset of
    :class:`deploy.nemesis.ClusterControl`)."""

    def leader(self) -> str | None: ...

    def kill(self, node: str) -> None: ...

    def start(self, node: str) -> None: ...


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
