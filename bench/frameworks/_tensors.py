"""Array helpers shared by the adapters: NCHW <-> physical layout, input fingerprints."""

from __future__ import annotations

import numpy as np

from bench.cases import Case
from bench.frameworks import OutputError


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


def fingerprint_positions(numel: int, count: int = 4096) -> slice:
    """A strided sample of a flat buffer: cheap to compare every round, catches in-place writes."""
    return slice(0, numel, max(1, numel // count))
