"""CRC-32C (Castagnoli), the checksum of WAL records and snapshot streams.

The ``crc32c`` package's ``__init__`` calls ``importlib.metadata.version()`` (a scan of
site-packages) and imports its command line tool: 20-60 ms of a node's start, which a
restarted node pays before it can catch up (bench/results/perf.md, "Catch-up"). The function
lives in the package's extension module ``crc32c._crc32c``; it is loaded here without running
the package's ``__init__``. If the package's layout differs (another version), the package is
imported as usual: same function, slower start.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from typing import Any, Protocol

Buffer = Any  # bytes, bytearray or memoryview


class Crc32c(Protocol):
    def __call__(self, data: Buffer, value: int = 0, /) -> int:
        """CRC-32C of ``data``, continuing from ``value`` (a CRC of what came before)."""
        ...


def _extension_crc32c() -> Crc32c | None:
    spec = importlib.util.find_spec("crc32c")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if not os.path.isfile(path):
                continue
            name = "crc32c._crc32c"
            loader = importlib.machinery.ExtensionFileLoader(name, path)
            mod_spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            if mod_spec is None:
                return None
            module = importlib.util.module_from_spec(mod_spec)
            loader.exec_module(module)
            fn = getattr(module, "crc32c", None)
            return fn if callable(fn) else None
    return None


def _load() -> Crc32c:
    try:
        fn = _extension_crc32c()
    except (ImportError, OSError):
        fn = None
    if fn is not None and fn(b"123456789") == 0xE3069283:  # the standard check value
        return fn
    import crc32c as package

    return package.crc32c  # type: ignore[no-any-return]


crc32c: Crc32c = _load()
