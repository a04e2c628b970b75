"""Real crashes: a writer process appends and syncs in a loop, printing each durable index
after its sync; it is SIGKILLed at random moments (also while it opens and recovers), and
after every kill the directory must reopen with every index reported durable present, with
the right term and data, and nothing corrupt.

Starting a Python interpreter costs ~0.1-1 s, so the writers are forked from a small server
subprocess that imported raft.storage once; each writer is a separate process that gets a
real SIGKILL, with its stdout redirected to a file the test reads after the kill.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raft.storage import DiskStorage, FsyncPolicy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIN_ITERATIONS = 200
MAX_ITERATIONS = 400
TIME_BUDGET_S = 45.0
HARD_LIMIT_S = 120.0

WRITER_SERVER = textwrap.dedent(
    r"""
    import os, random, sys, traceback
    from raft.core.types import ConfState, Entry, HardState
    from raft.storage import DiskStorage, FsyncPolicy

    def data(i, t):
        return f"{i}/{t}/".encode() * (1 + (i * 7 + t) % 5)

    def say(line):
        os.write(1, (line + "\n").encode())

    def writer(data_dir, seed):
        rng = random.Random(seed)
        s = DiskStorage(data_dir, FsyncPolicy.ALWAYS, segment_bytes=16384)
        say(f"R {s.first_index()} {s.last_index()}")
        term = max(1, s.hard_state.term, s.term(s.last_index()))
        while True:
            last = s.last_index()
            lo = last + 1
            if rng.random() < 0.1 and last - rng.randint(0, 5) >= s.first_index():
                lo = last - rng.randint(0, 5)  # a conflicting suffix from a newer leader
                term += 1
            elif rng.random() < 0.05:
                term += 1
            hi = lo + rng.randint(0, 19)
            say(f"W {lo} {hi} {term}")
            s.append([Entry(i, term, data(i, term)) for i in range(lo, hi + 1)])
            s.set_hard_state(HardState(term, "n1", hi))
            s.sync()
            say(f"D {lo} {hi} {term}")
            if s.last_index() - s.first_index() > 1500 and rng.random() < 0.1:
                at = s.last_index() - 100
                s.create_snapshot(at, ConfState(voters=frozenset({"n1"})), b"sm")
                s.compact(at)
                say(f"S {at}")

    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":
            data_dir, out_path, seed = cmd[1], cmd[2], int(cmd[3])
            pid = os.fork()
            if pid == 0:
                try:
                    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 1)
                    writer(data_dir, seed)
                except BaseException:
                    say("E " + traceback.format_exc().replace("\n", " | "))
                    os._exit(3)
                os._exit(0)
            print(f"pid {pid}", flush=True)
        elif cmd[0] == "reap":
            _, status = os.waitpid(int(cmd[1]), 0)
            print(f"status {status}", flush=True)
    """
)


def data(i: int, t: int) -> bytes:
    return f"{i}/{t}/".encode() * (1 + (i * 7 + t) % 5)


class Server:
    """The forking writer server; killed (with any writer) when the test ends."""

    def __init__(self, script: Path) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.child: int | None = None

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"writer server died (exit {self.proc.poll()})"
        return answer.strip()

    def close(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    script = tmp_path / "writer_server.py"
    script.write_text(WRITER_SERVER)
    srv = Server(script)
    try:
        yield srv
    finally:
        srv.close()


def wait_ready(out: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        text = out.read_text() if out.exists() else ""
        if "R " in text or "E " in text:
            return
        time.sleep(0.001)


def test_sigkill_never_loses_a_durable_entry(tmp_path: Path, server: Server) -> None:
    data_dir = tmp_path / "node"
    out = tmp_path / "writer.out"
    rng = random.Random(20261128)
    expected: dict[int, int] = {}  # index -> term, as reported durable
    hs_term = 0
    torn_tails = kills_before_ready = 0
    started = time.monotonic()
    iterations = 0
    while iterations < MAX_ITERATIONS:
        elapsed = time.monotonic() - started
        if elapsed > HARD_LIMIT_S or (iterations >= MIN_ITERATIONS and elapsed > TIME_BUDGET_S):
            break
        iterations += 1
        pid = int(server.ask(f"run {data_dir} {out} {rng.randrange(1 << 30)}").split()[1])
        server.child = pid
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0, 0.004))  # often still opening / recovering
        else:
            wait_ready(out, time.monotonic() + 10)
            time.sleep(rng.uniform(0, 0.03))
        os.kill(pid, signal.SIGKILL)
        status = int(server.ask(f"reap {pid}").split()[1])
        server.child = None
        lines = out.read_text().splitlines() if out.exists() else []
        errors = [ln for ln in lines if ln.startswith("E ")]
        assert not errors, errors[0]
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        if not any(ln.startswith("R ") for ln in lines):
            kills_before_ready += 1

        pending: tuple[int, int] | None = None  # (lo, term) of a write not confirmed
        for ln in lines:
            if len(ln.split()) < 2:
                continue
            kind, *nums = ln.split()
            if kind == "W" and len(nums) == 3:
                pending = (int(nums[0]), int(nums[2]))
            elif kind == "D" and len(nums) == 3:
                lo, hi, term = map(int, nums)
                for i in [k for k in expected if k > hi]:
                    del expected[i]
                for i in range(lo, hi + 1):
                    expected[i] = term
                hs_term = max(hs_term, term)
                pending = None

        with DiskStorage(data_dir, FsyncPolicy.ALWAYS, segment_bytes=16384) as s:
            if s.recovery.torn_tail is not None:
                torn_tails += 1
            first, last = s.first_index(), s.last_index()
            assert s.snapshot().meta.index == first - 1
            pend_lo, pend_term = pending if pending else (1 << 62, 0)
            got = {e.index: e for e in s.entries(first, last + 1)} if last >= first else {}
            for i, term in expected.items():
                if i < first:
                    continue
                if i < pend_lo:
                    assert i in got, f"durable index {i} lost (log {first}..{last})"
                    assert got[i].term == term, f"index {i}: term {got[i].term} != {term}"
                elif i in got:
                    assert got[i].term in (term, pend_term)
            for e in got.values():
                assert e.data == data(e.index, e.term), f"index {e.index} has wrong data"
            assert s.hard_state.term >= hs_term
            assert s.hard_state.commit <= last
            expected = {i: e.term for i, e in got.items()}
    assert iterations >= MIN_ITERATIONS or time.monotonic() - started > HARD_LIMIT_S
    assert len(expected) > 0
    print(
        f"{iterations} kills, {kills_before_ready} before the writer was ready, "
        f"{torn_tails} torn tails cut, final log size {len(expected)}"
    )
