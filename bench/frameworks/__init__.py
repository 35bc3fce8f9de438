"""One adapter per tensor framework: tensors in/out, sync, gradients, clocks, memory statistics.

Each adapter module imports its framework at the top, so importing it is the availability test;
only worker processes import them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from bench.cases import Case


class OutputError(Exception):
    """An implementation returned something the checker cannot compare (wrong type or shape)."""


def load(tensor_framework: str) -> ModuleType:
    return importlib.import_module(f"bench.frameworks.{tensor_framework}_adapter")


def cpu_cache_bytes() -> int:
    """Size of the last-level cache, from sysfs (32 MiB if it cannot be read)."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KMG")) * mult)
    return best or 32 * 1024**2


def buffer_count(case: Case, cache_bytes: int, warm_cache: bool) -> int:
    """How many input copies to rotate through so consecutive calls miss the cache (cold policy)."""
    if warm_cache:
        return 1
    per_buffer = case.numel * case.itemsize * (2 if case.mode == "forward" else 4)
    return int(min(64, max(1, np.ceil(2 * cache_bytes / per_buffer))))


def to_nchw(arr: np.ndarray, case: Case, physical: bool, what: str = "output") -> np.ndarray:
    """Float64 NCHW copy of an output; `physical` when the framework's shape follows the layout."""
    expected = case.physical_shape if physical else case.shape
    if tuple(arr.shape) != tuple(expected):
        raise OutputError(f"{what} has shape {tuple(arr.shape)}; expected {tuple(expected)}")
    if physical and case.layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    return np.asarray(arr, dtype=np.float64)


def from_nchw(x64: np.ndarray, case: Case, physical: bool) -> np.ndarray:
    return np.ascontiguousarray(x64.transpose(0, 2, 3, 1)) if physical and case.layout == "NHWC" else x64
