"""The clients' history of a simulated run is checked with raft.lincheck: linearizable for
the real core, and the check has teeth when the history lies."""

from __future__ import annotations

import dataclasses

import pytest

from raft.core import ReadState
from raft.lincheck import HistoryEvent, Verdict, check_history
from raft.sim import Invariant, SimConfig, Workload, World


def _run(workload: Workload, seed: int) -> World:
    world = World(SimConfig(seed=seed, nodes=5, steps=250, workload=workload))
    result = world.run()
    assert result.violation is None, result.violation
    return world


def test_register_history_is_linearizable_and_nontrivial() -> None:
    world = _run(Workload.REGISTER, seed=5)
    history = world.clients.history
    kinds = {(e.f, e.type) for e in history}
    assert {("read", "ok"), ("write", "ok"), ("cas", "invoke")} <= kinds
    assert world.clients.ok > 20
    res = check_history(history, model="cas-register", timeout_s=30)
    assert res.verdict is Verdict.LINEARIZABLE
    # Virtual times: completions never precede their invocation.
    assert all(e.time >= 0 for e in history)
    assert [e.time for e in history] == sorted(e.time for e in history)


def test_kv_history_is_linearizable() -> None:
    world = _run(Workload.KV, seed=6)
    assert {e.key for e in world.clients.history} >= {"k0", "k1"}
    res = check_history(world.clients.history, model="kv", timeout_s=30)
    assert res.verdict is Verdict.LINEARIZABLE


def _falsify_a_read(history: list[HistoryEvent]) -> list[HistoryEvent]:
    """Make the last successful read return a value no one ever wrote."""
    out = list(history)
    for k in range(len(out) - 1, -1, -1):
        e = out[k]
        if e.f == "read" and e.type == "ok":
            out[k] = dataclasses.replace(e, value=-1)
            return out
    raise AssertionError("no ok read in the history")


def test_lying_history_is_not_linearizable() -> None:
    world = _run(Workload.REGISTER, seed=5)
    res = check_history(_falsify_a_read(world.clients.history), model="cas-register", timeout_s=30)
    assert res.verdict is Verdict.NOT_LINEARIZABLE


def _local_read(self: World, node: str, context: bytes) -> None:
    # A broken read path: answer from the local state machine at once, no ReadIndex round.
    self.clients.on_read_state(
        node, ReadState(index=self.applied_index(node), context=context), self.now, self
    )


def test_stale_local_reads_are_caught_as_linearizability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(World, "read_index", _local_read)
    found = None
    for seed in range(10):
        r = World(SimConfig(seed=seed, nodes=5, steps=250)).run()
        if r.violation is not None:
            found = r.violation.invariant
            break
    assert found is Invariant.LINEARIZABILITY
