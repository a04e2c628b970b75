"""Linearizability checking of client histories (a Porcupine/Knossos-class checker).

Pure: no file or network I/O. The ``raftlab check`` command reads files and calls this.

```python
from raft.lincheck import HistoryEvent, check_history, Verdict
res = check_history(events, model="register", timeout_s=10.0)
res.verdict          # Verdict.LINEARIZABLE | NOT_LINEARIZABLE | UNKNOWN
res.counterexample   # None, or a JSON-ready dict (see CheckResult)
```

:mod:`raft.lincheck.formats` parses and renders ``history.jsonl``, Jepsen ``history.edn`` and
Jepsen's text log lines; :mod:`raft.lincheck.models` holds the sequential specifications.
The algorithm and its guarantees are described in ``docs/checker.md``.
"""

from __future__ import annotations

from raft.lincheck import formats, models
from raft.lincheck.checker import CheckResult, Verdict, check_history, check_operations
from raft.lincheck.history import (
    EventType,
    HistoryError,
    HistoryEvent,
    Operation,
    OpFunction,
    OpStatus,
    pair_events,
)
from raft.lincheck.models import UnsupportedOperationError

__all__ = [
    "CheckResult",
    "EventType",
    "HistoryError",
    "HistoryEvent",
    "OpFunction",
    "OpStatus",
    "Operation",
    "UnsupportedOperationError",
    "Verdict",
    "check_history",
    "check_operations",
    "formats",
    "models",
    "pair_events",
]
