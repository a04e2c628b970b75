"""A seed decides everything: same seed, same trace (also in another process with another
hash seed); another seed, another run."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from raft.sim import SimConfig, run_seed

_CFG = {"nodes": 5, "steps": 200, "trace": True, "lincheck": False}


def _cfg(seed: int) -> SimConfig:
    return SimConfig(seed=seed, nodes=5, steps=200, trace=True, lincheck=False)


def _digest(seed: int) -> str:
    r = run_seed(_cfg(seed))
    return hashlib.sha256("\n".join(r.trace).encode()).hexdigest()


def test_same_seed_same_trace() -> None:
    a = run_seed(_cfg(11))
    b = run_seed(_cfg(11))
    assert len(a.trace) > 1000
    assert a.trace == b.trace
    assert a.to_json() == b.to_json()


def test_different_seeds_differ() -> None:
    assert len({_digest(s) for s in (1, 2, 3)}) == 3


def test_same_trace_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import hashlib; from raft.sim import SimConfig, run_seed; "
        f"r = run_seed(SimConfig(seed=11, **{_CFG!r})); "
        "print(hashlib.sha256('\\n'.join(r.trace).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert digests == {_digest(11)}
