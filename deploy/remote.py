"""Remote execution on lab hosts over SSH (paramiko): run, upload, download, in parallel.

One small interface, as in Jepsen's control layer. It honours an OpenSSH ``ssh_config``
(host aliases, ports, user, key) and verifies every host key against a ``known_hosts`` file:
an unknown or changed key is refused (:class:`paramiko.RejectPolicy`), never trusted.
Failures raise :class:`RemoteCommandError` carrying host, command, exit code and output;
connection attempts are retried a bounded number of times, each retry saying why.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from deploy.errors import LabError


class RemoteError(LabError):
    """Something went wrong talking to a remote host."""


class RemoteConnectError(RemoteError):
    """Could not open an SSH session to a host (after the allowed retries)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(f"cannot connect to {host} ({address}): {reason}")


class RemoteCommandError(RemoteError):
    """A command exited non-zero (or timed out: exit code -1) on a host."""

    def __init__(self, host: str, command: str, exit_code: int, stdout: str, stderr: str) -> None:
        self.host = host
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        out = (stderr.strip() or stdout.strip())[-800:]
        super().__init__(f"{host}: `{command}` exited {exit_code}: {out}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command did on one host."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to connect, resolved from the ssh config."""

    host: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]


Log = Callable[[str], None]


def _no_log(_msg: str) -> None:
    return None


class Remote:
    """SSH sessions to the hosts named in an ssh config; one cached connection per host.

    Thread-safe: :meth:`run_all` uses one thread per host (bounded by ``parallel_max``).
    """

    def __init__(
        self,
        ssh_config: Path,
        known_hosts: Path,
        *,
        connect_retries: int = 3,
        retry_delay_s: float = 1.0,
        connect_timeout_s: float = 10.0,
        parallel_max: int = 16,
        log: Log = _no_log,
    ) -> None:
        if not known_hosts.is_file():
            raise RemoteError(f"known_hosts file {known_hosts} does not exist")
        self._config = paramiko.SSHConfig.from_path(str(ssh_config))
        self._known_hosts = known_hosts
        self._connect_retries = connect_retries
        self._retry_delay_s = retry_delay_s
        self._connect_timeout_s = connect_timeout_s
        self._parallel_max = parallel_max
        self._log = log
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_inventory(cls, inventory_dir: Path, **kwargs: object) -> Remote:
        """For an inventory directory written by ``raftlab testbed up`` (ssh_config,
        known_hosts and the lab key side by side)."""
        return cls(inventory_dir / "ssh_config", inventory_dir / "known_hosts", **kwargs)  # type: ignore[arg-type]

    def hosts(self) -> list[str]:
        """The host aliases the ssh config names (wildcards left out)."""
        return sorted(h for h in self._config.get_hostnames() if not any(c in h for c in "*?!"))

    def endpoint(self, host: str) -> Endpoint:
        cfg = self._config.lookup(host)
        return Endpoint(
            host=host,
            hostname=str(cfg.get("hostname", host)),
            port=int(cfg.get("port", 22)),
            user=str(cfg.get("user", "root")),
            key_files=tuple(str(p) for p in cfg.get("identityfile", [])),
        )

    def _connect(self, host: str) -> paramiko.SSHClient:
        ep = self.endpoint(host)
        address = f"{ep.hostname}:{ep.port}"
        last = ""
        for attempt in range(1, self._connect_retries + 1):
            client = paramiko.SSHClient()
            client.load_host_keys(str(self._known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(
                    ep.hostname,
                    port=ep.port,
                    username=ep.user,
                    key_filename=ep.key_files[0] if ep.key_files else None,
                    timeout=self._connect_timeout_s,
                    banner_timeout=self._connect_timeout_s,
                    auth_timeout=self._connect_timeout_s,
                    allow_agent=False,
                    look_for_keys=False,
                )
                return client
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise RemoteConnectError(
                    host, address, f"host key mismatch ({exc}); refusing to connect"
                ) from exc
            except paramiko.AuthenticationException as exc:
                client.close()
                raise RemoteConnectError(host, address, f"authentication failed: {exc}") from exc
            except paramiko.SSHException as exc:
                client.close()
                if "not found in known_hosts" in str(exc):
                    raise RemoteConnectError(
                        host, address, f"host key not in {self._known_hosts}; refusing"
                    ) from exc
                last = f"SSH error: {exc}"
            except (TimeoutError, OSError) as exc:
                client.close()
                last = f"network error: {exc}"
            if attempt < self._connect_retries:
                self._log(
                    f"retry {attempt + 1}/{self._connect_retries} connecting to {host} "
                    f"({address}) because {last}"
                )
                time.sleep(self._retry_delay_s * attempt)
        raise RemoteConnectError(host, address, f"{last} (after {self._connect_retries} tries)")

    def _client(self, host: str) -> paramiko.SSHClient:
        with self._lock:
            client = self._clients.get(host)
        transport = client.get_transport() if client is not None else None
        if client is not None and transport is not None and transport.is_active():
            return client
        client = self._connect(host)
        with self._lock:
            self._clients[host] = client
        return client

    def run(
        self, host: str, command: str | list[str], *, check: bool = True, timeout_s: float = 120.0
    ) -> CommandResult:
        """Run ``command`` (a shell string, or argv quoted for the shell) on ``host``."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        client = self._client(host)
        try:
            _stdin, stdout, stderr = client.exec_command(cmd, timeout=timeout_s)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except TimeoutError as exc:
            raise RemoteCommandError(host, cmd, -1, "", f"timed out after {timeout_s} s") from exc
        result = CommandResult(host, cmd, code, out, err)
        if check and code != 0:
            raise RemoteCommandError(host, cmd, code, out, err)
        return result

    def upload(self, host: str, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy a local file to ``remote`` on ``host`` (optionally setting its mode)."""
        try:
            with self._client(host).open_sftp() as sftp:
                sftp.put(str(local), remote)
                if mode is not None:
                    sftp.chmod(remote, mode)
        except OSError as exc:
            raise RemoteCommandError(host, f"upload {local} -> {remote}", -1, "", str(exc)) from exc

    def download(self, host: str, remote: str, local: Path) -> None:
        """Copy ``remote`` on ``host`` to a local file (parent directories created)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._client(host).open_sftp() as sftp:
                sftp.get(remote, str(local))
        except OSError as exc:
            raise RemoteCommandError(
                host, f"download {remote} -> {local}", -1, "", str(exc)
            ) from exc

    def run_all(
        self,
        hosts: Iterable[str],
        command: str | list[str],
        *,
        check: bool = True,
        timeout_s: float = 120.0,
    ) -> dict[str, CommandResult]:
        """Run ``command`` on every host in parallel; with ``check`` the first failure (in host
        order) is raised after all have finished."""
        names = list(hosts)
        with ThreadPoolExecutor(max_workers=max(1, min(self._parallel_max, len(names)))) as ex:
            futures = {
                h: ex.submit(self.run, h, command, check=False, timeout_s=timeout_s) for h in names
            }
        results = {h: f.result() for h, f in futures.items()}
        if check:
            for r in results.values():
                if not r.ok:
                    raise RemoteCommandError(r.host, r.command, r.exit_code, r.stdout, r.stderr)
        return results

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for c in clients:
            c.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
