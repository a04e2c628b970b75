"""Host checks run by testinfra through an Ansible inventory, e.g.

    pytest tests/infra --hosts=ansible://raft_nodes --ansible-inventory=inventories/local/hosts.yml

Without ``--hosts`` these files are not collected: they describe remote hosts, not this
machine (the lab tests in tests/lab run them against a testbed they bring up).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("hosts", default=None):
        return None
    return collection_path.name.startswith("test_")
