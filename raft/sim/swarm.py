"""Run many seeds and summarise them (FoundationDB/TigerBeetle-style swarm testing).

Each seed is an independent :func:`raft.sim.world.run_seed`; with ``jobs > 1`` they run in
worker processes (fork). Configs go to the workers and results come back as JSON text, so
nothing but plain data crosses the process boundary. Results are reported in seed order, so
a swarm's summary does not depend on the number of jobs.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raft.sim.world import SimConfig, SimResult, run_seed

Progress = Callable[[int, int], None]
"""Called with (done, total) after each seed."""
OnResult = Callable[[SimResult], None]
"""Called with each seed's result as soon as it is known (in completion order), so a
failure is reported while the swarm goes on."""


@dataclass(frozen=True, slots=True)
class SwarmSummary:
    seeds: int
    steps: int
    """Ticks of virtual time simulated, over all seeds."""
    events: int
    elections: int
    commits: int
    client_ops: int
    client_ok: int
    faults: int
    lincheck: tuple[tuple[str, int], ...]
    """Verdict -> number of seeds, sorted by verdict."""
    failures: tuple[SimResult, ...]
    """Seeds with a violation, in seed order."""
    results: tuple[SimResult, ...]
    """Every seed's result, in seed order."""
    wall_s: float
    leader_after_heal_ticks_max: float | None = None
    """Slowest recovery over the seeds: ticks from the heal to the first leader."""
    commit_after_heal_ticks_max: float | None = None
    """Slowest recovery over the seeds: ticks from the heal to a committed proposal."""
    membership_changes: int = 0
    late_messages: int = 0
    snapshots_installed: int = 0

    @property
    def violations(self) -> int:
        return len(self.failures)


def _run_json(config_json: str) -> str:
    config = SimConfig.from_json(json.loads(config_json))
    return json.dumps(run_seed(config).to_json())


def run_swarm(
    configs: Sequence[SimConfig],
    jobs: int = 1,
    progress: Progress | None = None,
    on_result: OnResult | None = None,
) -> SwarmSummary:
    """Run every config (one seed each) and summarise; ``jobs`` worker processes."""
    start = time.monotonic()
    total = len(configs)
    results: list[SimResult] = []
    if jobs <= 1 or total <= 1:
        for config in configs:
            results.append(run_seed(config))
            if on_result is not None:
                on_result(results[-1])
            if progress is not None:
                progress(len(results), total)
    else:
        payloads = [json.dumps(c.to_json()) for c in configs]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes=jobs) as pool:
            # chunksize 1: a slow seed holds back no other seed's result.
            for text in pool.imap_unordered(_run_json, payloads, chunksize=1):
                results.append(SimResult.from_json(json.loads(text)))
                if on_result is not None:
                    on_result(results[-1])
                if progress is not None:
                    progress(len(results), total)
    results.sort(key=lambda r: r.seed)
    verdicts = Counter(r.lincheck for r in results)
    return SwarmSummary(
        seeds=total,
        steps=sum(r.steps for r in results),
        events=sum(r.events for r in results),
        elections=sum(r.elections for r in results),
        commits=sum(r.commits for r in results),
        client_ops=sum(r.client_ops for r in results),
        client_ok=sum(r.client_ok for r in results),
        faults=sum(r.faults for r in results),
        lincheck=tuple(sorted(verdicts.items())),
        failures=tuple(r for r in results if not r.ok),
        results=tuple(results),
        wall_s=time.monotonic() - start,
        leader_after_heal_ticks_max=max(
            (r.leader_after_heal_ticks for r in results if r.leader_after_heal_ticks is not None),
            default=None,
        ),
        membership_changes=sum(r.membership_changes for r in results),
        late_messages=sum(r.late_messages for r in results),
        snapshots_installed=sum(r.snapshots_installed for r in results),
        commit_after_heal_ticks_max=max(
            (r.commit_after_heal_ticks for r in results if r.commit_after_heal_ticks is not None),
            default=None,
        ),
    )
