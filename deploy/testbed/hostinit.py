"""PID 1 of one testbed host: makes the host's private view, runs sshd, reaps orphans.

Started by the testbed as ``ip netns exec NS unshare --pid --fork --mount --uts
--mount-proc -- python3 hostinit.py CONFIG.json``, so it is the first process of a fresh PID,
mount and UTS namespace inside the host's network namespace. It

* sets the hostname and bind-mounts the host's private directories (``/opt``,
  ``/etc/raftlab``, ``/var/lib/raftlab``, ``/var/log/raftlab``), its own ``/etc/hosts`` (its
  name resolves at once, as on a real machine: sudo looks it up) and a private ``/run`` and
  ``/tmp``; the mount namespace is private, so nothing leaks to the machine and everything
  disappears with the namespace;
* runs sshd in the foreground and restarts it if it dies (bounded);
* reaps every process re-parented to it (daemons started by start-stop-daemon);
* on SIGTERM sends SIGTERM to every process of the host, waits a bounded time, and exits:
  the kernel then kills whatever is left, so stopping this one pid stops the whole host.

Standard library only: it must run before anything is installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

STOP_GRACE_S = 5.0
SSHD_RESTARTS_MAX = 20


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _setup(cfg: dict[str, Any]) -> None:
    socket.sethostname(cfg["hostname"])
    _mount("--make-rprivate", "/")
    for src, dst in cfg["binds"]:
        os.makedirs(src, exist_ok=True)
        _mount("--bind", src, dst)
    for src, dst in cfg.get("file_binds", []):
        _mount("--bind", src, dst)
    for dst in cfg["tmpfs"]:
        _mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", dst)
    os.chmod("/tmp", 0o1777)
    for d in cfg.get("mkdirs", []):
        os.makedirs(d, mode=0o755, exist_ok=True)


def _start_sshd(cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    log = open(cfg["sshd_log"], "ab")  # noqa: SIM115 - owned by the child for its life
    try:
        return subprocess.Popen(
            cfg["sshd_cmd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True
        )
    finally:
        log.close()


def _stop_everything() -> None:
    # From PID 1 of a PID namespace, kill(-1) reaches every other process of the namespace.
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


class _StopRequested(Exception):
    """Raised from the signal handler so a blocking wait returns (PEP 475 retries it)."""


def _on_term(signum: int, frame: object) -> None:
    raise _StopRequested


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        cfg: dict[str, Any] = json.load(f)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        _setup(cfg)
        sshd = _start_sshd(cfg)
        restarts = 0
        while True:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                pid = -1
            if pid in (sshd.pid, -1):
                if restarts >= SSHD_RESTARTS_MAX:
                    print("hostinit: sshd keeps dying, giving up", file=sys.stderr)
                    break
                restarts += 1
                time.sleep(min(2.0, 0.1 * restarts))
                sshd = _start_sshd(cfg)
    except _StopRequested:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stop_everything()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
