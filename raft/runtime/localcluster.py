"""A local cluster of node processes on 127.0.0.1..127.0.0.N (``raft cluster up``).

Everything lives under one directory: ``cluster.yml``, ``secret``, ``state.json`` (the pids
this tool started) and per node ``<id>/data`` and ``<id>/log``. ``down`` signals only the pids
recorded in ``state.json`` and only if the process's command line is still the node it
started (pids get reused).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from raft.runtime.config import (
    ClusterConfig,
    NodeAddresses,
    load_config,
    render_config,
)
from raft.runtime.http import fetch_json
from raft.runtime.transport import Address

DEFAULT_DIR = ".raftlab-cluster"
STATE_FILE = "state.json"


class ClusterStateError(Exception):
    """The cluster directory is missing, damaged, or names an unknown node."""


@dataclass(frozen=True, slots=True)
class LocalCluster:
    dir: str

    @property
    def config_path(self) -> str:
        return os.path.join(self.dir, "cluster.yml")

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, STATE_FILE)

    # -- setup -----------------------------------------------------------------------------

    def write_config(
        self,
        nodes: int,
        base_port: int = 7000,
        machine: str = "kv",
        cluster: str = "raftlab",
        tick_ms: int = 50,
        election_timeout_ticks: int = 10,
        fsync: str = "always",
        read_mode: str = "read_index",
        host_prefix: str = "127.0.0.",
        snapshot_entries: int = 10000,
        client_auth: bool = False,
        snapshot_chunk_bytes: int = 1 << 20,
    ) -> ClusterConfig:
        if not 1 <= nodes <= 200:
            raise ClusterStateError(f"--nodes {nodes}: must be between 1 and 200")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)  # data, logs and the secret are the user's alone
        d = os.path.abspath(self.dir)
        secret_path = os.path.join(d, "secret")
        if not os.path.exists(secret_path):
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        addrs = {}
        for i in range(1, nodes + 1):
            host = f"{host_prefix}{i}"
            addrs[f"n{i}"] = NodeAddresses(
                peer=Address(host, base_port),
                client=Address(host, base_port + 1),
                http=Address(host, base_port + 2),
            )
        from raft.runtime.config import FsyncMode, ReadMode

        cfg = ClusterConfig(
            cluster=cluster,
            nodes=addrs,
            machine=machine,
            secret_file=secret_path,
            data_dir=os.path.join(d, "{id}", "data"),
            log_dir=os.path.join(d, "{id}", "log"),
            fsync=FsyncMode(fsync),
            read_mode=ReadMode(read_mode),
            tick_ms=tick_ms,
            election_timeout_ticks=election_timeout_ticks,
            snapshot_entries=snapshot_entries,
            client_auth=client_auth,
            snapshot_chunk_bytes=snapshot_chunk_bytes,
        )
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_config(cfg))
        return load_config(self.config_path)

    def config(self) -> ClusterConfig:
        if not os.path.exists(self.config_path):
            raise ClusterStateError(f"{self.config_path}: no cluster here (run 'raft cluster up')")
        return load_config(self.config_path)

    # -- state -----------------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return {"pids": {}}
        except (OSError, ValueError) as exc:
            raise ClusterStateError(f"{self.state_path}: unreadable: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("pids"), dict):
            raise ClusterStateError(f"{self.state_path}: not a cluster state file")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_path)

    def client_token(self) -> bytes | None:
        """The client token of this directory's cluster when it has ``client_auth`` on."""
        cfg = self.config()
        if not cfg.client_auth:
            return None
        from raft.runtime.auth import load_secret

        return load_secret(cfg.client_token_file or cfg.secret_file)

    def client_addresses(self) -> str:
        return ",".join(str(a.client) for a in self.config().nodes.values())

    # -- processes -------------------------------------------------------------------------

    def start_node(
        self, node_id: str, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> int:
        """Start one node; ``env`` adds environment variables (the nemesis's clock fault
        starts a node under libfaketime this way)."""
        cfg = self.config()
        if node_id not in cfg.nodes:
            raise ClusterStateError(f"unknown node {node_id!r} (have {', '.join(cfg.nodes)})")
        state = self.read_state()
        old = state["pids"].get(node_id)
        if old and self._is_ours(int(old), node_id):
            raise ClusterStateError(f"{node_id} is already running (pid {old})")
        log_dir = cfg.node_log_dir(node_id)
        os.makedirs(os.path.dirname(log_dir), mode=0o700, exist_ok=True)
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
        fd = os.open(
            os.path.join(log_dir, "stderr.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        out = os.fdopen(fd, "ab")
        cmd = [
            sys.executable,
            "-m",
            "raft.cli",
            "serve",
            "--id",
            node_id,
            "--config",
            os.path.abspath(self.config_path),
            "--quiet",
            *extra_args,
        ]
        proc = subprocess.Popen(
            cmd,
            # In the cluster's own directory: `python -m` puts the working directory first
            # on sys.path, so a node started from a checkout would import that checkout's
            # raft package instead of the one installed (or named by PYTHONPATH).
            cwd=os.path.abspath(self.dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, **env} if env else None,
        )
        out.close()
        state["pids"][node_id] = proc.pid
        self._write_state(state)
        return proc.pid

    def _is_ours(self, pid: int, node_id: str) -> bool:
        argv: list[bytes] = []
        for _ in range(50):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    raw = f.read()
            except OSError:
                return False
            # Empty while an exec is still setting up the new program (right after Popen
            # returns), and for a zombie: wait a moment for the one, not for the other.
            if raw or not self._alive(pid):
                argv = raw.split(b"\0")
                break
            time.sleep(0.01)
        want = os.path.abspath(self.config_path).encode()
        return b"serve" in argv and want in argv and node_id.encode() in argv

    def running(self) -> dict[str, int]:
        return {
            nid: int(pid)
            for nid, pid in self.read_state()["pids"].items()
            if pid and self._is_ours(int(pid), nid)
        }

    def stop_node(self, node_id: str, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> bool:
        """Signal the node's recorded pid (if it is still that node); wait for it to exit,
        then SIGKILL after ``wait_s``. False if it was not running."""
        state = self.read_state()
        pid = state["pids"].get(node_id)
        if not pid or not self._is_ours(int(pid), node_id):
            state["pids"].pop(node_id, None)
            self._write_state(state)
            return False
        pid = int(pid)
        os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.02)
        state = self.read_state()
        state["pids"].pop(node_id, None)
        self._write_state(state)
        return True

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return False
        except ChildProcessError:
            pass
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def up(self, **config_args: Any) -> ClusterConfig:
        cfg = self.write_config(**config_args)
        busy = [
            f"{nid}.{port} {addr}"
            for nid, addrs in cfg.nodes.items()
            if nid not in self.running()
            for port, addr in (("peer", addrs.peer), ("client", addrs.client), ("http", addrs.http))
            if not _bindable(addr)
        ]
        if busy:  # else `up` would report another cluster's leader as its own
            raise ClusterStateError(
                f"address(es) already in use: {', '.join(busy)} (choose another --base-port)"
            )
        for nid in cfg.nodes:
            self.start_node(nid)
        return cfg

    def down(self) -> list[str]:
        stopped = []
        for nid in list(self.read_state()["pids"]):
            if self.stop_node(nid):
                stopped.append(nid)
        return stopped

    # -- observation -----------------------------------------------------------------------

    def statuses(self, timeout_s: float = 0.5) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for nid, a in self.config().nodes.items():
            try:
                st = fetch_json(a.http.host, a.http.port, "/status", timeout_s)
                out[nid] = st if isinstance(st, dict) else None
            except (OSError, ValueError):
                out[nid] = None
        return out

    def leader(self, among: set[str] | None = None) -> str | None:
        """The node that says it leads, if every answering node in ``among`` agrees on it."""
        sts = self.statuses()
        leaders = {
            nid
            for nid, st in sts.items()
            if st is not None and st.get("role") == "leader" and (among is None or nid in among)
        }
        return next(iter(leaders)) if len(leaders) == 1 else None

    def wait_leader(
        self, timeout_s: float = 15.0, among: set[str] | None = None, started: bool = False
    ) -> str:
        """The leader's id once one is known. With ``started``, fail at once when a node
        process this directory just started has exited (its last stderr line says why)."""
        deadline = time.monotonic() + timeout_s
        pids = self.read_state()["pids"] if started else {}
        while time.monotonic() < deadline:
            leader = self.leader(among)
            if leader is not None:
                return leader
            # Exited means the process is gone (or a zombie), not "its command line does not
            # match": right after Popen returns, the exec may still be setting up the new
            # program, and /proc/PID/cmdline reads empty for that moment.
            dead = {nid for nid, pid in pids.items() if pid and not self._alive(int(pid))}
            if dead:
                nid = sorted(dead)[0]
                raise ClusterStateError(f"node {nid} exited: {self._last_error(nid)}")
            time.sleep(0.05)
        raise ClusterStateError(f"no leader within {timeout_s:.0f}s (see {self.dir}/*/log)")

    def _last_error(self, node_id: str) -> str:
        path = os.path.join(self.config().node_log_dir(node_id), "stderr.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else f"no message (see {path})"


def _bindable(addr: Address) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr.host, addr.port))
        except OSError:
            return False
    return True
