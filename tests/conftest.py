"""Shared helpers: run the real CLI in a subprocess, and read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import Row, read_rows

ROOT = Path(__file__).resolve().parent.parent


def cli(
    *args: str, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_rows(
    tmp: Path, *args: str, timeout: float = 900
) -> tuple[subprocess.CompletedProcess[str], list[Row]]:
    out = tmp / "run.jsonl"
    proc = cli("run", "--out", str(out), *args, timeout=timeout)
    return proc, (read_rows(out) if out.exists() else [])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """One smoke sweep of every registered implementation through the real CLI: all three modes,
    both layouts. Registry-driven tests read their rows from it."""
    tmp = tmp_path_factory.mktemp("smoke")
    proc, rows = run_rows(
        tmp,
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--mode",
        "forward",
        "--mode",
        "backward",
        "--mode",
        "train",
        "--layout",
        "NCHW",
        "--layout",
        "NHWC",
        "--max-time",
        "0.05",
        "--edge",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run.jsonl", rows
