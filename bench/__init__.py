"""raftlab benchmarks. Each ``bench_*.py`` module has ``main()``, which measures and writes its
figures to ``bench/results/<name>.md``. ``python -m bench`` runs them all; timing lives here,
never in tests."""
