"""Shared helpers: run the real CLI in a subprocess, and read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.results import Row, read_rows

ROOT = Path(__file__).resolve().parent.parent
# Runs started by the tests keep their machine facts (the cache sweep) beside the tests' own files,
# not in the user's ~/.cache; one directory for every test process, so the sweep is made once.
TEST_CACHE_DIR = Path(tempfile.gettempdir()) / f"normbench-tests-{os.getuid()}"
os.environ.setdefault("NORMBENCH_CACHE_DIR", str(TEST_CACHE_DIR))


# A new run the tests start takes a simulated host with a 32 MiB cache unless it names its own
# (--effective-cache) or asks for this machine's (host_cache=True): its rows then do not depend on
# the caches of the machine running the tests, and its copy-bandwidth figure rotates 64 MiB, not
# twice a last-level cache that may be 300 MiB (8 s of a one-row run's 11 on such a VM).
SIMULATED_CACHE = ("--effective-cache", "32M")


def cli(
    *args: str, timeout: float = 900, env: dict[str, str] | None = None, host_cache: bool = False
) -> subprocess.CompletedProcess[str]:
    if args[:1] == ("run",) and not host_cache and not {"--effective-cache", "--resume"} & set(args):
        args = (*args, *SIMULATED_CACHE)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def bench_pytest(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`make bench-pytest`'s front end in a subprocess. When `make test` runs under pytest-xdist its
    variables are removed: pytest-benchmark reads PYTEST_XDIST_WORKER and would disable itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--benchmark-only", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def run_rows(
    tmp: Path, *args: str, timeout: float = 900, host_cache: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[Row]]:
    out = tmp / "run.jsonl"
    proc = cli("run", "--out", str(out), *args, timeout=timeout, host_cache=host_cache)
    return proc, (read_rows(out) if out.exists() else [])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """One smoke sweep of every registered implementation through the real CLI: all three modes,
    both layouts, all three dtypes, on one small shape. Registry-driven tests read their rows from
    it (the report's logic is tested on committed fixtures, so one shape is enough here)."""
    tmp = tmp_path_factory.mktemp("smoke")
    proc, rows = run_rows(
        tmp,
        "--op",
        "instance_norm",
        "--preset",
        "smoke",
        "--shape",
        "2,3,8,8",
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
        "--dtype",
        "float32",
        "--dtype",
        "float16",
        "--dtype",
        "bfloat16",
        "--max-time",
        "0.01",  # the wiring, not precise times: a few samples of each of ~570 rows
        "--edge",
        "--effective-cache",
        "32M",  # a simulated small-cache host: no row depends on the caches of the machine running this
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run.jsonl", rows


@pytest.fixture(scope="session")
def group_norm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """One GroupNorm sweep of its implementations through the real CLI: G = 2 on 4 channels, float32,
    forward and train (train checks the gradient too), both layouts, the edge cases (64 channels)."""
    tmp = tmp_path_factory.mktemp("group_norm")
    proc, rows = run_rows(
        tmp,
        "--op", "group_norm", "--num-groups", "2", "--shape", "2,4,6,8", "--device", "cpu",
        "--mode", "forward", "--mode", "train", "--layout", "NCHW", "--layout", "NHWC",
        "--dtype", "float32", "--max-time", "0.05", "--edge", "--effective-cache", "32M",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run.jsonl", rows


@pytest.fixture(scope="session")
def smoke_report(smoke_run: tuple[Path, list[Row]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke run's report, rendered once through the real CLI: its index.html."""
    out = tmp_path_factory.mktemp("smoke_report") / "report"
    proc = cli("report", str(smoke_run[0]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "index.html"


# `make test` hands whole files to three pytest-xdist workers in collection order (the Makefile's
# --no-loadscope-reorder: xdist's default order is by number of tests, which put the long files of
# one or two tests last, with one worker idle for the last minute). The longest files go first
# (seconds on this 2-core machine from --durations, the second run of a fresh clone), so that
# none of them starts last and leaves the other workers idle; order within a file is kept.
LONGEST_FIRST = (
    "test_end_to_end.py",  # ~260 s: the smoke sweep of every implementation, its report
    # ~130 s with an empty Numba cache (a fresh clone), 20 s warm. At once beside the smoke sweep,
    # so its kernels are compiled and cached before the sweep's torch group needs them (started
    # later, the two could compile the same kernels at the same time)
    "test_numba_fused.py",
    "test_faults.py",  # ~145 s: every fault through run, check and pytest
    "test_operators.py",  # ~75 s: the GroupNorm sweep of every implementation
    "test_stops.py",  # ~65 s
    "test_cheats.py",  # ~55 s
    "test_cluster.py",  # ~45 s
    "test_add_an_operator.py",  # ~40 s
    "test_threads.py",  # ~30 s
    "test_analysis.py",  # ~30 s
    "test_interrupt_resume.py",  # ~30 s
    "test_report.py",  # ~25 s
    "test_check.py",  # ~25 s
    "test_cache_and_allocator.py",  # ~25 s
    "test_pytest_benchmark.py",  # ~25 s
    "test_memory.py",  # ~25 s
    "test_bad_input.py",  # ~20 s
    "test_repro.py",  # ~20 s
    "test_readme_example.py",  # ~20 s
    "test_plugins.py",  # ~15 s
    "test_triton_fused.py",  # ~15 s
    "test_probe_memo.py",  # ~15 s
    "test_orphans.py",  # ~15 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
