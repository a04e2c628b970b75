"""State machines replicated by Raft: the :class:`StateMachine` protocol, the built-in
``register`` and ``kv`` machines, and :func:`load_machine` for ``machine:`` in cluster.yml."""

from __future__ import annotations

import importlib
import inspect

from raft.machines.base import SnapshotView, StateMachine, snapshot_view_of
from raft.machines.kv import KV
from raft.machines.register import Register

__all__ = [
    "BUILTIN_MACHINES",
    "KV",
    "MachineLoadError",
    "Register",
    "SnapshotView",
    "StateMachine",
    "load_machine",
    "read_ops_of",
    "snapshot_view_of",
]

BUILTIN_MACHINES: dict[str, type[StateMachine]] = {"register": Register, "kv": KV}
DEFAULT_READ_OPS = frozenset({"get", "read"})


class MachineLoadError(ValueError):
    """``machine:`` names no built-in machine and no importable ``module:Class``."""


def load_machine(spec: str) -> StateMachine:
    """A fresh machine for ``spec``: ``register``, ``kv`` or ``module:Class`` (a class whose
    no-argument constructor gives a :class:`StateMachine`)."""
    if spec in BUILTIN_MACHINES:
        return BUILTIN_MACHINES[spec]()
    if ":" not in spec:
        names = ", ".join(sorted(BUILTIN_MACHINES))
        raise MachineLoadError(f"unknown machine {spec!r}: use one of {names} or module:Class")
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        raise MachineLoadError(
            f"machine {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise MachineLoadError(f"machine {spec!r}: {module_name} has no class {class_name!r}")
    if not inspect.isclass(cls):
        raise MachineLoadError(
            f"machine {spec!r}: {module_name}.{class_name} is not a class "
            "(use module:Class naming a StateMachine class)"
        )
    try:
        machine = cls()
    except Exception as exc:
        raise MachineLoadError(
            f"machine {spec!r}: {class_name}() failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(machine, StateMachine):
        raise MachineLoadError(f"machine {spec!r}: {class_name} lacks apply/query/snapshot/restore")
    return machine


def read_ops_of(machine: StateMachine) -> frozenset[str]:
    """Ops the runtime serves as reads (``query``) instead of replicating; a machine may set
    a ``read_ops`` attribute, the default is ``get`` and ``read``."""
    ops = getattr(machine, "read_ops", DEFAULT_READ_OPS)
    return frozenset(str(o) for o in ops)
