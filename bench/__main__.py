"""Run every ``bench/bench_*.py`` module's ``main()`` (``python -m bench`` / ``make bench``).

``python -m bench NAME...`` runs only the named ones (``lincheck`` or ``bench_lincheck``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if any(a in ("-h", "--help") for a in argv):
        print(
            "usage: python -m bench [NAME...]\n\n"
            "Runs every benchmark (make bench), or the named ones; each writes its results\n"
            "to bench/results/. Benchmarks: "
            + ", ".join(n.removeprefix("bench_") for n in names)
            + ".\nWhat each measures: python -m bench.bench_NAME --help (its docstring);\n"
            "the lab's scale benchmark (root, about an hour at 100 hosts): "
            "python -m bench.lab_scale --help."
        )
        return 0
    wanted = {a if a.startswith("bench_") else f"bench_{a}" for a in argv}
    unknown = wanted - set(names)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(names)}")
        return 2
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        # Each benchmark parses its own options from sys.argv: run it with its defaults,
        # not with this runner's list of names.
        sys.argv = [f"bench.{name}"]
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
