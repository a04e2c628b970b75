"""What a run records about itself in ``results.json`` (docs/formats.md, "results.json"):
its parameters (spec, seed, schedule, git revision, versions), its window on the wall clock
(the analysis reads only the node events inside it) and the warnings that keep a run that
proves nothing from being called valid."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]


def honest_warnings(ok_ops: int, faults_requested: int, faults_fired: int) -> list[str]:
    """Why a run proves nothing (same wording as the analysis, ``run_warnings``)."""
    out: list[str] = []
    if ok_ops == 0:
        out.append("no operation succeeded: the checks prove nothing")
    if faults_requested > 0 and faults_fired == 0:
        out.append(f"{faults_requested} fault(s) were requested and none fired")
    return out


def record_run(run_dir: str | Path, fields: dict[str, Any]) -> Path:
    """Merge ``fields`` into ``run_dir/results.json`` (other keys are kept), atomically."""
    path = Path(run_dir) / "results.json"
    results: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            results = loaded
    except (OSError, ValueError):
        pass
    results.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("results.json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def git_revision() -> str | None:
    """The project's git revision (``-dirty`` when the tree has changes), None outside git."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    """Versions of what the run depends on (controller side)."""
    out: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for dist in ("raftlab", "ansible-core", "paramiko", "msgpack"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
