"""raft.core is sans-IO and depends on nothing outside itself (docs: DESIGN.md layers);
raft never imports deploy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted((ROOT / "raft" / "core").glob("*.py"))
FORBIDDEN_MODULES = {
    "socket",
    "os",
    "io",
    "time",
    "threading",
    "asyncio",
    "subprocess",
    "select",
    "selectors",
    "multiprocessing",
    "secrets",
    "pathlib",
    "shutil",
}
FORBIDDEN_PACKAGES = ("raft.runtime", "raft.storage", "raft.sim", "deploy")
# Module-level random functions use a hidden global generator: nondeterministic.
RANDOM_GLOBAL_FUNCS = {
    "random",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "uniform",
    "seed",
    "getrandbits",
    "gauss",
}


def imported_modules(tree: ast.AST) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_core_files_found() -> None:
    names = {p.name for p in CORE}
    assert {"raft.py", "log.py", "quorum.py", "progress.py", "rawnode.py"} <= names


@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_core_imports_nothing_with_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for mod in imported_modules(tree):
        top = mod.split(".")[0]
        assert top not in FORBIDDEN_MODULES, f"{path.name} imports {mod}"
        assert not mod.startswith(FORBIDDEN_PACKAGES), f"{path.name} imports {mod}"


@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_core_uses_only_injected_randomness(path: Path) -> None:
    """``import random`` is allowed for the ``random.Random`` annotation; calling the
    module-level functions (global, unseeded generator) or making a new generator is
    not."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            raise AssertionError(f"{path.name}: 'from random import ...' is not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name) and value.id == "random":
                assert node.func.attr not in RANDOM_GLOBAL_FUNCS | {"Random", "SystemRandom"}, (
                    f"{path.name}:{node.lineno} calls random.{node.func.attr}"
                )


def test_raft_never_imports_deploy() -> None:
    for path in sorted((ROOT / "raft").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for mod in imported_modules(tree):
            assert not (mod == "deploy" or mod.startswith("deploy.")), f"{path} imports {mod}"


def test_layering_check_catches_violations(tmp_path: Path) -> None:
    """The checker itself works: a forbidden import is detected."""
    tree = ast.parse("import time\nfrom raft.sim import x\n")
    mods = imported_modules(tree)
    assert "time" in mods and "raft.sim" in mods
