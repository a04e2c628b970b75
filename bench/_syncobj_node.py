"""One PySyncObj node for bench/bench_compare.py, driven the way PySyncObj's own benchmark
drives it: every node process issues its share of the target rate in-process (one burst per
second, a callback per command), for a fixed time, then reports how many commands succeeded
and their latency (call to callback). No network client hop, no fsync (PySyncObj keeps its
log in memory unless a journal file is configured).

Usage: python bench/_syncobj_node.py RATE SIZE SECONDS BATCH(0|1) SELF PARTNER...
Prints one JSON line: {"sent", "ok", "lat": [seconds...]}.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]


class _Counter(SyncObj):  # type: ignore[misc]
    def __init__(self, self_addr: str, partners: list[str], batch: bool) -> None:
        super().__init__(self_addr, partners, conf=SyncObjConf(appendEntriesUseBatch=batch))
        self.applied = 0

    @replicated  # type: ignore[misc]
    def put(self, value: str) -> None:
        self.applied += 1


def main(argv: list[str]) -> int:
    rate, size, seconds, batch = int(argv[0]), int(argv[1]), float(argv[2]), argv[3] == "1"
    obj = _Counter(argv[4], argv[5:], batch)
    deadline = time.monotonic() + 30.0
    while obj._getLeader() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    value = "x" * size
    sent = 0
    ok = 0
    lat: list[float] = []

    def make_cb(t0: float) -> Any:
        def cb(_res: object, err: object) -> None:
            nonlocal ok
            if err == FAIL_REASON.SUCCESS:
                ok += 1
                lat.append(time.monotonic() - t0)

        return cb

    start = time.monotonic()
    while time.monotonic() - start < seconds:
        tick = time.monotonic()
        for _ in range(rate):
            obj.put(value, callback=make_cb(time.monotonic()))
            sent += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    time.sleep(2.0)
    print(json.dumps({"sent": sent, "ok": ok, "lat": lat}), flush=True)
    obj.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
