"""Side by side: raftlab against etcd (Debian's ``etcd-server``, over its v3 JSON gateway) and
PySyncObj (PyPI), on this machine, in one run, interleaved A/B/A/B.

One asyncio load generator drives both raftlab and etcd: many logical clients, each with its
own connection, all connected (and one request answered) before the clock starts; closed loop
(each client keeps one request outstanding) or fixed rate (each client has its own schedule,
latency counted from the scheduled start so a stalled server is not hidden: no coordinated
omission). PySyncObj is driven the way its own benchmark drives it (each node issues its share
of the rate in-process; the highest rate with >= 90 % success).

Writes ``bench/results/compare.json`` and ``bench/results/compare.md`` (ratios ours/theirs).
``python -m bench compare`` (``make bench``); ``BENCH_QUICK=1`` or ``--quick`` runs a
seconds-long smoke version (the test suite does, asserting nothing about the figures).
``--recovery``: failover and catch-up only; ``--catchup``: catch-up only (with
``BENCH_BASELINE=<tree>`` that tree's cluster beside it, interleaved), with where the time
went read back from the restarted node's event log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_runtime import _free_base
from raft.runtime.bench import percentile
from raft.runtime.client import RaftClient
from raft.runtime.localcluster import LocalCluster
from raft.runtime.protocol import Status

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure. ``quick`` is the smoke test's plan."""

    seconds: float
    rounds: int
    clients: tuple[int, ...]
    sizes: tuple[int, ...]
    failover_trials: int
    catchup_writes: int
    catchup_runs: int
    syncobj_rates: tuple[int, ...]
    five_nodes: bool


FULL = Plan(3.0, 2, (1, 8, 32, 128, 256), (10, 200, 2000), 20, 10_000, 3, (2000, 5000, 10000), True)
QUICK = Plan(0.5, 1, (1, 8), (200,), 2, 300, 1, (500,), False)


# -- load generator ---------------------------------------------------------------------------

Op = Callable[[str, str], Awaitable[bool]]


class Client:
    """One logical client: one connection, one request outstanding."""

    async def connect(self) -> None:
        raise NotImplementedError

    async def put(self, key: str, value: str) -> bool:
        raise NotImplementedError

    async def get(self, key: str) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RaftlabClient(Client):
    def __init__(self, addrs: list[Any]) -> None:
        self.c = RaftClient(addrs)

    async def connect(self) -> None:
        await self.c.get("warmup")

    async def put(self, key: str, value: str) -> bool:
        return (await self.c.put(key, value)).status is Status.OK

    async def get(self, key: str) -> bool:
        return (await self.c.get(key)).status is Status.OK

    async def close(self) -> None:
        await self.c.close()


class EtcdClient(Client):
    """HTTP/1.1 keep-alive on etcd's v3 JSON gateway (``/v3/kv/put``, ``/v3/kv/range``; a
    range is linearizable unless ``serializable`` is set)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        await self.get("warmup")

    async def _post(self, path: str, body: dict[str, str]) -> bool:
        assert self.r is not None and self.w is not None
        data = json.dumps(body).encode()
        self.w.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in head.split(b"\r\n"):
            low = line.lower()
            if low.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
                chunked = True
        if chunked:
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                await self.r.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.r.readexactly(length)
        return status == 200

    async def put(self, key: str, value: str) -> bool:
        return await self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def get(self, key: str) -> bool:
        return await self._post("/v3/kv/range", {"key": _b64(key)})

    async def close(self) -> None:
        if self.w is not None:
            self.w.close()


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@dataclass(slots=True)
class LoadResult:
    ok: int = 0
    failed: int = 0
    elapsed: float = 0.0
    lat: list[float] = field(default_factory=list)
    due: list[float] = field(default_factory=list)
    """Fixed rate only: when each answered write was due, seconds from the schedule's start
    (``lat[i]`` belongs to ``due[i]``)."""
    start_wall: float = 0.0
    """Fixed rate only: the schedule's start, wall clock (to place node events)."""

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def p(self, q: float) -> float:
        return percentile(sorted(self.lat), q) * 1e3


async def _connect_all(make: Callable[[], Client], n: int) -> list[Client]:
    clients = [make() for _ in range(n)]
    for k in range(0, n, 32):  # in groups: 256 simultaneous handshakes are a test of their own
        await asyncio.gather(*(c.connect() for c in clients[k : k + 32]))
    return clients


async def _drive(
    clients: list[Client], one: Callable[[int, Client], Awaitable[None]], res: LoadResult
) -> LoadResult:
    """Run ``one`` for every client at once; the clock covers only that."""
    t0 = time.perf_counter()
    await asyncio.gather(*(one(k, c) for k, c in enumerate(clients)))
    res.elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return res


async def closed_loop(
    make: Callable[[], Client], n: int, seconds: float, size: int, reads: bool = False
) -> LoadResult:
    clients = await _connect_all(make, n)
    value = "v" * size
    res = LoadResult()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds

    async def one(k: int, c: Client) -> None:
        rng = random.Random(k)
        while loop.time() < stop_at:
            key = f"k{rng.randrange(1000)}"
            t0 = time.perf_counter()
            try:
                ok = await (c.get(key) if reads else c.put(key, value))
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                ok = False
            if ok:
                res.ok += 1
                res.lat.append(time.perf_counter() - t0)
            else:
                res.failed += 1

    return await _drive(clients, one, res)


async def fixed_rate(
    make: Callable[[], Client], n: int, seconds: float, size: int, rate: float
) -> LoadResult:
    """``rate`` writes/s spread over ``n`` clients, each on its own schedule; latency from
    the scheduled start (a late client's wait counts)."""
    clients = await _connect_all(make, n)
    value = "v" * size
    res = LoadResult()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    res.start_wall = time.time() + 0.05
    per = rate / n

    async def one(k: int, c: Client) -> None:
        i = 0
        phase = k / rate
        while True:
            due = start + phase + i / per
            if due - start >= seconds:
                return
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = await c.put(f"k{(k * 7919 + i) % 1000}", value)
            if ok:
                res.ok += 1
                res.lat.append(loop.time() - due)
                res.due.append(due - start)
            else:
                res.failed += 1
            i += 1

    return await _drive(clients, one, res)


# -- systems ----------------------------------------------------------------------------------


def _free_ports(host: str, n: int) -> int:
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 60000, 10)
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind((host, p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


class System:
    name = ""

    def client(self) -> Client:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        raise NotImplementedError

    def leader(self) -> str:
        raise NotImplementedError

    def kill(self, node: str) -> None:
        raise NotImplementedError

    def restart(self, node: str) -> None:
        raise NotImplementedError

    def data_dirs(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        """Every node is up and follows one leader."""
        raise NotImplementedError

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Block until :meth:`healthy` (a restarted node takes seconds to start on a busy
        machine; killing the next leader before it is back left one live node of three and
        measured the restart, not the failover)."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not healthy within {timeout_s:.0f} s")
            time.sleep(0.05)

    def down(self) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def _pythonpath(tree: str | None) -> Any:
    """Node processes started inside import raftlab from ``tree`` (the baseline)."""
    old = os.environ.get("PYTHONPATH")
    if tree is not None:
        os.environ["PYTHONPATH"] = tree
    try:
        yield
    finally:
        if tree is not None:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old


class Raftlab(System):
    def __init__(self, root: str, nodes: int, fsync: str, tree: str | None = None) -> None:
        self.tree = tree
        tag = " (baseline)" if tree else ""
        self.name = f"raftlab{tag} {nodes}n fsync {'on' if fsync == 'always' else 'off'}"
        self.lc = LocalCluster(os.path.join(root, f"raftlab-{nodes}-{fsync}{'-base' * bool(tree)}"))
        with _pythonpath(tree):
            self.lc.up(nodes=nodes, base_port=_free_base(nodes), fsync=fsync)
        self.lc.wait_leader(30.0, started=True)
        self.addrs = [a.client for a in self.lc.config().nodes.values()]
        self._leader_addr = self.addrs[0]

    def client(self) -> Client:
        # Every client starts at the leader, like the etcd clients (no redirect per client).
        return RaftlabClient([self._leader_addr, *self.addrs])

    def refresh_leader(self) -> None:
        nid = self.lc.wait_leader(30.0)
        self._leader_addr = self.lc.config().nodes[nid].client

    def pids(self) -> dict[str, int]:
        return self.lc.running()

    def leader(self) -> str:
        return self.lc.wait_leader(30.0)

    def kill(self, node: str) -> None:
        self.lc.stop_node(node, signal.SIGKILL)

    def restart(self, node: str) -> None:
        with _pythonpath(self.tree):
            self.lc.start_node(node)

    def data_dirs(self) -> list[str]:
        return [self.lc.config().node_data_dir(n) for n in self.lc.config().nodes]

    def applied(self, node: str) -> int:
        st = self.lc.statuses().get(node)
        return int(st["applied"]) if st else -1

    def down(self) -> None:
        self.lc.down()

    def healthy(self) -> bool:
        sts = self.lc.statuses()
        leaders = {st.get("leader") for st in sts.values() if st is not None}
        return (
            all(st is not None for st in sts.values()) and len(leaders) == 1 and "" not in leaders
        )


class Etcd(System):
    def __init__(self, root: str, nodes: int) -> None:
        self.name = f"etcd {nodes}n"
        self.root = os.path.join(root, f"etcd-{nodes}")
        base = _free_ports("127.0.0.1", 2 * nodes)
        self.nodes = [f"e{i}" for i in range(1, nodes + 1)]
        self.peer = {n: base + 2 * i for i, n in enumerate(self.nodes)}
        self.cport = {n: base + 2 * i + 1 for i, n in enumerate(self.nodes)}
        self.initial = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in self.nodes)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for n in self.nodes:
            self._start(n, "new")
        self._leader = self.leader()

    def _start(self, n: str, state: str) -> None:
        d = os.path.join(self.root, n)
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(self.root, f"{n}.log"), "ab")  # noqa: SIM115 - closed with proc
        self.procs[n] = subprocess.Popen(
            [
                "etcd",
                "--name",
                n,
                "--data-dir",
                os.path.join(d, "data"),
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer[n]}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer[n]}",
                "--listen-client-urls",
                f"http://127.0.0.1:{self.cport[n]}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.cport[n]}",
                "--initial-cluster",
                self.initial,
                "--initial-cluster-state",
                state,
                "--log-level",
                "error",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()

    def _status(self, n: str) -> dict[str, Any] | None:
        import http.client

        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.cport[n], timeout=0.5)
            conn.request("POST", "/v3/maintenance/status", body=b"{}")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            return body if isinstance(body, dict) else None
        except (OSError, ValueError):
            return None

    def leader(self) -> str:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            for n in self.nodes:
                if self.procs[n].poll() is not None:
                    continue
                st = self._status(n)
                if st and st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return n
            time.sleep(0.05)
        raise RuntimeError(f"etcd: no leader within 30 s (logs in {self.root})")

    def client(self) -> Client:
        return EtcdClient("127.0.0.1", self.cport[self._leader])

    def refresh_leader(self) -> None:
        self._leader = self.leader()

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def kill(self, node: str) -> None:
        self.procs[node].kill()
        self.procs[node].wait()

    def restart(self, node: str) -> None:
        self._start(node, "existing")

    def healthy(self) -> bool:
        sts = [self._status(n) for n in self.nodes]
        leaders = {st.get("leader") for st in sts if st is not None}
        return all(st is not None for st in sts) and len(leaders) == 1 and None not in leaders

    def data_dirs(self) -> list[str]:
        return [os.path.join(self.root, n) for n in self.nodes]

    def down(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# -- measurements -----------------------------------------------------------------------------


def _median_result(results: list[LoadResult]) -> LoadResult:
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def interleaved(
    systems: list[System],
    rounds: int,
    run: Callable[[System], Awaitable[LoadResult]],
) -> dict[str, LoadResult]:
    """A/B/A/B: each round runs every system once, in turn; the median round per system."""
    got: dict[str, list[LoadResult]] = {s.name: [] for s in systems}
    for _ in range(rounds):
        for s in systems:
            got[s.name].append(asyncio.run(run(s)))
    return {k: _median_result(v) for k, v in got.items()}


def failover(
    sys_: System, trials: int, kills: list[tuple[float, float]] | None = None
) -> list[float]:
    """SIGKILL the leader; seconds until a write succeeds at a surviving node. The killed node
    is restarted (and the cluster healthy again) before the next trial. ``kills`` gets the
    wall-clock time of each kill and of the write's success (for :func:`failover_phases`)."""
    out: list[float] = []
    for _ in range(trials):
        sys_.refresh_leader()  # type: ignore[attr-defined]
        victim = sys_.leader()
        wall0 = time.time()
        t0 = time.perf_counter()
        sys_.kill(victim)
        out.append(asyncio.run(_first_write(sys_, t0, victim)))
        if kills is not None:
            kills.append((wall0, wall0 + out[-1]))
        sys_.restart(victim)
        sys_.wait_healthy()
    return out


async def _first_write(sys_: System, t0: float, victim: str) -> float:
    deadline = t0 + 30.0
    while time.perf_counter() < deadline:
        try:
            sys_.refresh_leader()  # type: ignore[attr-defined]
            if sys_.leader() == victim:
                continue
            c = sys_.client()
            await asyncio.wait_for(c.connect(), 2.0)
            ok = await asyncio.wait_for(c.put("failover", "x"), 2.0)
            await c.close()
            if ok:
                return time.perf_counter() - t0
        except (OSError, TimeoutError, RuntimeError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.01)
    return float("inf")


def failover_phases(sys_: Raftlab, kills: list[tuple[float, float]]) -> dict[str, Any]:
    """Where a failover's time goes, from the survivors' event logs: ``detect`` = kill to
    the first survivor's election timeout (it turns pre-candidate), ``elect`` = from there
    to the new leader's role event (pre-vote and vote rounds, the vote's fsync), ``client``
    = from there to the first write acknowledged (the no-op's commit, the client finding
    the leader: status polling, connect, warm-up read, the put). p50 and max per phase."""
    roles: list[tuple[float, str, str]] = []
    for nid in sys_.lc.config().nodes:
        path = os.path.join(sys_.lc.config().node_log_dir(nid), "events.jsonl")
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
            for line in f:
                if '"ev":"role"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    e = json.loads(line)
                    roles.append((float(e["ts"]), nid, str(e.get("role"))))
    roles.sort()
    phases: dict[str, list[float]] = {"detect": [], "elect": [], "client": []}
    for killed, done in kills:
        after = [r for r in roles if killed <= r[0] <= done]
        pre = next((r[0] for r in after if r[2] in ("pre_candidate", "candidate")), None)
        lead = next((r[0] for r in after if r[2] == "leader"), None)
        if pre is None or lead is None:
            continue
        phases["detect"].append(pre - killed)
        phases["elect"].append(lead - pre)
        phases["client"].append(done - lead)
    out: dict[str, Any] = {}
    for k, v in phases.items():
        v.sort()
        if v:
            out[k] = {"p50": round(percentile(v, 0.5), 3), "max": round(v[-1], 3)}
    return out


def catchup(sys_: Raftlab, writes: int) -> dict[str, float]:
    """Stop a follower, write ``writes`` values (64 clients), restart it. ``total_s``:
    seconds from its restart until it has applied everything the leader had; ``up_s``: of
    that, until its process answered a status request (interpreter start, imports, WAL
    recovery), so ``total_s - up_s`` is what Raft's catch-up itself took; ``cpu_s``: CPU
    time the restarted process used until caught up (start included), which a busy
    machine stretches less than the wall-clock figures. The phases read back from the
    node's event log are added (:func:`_catchup_phases`)."""
    sys_.refresh_leader()
    leader = sys_.leader()
    follower = next(n for n in sorted(sys_.pids()) if n != leader)
    sys_.lc.stop_node(follower)
    asyncio.run(_write_n(sys_, writes))
    target = sys_.applied(leader)
    wall0 = time.time()
    t0 = time.perf_counter()
    sys_.restart(follower)
    up = float("inf")
    while time.perf_counter() - t0 < 120.0:
        applied = sys_.applied(follower)
        now = time.perf_counter() - t0
        if applied >= 0:
            up = min(up, now)
        if applied >= target:
            cpu = _cpu_s(sys_.pids()[follower])
            out = {"total_s": round(now, 2), "up_s": round(up, 2), "cpu_s": round(cpu, 2)}
            events = os.path.join(sys_.lc.config().node_log_dir(follower), "events.jsonl")
            return out | _catchup_phases(events, wall0, target)
        time.sleep(0.02)
    return {"total_s": float("inf"), "up_s": round(up, 2), "cpu_s": float("inf")}


CATCHUP_PHASES = ("logged_start_s", "wal_open_s", "first_append_s", "committed_s", "applied_s")
"""Seconds from the restart (wall clock), from the restarted node's event log: its ``start``
event (interpreter, imports, storage open: everything before the node exists),
``wal_open_s`` the storage recovery alone (the event's ``recovery.duration_s``), its first
AppendEntries stepped, the commit index reaching the leader's, the last entry applied."""


def _catchup_phases(events_path: str, wall0: float, target: int) -> dict[str, float]:
    """Where a catch-up's time went, from the node's event log (written by a background
    thread: waits up to 5 s for the apply of ``target``). Missing phases are left out."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + 5.0
    while "applied_s" not in found and time.monotonic() < deadline:
        found = {}
        with contextlib.suppress(OSError), open(events_path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    ev = json.loads(line)
                    ts = float(ev.get("ts", 0.0)) - wall0
                    if ts < 0:
                        continue
                    kind = ev.get("ev")
                    if kind == "start":
                        found = {"logged_start_s": ts}
                        rec = ev.get("recovery") or {}
                        found["wal_open_s"] = float(rec.get("duration_s", 0.0))
                    elif kind == "recv" and ev.get("msg") == "app":
                        found.setdefault("first_append_s", ts)
                    elif kind == "commit" and int(ev.get("index", 0)) >= target:
                        found.setdefault("committed_s", ts)
                    elif kind == "apply" and int((ev.get("entries") or [[0]])[-1][0]) >= target:
                        found.setdefault("applied_s", ts)
        if "applied_s" not in found:
            time.sleep(0.1)
    return {k: round(v, 3) for k, v in found.items()}


def catchups(sys_: Raftlab, plan: Plan) -> dict[str, Any]:
    """``plan.catchup_runs`` catch-ups in a row: the median run by total time, and all."""
    runs = [catchup(sys_, plan.catchup_writes) for _ in range(plan.catchup_runs)]
    med = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
    return {"median": med, "runs": runs}


def failovers(s: System, trials: int) -> dict[str, Any]:
    return _failover_stats(failover(s, trials))


def _failover_stats(fo: list[float]) -> dict[str, Any]:
    fo = sorted(fo)
    return {
        "trials": len(fo),
        "p50": round(percentile(fo, 0.5), 3),
        "p99": round(percentile(fo, 0.99), 3),
        "max": round(fo[-1], 3),
    }


def _bytecode_cache(tmp: str) -> Callable[[], None]:
    """Let the node processes started from here cache their bytecode (under ``tmp``, not in
    the tree), like an installed package: with ``PYTHONDONTWRITEBYTECODE`` set (as in some
    development shells) every restart compiled the whole package again, which the catch-up
    and failover figures then counted as the node's start (measured: 5.0 s vs 2.1 s wall to
    import the node at load 50). Returns the function that puts the environment back."""
    keys = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tmp, "pycache"))

    def restore() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    return restore


def _header(plan: Plan) -> dict[str, Any]:
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f} at start",
        "quick": plan is QUICK,
        "notes": [],
        "tables": {},
    }


def run_recovery(plan: Plan) -> dict[str, Any]:
    """Only the failover and catch-up figures (``--recovery``): raftlab and etcd failover
    interleaved per trial block, then raftlab's catch-ups; minutes instead of the whole
    comparison."""
    out = _header(plan) | {"failover_s": {}}
    tmp = tempfile.mkdtemp(prefix="bench-recovery-")
    restore_env = _bytecode_cache(tmp)
    systems: list[System] = []
    try:
        ours = Raftlab(tmp, 3, "always")
        systems.append(ours)
        pair: list[System] = [ours]
        if shutil.which("etcd") is not None:
            theirs = Etcd(tmp, 3)
            theirs.refresh_leader()
            systems.append(theirs)
            pair.append(theirs)
        # Blocks of 5 trials, A/B/A/B, so both see the same stretch of machine load.
        got: dict[str, list[float]] = {s.name: [] for s in pair}
        kills: list[tuple[float, float]] = []
        for _ in range(max(1, plan.failover_trials // 5)):
            for s in pair:
                k = kills if s is ours else None
                got[s.name] += failover(s, min(5, plan.failover_trials), k)
        out["failover_phases_s"] = {ours.name: failover_phases(ours, kills)}
        out["failover_s"] = {name: _failover_stats(fo) for name, fo in got.items()}
        ours.refresh_leader()
        out["catchup_s"] = {ours.name: catchups(ours, plan)}
        out["catchup_writes"] = plan.catchup_writes
        out["load_at_end"] = round(os.getloadavg()[0], 1)
    finally:
        for s in systems:
            s.down()
        restore_env()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept {tmp} (BENCH_KEEP=1)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_catchup(plan: Plan) -> dict[str, Any]:
    """Only the catch-up (``--catchup``): ``plan.catchup_runs`` catch-ups of this tree and,
    with ``BENCH_BASELINE=<tree>``, of that tree's cluster, interleaved run by run so both
    see the same stretch of machine load."""
    out = _header(plan) | {"catchup_s": {}, "catchup_writes": plan.catchup_writes}
    tmp = tempfile.mkdtemp(prefix="bench-catchup-")
    restore_env = _bytecode_cache(tmp)
    systems: list[Raftlab] = []
    try:
        systems.append(Raftlab(tmp, 3, "always"))
        baseline_tree = os.environ.get("BENCH_BASELINE")
        if baseline_tree:
            systems.append(Raftlab(tmp, 3, "always", tree=baseline_tree))
        runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
        for _ in range(plan.catchup_runs):
            for s in systems:
                r = catchup(s, plan.catchup_writes)
                r["load"] = round(os.getloadavg()[0], 1)
                runs[s.name].append(r)
                print(s.name, json.dumps(r), flush=True)
        for name, rs in runs.items():
            med = sorted(rs, key=lambda r: r["total_s"])[len(rs) // 2]
            out["catchup_s"][name] = {"median": med, "runs": rs}
        out["load_at_end"] = round(os.getloadavg()[0], 1)
    finally:
        for s in systems:
            s.down()
        restore_env()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


async def _write_n(sys_: System, n: int) -> None:
    clients = await _connect_all(sys_.client, 64)
    left = [n]

    async def one(c: Client) -> None:
        while left[0] > 0:
            left[0] -= 1
            await c.put(f"c{left[0] % 1000}", "v" * 200)

    await asyncio.gather(*(one(c) for c in clients))
    for c in clients:
        await c.close()


def syncobj_max(rates: tuple[int, ...], size: int, batch: bool, seconds: float) -> dict[str, Any]:
    """The highest of ``rates`` (total commands/s over 3 nodes) with >= 90 % success, and the
    latency there (PySyncObj's own criterion)."""
    best: dict[str, Any] = {"rate": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    for rate in rates:
        base = _free_ports("127.0.0.1", 3)
        addrs = [f"127.0.0.1:{base + i}" for i in range(3)]
        procs = []
        for i in range(3):
            others = [a for j, a in enumerate(addrs) if j != i]
            cmd = [sys.executable, str(HERE / "_syncobj_node.py"), str(rate // 3), str(size)]
            cmd += [str(seconds), "1" if batch else "0", addrs[i], *others]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        sent = ok = 0
        lat: list[float] = []
        for p in procs:
            out, _ = p.communicate(timeout=seconds + 60)
            try:
                r = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                continue
            sent += r["sent"]
            ok += r["ok"]
            lat += r["lat"]
        if sent and ok / sent >= 0.9:
            lat.sort()
            best = {
                "rate": ok / seconds,
                "p50_ms": percentile(lat, 0.5) * 1e3,
                "p99_ms": percentile(lat, 0.99) * 1e3,
            }
        else:
            break
    return best


def analysis_rate(cluster_dir: str) -> float:
    """events/s of ``raftlab analyze`` (load, merge, checks, outputs) on a cluster's logs."""
    from deploy.analysis import analyze, write_outputs

    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        for nid in sorted(os.listdir(cluster_dir)):
            src = os.path.join(cluster_dir, nid, "log", "events.jsonl")
            if os.path.exists(src):
                os.makedirs(os.path.join(tmp, nid), exist_ok=True)
                shutil.copy(src, os.path.join(tmp, nid, "events.jsonl"))
        t0 = time.perf_counter()
        a = analyze(Path(tmp), check_linearizable=False)
        write_outputs(a)
        return a.logs.count() / (time.perf_counter() - t0)


# -- the run ----------------------------------------------------------------------------------


def _row(label: str, ours: LoadResult, theirs: LoadResult | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case": label,
        "ours_rate": round(ours.rate, 1),
        "ours_p50_ms": round(ours.p(0.5), 2),
        "ours_p99_ms": round(ours.p(0.99), 2),
        "ours_failed": ours.failed,
    }
    if theirs is not None:
        row |= {
            "theirs_rate": round(theirs.rate, 1),
            "theirs_p50_ms": round(theirs.p(0.5), 2),
            "theirs_p99_ms": round(theirs.p(0.99), 2),
            "theirs_failed": theirs.failed,
            "ratio": round(ours.rate / theirs.rate, 2) if theirs.rate else None,
        }
    return row


def run(plan: Plan) -> dict[str, Any]:
    out = _header(plan)
    have_etcd = shutil.which("etcd") is not None
    if not have_etcd:
        out["notes"].append(
            "etcd not measured: no `etcd` binary (Debian package etcd-server; `make bench` "
            "installs it when run as root)"
        )
    try:
        import pysyncobj  # type: ignore[import-untyped]  # noqa: F401

        have_syncobj = True
    except ImportError:
        have_syncobj = False
        out["notes"].append("PySyncObj not measured: `pip install -e .[bench]` brings it")
    tmp = tempfile.mkdtemp(prefix="bench-compare-")
    restore_env = _bytecode_cache(tmp)
    systems: list[System] = []
    try:
        ours = Raftlab(tmp, 3, "always")
        systems.append(ours)
        theirs: Etcd | None = Etcd(tmp, 3) if have_etcd else None
        if theirs is not None:
            systems.append(theirs)
            theirs.refresh_leader()
        pair: list[System] = [s for s in (ours, theirs) if s is not None]
        baseline_tree = os.environ.get("BENCH_BASELINE")
        before: Raftlab | None = None
        if baseline_tree:
            before = Raftlab(tmp, 3, "always", tree=baseline_tree)
            systems.append(before)
        trio: list[System] = pair + ([before] if before is not None else [])

        def writes(n: int, size: int) -> Callable[[System], Awaitable[LoadResult]]:
            return lambda s: closed_loop(s.client, n, plan.seconds, size)

        # CPU per write at one client (all node processes, user + system).
        cpu0 = {s.name: sum(_cpu_s(p) for p in s.pids().values()) for s in trio}
        res1 = interleaved(trio, plan.rounds, writes(1, 200))
        cpu_per_write = {
            s.name: (sum(_cpu_s(p) for p in s.pids().values()) - cpu0[s.name])
            / max(1, res1[s.name].ok * plan.rounds)
            * 1e3
            for s in trio
        }
        table = []
        maxrate: dict[str, float] = {}
        for n in plan.clients:
            r = res1 if n == 1 else interleaved(trio, plan.rounds, writes(n, 200))
            table.append(_row(f"writes 200 B, {n} clients", r[ours.name], r.get(_n(theirs))))
            if before is not None:
                b = r[before.name]
                table[-1] |= {
                    "before_rate": round(b.rate, 1),
                    "before_p50_ms": round(b.p(0.5), 2),
                    "before_p99_ms": round(b.p(0.99), 2),
                    "gain": round(r[ours.name].rate / b.rate, 2) if b.rate else None,
                }
            for k, v in r.items():
                maxrate[k] = max(maxrate.get(k, 0.0), v.rate)
        if before is not None:
            before.down()
            print(table[-1], flush=True)
        for size in plan.sizes:
            if size == 200:
                continue
            r = interleaved(pair, plan.rounds, writes(32, size))
            table.append(_row(f"writes {size} B, 32 clients", r[ours.name], r.get(_n(theirs))))
            print(table[-1], flush=True)
        r = interleaved(
            pair, plan.rounds, lambda s: closed_loop(s.client, 32, plan.seconds, 200, reads=True)
        )
        table.append(_row("linearizable reads, 32 clients", r[ours.name], r.get(_n(theirs))))
        out["tables"]["closed_loop"] = table
        out["cpu_ms_per_write_1_client"] = {k: round(v, 3) for k, v in cpu_per_write.items()}

        lat_rows = []
        for frac in (0.1, 0.5):
            got: dict[str, LoadResult] = {}
            for s in pair:
                rate = max(1.0, frac * maxrate[s.name])
                got[s.name] = asyncio.run(fixed_rate(s.client, 32, plan.seconds, 200, rate))
            lat_rows.append(
                {"at": f"{int(frac * 100)}% of max"}
                | {
                    f"{k}": {
                        "rate": round(v.rate, 1),
                        "p50_ms": round(v.p(0.5), 2),
                        "p99_ms": round(v.p(0.99), 2),
                    }
                    for k, v in got.items()
                }
            )
        out["tables"]["fixed_rate"] = lat_rows

        out["failover_s"] = {s.name: failovers(s, plan.failover_trials) for s in pair}
        ours.refresh_leader()
        out["catchup_s"] = {ours.name: catchups(ours, plan)}
        total_writes = (
            sum(r["ours_rate"] for r in table if r["case"].startswith("writes"))
            * plan.seconds
            * plan.rounds
            + plan.catchup_writes * plan.catchup_runs
        )
        out["rss_mib"] = {
            s.name: {n: round(_rss_mib(p), 1) for n, p in sorted(s.pids().items())} for s in pair
        }
        out["disk_bytes_per_write"] = {
            s.name: round(sum(_du(d) for d in s.data_dirs()) / len(s.data_dirs()) / total_writes)
            for s in pair
        }
        out["analysis_events_per_s"] = round(analysis_rate(ours.lc.dir))

        # Variants of ours (and PySyncObj, which keeps its log in memory: fsync off).
        variants: list[dict[str, Any]] = []
        ours_off = Raftlab(tmp, 3, "never")
        systems.append(ours_off)
        extra: list[System] = [ours_off]
        if plan.five_nodes:
            five = Raftlab(tmp, 5, "always")
            systems.append(five)
            extra.append(five)
            if have_etcd:
                etcd5 = Etcd(tmp, 5)
                etcd5.refresh_leader()
                systems.append(etcd5)
                r = interleaved([five, etcd5], plan.rounds, writes(32, 200))
                label = "5 nodes, writes 200 B, 32 clients"
                variants.append(_row(label, r[five.name], r[etcd5.name]))
                etcd5.down()
        r = interleaved([ours_off, ours], plan.rounds, writes(32, 200))
        label = "fsync off vs on, writes 200 B, 32 clients"
        variants.append(_row(label, r[ours_off.name], r[ours.name]))
        if have_syncobj:
            for batch in (True, False):
                so = syncobj_max(plan.syncobj_rates, 200, batch, max(1.0, plan.seconds * 2))
                ours_max = max(
                    asyncio.run(closed_loop(ours_off.client, n, plan.seconds, 200)).rate
                    for n in (32, 128)
                )
                variants.append(
                    {
                        "case": f"max writes/s 200 B vs PySyncObj, batching {_on(batch)}, "
                        "fsync off",
                        "ours_rate": round(ours_max, 1),
                        "theirs_rate": round(so["rate"], 1),
                        "theirs_p50_ms": round(so["p50_ms"], 2),
                        "theirs_p99_ms": round(so["p99_ms"], 2),
                        "ratio": round(ours_max / so["rate"], 2) if so["rate"] else None,
                    }
                )
        out["tables"]["variants"] = variants
    finally:
        for s in systems:
            try:
                s.down()
            except Exception as exc:  # cleanup goes on for the others
                print(f"stopping {s.name}: {exc}", file=sys.stderr)
        restore_env()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _n(s: System | None) -> str:
    return s.name if s is not None else "-"


def render(out: dict[str, Any]) -> str:
    lines = [
        "# raftlab side by side with etcd and PySyncObj",
        "",
        f"Written by `python -m bench compare` on {out['when']} ({out['machine']})."
        + (" QUICK MODE: smoke figures only." if out["quick"] else ""),
        "Same machine, same run, interleaved A/B/A/B (median of the rounds); 3 nodes on",
        "loopback, fsync on, clients in one asyncio process, connected before the clock starts.",
        "ratio = raftlab / etcd (>= 1 means raftlab is at least as fast).",
        "",
    ]
    lines += [f"- note: {n}" for n in out["notes"]]
    lines += [
        "",
        "| case | raftlab/s | p50 ms | p99 ms | etcd/s | p50 ms | p99 ms | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["tables"].get("closed_loop", []):
        lines.append(_md_row(r))
    with_before = [r for r in out["tables"].get("closed_loop", []) if "before_rate" in r]
    if with_before:
        lines += [
            "",
            "Before/after (the baseline tree in BENCH_BASELINE, same run, interleaved):",
            "",
            "| case | after/s | p50 ms | p99 ms | before/s | p50 ms | p99 ms | after/before |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in with_before:
            lines.append(
                f"| {r['case']} | {r['ours_rate']:,} | {r['ours_p50_ms']} | {r['ours_p99_ms']} | "
                f"{r['before_rate']:,} | {r['before_p50_ms']} | {r['before_p99_ms']} | "
                f"{r['gain']} |"
            )
    lines += ["", "Fixed rate (32 clients, 200 B), latency from the scheduled start:", ""]
    lines += ["| load | system | writes/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for row in out["tables"].get("fixed_rate", []):
        for k, v in row.items():
            if k != "at":
                lines.append(f"| {row['at']} | {k} | {v['rate']} | {v['p50_ms']} | {v['p99_ms']} |")
    lines += ["", "Variants (ours vs theirs as named in the case):", ""]
    lines += [
        "| case | ours/s | p50 ms | p99 ms | theirs/s | p50 ms | p99 ms | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["tables"].get("variants", []):
        lines.append(_md_row(r))
    lines += ["", "| measure | values |", "|---|---|"]
    for key in (
        "cpu_ms_per_write_1_client",
        "failover_s",
        "catchup_s",
        "rss_mib",
        "disk_bytes_per_write",
        "analysis_events_per_s",
    ):
        lines.append(f"| {key} | `{json.dumps(out.get(key))}` |")
    return "\n".join(lines) + "\n"


def _written_by(out: dict[str, Any], title: str, flag: str) -> list[str]:
    """A results page's title and where/when/how it was measured."""
    return [
        f"# {title}",
        "",
        f"Written by `python -m bench.bench_compare {flag}` on {out['when']} "
        f"({out['machine']}; load {out.get('load_at_end')} at the end)."
        + (" QUICK MODE: smoke figures only." if out["quick"] else ""),
    ]


def render_recovery(out: dict[str, Any]) -> str:
    lines = [
        *_written_by(
            out, "raftlab leader failover and catch-up (etcd failover beside it)", "--recovery"
        ),
        "Failover: SIGKILL the leader, seconds until a write succeeds at a survivor (the",
        "client's own detection and retries included), default timeouts, trials in blocks",
        "of 5 alternating between the systems. Catch-up: a follower stopped while "
        f"{out.get('catchup_writes', 0):,}",
        "writes went in, then restarted; total = restart to everything applied, up = until",
        "its process answered (interpreter start, imports from a bytecode cache, WAL",
        "recovery); CPU = the restarted process's CPU time until caught up.",
        "",
        "| system | trials | failover p50 s | p99 s | max s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, f in out["failover_s"].items():
        lines.append(f"| {name} | {f['trials']} | {f['p50']} | {f['p99']} | {f['max']} |")
    lines += ["", "Where raftlab's failover time goes (p50 / max s, from the event logs):", ""]
    lines += ["| system | detect | elect | client |", "|---|---:|---:|---:|"]
    for name, ph in out.get("failover_phases_s", {}).items():
        cells = [
            f"{ph[k]['p50']} / {ph[k]['max']}" if k in ph else "-"
            for k in ("detect", "elect", "client")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _catchup_table(out)) + "\n"


def _catchup_table(out: dict[str, Any]) -> list[str]:
    lines = ["", "| system | catch-up run | total s | process up s | Raft catch-up s | CPU s |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for name, c in out.get("catchup_s", {}).items():
        for k, r in enumerate(c["runs"], 1):
            lines.append(
                f"| {name} | {k} | {r['total_s']} | {r['up_s']} | "
                f"{round(r['total_s'] - r['up_s'], 2)} | {r.get('cpu_s', '-')} |"
            )
    lines += [
        "",
        "From the restarted node's event log (s from the restart): `start` logged "
        "(interpreter, imports, storage open), of which the storage recovery; first "
        "AppendEntries stepped; commit index at the leader's; all applied.",
        "",
        "| system | run | start logged | storage open | first append | committed | applied |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in out.get("catchup_s", {}).items():
        for k, r in enumerate(c["runs"], 1):
            cells = " | ".join(str(r.get(p, "-")) for p in CATCHUP_PHASES)
            lines.append(f"| {name} | {k} | {cells} |")
    return lines


def render_catchup(out: dict[str, Any]) -> str:
    lines = [
        *_written_by(out, "raftlab catch-up of a restarted node", "--catchup"),
        f"A follower stopped while {out.get('catchup_writes', 0):,} writes (200 B, 64 "
        "clients) went in, then restarted; total = restart to everything applied, up = "
        "until its process answered (interpreter start, imports from a bytecode cache, WAL "
        "recovery); CPU = the restarted process's CPU time until caught up. With "
        "BENCH_BASELINE the baseline tree's cluster runs beside it, interleaved run by run.",
    ]
    return "\n".join(lines + _catchup_table(out)) + "\n"


def _md_row(r: dict[str, Any]) -> str:
    def g(k: str) -> str:
        v = r.get(k)
        return "-" if v is None else f"{v:,}" if isinstance(v, float | int) else str(v)

    return (
        f"| {r['case']} | {g('ours_rate')} | {g('ours_p50_ms')} | {g('ours_p99_ms')} | "
        f"{g('theirs_rate')} | {g('theirs_p50_ms')} | {g('theirs_p99_ms')} | {g('ratio')} |"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(__doc__)
        return
    quick = "--quick" in args or os.environ.get("BENCH_QUICK") == "1"
    plan = QUICK if quick else FULL
    render_fn: Callable[[dict[str, Any]], str]
    if "--catchup" in args:
        out, render_fn = run_catchup(plan), render_catchup
        name = "catchup-quick" if quick else "catchup"
    elif "--recovery" in args:
        out, render_fn = run_recovery(plan), render_recovery
        name = "recovery-quick" if quick else "recovery"
    else:
        out, render_fn = run(plan), render
        name = "compare-quick" if quick else "compare"
    target = Path(os.environ.get("BENCH_OUT", str(RESULTS)))
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    (target / f"{name}.md").write_text(render_fn(out))
    print(f"wrote {target / name}.md", flush=True)


if __name__ == "__main__":
    main()
