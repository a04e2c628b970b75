"""The wheelhouse's change detection: what makes a deploy with unchanged code change nothing."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from deploy import wheelhouse
from deploy.wheelhouse import (
    WheelhouseBuildError,
    requirement_name,
    runtime_requirements,
    source_digest,
    write_bundle,
)


def make_project(root: Path) -> Path:
    (root / "raft").mkdir(parents=True)
    (root / "deploy").mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["PyYAML>=6"]\n')
    (root / "raft" / "a.py").write_text("A = 1\n")
    (root / "deploy" / "b.py").write_text("B = 2\n")
    return root


def test_source_digest_follows_content_not_caches(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p")
    before = source_digest(proj)
    (proj / "raft" / "__pycache__").mkdir()
    (proj / "raft" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (proj / "unrelated.txt").write_text("not part of the wheel")
    assert source_digest(proj) == before
    (proj / "raft" / "a.py").write_text("A = 2\n")
    assert source_digest(proj) != before
    (proj / "raft" / "a.py").write_text("A = 1\n")
    (proj / "raft" / "c.py").write_text("")
    assert source_digest(proj) != before  # a new module counts


def test_bundle_is_reproducible_and_rewritten_only_on_change(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    (wh / "a-1.0-py3-none-any.whl").write_bytes(b"wheel a")
    (wh / "b-2.0-py3-none-any.whl").write_bytes(b"wheel b")
    (wh / ".raftlab-sources.sha256").write_text("x\n")
    bundle = tmp_path / "wh.tar"
    assert write_bundle(wh, bundle) is True
    first = bundle.read_bytes()
    (wh / "a-1.0-py3-none-any.whl").touch()  # a new mtime alone changes nothing
    assert write_bundle(wh, bundle) is False
    assert bundle.read_bytes() == first
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    (wh / "b-2.0-py3-none-any.whl").write_bytes(b"wheel b, rebuilt")
    assert write_bundle(wh, bundle) is True


def test_requirements_come_from_pyproject(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p")
    assert runtime_requirements(proj) == ["PyYAML>=6"]
    assert requirement_name("PyYAML>=6.0") == "pyyaml"
    assert requirement_name("crc32c>=2.3") == "crc32c"
    assert requirement_name("zope.interface") == "zope_interface"


def _fake_pip(fail_for: set[str]) -> Any:
    """pip download writes an empty wheel per requirement (refusing those in ``fail_for``);
    pip wheel writes a minimal project wheel."""

    def pip(args: list[str]) -> None:
        if args[0] == "download":
            dest = Path(args[args.index("--dest") + 1])
            names = [a for a in args[args.index("--dest") + 2 :] if not a.startswith("--")]
            if fail_for & {requirement_name(n) for n in names}:
                raise WheelhouseBuildError("pip download failed: no matching distribution")
            for n in names:
                (dest / f"{requirement_name(n)}-1.0-py3-none-any.whl").write_bytes(b"w")
        elif args[0] == "wheel":
            out = Path(args[args.index("--wheel-dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out / "x-0.1-py3-none-any.whl", "w") as z:
                z.writestr("x-0.1.dist-info/RECORD", "x\n")

    return pip


def test_fast_extra_is_added_when_its_wheels_exist_and_skipped_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = make_project(tmp_path / "p")
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["PyYAML>=6"]\n'
        '[project.optional-dependencies]\nfast = ["uvloop>=0.19", "orjson>=3.8"]\n'
    )
    monkeypatch.setattr(wheelhouse, "_pip", _fake_pip({"uvloop"}))
    res = wheelhouse.build(proj, tmp_path / "wh-a")
    assert res.requirements == ["PyYAML>=6"]  # the node still deploys, without the extra
    assert "no matching distribution" in res.fast_skipped
    monkeypatch.setattr(wheelhouse, "_pip", _fake_pip(set()))
    res = wheelhouse.build(proj, tmp_path / "wh-b")
    assert res.requirements == ["PyYAML>=6", "uvloop>=0.19", "orjson>=3.8"]
    assert res.fast_skipped == ""
    # A base dependency that cannot be fetched is still an error.
    monkeypatch.setattr(wheelhouse, "_pip", _fake_pip({"pyyaml"}))
    with pytest.raises(WheelhouseBuildError):
        wheelhouse.build(proj, tmp_path / "wh-c")
