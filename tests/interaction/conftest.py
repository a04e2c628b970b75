"""Options for the core's interaction tests."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate the expected output of tests/interaction/testdata/*.txt",
    )
