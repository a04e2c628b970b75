"""The end of every run, lab or simulated: analyse the run directory with the lab's checkers,
fold in what the run itself knows (a simulator violation, warnings), write results.json and
the report, and say how it went in one line.

Verdicts are the analysis' (``invariants``, ``linearizability``, ``run``) plus, for a
simulated run, ``simulator`` (the in-memory checks after every step, and liveness after the
heal). Exit status: 0 valid, 1 invalid, 2 unknown.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.experiment.spec import ExperimentSpec

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_dir: Path
    verdicts: dict[str, str]
    report: Path | None
    warnings: tuple[str, ...]
    counts: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return {VALID: 0, INVALID: 1}.get(self.verdicts.get("overall", UNKNOWN), 2)

    def summary_line(self) -> str:
        v = self.verdicts
        parts = ", ".join(f"{k} {x}" for k, x in v.items() if k != "overall")
        return f"verdict: {v.get('overall', UNKNOWN).upper()} ({parts})"


def run_stamp() -> str:
    """The timestamp directory name of a new run (UTC, sortable, microseconds so that a
    campaign's runs never collide)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def lin_model(spec: ExperimentSpec) -> str:
    """The checker's model for a lab run of the spec: lab runs put even a register under a
    per-run key (run isolation), so every model is checked key by key (``kv``: each key a
    cas-register, which also accepts a history without cas)."""
    del spec
    return "kv"


def judge(
    run_dir: Path,
    spec: ExperimentSpec,
    *,
    model: str | None = None,
    extra_verdicts: dict[str, str] | None = None,
    report: bool = True,
    lin_timeout_s: float = 60.0,
) -> RunOutcome:
    """Analyse ``run_dir`` (checkers from the spec), write results.json, merged.jsonl and
    report.html, and return the outcome."""
    from deploy.analysis import analyze, write_outputs

    a = analyze(
        run_dir,
        model=model or lin_model(spec),
        lin_timeout_s=lin_timeout_s,
        check_linearizable="linearizability" in spec.checkers,
    )
    results_path = write_outputs(a)
    verdicts = dict(a.verdicts)
    if "linearizability" not in spec.checkers:
        verdicts.pop("linearizability", None)
    if "invariants" not in spec.checkers:
        verdicts.pop("invariants", None)
    verdicts.pop("overall", None)
    verdicts.update(extra_verdicts or {})
    vals = set(verdicts.values())
    verdicts["overall"] = (
        INVALID if INVALID in vals else (UNKNOWN if UNKNOWN in vals or not vals else VALID)
    )
    data = json.loads(results_path.read_text(encoding="utf-8"))
    data["verdicts"] = verdicts
    results_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    html: Path | None = None
    if report:
        from deploy.report import write_report

        html = write_report(a, run_dir)
    return RunOutcome(
        run_dir=run_dir,
        verdicts=verdicts,
        report=html,
        warnings=tuple(a.warnings),
        counts=a.counts(),
    )
