# raftlab: `make lab` sets up this machine and runs the main experiment on the local testbed;
# `make test` runs the linters (ruff, yamllint, ansible-lint), the type checker and every test
# (lab tests need root).
PYTHON ?= python3
PYTEST_ARGS ?=
SEEDS ?= 2000

.PHONY: setup test lint typecheck pytest lab swarm bench clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

lint: setup
	$(PYTHON) -m ruff check raft deploy tests bench
	$(PYTHON) -m ruff format --check raft deploy tests bench
	yamllint -s .
	ansible-lint --offline -q playbooks/

typecheck: setup
	$(PYTHON) -m mypy

pytest: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The main job: bring up the local testbed and run the default experiment, ending in a report.
lab: setup
	bash scripts/lab.sh

# A large simulator swarm (the test suite runs a modest one).
swarm: setup
	raftlab sim --seeds $(SEEDS) --nodes 5 --faults all

# bench_compare measures etcd (Debian's etcd-server) and PySyncObj (the `bench` extra) beside
# raftlab; without root (or a package mirror) etcd is skipped and the results say so.
bench: setup
	@if ! command -v etcd >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq etcd-server >/dev/null || \
	    echo "note: could not install etcd-server; bench_compare skips etcd"; \
	  else echo "note: not root, etcd-server not installed; bench_compare skips etcd"; fi; fi
	@$(PYTHON) -m pip install -q -e '.[bench]' || echo "note: PySyncObj not installed; skipped"
	$(PYTHON) -m bench

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info .setup-stamp
