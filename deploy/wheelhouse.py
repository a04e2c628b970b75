"""The offline wheelhouse the hosts install from: the project's wheel plus its runtime deps.

Built once on the controller (``python -m deploy.wheelhouse --project DIR --dest DIR``, as the
Ansible role does with ``run_once``); hosts then ``pip install --no-index --find-links`` it
and never reach an index. The project wheel is rebuilt only when a source file changed (a
hash of the sources is kept beside it) and replaced only when its content changed (its RECORD
of file hashes differs); the wheelhouse is also packed as one reproducible tar file (``DEST``
+ ``.tar``) so a host gets it in one transfer. A deploy with unchanged code changes nothing.
Prints one JSON object: ``changed``, ``project_wheel``, ``requirements``, ``bundle``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.errors import LabError


class WheelhouseBuildError(LabError):
    """pip could not build the project wheel or fetch a dependency."""


#: What goes into the project's wheel; a change to any of these triggers a rebuild.
SOURCE_PATTERNS = ("pyproject.toml", "README.md", "raft/**/*", "deploy/**/*")
SOURCE_STAMP = ".raftlab-sources.sha256"


#: The optional extra the hosts get when its wheels can be fetched: uvloop for the nodes' event
#: loop, orjson for their event log (both have pure-Python fallbacks in the node).
FAST_EXTRA = "fast"


@dataclass(frozen=True, slots=True)
class WheelhouseResult:
    changed: bool
    project_wheel: str
    requirements: list[str]
    bundle: str
    fast_skipped: str = ""
    """Why the ``fast`` extra is not in the wheelhouse (empty when it is)."""


def source_files(project: Path) -> list[Path]:
    """Every file the project wheel is built from (caches and bytecode left out), sorted."""
    files: set[Path] = set()
    for pattern in SOURCE_PATTERNS:
        files.update(p for p in project.glob(pattern) if p.is_file())
    return sorted(
        p for p in files if "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def source_digest(project: Path) -> str:
    """A hash of the sources (names and contents): equal digests build equal wheels."""
    h = hashlib.sha256()
    for p in source_files(project):
        rel = p.relative_to(project).as_posix()
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def write_bundle(dest: Path, bundle: Path) -> bool:
    """Pack the wheels of ``dest`` into ``bundle`` (sorted, zero mtimes and owners, so the
    same wheels give the same bytes); True when the bundle changed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for p in sorted(dest.glob("*.whl")):
            info = tarfile.TarInfo(p.name)
            info.size = p.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(p, "rb") as f:
                tar.addfile(info, f)
    data = buf.getvalue()
    if bundle.exists() and bundle.read_bytes() == data:
        return False
    tmp = bundle.with_name(bundle.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, bundle)
    return True


def _project_table(project: Path) -> dict[str, Any]:
    with open(project / "pyproject.toml", "rb") as f:
        table = tomllib.load(f).get("project", {})
    return table if isinstance(table, dict) else {}


def runtime_requirements(project: Path) -> list[str]:
    """The ``[project].dependencies`` of ``project``'s pyproject.toml (what a node needs)."""
    return [str(d) for d in _project_table(project).get("dependencies", [])]


def optional_requirements(project: Path, extra: str = FAST_EXTRA) -> list[str]:
    """``[project.optional-dependencies].<extra>`` of ``project``'s pyproject.toml."""
    extras = _project_table(project).get("optional-dependencies", {})
    return [str(d) for d in extras.get(extra, [])]


def requirement_name(req: str) -> str:
    """The normalised distribution name of a requirement (``PyYAML>=6`` -> ``pyyaml``)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    if not m:
        raise WheelhouseBuildError(f"cannot parse requirement {req!r}")
    return re.sub(r"[-_.]+", "_", m.group(1)).lower()


def _wheel_dist(path: Path) -> str:
    return re.sub(r"[-_.]+", "_", path.name.split("-", 1)[0]).lower()


def _record(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        return z.read(name)


def _pip(args: Sequence[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise WheelhouseBuildError(f"pip {' '.join(args[:2])} failed: " + " | ".join(tail))


def parse_python_version(text: str) -> tuple[int, int]:
    """``3.12`` -> (3, 12), with an error naming the bad value."""
    m = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if not m:
        raise WheelhouseBuildError(
            f"bad --python-version {text!r}: expected MAJOR.MINOR, e.g. 3.12"
        )
    return int(m[1]), int(m[2])


def python_download_args(version: str | None) -> list[str]:
    """``pip download`` arguments fetching wheels for a host running Python ``version``
    (none when it is the controller's own: pip then picks for this interpreter)."""
    if version is None:
        return []
    major, minor = parse_python_version(version)
    if (major, minor) == sys.version_info[:2]:
        return []
    return [f"--python-version={major}.{minor}", "--implementation=cp", f"--abi=cp{major}{minor}"]


def build(
    project: Path,
    dest: Path,
    download_args: Sequence[str] = (),
    python_version: str | None = None,
) -> WheelhouseResult:
    """Make ``dest`` hold the project's wheel and a wheel of each runtime dependency, for
    hosts running ``python_version`` (default: the controller's Python). Use one ``dest``
    per Python version: wheels of compiled dependencies differ between versions."""
    py_args = python_download_args(python_version)
    dest.mkdir(parents=True, exist_ok=True)
    changed = False
    reqs = runtime_requirements(project)
    have = {_wheel_dist(p) for p in dest.glob("*.whl")}
    download = ["download", "--only-binary=:all:", "--dest", str(dest), *py_args, *download_args]
    missing = [r for r in reqs if requirement_name(r) not in have]
    if missing:
        _pip([*download, *missing])
        changed = True
    # The fast extra is an optimisation: a host Python or platform without its wheels gets
    # the same node without it, and the reason is reported.
    fast = optional_requirements(project)
    fast_skipped = ""
    missing = [r for r in fast if requirement_name(r) not in have]
    if missing:
        try:
            _pip([*download, *missing])
            changed = True
        except WheelhouseBuildError as exc:
            fast_skipped = str(exc)
            print(
                f"wheelhouse: the {FAST_EXTRA!r} extra is left out ({fast_skipped}); the "
                "nodes run on the standard library's asyncio and json",
                file=sys.stderr,
            )
    have = {_wheel_dist(p) for p in dest.glob("*.whl")}
    reqs = reqs + [r for r in fast if requirement_name(r) in have]
    digest = source_digest(project)
    stamp = dest / SOURCE_STAMP
    wheels = sorted(dest.glob("raftlab-*.whl"))
    if wheels and stamp.exists() and stamp.read_text().strip() == digest:
        target = wheels[-1]
    else:
        with tempfile.TemporaryDirectory(prefix="raftlab-wheel-") as tmp:
            # Build from a clean copy of the sources: no stale build/ of an earlier build can
            # slip deleted modules into the wheel, and the source tree stays untouched.
            src = Path(tmp) / "src"
            for f in source_files(project):
                (src / f.parent.relative_to(project)).mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, src / f.relative_to(project))
            out = Path(tmp) / "out"
            _pip(["wheel", "--no-deps", "--wheel-dir", str(out), str(src)])
            built = next(out.glob("*.whl"))
            target = dest / built.name
            if not target.exists() or _record(target) != _record(built):
                for old in dest.glob(f"{built.name.split('-', 1)[0]}-*.whl"):
                    old.unlink()
                shutil.copy2(built, target)
                os.chmod(target, 0o644)
                changed = True
        stamp.write_text(digest + "\n")
    bundle = dest.with_name(dest.name + ".tar")
    changed = write_bundle(dest, bundle) or changed
    return WheelhouseResult(
        changed=changed,
        project_wheel=target.name,
        requirements=reqs,
        bundle=str(bundle),
        fast_skipped=fast_skipped,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.wheelhouse", description=__doc__)
    p.add_argument("--project", type=Path, required=True, help="the project's source tree")
    p.add_argument("--dest", type=Path, required=True, help="the wheelhouse directory")
    p.add_argument(
        "--download-arg",
        action="append",
        default=[],
        help="extra argument for `pip download` (e.g. --platform=manylinux2014_aarch64)",
    )
    p.add_argument(
        "--python-version",
        default=None,
        help="MAJOR.MINOR of the hosts' Python (default: the controller's)",
    )
    args = p.parse_args(argv)
    try:
        res = build(
            args.project.resolve(), args.dest.resolve(), args.download_arg, args.python_version
        )
    except LabError as exc:
        print(f"wheelhouse: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
