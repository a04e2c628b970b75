"""Client load must never fail the storage (issue 10 §4): with the open-file limit at 256, a
flood of 400 client connections once made the node's storage fail with EMFILE (creating
hardstate.tmp) for good. Now client connections are capped below the limit, so the node keeps
writing while the flood is held open, and serves new clients once it is gone. The same node
(started as `raft cluster up` starts it) leaves only private files behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

from raft_cluster_fixture import BOUND_S, pick_base_port, wait_for

from raft.runtime.client import RaftClient
from raft.runtime.http import fetch_json
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status

FD_LIMIT = 256
FLOOD = 400


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_connection_flood_never_fails_the_storage(tmp_path: Path) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    cfg = lc.write_config(nodes=1, base_port=pick_base_port(1))
    a = cfg.nodes["n1"]
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "raft.cli", "serve", "--id", "n1", "--config", lc.config_path],
        stdout=log,
        stderr=log,
        preexec_fn=_limit_fds,
        env={**os.environ},
    )
    try:

        def status() -> dict[str, object] | None:
            try:
                st = fetch_json(a.http.host, a.http.port, "/status", 2.0)
            except (OSError, ValueError):
                return None
            return st if isinstance(st, dict) else None

        wait_for(lambda: (status() or {}).get("role") == "leader", BOUND_S, "a leader")

        async def main() -> None:
            flood: list[asyncio.StreamWriter] = []
            async with RaftClient([a.client], op_timeout_s=BOUND_S) as c:
                assert (await c.put("before", 1)).status is Status.OK  # connected first
                for _ in range(FLOOD):
                    with contextlib.suppress(OSError):
                        _r, w = await asyncio.open_connection(a.client.host, a.client.port)
                        flood.append(w)
                # Writes for over a second: the commit index reaches the hard state file.
                loop = asyncio.get_running_loop()
                end = loop.time() + 2.5
                i = 0
                while loop.time() < end:
                    assert (await c.put(f"k{i}", i)).status is Status.OK
                    i += 1
                st = status()
                assert st is not None and st["storage_failed"] == ""
            for w in flood:
                w.close()
            await asyncio.sleep(0.5)
            async with RaftClient([a.client], op_timeout_s=BOUND_S) as c:
                assert (await c.put("after", 2)).status is Status.OK
                assert (await c.get("k0")).value == 0

        asyncio.run(main())
        _assert_private(Path(lc.dir))
    finally:
        proc.terminate()
        try:
            proc.wait(BOUND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _assert_private(root: Path) -> None:
    """Issue 10 "Also": the local cluster's data and logs were world-readable; now every
    directory is 0700 and every file 0600, like the role's deployment."""
    seen = 0
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        want = 0o700 if path.is_dir() else 0o600
        assert mode & 0o077 == 0, f"{path} is mode {mode:o}, want {want:o}"
        seen += 1
    assert seen > 8  # cluster.yml, secret, data, WAL, events.jsonl, node.log, ...
