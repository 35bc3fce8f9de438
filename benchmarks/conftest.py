"""Options of the pytest-benchmark front end (`make bench-pytest`); the suite is test_normbench_pytest.py."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("normbench")
    group.addoption("--normbench-device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    group.addoption(
        "--normbench-max-time",
        type=float,
        default=0.2,
        help="seconds of sampling per implementation and case at most (default 0.2)",
    )
    group.addoption(
        "--normbench-impl-path", action="append", default=[], metavar="DIR", help="extra implementations"
    )
    group.addoption(
        "--normbench-impl-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="extra implementations",
    )
