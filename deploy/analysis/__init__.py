"""Analysis of a run: read node event logs, merge them into one happens-before-consistent
timeline with estimated clock offsets, check Raft's invariants, diff the nodes' logs, export
to ShiViz. docs/analysis.md describes the methods.

```python
from deploy.analysis import analyze, write_outputs
a = analyze(Path("runs/latest"))  # or any folder holding events.jsonl files
a.verdicts      # {"invariants": "valid", "linearizability": ..., "overall": ...}
write_outputs(a)  # results.json + merged.jsonl in the run directory
```
"""

from __future__ import annotations

from deploy.analysis.diff import NodeDiff, diff_nodes, diff_runs, render_node_diff, summarize_run
from deploy.analysis.events import (
    EventLogNotFoundError,
    LineProblem,
    LoadedLogs,
    NodeEvent,
    Source,
    find_event_files,
    load_event_logs,
)
from deploy.analysis.invariants import Invariant, InvariantReport, Violation, check_invariants
from deploy.analysis.merge import (
    ClockEstimate,
    MergedEvent,
    MergedTimeline,
    estimate_offsets,
    merge,
)
from deploy.analysis.rundir import (
    Analysis,
    RunInfo,
    analyze,
    exit_code,
    list_runs,
    update_latest,
    write_outputs,
)
from deploy.analysis.shiviz import SHIVIZ_REGEX, write_shiviz

__all__ = [
    "SHIVIZ_REGEX",
    "Analysis",
    "ClockEstimate",
    "EventLogNotFoundError",
    "Invariant",
    "InvariantReport",
    "LineProblem",
    "LoadedLogs",
    "MergedEvent",
    "MergedTimeline",
    "NodeDiff",
    "NodeEvent",
    "RunInfo",
    "Source",
    "Violation",
    "analyze",
    "check_invariants",
    "diff_nodes",
    "diff_runs",
    "estimate_offsets",
    "exit_code",
    "find_event_files",
    "list_runs",
    "load_event_logs",
    "merge",
    "render_node_diff",
    "summarize_run",
    "update_latest",
    "write_outputs",
    "write_shiviz",
]
