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
        "--normbench-case-timeout",
        type=float,
        default=300.0,
        help="seconds without progress before an implementation is a timeout (default 300)",
    )
    group.addoption(
        "--normbench-max-memory-gib",
        type=float,
        default=0.0,
        help="worker resident memory limit in GiB (default: none)",
    )
    group.addoption(
        "--normbench-rows",
        default=None,
        metavar="FILE.jsonl",
        help="also write every row the harness measured here, failures included",
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
