"""The wheelhouse's change detection: what makes a deploy with unchanged code change nothing."""

from __future__ import annotations

import tarfile
from pathlib import Path

from deploy.wheelhouse import requirement_name, runtime_requirements, source_digest, write_bundle


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
