"""Placing the client history on the nodes' clock when the nodes also logged requests that
are not in the history (a `raft client put` before the workload): the first-event guess is
off by the gap, the rate cross-correlation is not (found in a `make lab` run, where the
report showed the kill windows 2.5 s before the elections they caused)."""

from __future__ import annotations

import random

from deploy.analysis.rundir import ALIGN_BIN_S, _coarse_shift


def _dense_history(rng: random.Random) -> list[float]:
    """Completion times (s) of ~700 ops/s for 12 s with an outage from 4.0 to 4.8 s, the
    shape a leader kill leaves."""
    out, t = [], 0.0
    while t < 12.0:
        t += rng.expovariate(700.0)
        if not 4.0 <= t < 4.8:
            out.append(t)
    return out


def test_coarse_shift_ignores_requests_outside_the_history() -> None:
    rng = random.Random(7)
    done = _dense_history(rng)
    true_shift = 1_795_835_922.017
    server = sorted(
        [d + true_shift - rng.uniform(0.0002, 0.002) for d in done]
        + [true_shift - 2.5 + i * 0.2 for i in range(6)]  # earlier requests of another client
    )
    naive = server[0] - done[0]
    assert abs(naive - true_shift) > 2.0  # the guess the alignment used to start from
    got = _coarse_shift(server, done, hint=naive)
    assert abs(got - true_shift) <= ALIGN_BIN_S


def test_coarse_shift_breaks_ties_toward_the_hint() -> None:
    # One completion and two node events: both shifts line one pair up and score the same;
    # the hint (a start the controller recorded) picks between them.
    done = [0.0]
    server = [100.0, 103.0]
    assert abs(_coarse_shift(server, done, hint=99.0) - 100.0) < 1e-6
    assert abs(_coarse_shift(server, done, hint=102.9) - 103.0) < 1e-6
